"""The running gateway stays light: heavy libraries that its memory budget cannot afford
are imported by the CLI's other commands, never by the service (bench/ingest.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# What `anchorgate run` imports, with the read API and device checks on.
SERVICE_MODULES = (
    "gateway.cli",
    "gateway.service",
    "gateway.readapi",
    "gateway.reader",
    "gateway.proofs",
    "gateway.device_auth",
    "gateway.checkpoints",
)


@pytest.mark.parametrize(
    "heavy",
    [
        pytest.param("pyarrow", id="pyarrow-40MB-with-numpy"),
        pytest.param("numpy", id="numpy"),
        pytest.param("aiohttp", id="aiohttp-12MB"),
        pytest.param("matplotlib", id="matplotlib"),
    ],
)
def test_the_service_does_not_import(heavy: str) -> None:
    imports = "; ".join(f"import {name}" for name in SERVICE_MODULES)
    code = f"import sys; {imports}; print({heavy!r} in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False", f"the gateway service imports {heavy}"

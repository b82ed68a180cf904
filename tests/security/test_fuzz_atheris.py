"""A short atheris (libFuzzer) run over every decoder, when atheris is installed.

The harness is tests/security/fuzz_atheris.py; run it for longer by hand
(``--seconds 600``). Here it runs two seconds in a subprocess, since libFuzzer
ends the process it runs in.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent / "fuzz_atheris.py"
ROOT = HARNESS.parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install atheris; Linux wheels only)",
)
def test_atheris_finds_no_crash_in_a_short_run() -> None:
    result = subprocess.run(
        [sys.executable, str(HARNESS), "--seconds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    tail = result.stderr[-3000:]
    assert result.returncode == 0, tail
    done = re.search(r"Done (\d+) runs in (\d+) second", result.stderr)
    assert done is not None, tail
    assert int(done[1]) > 100, tail

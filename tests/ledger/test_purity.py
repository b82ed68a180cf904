"""ledger/ stays pure: it imports no I/O framework and nothing else of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LEDGER = Path(__file__).resolve().parents[2] / "ledger"
BANNED = {"asyncio", "anyio", "duckdb", "paho", "aiomqtt", "gateway", "simulators", "socket"}


@pytest.mark.parametrize("path", sorted(LEDGER.glob("*.py")), ids=lambda p: p.name)
def test_ledger_module_imports_nothing_banned(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & BANNED, f"{path.name} imports {sorted(imported & BANNED)}"

"""The auditor's commands end to end: export, verify (offline), audit, status; exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from auditor_store import Made, make_store

from gateway.cli import main


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return make_store(tmp_path_factory.mktemp("cli-store"), batches=6)


@pytest.fixture
def made(pristine: Made, tmp_path: Path) -> Made:
    return pristine.copy_to(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def exported(capsys: pytest.CaptureFixture[str], made: Made, out: Path, *select: str) -> None:
    code, _, err = run(capsys, "export", "--store", str(made.path), "-o", str(out), *select)
    assert code == 0, err
    assert "exported" in err


def test_export_then_verify_in_words_and_json(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "ship-1.json"
    exported(capsys, made, bundle, "--asset", "SHIP-1")
    code, out, _ = run(capsys, "verify", str(bundle), "--key", str(made.public_key_path))
    assert code == 0
    assert "VALID" in out
    assert "reefer-1" in out
    assert "tracker-1" in out
    assert "seq without gaps" in out
    code, out, _ = run(capsys, "verify", str(bundle), "--key", str(made.public_key_path), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["valid"] is True
    assert report["count"] == 4 * made.blocks
    assert report["devices"]["reefer-1"]["assets"] == ["SHIP-1"]


def test_verify_failures_exit_1_and_name_the_check(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "b.json"
    exported(capsys, made, bundle, "--device", "reefer-2")
    data = json.loads(bundle.read_text())
    key = str(made.public_key_path)
    other_key = tmp_path / "other.pub"
    from ledger import SigningKey

    SigningKey.generate().public_key.save(other_key)
    cases = {
        "wrong-key": (bundle.read_bytes(), other_key, "'key'"),
        "version": (json.dumps(data | {"format": "anchorgate-proof/9"}).encode(), key, "'version'"),
        "garbage": (bundle.read_bytes() + b"}garbage", key, "'format'"),
        "nesting": (b"[" * 200_000 + b"]" * 200_000, key, "'format'"),
        "huge-number": (
            json.dumps(data).replace('"height": ', '"height": 9' * 50, 1).encode(),
            key,
            "'format'",
        ),
        "wrong-types": (json.dumps(data | {"readings": "all of them"}).encode(), key, "'format'"),
    }
    for name, (content, key_path, words) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_bytes(content)
        code, out, err = run(capsys, "verify", str(path), "--key", str(key_path))
        assert code == 1, (name, out, err)
        assert "INVALID" in out
        assert words in out, (name, out)
        assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        pytest.param(["verify", "missing.json", "--key", "k.pub"], "cannot read", id="no-key-file"),
        pytest.param(["verify", "b.json"], "Missing option '--key'", id="no-key-option"),
        pytest.param(
            ["export", "--store", "none.duckdb", "--asset", "A"], "does not exist", id="no-store"
        ),
        pytest.param(
            ["export", "--store", "S", "--from", "yesterday"], "--from: 'yesterday'", id="bad-time"
        ),
        pytest.param(["export", "--store", "S", "--id", "12"], "HEIGHT:INDEX", id="bad-id"),
        pytest.param(["export", "--store", "S"], "select readings by", id="no-selection"),
        pytest.param(
            ["export", "--store", "S", "--device", "nobody"], "no anchored reading", id="no-match"
        ),
        pytest.param(["audit", "--store", "S"], "no key", id="audit-no-key"),
        pytest.param(
            ["audit", "--store", "S", "--key", "k.pub", "--memory-limit", "lots"],
            "'--memory-limit': 'lots' is not a size",
            id="audit-memory-not-a-size",
        ),
        pytest.param(
            ["audit", "--store", "S", "--key", "k.pub", "--memory-limit", "10MB"],
            "less than 64MB",
            id="audit-memory-too-small",
        ),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    made: Made,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    words: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k.pub").write_bytes(made.public_key_path.read_bytes())
    argv = [str(made.path) if a == "S" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert words in err
    assert "Traceback" not in err


def test_checkpoints_carry_trust_forward(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = str(made.public_key_path)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    checkpoint = tmp_path / "checkpoint.json"
    exported(capsys, made, first, "--id", "1:0")
    code, _, _ = run(
        capsys, "verify", str(first), "--key", key, "--save-checkpoint", str(checkpoint)
    )
    assert code == 0
    old_head = json.loads(checkpoint.read_text())["head_hash"]
    # The chain grows; the next bundle proves it extends the checkpoint.
    grown = make_store(tmp_path / "grown", batches=made.blocks + 3)
    code, _, err = run(
        capsys,
        "export",
        "--store",
        str(grown.path),
        "--id",
        "7:0",
        "--since-head",
        old_head,
        "-o",
        str(second),
    )
    assert code == 0, err
    code, out, _ = run(capsys, "verify", str(second), "--key", key, "--checkpoint", str(checkpoint))
    assert code == 0, out
    assert "extends the older head" in out
    # Without the extension proof the pinned head cannot be matched.
    code, _, _ = run(capsys, "export", "--store", str(grown.path), "--id", "7:0", "-o", str(second))
    code, out, _ = run(capsys, "verify", str(second), "--key", key, "--checkpoint", str(checkpoint))
    assert code == 1
    assert "trusted-head" in out


def test_audit_ok_then_tampered(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    key = str(made.public_key_path)
    code, out, _ = run(capsys, "audit", "--store", str(made.path), "--key", key)
    assert code == 0
    assert "OK" in out
    con = duckdb.connect(str(made.path))
    con.execute("DELETE FROM readings WHERE block_height = 2 AND leaf_index = 1")
    con.close()
    code, out, _ = run(capsys, "audit", "--store", str(made.path), "--key", key, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert {p["block"] for p in report["problems"]} == {2}


def test_status_from_the_store_file(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "--store", str(made.path), "--json")
    assert code == 0
    status = json.loads(out)
    assert status["height"] == made.blocks - 1
    assert status["readings"] == made.readings
    assert status["gateway_id"] == "gw-audit"
    code, out, _ = run(capsys, "status", "--store", str(made.path))
    assert "height:        5" in out

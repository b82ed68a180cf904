"""anchorgate report: every bad input is one line naming the option, exit 2; no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_store import ReportStore, make_report_store

from gateway.cli import main
from gateway.store import Store
from ledger import SigningKey


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> ReportStore:
    return make_report_store(tmp_path_factory.mktemp("report-cli-store"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def store_args(made: ReportStore, out: Path) -> list[str]:
    return ["--store", str(made.path), "--key", str(made.public_key_path), "-o", str(out)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--asset", "NOPE"], "--asset: no anchored reading of 'NOPE'", id="unknown"),
        pytest.param(
            ["--asset", "SHIP-1", "--from", "2001-01-01", "--to", "2001-01-02"],
            "--asset: no anchored reading of 'SHIP-1' received in the --from/--to range",
            id="empty-range",
        ),
        pytest.param(
            ["--asset", "SHIP-1", "--from", "yesterday"],
            "--from: 'yesterday' is neither ISO 8601",
            id="bad-from",
        ),
        pytest.param(
            ["--asset", "SHIP-1", "--from", "2026-11-02", "--to", "2026-11-01"],
            "--from: 2026-11-02 is not before --to 2026-11-01",
            id="reversed-range",
        ),
        pytest.param(
            ["--asset", "SHIP-1", "--min-c", "9", "--max-c", "8"],
            "--min-c: 9 is not below --max-c 8",
            id="reversed-band",
        ),
        pytest.param(
            ["--asset", "SHIP-1", "--max-c", "nan"], "--max-c: nan is not a finite", id="nan"
        ),
        pytest.param(["--asset", " "], "--asset: give a shipment or component id", id="blank"),
        pytest.param(
            ["--asset", "SHIP-1", "--activation-energy", "0"],
            "'--activation-energy': 0.0 is not in the range x>0",
            id="activation-energy",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    made: ReportStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    code, _, err = run(capsys, *store_args(made, tmp_path / "out"), *extra)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or err.startswith("Usage:")
    assert not (tmp_path / "out").exists()


def test_missing_asset_is_a_usage_error(
    made: ReportStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, *store_args(made, tmp_path / "out"))
    assert code == 2
    assert "Missing option '--asset'" in err


def test_store_and_key_problems(
    made: ReportStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/gateway.toml here
    out = str(tmp_path / "out")
    code, _, err = run(capsys, "--asset", "SHIP-1", "-o", out, "--key", str(made.public_key_path))
    assert (code, err.strip()) == (
        2,
        "Error: --store: no store given: give --store FILE or -c CONFIG",
    )
    code, _, err = run(capsys, "--asset", "SHIP-1", "-o", out, "--store", str(made.path))
    assert code == 2
    assert err.startswith("Error: --key: no public key: give --key GATEWAY.pub")
    code, _, err = run(
        capsys, "--asset", "SHIP-1", "-o", out, "--store", "nope.duckdb", "--key",
        str(made.public_key_path),
    )  # fmt: skip
    assert (code, err.strip()) == (2, "Error: --store: store: nope.duckdb does not exist")
    code, _, err = run(
        capsys, "--asset", "SHIP-1", "-o", out, "--store", str(made.path), "--key", "nope.pub"
    )
    assert code == 2
    assert err.startswith("Error: --key:")
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "--asset", "SHIP-1", *store_args(made, tmp_path / "file")[:4],
                       "-o", str(tmp_path / "file"))  # fmt: skip
    assert code == 2
    assert f"Invalid value for '-o' / '--output': Directory '{tmp_path / 'file'}' is a file" in err


def test_store_held_by_a_gateway_needs_it_stopped_or_a_copy(
    made: ReportStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "held.duckdb"
    copy.write_bytes(made.path.read_bytes())
    with Store.open(copy):  # a writer holds the file, as a running gateway does
        code, _, err = run(
            capsys, "--asset", "SHIP-1", "-o", str(tmp_path / "out"), "--store", str(copy),
            "--key", str(made.public_key_path),
        )  # fmt: skip
    assert code == 2
    assert err.strip() == (
        f"Error: --store: {copy} is held by a running gateway: report reads the store file "
        "itself, so stop the gateway first, or give --store a copy of the file"
    )


def test_a_proof_that_does_not_verify_fails_with_exit_1(
    made: ReportStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.pub"
    SigningKey.from_seed(bytes(32)).public_key.save(other)
    code, _, err = run(
        capsys, "--asset", "SHIP-1", "-o", str(tmp_path / "out"), "--store", str(made.path),
        "--key", str(other),
    )  # fmt: skip
    assert code == 1
    assert "the proof bundle for 'SHIP-1' does not verify with this key" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_store_and_key_from_the_gateway_config(
    made: ReportStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.toml"
    key_file = made.public_key_path.with_suffix(".key")  # its .pub is the public key
    config.write_text(
        f'[gateway]\nid = "gw-report"\nkey_file = "{key_file}"\n[store]\npath = "{made.path}"\n'
    )
    code, _, err = run(capsys, "--asset", "HS-1", "-o", str(tmp_path / "out"), "-c", str(config))
    assert code == 0, err
    assert "component HS-1: 12 reading(s), all anchored" in err
    code, _, err = run(capsys, "--asset", "HS-1", "-o", str(tmp_path / "out"), "-c", "nope.toml")
    assert code == 2
    assert err.startswith("Error: -c: nope.toml")

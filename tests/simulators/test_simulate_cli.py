"""``anchorgate simulate`` refuses bad input with one line, never a traceback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from gateway.cli import main
from gateway.mosquitto import free_port
from simulators.progress import ProgressDisplay

DEMO = str(Path(__file__).parents[2] / "config" / "scenarios" / "demo.toml")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["simulate", *args])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["-s", "nope.toml"], "'nope.toml' does not exist", id="missing-file"),
        pytest.param(["-s", DEMO, "--qos", "3"], "--qos", id="qos"),
        pytest.param(["-s", DEMO, "--devices", "0"], "--devices", id="devices"),
        pytest.param(["-s", DEMO, "--rate", "0"], "--rate must be more than 0", id="rate"),
        pytest.param(["-s", DEMO, "--rate", "fast"], "'fast' is not a valid float", id="rate-type"),
        pytest.param(["-s", DEMO, "--duration", "-2"], "--duration must be more than 0", id="dur"),
        pytest.param(["-s", DEMO, "--format", "xml"], "'xml' is not one of", id="format"),
        pytest.param(["-s", DEMO, "--port", "0"], "--port", id="port"),
        pytest.param([], "Missing option '-s' / '--scenario'", id="no-scenario"),
    ],
)
def test_bad_flags_are_one_line_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run(args, capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_bad_scenario_file_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(Path(DEMO).read_text().replace("interval = 2.0", 'interval = "2s"', 1))
    code, err = run(["-s", str(bad)], capsys)
    assert code == 2
    assert err.strip() == (f"Error: {bad}: groups[1]: 'interval' must be a number, not '2s'")


def test_unreachable_broker_is_one_line_and_still_writes_a_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.json"
    port = free_port()
    code, err = run(["-s", DEMO, "--port", str(port), "--manifest", str(manifest)], capsys)
    assert code == 1
    assert err.startswith(f"Error: cannot connect to MQTT broker 127.0.0.1:{port}: ")
    assert err.count("\n") == 1
    assert '"complete": false' in manifest.read_text()


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--help"]) == 0
    assert "anchorgate simulate -s config/scenarios/demo.toml" in capsys.readouterr().out


def test_progress_shows_on_a_terminal_and_stays_quiet_otherwise() -> None:
    shown, quiet = io.StringIO(), io.StringIO()
    for out, terminal in ((shown, True), (quiet, False)):
        console = Console(file=out, force_terminal=terminal, width=120)
        with ProgressDisplay(console, 10.0) as progress:
            progress.update(1.0, 1500, 3, 2.0)
            progress.update(2.0, 3500, 4, 1.0)
    assert "3,500 sent" in shown.getvalue()
    assert "2,000 msg/s" in shown.getvalue()
    assert "4 faults" in shown.getvalue()
    assert quiet.getvalue() == ""

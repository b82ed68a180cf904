"""``anchorgate demo``: the whole product on this machine, in one working directory.

It starts a broker on a free port (Mosquitto when it is installed, otherwise the
embedded Python broker of :mod:`gateway.embedded_broker`, amqtt speaking MQTT 3.1.1,
and it says so; ``--broker`` chooses), makes a gateway key, starts the gateway
(a child process, as an operator would run it) and the demo scenario's simulated
sensors (shipments and thermal components, with a reefer failure and a few bad
messages), shows the gateway's counters live while they run, then exports a proof
bundle for one shipment through the gateway's read API, verifies it as an auditor
would, stops everything, audits the whole store, and prints where every file is and
the commands that repeat each step by hand. Every child process is stopped however
the demo ends.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table

from gateway.cli_errors import EXIT_FAILED, EXIT_OK, UserError
from gateway.mosquitto import BrokerError, Mosquitto, find_mosquitto, free_port

if TYPE_CHECKING:
    from gateway.embedded_broker import EmbeddedBroker

BrokerChoice = Literal["auto", "mosquitto", "embedded"]
REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "config" / "scenarios" / "demo.toml"
SHIPMENT = "reefer-00000"


class DemoError(Exception):
    """A step of the demo failed; the message says which and where its log is."""


@contextmanager
def _child(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process with its output in ``log``; stopped (TERM, then KILL) on exit."""
    with log.open("ab") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _status(api: str) -> dict[str, Any] | None:
    try:
        code, body = _get(api + "/status", timeout=2.0)
    except OSError:
        return None
    if code != 200:
        return None
    result: dict[str, Any] = json.loads(body)
    return result


def _table(status: dict[str, Any] | None, elapsed: float, duration: float) -> Table:
    table = Table(title=f"anchorgate demo: {elapsed:4.0f} s of {duration:.0f} s", min_width=60)
    table.add_column("gateway")
    table.add_column("value", justify="right")
    if status is None:
        table.add_row("state", "starting")
        return table
    live = status.get("live", {})
    latency = live.get("latency_s", {})
    rows = [
        ("state", str(live.get("state"))),
        ("readings received", str(live.get("readings_in"))),
        ("readings stored and anchored", str(status.get("readings"))),
        ("rejects (bad input)", str(status.get("rejects"))),
        ("duplicates dropped", str(live.get("duplicates"))),
        ("blocks (chain height + 1)", str(status.get("blocks"))),
        ("head", str(status.get("head_hash"))[:16]),
        ("receive-to-commit p99", f"{latency.get('p99')} s"),
        ("alerts", str(live.get("alerts"))),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _write_config(work: Path, broker: Mosquitto | EmbeddedBroker, api_port: int) -> Path:
    protocol = "5" if isinstance(broker, Mosquitto) else broker.protocol
    config = work / "gateway.toml"
    config.write_text(
        f"""# Written by anchorgate demo; see config/gateway.toml for every option.
[gateway]
id = "demo-gateway"
key_file = "{work / "keys" / "gateway.key"}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "anchorgate-demo-{api_port}"
protocol = "{protocol}"
[batch]
max_readings = 1000
max_delay = 1.0
[store]
path = "{work / "anchorgate.duckdb"}"
[health]
file = "{work / "health.json"}"
interval = 1.0
[api]
port = {api_port}
"""
    )
    return config


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise DemoError(f"timed out waiting for {what}")


def _pick_broker(choice: BrokerChoice, work: Path, console: Console) -> Mosquitto | EmbeddedBroker:
    """The broker ``--broker`` asks for (auto: Mosquitto when installed), not yet started."""
    if choice != "embedded" and find_mosquitto() is not None:
        return Mosquitto(work / "broker")
    if choice == "mosquitto":
        raise UserError(
            "--broker mosquitto: Mosquitto is not installed ('apt-get install mosquitto'); "
            "--broker auto or embedded uses the embedded Python broker instead"
        )
    try:
        from gateway.embedded_broker import EmbeddedBroker  # noqa: PLC0415
    except ImportError as exc:
        raise UserError(
            f"the embedded Python broker needs amqtt ({exc}): pip install 'anchorgate[demo]' "
            "(./scripts/demo does), or install Mosquitto"
        ) from None
    broker = EmbeddedBroker(work / "broker")
    why = "--broker embedded" if choice == "embedded" else "Mosquitto not found on PATH"
    console.print(
        f"{why}: using the embedded Python broker ({broker.name}, MQTT {broker.protocol})"
    )
    console.print(
        "  [dim]it runs inside this process and keeps nothing on disk; the gateway speaks "
        "MQTT 3.1.1 to it. For real use, put Mosquitto in front of the gateway.[/]"
    )
    return broker


def run_demo(
    work: Path,
    duration: float,
    keep_running: bool,
    console: Console,
    broker_choice: BrokerChoice = "auto",
) -> int:
    """Run every step; return the exit code."""
    from gateway.verify_report import render, summarize  # noqa: PLC0415
    from ledger import PublicKey, SigningKey, verify_bundle  # noqa: PLC0415

    if not SCENARIO.exists():
        raise UserError(f"the demo scenario {SCENARIO} is missing (run from a checkout)")
    if work.exists():
        shutil.rmtree(work)
    (work / "keys").mkdir(parents=True)
    python = [sys.executable, "-m", "gateway.cli"]
    key = SigningKey.generate()
    key.save(work / "keys" / "gateway.key")
    key.public_key.save(work / "keys" / "gateway.pub")
    console.print(f"working directory: {work}")
    with _pick_broker(broker_choice, work, console) as broker:
        what = "Mosquitto" if isinstance(broker, Mosquitto) else f"{broker.name} (embedded)"
        console.print(f"broker: {what} on {broker.host}:{broker.port} (log {broker.log_path})")
        api_port = free_port()
        api = f"http://127.0.0.1:{api_port}"
        config = _write_config(work, broker, api_port)
        with _child([*python, "run", "-c", str(config)], work / "gateway.log") as gateway:

            def gateway_up() -> dict[str, Any] | None:
                if gateway.poll() is not None:
                    raise DemoError(f"the gateway stopped; see {work / 'gateway.log'}")
                return _status(api)

            _wait(gateway_up, 30, f"the gateway to start (see {work / 'gateway.log'})")
            console.print(f"gateway: pid {gateway.pid}, read API {api}")
            simulate = [
                *python,
                "simulate",
                "-s",
                str(SCENARIO),
                "--port",
                str(broker.port),
                "--duration",
                str(duration),
                "--manifest",
                str(work / "manifest.json"),
                "--protocol",
                "5" if isinstance(broker, Mosquitto) else broker.protocol,
            ]
            started = time.monotonic()
            with (
                _child(simulate, work / "simulator.log") as simulator,
                Live(console=console, refresh_per_second=4, transient=False) as live,
            ):
                while simulator.poll() is None:
                    if gateway.poll() is not None:
                        raise DemoError(f"the gateway stopped; see {work / 'gateway.log'}")
                    live.update(_table(_status(api), time.monotonic() - started, duration))
                    time.sleep(0.5)
                manifest = json.loads((work / "manifest.json").read_text())
                published = int(manifest["totals"]["messages"])

                def drained() -> bool:
                    status = _status(api)
                    live.update(_table(status, time.monotonic() - started, duration))
                    if status is None:
                        return False
                    counters = status["live"]
                    return bool(
                        counters["readings_in"] >= published and counters["queue_depth"] == 0
                    )

                _wait(drained, 30, "the gateway to commit every message")
            if simulator.returncode != 0:
                raise DemoError(f"the simulator failed; see {work / 'simulator.log'}")
            console.print(f"simulator: published {published} messages (manifest.json)")

            bundle_path = work / f"{SHIPMENT}.proof.json"
            code, body = _get(f"{api}/export?asset={SHIPMENT}", timeout=60)
            if code != 200:
                raise DemoError(f"export failed ({code}): {body[:200]!r}")
            bundle_path.write_bytes(body)
            console.print(f"\nexported the proof for shipment {SHIPMENT}: {bundle_path}")
            console.rule("verifying it offline, as an auditor would")
            report = verify_bundle(body, PublicKey.load(work / "keys" / "gateway.pub"))
            summary = summarize(report)
            summary["readings"] = summary["readings"][:8]  # the full table is in --json
            render(summary, console)
            if keep_running:
                console.print(
                    f"\n--keep-running: gateway pid {gateway.pid} and the broker keep running; "
                    "press Ctrl-C to stop them"
                )
                with suppress(KeyboardInterrupt):
                    gateway.wait()
        if not report.valid:
            return EXIT_FAILED
    console.rule("auditing the whole store (the gateway is stopped now)")
    from gateway.cli import main as cli_main  # noqa: PLC0415

    public = work / "keys" / "gateway.pub"
    audit_code = cli_main(["audit", "-c", str(config), "--key", str(public)])
    console.rule(f"the report for shipment {SHIPMENT}")
    report_dir = work / f"report-{SHIPMENT}"
    report_args = ["--key", str(public), "--asset", SHIPMENT, "-o", str(report_dir)]
    report_code = cli_main(["report", "-c", str(config), *report_args])
    _print_files(work, config, broker, console, duration)
    return EXIT_OK if audit_code == report_code == 0 else EXIT_FAILED


def _print_files(
    work: Path,
    config: Path,
    broker: Mosquitto | EmbeddedBroker,
    console: Console,
    duration: float,
) -> None:
    public = work / "keys" / "gateway.pub"
    bundle = work / f"{SHIPMENT}.proof.json"
    report = work / f"report-{SHIPMENT}"
    console.rule("files")
    for path, what in [
        (work / "keys" / "gateway.key", "the gateway's private key (mode 0600)"),
        (public, "its public key, for auditors"),
        (config, "the gateway configuration"),
        (work / "anchorgate.duckdb", "the store (readings, blocks, rejects)"),
        (work / "gateway.log", "the gateway's log"),
        (work / "manifest.json", "what the simulator published"),
        (bundle, f"the proof bundle for {SHIPMENT}"),
        (report / "report.html", "its report: figures and plots"),
    ]:
        console.print(f"  {path}  [dim]{what}[/]")
    console.rule("to repeat each step by hand")
    if isinstance(broker, Mosquitto):
        start_broker = f"mosquitto -c {broker.config_path}"
        protocol = ""
    else:
        start_broker = f"python -m gateway.embedded_broker --port {broker.port} --dir {work}/broker"
        protocol = f" --protocol {broker.protocol}"
    console.print(
        f"""  {start_broker}
  anchorgate keygen --out {work / "keys" / "gateway"} --force
  anchorgate run -c {config}
  anchorgate simulate -s {SCENARIO} --port {broker.port}{protocol} --duration {duration:g}
  anchorgate status -c {config}
  anchorgate export -c {config} --asset {SHIPMENT} -o {bundle}
  anchorgate verify {bundle} --key {public}
  anchorgate audit -c {config} --key {public}
  anchorgate report -c {config} --key {public} --asset {SHIPMENT} -o {report}""",
        highlight=False,
    )


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(2, 3600),
    default=30.0,
    show_default=True,
    help="Seconds the simulated sensors publish.",
)
@click.option(
    "--dir",
    "work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Working directory (emptied first).",
)
@click.option(
    "--broker",
    "broker_choice",
    type=click.Choice(["auto", "mosquitto", "embedded"]),
    default="auto",
    show_default=True,
    help="auto: Mosquitto when it is installed, else the embedded Python broker (amqtt).",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Leave the gateway and broker running after the proof, until Ctrl-C.",
)
def demo(duration: float, work: Path, broker_choice: BrokerChoice, keep_running: bool) -> None:
    """Run the whole product here: broker, gateway, sensors, then a verified proof.

    \b
    Example:
      anchorgate demo --duration 30 --dir demo
      anchorgate demo --broker embedded
    """
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=120)  # logs and pipes: fewer wrapped lines
    try:
        code = run_demo(work.resolve(), duration, keep_running, console, broker_choice)
    except (DemoError, BrokerError) as exc:
        raise click.ClickException(str(exc)) from None
    if code != EXIT_OK:
        raise click.exceptions.Exit(code)

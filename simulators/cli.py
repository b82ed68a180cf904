"""``anchorgate simulate``: publish a scenario's sensor fleet over MQTT.

Parses the flags, loads the scenario, makes one library call
(:func:`simulators.runner.run_scenario`) and prints one summary line. Mistakes in
the scenario file or the flags become one line naming the field (exit 2); a broker
that cannot be reached becomes one line too (exit 1). The manifest is written
however the run ends.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from simulators.broker_settings import read_password
from simulators.errors import PublishError, ScenarioError
from simulators.manifest import Manifest
from simulators.progress import ProgressDisplay
from simulators.runner import new_manifest, run_scenario
from simulators.scenario import apply_overrides, load_scenario


class ScenarioUsageError(click.ClickException):
    """A wrong scenario file or flag: one line, exit code 2 (as the CLI's usage errors)."""

    exit_code = 2


@click.command("simulate")
@click.option(
    "-s",
    "--scenario",
    "scenario_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario TOML file (see config/scenarios/ and docs/SIMULATORS.md).",
)
@click.option("--devices", type=click.IntRange(min=1), help="Total devices, spread over groups.")
@click.option("--rate", type=float, help="Reports per second per device, for every group.")
@click.option("--duration", type=float, help="Run time in seconds.")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed (same seed, same readings).")
@click.option("--host", help="MQTT broker host.")
@click.option("--port", type=click.IntRange(1, 65535), help="MQTT broker port.")
@click.option(
    "--tls/--no-tls", default=None, help="Connect with TLS (implied by --ca-file/--cert-file)."
)
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA certificate (PEM) the broker's certificate must chain to [default: system CAs].",
)
@click.option(
    "--cert-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Client certificate (PEM) for mutual TLS; needs --key-file.",
)
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The client certificate's private key (unencrypted PEM).",
)
@click.option("--username", help="MQTT user name.")
@click.option(
    "--password",
    envvar="ANCHORGATE_MQTT_PASSWORD",
    help="MQTT password (better: the ANCHORGATE_MQTT_PASSWORD variable or --password-file).",
)
@click.option("--password-env", metavar="NAME", help="Read the MQTT password from variable NAME.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the MQTT password from this file (its first line).",
)
@click.option(
    "--allow-insecure",
    is_flag=True,
    default=None,
    help="Allow plain TCP to a broker that is not on this machine (prints a warning).",
)
@click.option("--connections", type=click.IntRange(1, 64), help="MQTT connections to share.")
@click.option(
    "--protocol",
    type=click.Choice(["5", "3.1.1"]),
    help="MQTT version [default: 5]; 3.1.1 for a broker without MQTT 5.",
)
@click.option("--qos", type=click.IntRange(0, 2), help="MQTT QoS of every message.")
@click.option(
    "--format", "payload_format", type=click.Choice(["json", "msgpack"]), help="Payload encoding."
)
@click.option(
    "--device-keys",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A directory of <device_id>.key files: those devices sign their readings.",
)
@click.option(
    "--no-pacing",
    is_flag=True,
    help="Publish the whole schedule as fast as the broker takes it (load tests).",
)
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the manifest [default: <scenario name>.manifest.json].",
)
def simulate(
    *,
    scenario_path: Path,
    manifest_path: Path | None,
    no_pacing: bool,
    devices: int | None,
    rate: float | None,
    duration: float | None,
    seed: int | None,
    qos: int | None,
    payload_format: Any,
    password_env: str | None,
    password_file: Path | None,
    device_keys: Path | None,
    **broker: Any,
) -> None:
    """Publish simulated sensor readings (and injected faults) over MQTT.

    Runs the fleet of a scenario file: thermal components and shipment trackers
    that publish readings on sensors/{device_id}/{kind}, with the faults the
    scenario schedules. On exit, writes a manifest of everything published.

    \b
    Example:
      anchorgate simulate -s config/scenarios/demo.toml --port 1883
      anchorgate simulate -s config/scenarios/fleet.toml --devices 10000 --rate 0.1
      anchorgate simulate -s config/scenarios/demo.toml --host broker.lan --port 8883 \\
        --ca-file ca.pem --username sim --password-file sim.pass
      anchorgate simulate -s config/scenarios/demo.toml --device-keys keys/devices
    """
    try:
        if password_env is not None or password_file is not None:
            if broker["password"] is not None:
                raise ScenarioError("--password: give it or --password-env/--password-file")
            broker["password"] = read_password(
                password_env, password_file, os.environ, ("--password-env", "--password-file")
            )
        scenario = apply_overrides(
            load_scenario(scenario_path),
            devices=devices,
            rate=rate,
            duration=duration,
            seed=seed,
            qos=qos,
            payload_format=payload_format,
            device_keys=device_keys,
            **broker,
        )
    except ScenarioError as exc:
        raise ScenarioUsageError(str(exc)) from None
    if scenario.broker.insecure:
        click.echo(
            f"warning: plain TCP to {scenario.broker.host} (allow_insecure): the password "
            "and readings cross the network unencrypted",
            err=True,
        )
    if manifest_path is None:
        manifest_path = Path(f"{scenario.name}.manifest.json")
    manifest = new_manifest(scenario)
    console = Console()
    try:
        with ProgressDisplay(console, scenario.duration_s) as progress:
            result = asyncio.run(
                run_scenario(scenario, manifest, pace=not no_pacing, progress=progress)
            )
    except ScenarioError as exc:  # e.g. unreadable device keys
        raise ScenarioUsageError(str(exc)) from None
    except PublishError as exc:
        _write(manifest, manifest_path, error=str(exc))
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        _write(manifest, manifest_path, error="interrupted")
        raise click.exceptions.Abort() from None
    _write(manifest, manifest_path)
    lag = manifest.lag_ms
    lag_text = f", lag p99 {lag['p99']:.0f} ms max {lag['max']:.0f} ms" if lag else ""
    click.echo(
        f"published {manifest.messages} messages ({manifest.readings} readings, "
        f"{manifest.messages - manifest.readings} fault messages, "
        f"{sum(manifest.faults.values())} faults) from {len(manifest.devices)} devices "
        f"in {result.elapsed_s:.1f} s ({result.rate:,.0f} msg/s{lag_text}); "
        f"manifest {manifest_path}"
    )


def _write(manifest: Manifest, path: Path, error: str | None = None) -> None:
    manifest.error = error
    try:
        manifest.write(path)
    except OSError as exc:
        raise click.ClickException(f"cannot write manifest {path}: {exc.strerror}") from None

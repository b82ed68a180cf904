"""``anchorgate simulate``: being built (issue: sensor simulators)."""

from __future__ import annotations

import click


@click.command("simulate")
def simulate() -> None:
    """Publish simulated sensor readings over MQTT (not built yet)."""
    raise click.ClickException("anchorgate simulate is not built yet")

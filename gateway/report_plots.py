"""The report's pictures, drawn with matplotlib's Agg renderer into PNG files.

Figures are made with :class:`matplotlib.figure.Figure` and an Agg canvas directly,
never through pyplot: no global state, no display needed, nothing left open. matplotlib
is the ``report`` extra (``pip install anchorgate[report]``); the gateway itself never
imports this module.

- :func:`plot_temperature`: temperature over sensor time, one line per sensor, the
  threshold band shaded green and every excursion shaded red.
- :func:`plot_route`: the tracker's fixes as a line coloured by the temperature at
  each fix's time (interpolated from the asset's temperature readings), with start,
  end and stops marked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.dates as mdates
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from gateway.report import AssetReport

DPI = 100


def _time(ms: int) -> float:
    """Sensor time (ms since the epoch) as a matplotlib date number."""
    number: float = mdates.date2num(datetime.fromtimestamp(ms / 1000, UTC))  # type: ignore[no-untyped-call]
    return number


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=DPI)


def plot_temperature(report: AssetReport, path: Path) -> None:
    """Temperature over time with the threshold band and the excursions."""
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    axes = figure.add_subplot()
    band = report.band
    values = [s.celsius for samples in report.temperatures.values() for s in samples]
    low = min([*values, *(v for v in (band.min_c, band.max_c) if v is not None)])
    high = max([*values, *(v for v in (band.min_c, band.max_c) if v is not None)])
    margin = max(1.0, (high - low) * 0.08)
    bottom, top = low - margin, high + margin
    axes.axhspan(
        band.min_c if band.min_c is not None else bottom,
        band.max_c if band.max_c is not None else top,
        color="tab:green",
        alpha=0.12,
        label=f"band: {band.describe()}",
    )
    for limit in (band.min_c, band.max_c):
        if limit is not None:
            axes.axhline(limit, color="tab:green", linewidth=0.8, linestyle="--")
    for n, excursion in enumerate(report.excursions):
        axes.axvspan(
            _time(excursion.start_ms),
            _time(max(excursion.end_ms, excursion.start_ms + 1)),
            color="tab:red",
            alpha=0.2,
            label="excursion" if n == 0 else None,
        )
    for device, samples in report.temperatures.items():
        axes.plot(
            [_time(s.t_ms) for s in samples],
            [s.celsius for s in samples],
            drawstyle="steps-post",  # a reading holds until the next (as counted)
            linewidth=1.2,
            label=device,
        )
    axes.set_ylim(bottom, top)
    axes.set_ylabel("temperature (°C)")
    axes.set_title(f"{report.summary['asset_id']}: temperature (sensor time, UTC)")
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    _save(figure, path)


def plot_route(report: AssetReport, path: Path) -> None:
    """The route coloured by temperature, with start, end and stops."""
    figure = Figure(figsize=(7, 7), layout="constrained")
    axes = figure.add_subplot()
    lon = np.array([f.lon for f in report.route])
    lat = np.array([f.lat for f in report.route])
    samples = sorted(
        (s for series in report.temperatures.values() for s in series), key=lambda s: s.t_ms
    )
    if samples and len(report.route) > 1:
        at = np.interp(
            [f.t_ms for f in report.route],
            [s.t_ms for s in samples],
            [s.celsius for s in samples],
        )
        points = np.column_stack([lon, lat]).reshape(-1, 1, 2)
        segments = np.concatenate([points[:-1], points[1:]], axis=1)
        lines = LineCollection(list(segments), cmap="coolwarm", linewidths=2.5)
        lines.set_array(at[:-1])
        axes.add_collection(lines)
        colorbar = figure.colorbar(lines, ax=axes, label="temperature (°C)", shrink=0.8)
        for limit in (report.band.min_c, report.band.max_c):
            if limit is not None:  # the band's limits on the colour scale
                colorbar.ax.axhline(limit, color="tab:green", linewidth=2)
    else:
        axes.plot(lon, lat, color="tab:blue", linewidth=2)
    axes.plot(lon[0], lat[0], marker="o", color="black", linestyle="none", label="start")
    axes.plot(lon[-1], lat[-1], marker="s", color="black", linestyle="none", label="end")
    if report.stops:
        axes.plot(
            [s.lon for s in report.stops],
            [s.lat for s in report.stops],
            marker="X",
            markersize=9,
            color="tab:purple",
            linestyle="none",
            label=f"stops ({len(report.stops)})",
        )
    axes.autoscale_view()
    axes.margins(0.05)
    # Equal distances in x and y near the route's mean latitude.
    axes.set_aspect(1 / max(0.05, float(np.cos(np.radians(lat.mean())))), adjustable="datalim")
    axes.set_xlabel("longitude (°)")
    axes.set_ylabel("latitude (°)")
    axes.set_title(f"{report.summary['asset_id']}: route")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize="small")
    _save(figure, path)

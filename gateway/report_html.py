"""report.html: one self-contained page (no scripts, no links out, pictures inline).

The PNGs are embedded as data URIs so that the page can be mailed or archived on
its own; every value from the readings is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.report import AssetReport

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.ok { color: #176b1b; font-weight: bold; }
img { max-width: 100%; border: 1px solid #ddd; }
code { font-size: 0.9em; word-break: break-all; }
"""


def _e(value: object) -> str:
    return html.escape("-" if value is None else str(value))


def _table(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _list_table(headers: list[str], rows: list[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(row.get(h))}</td>" for h in headers) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{_e(alt)}" src="data:image/png;base64,{data}"></p>'


def render_html(report: AssetReport, files: Mapping[str, Path]) -> str:
    """The page for ``report``; ``files`` are the written files (plots read from there)."""
    s = report.summary
    anchoring = s["anchoring"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>anchorgate report: {_e(s['asset_id'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(s['kind'].capitalize())} {_e(s['asset_id'])}</h1>",
    ]
    verdict = (
        f'<p class="ok">All {_e(anchoring["verified_readings"])} readings in this report are '
        f"anchored and their proof verified: blocks {_e(anchoring['blocks']['first'])} to "
        f"{_e(anchoring['blocks']['last'])} under head block {_e(anchoring['head']['height'])} "
        f"<code>{_e(anchoring['head']['hash'])}</code> of gateway "
        f"{_e(anchoring['gateway_id'])}. The proof is in {_e(anchoring['proof'])}; check it "
        "with <code>anchorgate verify proof.json --key GATEWAY.pub</code>.</p>"
    )
    parts.append(verdict)
    span, readings, band = s["span"], s["readings"], s["band"]
    overview = [
        (
            "readings",
            f"{readings['total']} ({readings['temperature']} temperature, "
            f"{readings['location']} location)",
        ),
        ("devices", ", ".join(readings["devices"])),
        ("span (sensor time)", f"{span['first']} to {span['last']} ({span['seconds']} s)"),
        ("threshold band", f"{report.band.describe()} ({band['source']})"),
    ]
    temperature = s["temperature"]
    if temperature is not None:
        worst = temperature["worst_excursion"]
        overview += [
            (
                "min / mean / max",
                f"{temperature['min_c']} / {temperature['mean_c']} / {temperature['max_c']} °C",
            ),
            (
                "mean kinetic temperature",
                f"{temperature['mkt_c']} °C (ΔH = {s['mkt_activation_energy_kj_per_mol']} kJ/mol)",
            ),
            (
                "time out of range",
                f"{temperature['time_out_of_range_s']} s "
                f"({temperature['share_out_of_range']:.1%} of the time) in "
                f"{temperature['excursions']} excursion(s)",
            ),
            (
                "worst excursion",
                "none"
                if worst is None
                else f"{worst['peak_c']} °C ({worst['peak_deviation_c']} K outside) from "
                f"{worst['start']} for {worst['duration_s']} s on {worst['device_id']}",
            ),
        ]
    route = s["route"]
    if route is not None:
        overview += [
            (
                "distance travelled",
                f"{route['distance_km']} km ({route['fixes']} fixes of {route['device_id']})",
            ),
            ("stops", str(len(route["stops"]))),
        ]
    overview.append(("missing readings (seq gaps)", sum(g["missing"] for g in s["seq_gaps"])))
    parts += ["<h2>Summary</h2>", _table(overview)]
    if "temperature_plot" in files:
        parts += ["<h2>Temperature</h2>", _image(files["temperature_plot"], "temperature")]
    if temperature is not None:
        parts += [
            "<h3>Excursions</h3>",
            _list_table(
                ["device_id", "start", "end", "duration_s", "side", "peak_c", "ongoing"],
                temperature["excursion_list"],
            ),
        ]
    if "route_plot" in files:
        parts += ["<h2>Route</h2>", _image(files["route_plot"], "route")]
    if route is not None:
        parts += [
            "<h3>Stops</h3>",
            _list_table(["start", "end", "duration_s", "lat", "lon"], route["stops"]),
        ]
    parts += [
        "<h2>Sensor gaps</h2>",
        _list_table(
            ["device_id", "kind", "first_missing", "last_missing", "missing", "after", "before"],
            s["seq_gaps"],
        ),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"

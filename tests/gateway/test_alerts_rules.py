"""Alert thresholds: the [alerts] config, which rule applies to an asset, what breaks it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gateway.alerts import Thresholds, check, resolve
from gateway.alerts_config import (
    DEFAULT_KINDS,
    AlertsSection,
    MaxDistance,
    Region,
    Rule,
    haversine_km,
)
from gateway.config_load import load_config, parse_config
from gateway.errors import ConfigError
from gateway.readings import LocationReading, TemperatureReading

SHIPPED = Path(__file__).parents[2] / "config" / "gateway.toml"

EXAMPLE = """
[alerts]
topic_prefix = "site-1/alerts"
[alerts.kinds.shipment]
asset_prefixes = ["reefer-", "ship-"]
celsius_min = 2.0
celsius_max = 8.0
regions = [
  { name = "nl", lat_min = 50.7, lat_max = 53.6, lon_min = 3.3, lon_max = 7.3 },
  { name = "de-south", lat_min = 47.2, lat_max = 50.6, lon_min = 7.5, lon_max = 13.9 },
]
[alerts.kinds.heat_sink]
asset_prefixes = ["hs-"]
celsius_max = 85
[alerts.assets."reefer-frozen"]
celsius_min = -25.0
celsius_max = -18.0
[alerts.assets."reefer-f*"]
max_distance = { lat = 51.92, lon = 4.48, km = 100 }
[alerts.assets."rack-3/*"]
celsius_max = 60
"""


def section(text: str = EXAMPLE) -> AlertsSection:
    return parse_config(text, environ={}).alerts


def temperature(asset: str | None, celsius: float) -> TemperatureReading:
    return TemperatureReading("dev-1", 1, 1_780_000_000_000, celsius, asset)


def location(asset: str | None, lat: float, lon: float) -> LocationReading:
    return LocationReading("trk-1", 1, 1_780_000_000_000, lat, lon, asset_id=asset)


def test_shipped_config_has_the_default_kinds() -> None:
    alerts = load_config(SHIPPED, environ={}).alerts
    assert alerts == AlertsSection()
    assert alerts.enabled
    assert alerts.topic_prefix == "alerts"
    bands = {k.name: (k.rule.celsius_min, k.rule.celsius_max) for k in DEFAULT_KINDS}
    assert bands == {
        "shipment": (2.0, 8.0),
        "heat_sink": (None, 85.0),
        "die_cast_housing": (None, 85.0),
    }


def test_shipped_example_of_overrides_parses_when_uncommented() -> None:
    text = SHIPPED.read_text()
    example = text[text.index('# [alerts.assets."reefer-00002"]') :]
    uncommented = "\n".join(line.removeprefix("# ") for line in example.splitlines())
    alerts = parse_config(text + "\n" + uncommented.replace("#\n", "\n"), environ={}).alerts
    frozen = resolve(alerts, "reefer-00002")
    assert frozen is not None
    assert (frozen.rule.celsius_min, frozen.rule.celsius_max) == (-25.0, -18.0)
    other = resolve(alerts, "reefer-00001")
    assert other is not None
    assert other.rule.regions is not None
    assert other.rule.max_distance == MaxDistance(51.92, 4.48, 700.0)


@pytest.mark.parametrize(
    ("asset", "kind", "rule_name", "band"),
    [
        pytest.param("reefer-1", "shipment", "kind shipment", (2.0, 8.0), id="kind-by-prefix"),
        pytest.param("hs-9", "heat_sink", "kind heat_sink", (None, 85.0), id="other-kind"),
        pytest.param(
            "reefer-frozen", "shipment", "asset reefer-frozen", (-25.0, -18.0), id="exact-id"
        ),
        pytest.param("reefer-fast", "shipment", "asset reefer-f*", (2.0, 8.0), id="prefix"),
        pytest.param("rack-3/psu-1", None, "asset rack-3/*", (None, 60.0), id="no-kind"),
    ],
)
def test_an_asset_gets_its_kind_and_the_most_specific_override(
    asset: str, kind: str | None, rule_name: str, band: tuple[float | None, float | None]
) -> None:
    resolved = resolve(section(), asset)
    assert resolved is not None
    assert (resolved.asset_kind, resolved.rule_name) == (kind, rule_name)
    assert (resolved.rule.celsius_min, resolved.rule.celsius_max) == band


def test_an_override_keeps_the_kind_keys_it_does_not_set() -> None:
    resolved = resolve(section(), "reefer-fast")
    assert resolved is not None
    assert resolved.rule.regions is not None
    assert [r.name for r in resolved.rule.regions] == ["nl", "de-south"]
    assert resolved.rule.max_distance == MaxDistance(51.92, 4.48, 100.0)


def test_an_asset_of_no_kind_and_no_override_has_no_thresholds() -> None:
    assert resolve(section(), "pallet-7") is None
    thresholds = Thresholds(section())
    assert thresholds.alerts("gw", temperature("pallet-7", 500.0), 0, 0, 1, 2) == []
    assert thresholds.alerts("gw", temperature(None, 500.0), 0, 0, 1, 2) == []


@pytest.mark.parametrize(
    ("celsius", "expected"),
    [
        pytest.param(1.9, [("temperature_low", 1.9, 2.0)], id="below"),
        pytest.param(2.0, [], id="at-min"),
        pytest.param(8.0, [], id="at-max"),
        pytest.param(8.5, [("temperature_high", 8.5, 8.0)], id="above"),
    ],
)
def test_temperature_band(celsius: float, expected: list[tuple[str, float, float]]) -> None:
    rule = Rule(celsius_min=2.0, celsius_max=8.0)
    found = [(b.kind, b.value, b.threshold) for b in check(rule, temperature("x", celsius))]
    assert found == expected


def test_haversine_known_distance() -> None:
    # Paris (48.8566 N, 2.3522 E) to London (51.5074 N, 0.1278 W): about 343.5 km.
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=0.5)
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0
    # a quarter of a great circle
    assert haversine_km(0, 0, 0, 90) == pytest.approx(math.pi / 2 * 6371.0088)


def test_regions_and_max_distance() -> None:
    rule = Rule(
        regions=(Region("box", 50.0, 52.0, 4.0, 6.0),),
        max_distance=MaxDistance(51.0, 5.0, 50.0),
    )
    assert check(rule, location("x", 51.0, 5.0)) == []  # inside both
    # inside the box, more than 50 km from its centre
    (far,) = check(rule, location("x", 51.9, 5.0))
    assert far.kind == "too_far"
    assert far.value == pytest.approx(100.1, abs=0.1)
    assert far.threshold == 50.0
    # one degree of latitude north of the box: about 111 km outside, and too far
    outside, too_far = check(rule, location("x", 53.0, 5.0))
    assert outside.kind == "outside_regions"
    assert outside.value == pytest.approx(111.2, abs=0.1)
    assert outside.threshold == 0.0
    assert too_far.kind == "too_far"
    # temperature readings are not checked against geofences, locations not against bands
    assert check(Rule(celsius_max=1.0), location("x", 0.0, 0.0)) == []
    assert check(rule, temperature("x", 99.0)) == []


def test_alert_json_has_the_documented_fields() -> None:
    (alert,) = Thresholds(section()).alerts(
        "gw-7", temperature("reefer-1", 9.5), block_height=4, leaf_index=2, received_ns=11,
        created_ns=22,
    )  # fmt: skip
    assert alert.topic("alerts") == "alerts/reefer-1"
    document = json.loads(alert.to_json("gw-7"))
    assert document == {
        "version": 1,
        "alert_id": "gw-7:4:2:temperature_high",
        "gateway_id": "gw-7",
        "asset_id": "reefer-1",
        "asset_kind": "shipment",
        "rule": "kind shipment",
        "kind": "temperature_high",
        "value": 9.5,
        "threshold": 8.0,
        "unit": "celsius",
        "device_id": "dev-1",
        "reading_kind": "temperature",
        "block_height": 4,
        "leaf_index": 2,
        "ts_ms": 1_780_000_000_000,
        "received_ns": 11,
        "created_ns": 22,
        "lat": None,
        "lon": None,
    }


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param("[alerts]\nenable = true", "alerts.enable: unknown key", id="unknown-key"),
        pytest.param("[alerts]\nenabled = 1", "alerts.enabled: must be true or false", id="bool"),
        pytest.param(
            '[alerts]\ntopic_prefix = "alerts/#"', "alerts.topic_prefix: must be a topic", id="wild"
        ),
        pytest.param(
            '[alerts]\ntopic_prefix = "alerts/"', "alerts.topic_prefix: must be a topic", id="slash"
        ),
        pytest.param("[alerts]\nkinds = 3", "alerts.kinds: must be a table", id="kinds-table"),
        pytest.param(
            "[alerts.kinds.shipment]\ncelsius_min = 2.0",
            "alerts.kinds.shipment.asset_prefixes: must be a non-empty list",
            id="no-prefixes",
        ),
        pytest.param(
            '[alerts.kinds.shipment]\nasset_prefixes = ["s-"]\ncelsius_min = "2"',
            "alerts.kinds.shipment.celsius_min: must be a number, got str",
            id="celsius-type",
        ),
        pytest.param(
            '[alerts.kinds.shipment]\nasset_prefixes = ["s-"]\ncelsius_min = 8\ncelsius_max = 2',
            "alerts.kinds.shipment.celsius_max: must exceed celsius_min",
            id="band-inverted",
        ),
        pytest.param(
            '[alerts.kinds.shipment]\nasset_prefixes = ["s-"]\ncelsius_mx = 8',
            "alerts.kinds.shipment.celsius_mx: unknown key",
            id="kind-typo",
        ),
        pytest.param(
            '[alerts.kinds.a]\nasset_prefixes = ["s-"]\n[alerts.kinds.b]\nasset_prefixes = ["s-"]',
            "alerts.kinds.b.asset_prefixes: 's-' is already a prefix of kind 'a'",
            id="prefix-twice",
        ),
        pytest.param(
            '[alerts.kinds.a]\nasset_prefixes = ["s-"]\nregions = {name = "x"}',
            "alerts.kinds.a.regions: must be a list",
            id="regions-list",
        ),
        pytest.param(
            '[alerts.kinds.a]\nasset_prefixes = ["s-"]\n'
            'regions = [{name = "x", lat_min = 1, lat_max = 2, lon_min = 3}]',
            "alerts.kinds.a.regions[0].lon_max: is missing",
            id="region-missing",
        ),
        pytest.param(
            '[alerts.kinds.a]\nasset_prefixes = ["s-"]\n'
            'regions = [{name = "x", lat_min = 1, lat_max = 95, lon_min = 3, lon_max = 4}]',
            "alerts.kinds.a.regions[0].lat_max: 95 is outside -90..90",
            id="region-range",
        ),
        pytest.param(
            '[alerts.kinds.a]\nasset_prefixes = ["s-"]\n'
            'regions = [{name = "x", lat_min = 1, lat_max = 2, lon_min = 170, lon_max = -170}]',
            "alerts.kinds.a.regions[0].lon_max: must exceed lon_min",
            id="region-antimeridian",
        ),
        pytest.param(
            '[alerts.assets."s-1"]\nmax_distance = { lat = 1, lon = 2 }',
            'alerts.assets."s-1".max_distance.km: is missing',
            id="distance-missing",
        ),
        pytest.param(
            '[alerts.assets."s-1"]\nmax_distance = { lat = 1, lon = 2, km = 0 }',
            'alerts.assets."s-1".max_distance.km: must be more than 0',
            id="distance-zero",
        ),
        pytest.param(
            '[alerts.assets."s-1"]\nmax_distance = { lat = 1, lon = 2, km = 5, r = 1 }',
            'alerts.assets."s-1".max_distance.r: unknown key',
            id="distance-key",
        ),
        pytest.param(
            '[alerts.assets."s-1"]\nasset_prefixes = ["s-"]',
            'alerts.assets."s-1".asset_prefixes: unknown key',
            id="override-prefixes",
        ),
        pytest.param(
            '[alerts.assets."reefer-9"]\ncelsius_min = 10.0',
            "alerts.assets.\"reefer-9\": with kind 'shipment' the band is empty "
            "(celsius_min 10, celsius_max 8): set both bounds",
            id="override-empties-band",
        ),
        pytest.param(
            '[alerts.assets."ree*"]\ncelsius_max = 1.0',
            "alerts.assets.\"ree*\": with kind 'shipment' the band is empty",
            id="prefix-override-empties-band",
        ),
        pytest.param(
            '[alerts.assets."s*x"]\ncelsius_max = 3',
            'alerts.assets."s*x": must be an asset id, or a prefix followed by one *',
            id="override-star",
        ),
    ],
)
def test_bad_alert_config_is_refused_naming_the_key(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(toml, environ={})
    assert message in str(info.value)


def test_load_config_names_the_file_for_alert_errors(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[alerts.kinds.x]\nasset_prefixes = []\n")
    with pytest.raises(ConfigError, match=r"gateway\.toml: alerts\.kinds\.x\.asset_prefixes"):
        load_config(path, environ={})

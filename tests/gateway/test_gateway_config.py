"""The configuration loader: the shipped file loads, and every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config
from gateway.config_load import load_config, parse_config
from gateway.errors import ConfigError

SHIPPED = Path(__file__).parents[2] / "config" / "gateway.toml"


def test_shipped_config_loads_and_equals_the_defaults() -> None:
    assert load_config(SHIPPED, environ={}) == Config()


def test_shipped_config_comments_every_key() -> None:
    lines = SHIPPED.read_text().splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[number - 1].startswith("#") or "=" in lines[number - 1], line


def test_values_are_typed_and_converted() -> None:
    config = parse_config(
        """
        [gateway]
        id = "edge-7"
        key_file = "/k/gw.key"
        [mqtt]
        port = 18830
        topics = ["plant/+/+", "fleet/#"]
        shared_group = "ingest"
        tls_ca_file = ""
        [batch]
        max_readings = 10
        max_delay = 2
        """,
        environ={},
    )
    assert config.gateway.key_file == Path("/k/gw.key")
    assert config.mqtt.topics == ("plant/+/+", "fleet/#")
    assert config.mqtt.tls_ca_file is None
    assert config.batch.max_delay == 2.0
    assert config.mqtt.topic_filters == ("$share/ingest/plant/+/+", "$share/ingest/fleet/#")
    assert config.client_id == "anchorgate-edge-7"


def test_default_topic_filter_comes_from_the_template() -> None:
    assert Config().mqtt.topic_filters == ("sensors/+/+",)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param("[mqtt]\nprot = 1", "mqtt.prot: unknown key", id="unknown-key"),
        pytest.param("[mqqt]\nport = 1", "mqqt: unknown section", id="unknown-section"),
        pytest.param("[mqtt]\nport = 70000", "mqtt.port: must be between", id="port-range"),
        pytest.param('[mqtt]\nport = "80"', "mqtt.port: must be an integer", id="port-type"),
        pytest.param("[mqtt]\nport = true", "mqtt.port: must be an integer", id="port-bool"),
        pytest.param('[mqtt]\npassword = "x"', "mqtt.password: unknown key (secrets", id="secret"),
        pytest.param("[batch]\nmax_delay = 0", "batch.max_delay: must be more", id="delay-zero"),
        pytest.param("[batch]\nmax_readings = 0", "batch.max_readings:", id="batch-zero"),
        pytest.param('[log]\nlevel = "loud"', "log.level: 'loud' is not one of", id="level"),
        pytest.param("[mqtt]\ntopics = [1]", "mqtt.topics: must be a list of strings", id="topics"),
        pytest.param('[gateway]\nid = "a b"', "gateway.id: must be 1 to 64", id="gateway-id"),
        pytest.param("mqtt = 3", "mqtt: must be a table", id="not-a-table"),
        pytest.param('[limits]\ndevice_id_pattern = "("', "limits.device_id_pattern:", id="re"),
        pytest.param("[limits]\ncelsius_min = 50.0\ncelsius_max = 10.0", "limits.celsius_max:"),
        pytest.param('[mqtt]\ntopics = ["$share/g/x"]', "mqtt.topics:", id="share-in-topics"),
        pytest.param('[mqtt]\nshared_group = "a/b"', "mqtt.shared_group:", id="group-slash"),
        pytest.param('[mqtt]\ntopic_template = "s/{kind}"', "mqtt.topic_template:", id="tpl"),
        pytest.param('[store]\nmemory_limit = "lots"', "store.memory_limit:", id="memory"),
        pytest.param(
            "[mqtt]\nreceive_maximum = 10\n[batch]\nmax_readings = 20",
            "mqtt.receive_maximum (10) must be at least batch.max_readings (20)",
            id="receive-maximum-below-batch",
        ),
        pytest.param("[mqtt\n", "not valid TOML", id="syntax"),
    ],
)
def test_bad_values_are_refused_naming_the_key(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(toml, environ={})
    assert message in str(caught.value)


def test_password_from_environment() -> None:
    text = '[mqtt]\npassword_env = "GW_PW"'
    assert parse_config(text, environ={"GW_PW": "s3cret"}).mqtt.password == "s3cret"
    with pytest.raises(ConfigError, match="GW_PW is not set"):
        parse_config(text, environ={})


def test_password_from_file_is_not_in_repr(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    config = parse_config(f'[mqtt]\npassword_file = "{secret}"', environ={})
    assert config.mqtt.password == "hunter2"
    assert "hunter2" not in repr(config)
    with pytest.raises(ConfigError, match=r"mqtt\.password_file: cannot read"):
        parse_config(f'[mqtt]\npassword_file = "{tmp_path / "nope"}"', environ={})


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text("[mqtt]\nport = -1\n")
    with pytest.raises(ConfigError, match=rf"^{path}: mqtt.port"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_store_commands_read_no_broker_secrets(tmp_path: Path) -> None:
    text = (
        f'[mqtt]\npassword_env = "GW_UNSET"\ntls_ca_file = "{tmp_path / "ca.pem"}"\n'
        f'[store]\npath = "{tmp_path / "s.duckdb"}"'
    )
    with pytest.raises(ConfigError, match="GW_UNSET"):
        parse_config(text, environ={})
    config = parse_config(text, environ={}, broker_secrets=False)
    assert config.store.path == tmp_path / "s.duckdb"
    assert config.mqtt.password is None

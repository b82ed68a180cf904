"""The read API: loopback without a token as before; anything else only with a bearer token.

Config rules, a real aiohttp server bound to all interfaces with a token, the CLI
sending the token, and queries that try SQL injection through the parameters.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from auditor_store import Made, make_store

from gateway.cli import main
from gateway.config import MIN_TOKEN_LENGTH
from gateway.config_load import parse_config
from gateway.errors import ConfigError
from gateway.mosquitto import Mosquitto, free_port
from gateway.readapi import make_app, start
from gateway.reader import StoreReader
from ledger import PublicKey, SigningKey, verify_bundle

REPO = Path(__file__).resolve().parents[2]
TOKEN = "t0k3n-" + "x" * 26


class Served:
    def __init__(self, made: Made | None, url: str) -> None:
        self._made, self.url = made, url

    @property
    def made(self) -> Made:
        assert self._made is not None
        return self._made

    def get(self, endpoint: str, authorization: str | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + endpoint)
        if authorization is not None:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    made = make_store(tmp_path_factory.mktemp("token-store"), batches=3)
    writer = duckdb.connect(str(made.path))  # held, as by a running gateway
    app = make_app(lambda: StoreReader.beside(writer), None, made.path, token=TOKEN)
    running = start(app, host="0.0.0.0", port=0)  # all interfaces: the point
    yield Served(made, f"http://127.0.0.1:{running.port}")
    running.close()
    writer.close()


def test_a_non_loopback_address_needs_a_token() -> None:
    with pytest.raises(ConfigError, match=r"api\.host: '0\.0\.0\.0' is not a loopback.*token"):
        parse_config('[api]\nhost = "0.0.0.0"', environ={})
    config = parse_config(
        '[api]\nhost = "0.0.0.0"\ntoken_env = "GW_TOKEN"', environ={"GW_TOKEN": TOKEN}
    )
    assert config.api.token == TOKEN
    assert TOKEN not in repr(config)
    assert parse_config("[api]\nport = 9000", environ={}).api.token is None


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ('token = "abc"', {}, r"api\.token: unknown key \(secrets never go in the TOML"),
        ('token_env = "GW_TOKEN"', {}, "GW_TOKEN is not set"),
        ('token_env = "GW_TOKEN"', {"GW_TOKEN": "short"}, f"at least {MIN_TOKEN_LENGTH}"),
        ('token_env = "T"\ntoken_file = "/x"', {"T": TOKEN}, "not both"),
    ],
)
def test_token_config_mistakes_are_named(text: str, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(f"[api]\n{text}", environ=environ)


@pytest.mark.parametrize("endpoint", ["/healthz", "/status", "/metrics", "/export?device=dev-1"])
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param(f"Bearer {TOKEN[:-1]}", id="prefix"),
        pytest.param(f"Bearer {TOKEN}x", id="longer"),
        pytest.param(f"bearer {TOKEN}", id="scheme-case"),
        pytest.param(TOKEN, id="no-scheme"),
        pytest.param(f"Basic {TOKEN}", id="basic"),
        pytest.param("Bearer \u00e9\u00e9", id="latin-1"),
    ],
)
def test_requests_without_the_token_get_401(
    served: Served, endpoint: str, authorization: str | None
) -> None:
    status, body = served.get(endpoint, authorization)
    assert status == 401
    assert "bearer token" in json.loads(body)["error"]


def test_requests_with_the_token_are_served(served: Served) -> None:
    bearer = f"Bearer {TOKEN}"
    assert served.get("/healthz", bearer) == (200, b'{"ok": true}')
    status, body = served.get("/status", bearer)
    assert status == 200
    assert json.loads(body)["height"] == 2
    status, body = served.get("/export?device=tracker-1", bearer)
    assert status == 200
    assert verify_bundle(body, PublicKey.load(served.made.public_key_path)).valid


@pytest.mark.parametrize(
    "query",
    [
        "device=x%27%20OR%20%271%27%3D%271",  # x' OR '1'='1
        "asset=%27%3B%20DROP%20TABLE%20readings%3B%20--",  # '; DROP TABLE readings; --
        "device=tracker-1%22%20OR%201%3D1%20--",  # tracker-1" OR 1=1 --
    ],
)
def test_parameters_are_values_not_sql(served: Served, query: str) -> None:
    bearer = f"Bearer {TOKEN}"
    status, body = served.get(f"/export?{query}", bearer)
    assert status == 404, body  # matches no reading, rather than every reading
    status, body = served.get("/status", bearer)
    assert json.loads(body)["readings"] == served.made.readings


def test_the_cli_sends_the_token(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["status", "--store", str(served.made.path), "--api", served.url, "--json"]
    monkeypatch.delenv("ANCHORGATE_API_TOKEN", raising=False)
    assert main(args) == 2
    assert "bearer token is required" in capsys.readouterr().err
    monkeypatch.setenv("ANCHORGATE_API_TOKEN", "wrong-" + TOKEN)
    assert main(args) == 2
    assert "wrong bearer token" in capsys.readouterr().err
    monkeypatch.setenv("ANCHORGATE_API_TOKEN", TOKEN)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["height"] == 2


def test_the_cli_takes_the_token_from_the_config(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANCHORGATE_API_TOKEN", raising=False)
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[store]\npath = "{served.made.path}"\n[api]\nhost = "0.0.0.0"\n'
        f'port = {served.url.rsplit(":", 1)[1]}\ntoken_file = "{token_file}"\n'
    )
    out = tmp_path / "bundle.json"
    assert main(["export", "-c", str(config), "--device", "tracker-1", "-o", str(out)]) == 0
    assert verify_bundle(out.read_bytes(), PublicKey.load(served.made.public_key_path)).valid


@pytest.mark.broker
def test_a_real_gateway_on_all_interfaces_wants_its_token(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    SigningKey.generate().save(tmp_path / "gateway.key")
    token_file = tmp_path / "api.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    api_port = free_port()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f"""
[gateway]
key_file = "{tmp_path / "gateway.key"}"
[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "anchorgate-token-test-{api_port}"
[store]
path = "{tmp_path / "gateway.duckdb"}"
[health]
file = ""
[api]
host = "0.0.0.0"
port = {api_port}
token_file = "{token_file}"
"""
    )
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", "-c", str(config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while b"api.listening" not in log_path.read_bytes():
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            api = Served(None, f"http://127.0.0.1:{api_port}")
            assert api.get("/status")[0] == 401
            assert api.get("/status", "Bearer " + "y" * len(TOKEN))[0] == 401
            assert api.get("/status", f"Bearer {TOKEN}")[0] == 200
            capsys.readouterr()
            assert main(["status", "-c", str(config), "--json"]) == 0
            captured = capsys.readouterr()
            assert "asking its read API" in captured.err
            assert json.loads(captured.out)["live"]["state"] == "running"
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0

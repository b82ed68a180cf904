"""The read API on a store that a writer holds: the CLI falls back to it; bad requests get 400."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from auditor_store import Made, make_store

from gateway.cli import main
from gateway.mosquitto import free_port
from gateway.readapi import make_app, start
from gateway.reader import StoreReader
from ledger import PublicKey, verify_bundle


class Served:
    def __init__(self, made: Made, url: str, writer: duckdb.DuckDBPyConnection) -> None:
        self.made, self.url, self.writer = made, url, writer

    def get(self, endpoint: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + endpoint, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    made = make_store(tmp_path_factory.mktemp("api-store"), batches=5)
    writer = duckdb.connect(str(made.path))  # holds the file, as a running gateway does
    app = make_app(lambda: StoreReader.beside(writer), lambda: {"duplicates": 3}, made.path)
    running = start(app, host="127.0.0.1", port=0)
    yield Served(made, f"http://127.0.0.1:{running.port}", writer)
    running.close()
    writer.close()


def test_endpoints(served: Served) -> None:
    assert served.get("/healthz") == (200, b'{"ok": true}')
    status, body = served.get("/status")
    assert status == 200
    data = json.loads(body)
    assert data["height"] == 4
    assert data["live"] == {"duplicates": 3}
    status, body = served.get("/metrics")
    assert status == 200
    assert b"anchorgate_readings 35.0" in body
    assert b"anchorgate_duplicates 3.0" in body
    status, body = served.get("/export?asset=SHIP-2&from=2020-01-01T00:00:00Z")
    assert status == 200
    report = verify_bundle(body, PublicKey.load(served.made.public_key_path))
    assert report.valid
    assert len(report.readings) == 15


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        pytest.param("", 400, "select readings by", id="nothing-selected"),
        pytest.param("?device=x&colour=red", 400, "unknown parameter 'colour'", id="unknown"),
        pytest.param("?device=x&from=soon", 400, "from: 'soon'", id="bad-time"),
        pytest.param("?id=1-2", 400, "HEIGHT:INDEX", id="bad-id"),
        pytest.param("?device=x&since_head=zz", 400, "not a hex block hash", id="bad-head"),
        pytest.param("?device=x&limit=0", 400, "limit", id="bad-limit"),
        pytest.param("?device=nobody", 404, "no anchored reading", id="no-match"),
    ],
)
def test_bad_requests_get_a_reason(served: Served, query: str, status: int, words: str) -> None:
    got, body = served.get("/export" + query)
    assert got == status
    assert words in json.loads(body)["error"]


def test_cli_uses_the_api_when_the_store_is_held(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b.json"
    code = main(
        [
            "export",
            "--store",
            str(served.made.path),
            "--api",
            served.url,
            "--device",
            "tracker-1",
            "-o",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "held by the running gateway" in err
    assert verify_bundle(out.read_bytes(), PublicKey.load(served.made.public_key_path)).valid
    code = main(["status", "--store", str(served.made.path), "--api", served.url, "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["live"]["duplicates"] == 3
    code = main(
        ["audit", "--store", str(served.made.path), "--key", str(served.made.public_key_path)]
    )
    assert code == 2
    assert "stop it first" in capsys.readouterr().err


def test_cli_refuses_an_api_that_serves_another_store(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_store(tmp_path / "other", batches=1)
    holder = duckdb.connect(str(other.path))  # held, so the CLI turns to the API
    try:
        code = main(["status", "--store", str(other.path), "--api", served.url])
    finally:
        holder.close()
    assert code == 2
    assert "serves" in capsys.readouterr().err


def test_cli_says_when_the_api_is_not_there(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    code = main(["status", "--store", str(served.made.path), "--api", dead])
    assert code == 2
    assert "cannot reach the gateway's read API" in capsys.readouterr().err


def test_unix_socket(tmp_path: Path) -> None:
    made = make_store(tmp_path / "s", batches=2)
    socket_path = tmp_path / "api.sock"

    writer = duckdb.connect(str(made.path))
    running = start(
        make_app(lambda: StoreReader.beside(writer)), host="", port=0, unix_socket=socket_path
    )
    try:
        assert main(["status", "--store", str(made.path), "--api", f"unix:{socket_path}"]) == 0
    finally:
        running.close()
        writer.close()
    assert not socket_path.exists()


def test_an_unknown_endpoint_or_method_is_refused_with_a_reason(served: Served) -> None:
    status, body = served.get("/nope")
    assert status == 404
    assert "known: /healthz" in json.loads(body)["error"]
    request = urllib.request.Request(served.url + "/status", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405
    assert "GET only" in json.loads(refused.value.read())["error"]

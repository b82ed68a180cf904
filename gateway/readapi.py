"""The read API of a running gateway: status, metrics and proof export over HTTP.

DuckDB lets no second process open a store that the gateway holds, so while the
gateway runs, the auditor's commands ask it instead. The server is the standard
library's threading HTTP server (:mod:`http.server`), in threads of its own beside
the gateway's event loop: each request is one thread, and every store read runs on
its own cursor of the gateway's connection, so a read never holds up the writer for
longer than DuckDB takes to start it. It listens on 127.0.0.1 by default, or on a
Unix socket. (It was aiohttp until the gateway had to fit 150 MB: importing aiohttp
cost the service 12 MB of its resident memory, ``bench/ingest.py``; the CLI's client
side still uses aiohttp.) A request must arrive within ``REQUEST_TIMEOUT`` seconds,
so a slow client cannot hold a thread.

When the gateway is given a token (``[api] token_env`` or ``token_file``; required to
bind anything but loopback), every request must carry ``Authorization: Bearer
<token>``; one without it, or with another token, gets 401. The comparison takes the
same time whatever the guess (:func:`hmac.compare_digest`).

Endpoints (all GET; another method is a 405):

- ``/healthz``: ``{"ok": true}`` while the gateway runs.
- ``/status``: chain height and head, counts, last block time, ingest rate, and the
  live counters (duplicates, queue depth, latency).
- ``/metrics``: the same counters in the Prometheus text format.
- ``/export``: a proof bundle. Parameters: ``device``, ``asset``, ``from`` and ``to``
  (ISO 8601 or Unix ns, gateway receive time), ``id`` (``HEIGHT:INDEX``, repeatable),
  ``since_head`` (hex), ``limit``. A bad parameter is a 400 with the reason; a
  selection that matches nothing is a 404.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.errors import GatewayError
from gateway.proofs import MAX_EXPORT_READINGS, ExportError, NothingToExport, export_bundle
from gateway.reader import ReadingRef, Selection, StoreReader

ReaderFactory = Callable[[], AbstractContextManager[StoreReader]]
LiveCounters = Callable[[], Mapping[str, Any]]

_JSON = "application/json"
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send its request


def parse_time(text: str, name: str) -> int:
    """Unix ns from ``text``: an integer (ns) or ISO 8601 (UTC when no offset is given)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{name}: {text!r} is neither ISO 8601 (2026-11-24T10:00:00Z) nor Unix ns"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def parse_head(text: str, name: str = "since_head") -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{name}: {text[:80]!r} is not a hex block hash") from None
    if len(value) != 32:
        raise ValueError(f"{name}: a block hash is 64 hex digits, got {len(text)}")
    return value


def selection_from_query(query: Mapping[str, str], ids: list[str]) -> Selection:
    """A :class:`Selection` from request parameters; ValueError names the bad one."""
    known = {"device", "asset", "from", "to", "id", "since_head", "limit"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return Selection(
        device_id=query.get("device") or None,
        asset_id=query.get("asset") or None,
        since_ns=parse_time(query["from"], "from") if query.get("from") else None,
        until_ns=parse_time(query["to"], "to") if query.get("to") else None,
        reading_ids=tuple(ReadingRef.parse(i) for i in ids),
    )


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = _JSON
    headers: Mapping[str, str] = field(default_factory=dict)


def _json(document: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(document).encode())


def _error(status: int, reason: str) -> Response:
    return _json({"error": reason}, status)


class _LiveCollector(Collector):
    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Any:
        for name, value in self._status().items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            yield GaugeMetricFamily(f"anchorgate_{name}", f"anchorgate {name}", value=value)


class ReadApi:
    """The endpoints, apart from any server: ``handle`` maps one GET to a response.

    ``open_reader`` gives a fresh reader per request. ``store`` is the served file's
    path, reported in /status so that a client can make sure it reached the gateway of
    the store it meant. With ``token``, every request must carry it as a bearer token.
    """

    def __init__(
        self,
        open_reader: ReaderFactory,
        live: LiveCounters | None = None,
        store: Path | None = None,
        token: str | None = None,
    ) -> None:
        self._open_reader = open_reader
        self._live = live
        self._store = store
        self._expected = None if token is None else f"Bearer {token}".encode()
        self._routes: dict[str, Callable[[dict[str, list[str]]], Response]] = {
            "/healthz": lambda _: _json({"ok": True}),
            "/status": self._status_view,
            "/metrics": self._metrics_view,
            "/export": self._export_view,
        }

    def handle(self, target: str, authorization: str | None) -> Response:
        """The response to ``GET target`` (path and query) with that Authorization header."""
        if self._expected is not None:
            given = (authorization or "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, self._expected):
                reason = "a bearer token is required" if not given else "wrong bearer token"
                response = _error(401, f"{reason} (Authorization: Bearer <token>)")
                headers = {"WWW-Authenticate": 'Bearer realm="anchorgate"'}
                return Response(response.status, response.body, headers=headers)
        parts = urlsplit(target)
        route = self._routes.get(parts.path)
        if route is None:
            return _error(
                404, f"no endpoint {parts.path[:80]!r} (known: {', '.join(self._routes)})"
            )
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        except ValueError as exc:
            return _error(400, f"query: {exc}")
        return route(query)

    def _read(self, fn: Callable[[StoreReader], Any]) -> Any:
        with self._open_reader() as reader:
            return fn(reader)

    def _status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._read(lambda r: r.status())
        if self._store is not None:
            result["store"] = str(self._store.resolve())
        if self._live is not None:
            result["live"] = dict(self._live())
        return result

    def _status_view(self, _: dict[str, list[str]]) -> Response:
        try:
            return _json(self._status())
        except GatewayError as exc:
            return _error(503, str(exc))

    def _metrics_view(self, _: dict[str, list[str]]) -> Response:
        try:
            snapshot = self._status()
        except GatewayError as exc:
            return _error(503, str(exc))
        flat = {k: v for k, v in snapshot.items() if k not in ("live", "store")}
        flat.update(snapshot.get("live", {}))
        registry = CollectorRegistry()
        registry.register(_LiveCollector(lambda: flat))
        return Response(200, generate_latest(registry), "text/plain; charset=utf-8")

    def _export_view(self, params: dict[str, list[str]]) -> Response:
        query = {k: v[-1] for k, v in params.items() if k != "id"}
        try:
            selection = selection_from_query(query, params.get("id", []))
            since = parse_head(query["since_head"]) if query.get("since_head") else None
            limit = int(query.get("limit", MAX_EXPORT_READINGS))
            if not 0 < limit <= MAX_EXPORT_READINGS:
                raise ValueError(f"limit: must be 1..{MAX_EXPORT_READINGS}")
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            exported = self._read(
                lambda r: export_bundle(r, selection, since_head=since, limit=limit)
            )
        except NothingToExport as exc:
            return _error(404, str(exc))
        except ExportError as exc:
            return _error(400, str(exc))
        except GatewayError as exc:
            return _error(503, str(exc))
        return Response(200, json.dumps(exported.bundle, indent=1).encode())


def make_app(
    open_reader: ReaderFactory,
    live: LiveCounters | None = None,
    store: Path | None = None,
    token: str | None = None,
) -> ReadApi:
    """The read API's endpoints (see :class:`ReadApi`), ready for :func:`start`."""
    return ReadApi(open_reader, live, store, token)


class _Handler(BaseHTTPRequestHandler):
    server: _TcpServer | _UnixServer
    timeout = REQUEST_TIMEOUT
    server_version = "anchorgate"

    def do_GET(self) -> None:
        self._send(self.server.api.handle(self.path, self.headers.get("Authorization")))

    def _refuse(self) -> None:
        self._send(_error(405, f"method {self.command} not allowed (the read API is GET only)"))

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log (the gateway logs events, not requests)."""

    def address_string(self) -> str:
        # A Unix socket's peer has no address tuple.
        return str(self.client_address[0]) if self.client_address else "unix"


class _TcpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, api: ReadApi) -> None:
        self.api = api
        # IPv4 or IPv6, as the host resolves ("" is every interface).
        family, _, _, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.address_family = family
        super().__init__((str(address[0]), int(address[1])), _Handler)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, api: ReadApi) -> None:
        self.api = api
        super().__init__(str(path), _Handler)


class Running:
    """A serving read API; :meth:`close` stops it (and removes its Unix socket)."""

    def __init__(self, server: _TcpServer | _UnixServer, unix_socket: Path | None) -> None:
        self._server = server
        self._unix_socket = unix_socket
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="read-api",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int | None:
        """The TCP port served (useful with port 0), None on a Unix socket."""
        address = self._server.server_address
        return int(address[1]) if isinstance(address, tuple) else None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        if self._unix_socket is not None:
            with contextlib.suppress(OSError):
                self._unix_socket.unlink()


def start(api: ReadApi, *, host: str, port: int, unix_socket: Path | None = None) -> Running:
    """Serve ``api`` on host:port, or on ``unix_socket`` when given; OSError if it cannot."""
    server: _TcpServer | _UnixServer
    if unix_socket is not None:
        unix_socket.parent.mkdir(parents=True, exist_ok=True)
        unix_socket.unlink(missing_ok=True)
        server = _UnixServer(unix_socket, api)
    else:
        server = _TcpServer(host, port, api)
    return Running(server, unix_socket)

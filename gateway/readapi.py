"""The read API of a running gateway: status, metrics and proof export over HTTP.

DuckDB lets no second process open a store that the gateway holds, so while the
gateway runs, the auditor's commands ask it instead. The server (aiohttp) runs on the
gateway's event loop; every store read runs in a worker thread on its own cursor of
the gateway's connection, so a read never holds up the writer for longer than DuckDB
takes to start it. It listens on 127.0.0.1 by default, or on a Unix socket.

When the gateway is given a token (``[api] token_env`` or ``token_file``; required to
bind anything but loopback), every request must carry ``Authorization: Bearer
<token>``; one without it, or with another token, gets 401. The comparison takes the
same time whatever the guess (:func:`hmac.compare_digest`).

Endpoints (all GET):

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

import asyncio
import hmac
import json
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.errors import GatewayError
from gateway.proofs import MAX_EXPORT_READINGS, ExportError, NothingToExport, export_bundle
from gateway.reader import ReadingRef, Selection, StoreReader

ReaderFactory = Callable[[], AbstractContextManager[StoreReader]]
LiveCounters = Callable[[], Mapping[str, Any]]

_JSON = "application/json"


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


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


class _LiveCollector(Collector):
    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Any:
        for name, value in self._status().items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            yield GaugeMetricFamily(f"anchorgate_{name}", f"anchorgate {name}", value=value)


def bearer_auth(token: str) -> Middleware:
    """Middleware refusing (401) a request without ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            reason = "a bearer token is required" if not given else "wrong bearer token"
            response = _error(401, f"{reason} (Authorization: Bearer <token>)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="anchorgate"'
            return response
        return await handler(request)

    return check


def make_app(
    open_reader: ReaderFactory,
    live: LiveCounters | None = None,
    store: Path | None = None,
    token: str | None = None,
) -> web.Application:
    """The aiohttp application; ``open_reader`` gives a fresh reader per request.

    ``store`` is the served file's path, reported in /status so that a client can make
    sure it reached the gateway of the store it meant. With ``token``, every request
    must carry it as a bearer token.
    """

    async def in_thread(fn: Callable[[StoreReader], Any]) -> Any:
        def run() -> Any:
            with open_reader() as reader:
                return fn(reader)

        return await asyncio.to_thread(run)

    async def status() -> dict[str, Any]:
        result: dict[str, Any] = await in_thread(lambda r: r.status())
        if store is not None:
            result["store"] = str(store.resolve())
        if live is not None:
            result["live"] = dict(live())
        return result

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def status_view(_: web.Request) -> web.Response:
        try:
            return web.json_response(await status())
        except GatewayError as exc:
            return _error(503, str(exc))

    async def metrics_view(_: web.Request) -> web.Response:
        try:
            snapshot = await status()
        except GatewayError as exc:
            return _error(503, str(exc))
        flat = {k: v for k, v in snapshot.items() if k not in ("live", "store")}
        flat.update(snapshot.get("live", {}))
        registry = CollectorRegistry()
        registry.register(_LiveCollector(lambda: flat))
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    async def export_view(request: web.Request) -> web.Response:
        query = {k: v for k, v in request.query.items() if k != "id"}
        try:
            selection = selection_from_query(query, request.query.getall("id", []))
            since = parse_head(query["since_head"]) if query.get("since_head") else None
            limit = int(query.get("limit", MAX_EXPORT_READINGS))
            if not 0 < limit <= MAX_EXPORT_READINGS:
                raise ValueError(f"limit: must be 1..{MAX_EXPORT_READINGS}")
        except ValueError as exc:
            return _error(400, str(exc))
        try:
            exported = await in_thread(
                lambda r: export_bundle(r, selection, since_head=since, limit=limit)
            )
        except NothingToExport as exc:
            return _error(404, str(exc))
        except ExportError as exc:
            return _error(400, str(exc))
        except GatewayError as exc:
            return _error(503, str(exc))
        return web.Response(text=json.dumps(exported.bundle, indent=1), content_type=_JSON)

    app = web.Application(middlewares=[bearer_auth(token)] if token is not None else [])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/status", status_view)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/export", export_view)
    return app


async def start(
    app: web.Application, *, host: str, port: int, unix_socket: Path | None = None
) -> web.AppRunner:
    """Serve ``app`` on host:port, or on ``unix_socket`` when given; stop with cleanup()."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite
    if unix_socket is not None:
        unix_socket.parent.mkdir(parents=True, exist_ok=True)
        unix_socket.unlink(missing_ok=True)
        site = web.UnixSite(runner, str(unix_socket))
    else:
        site = web.TCPSite(runner, host, port)
    await site.start()
    return runner

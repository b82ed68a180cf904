"""``anchorgate run``: the service that wires subscriber, pipeline, store and health file.

Start-up: refuse a store file or directory that another user owns or anyone may
write (gateway.permissions), open (or create) the store on the writer thread, check
the newest blocks against the key and their stored leaves, continue the chain from
the stored head, then connect. A store that does not verify is refused, naming the first bad block.

Tasks (one task group): ``receive`` (MQTT connection loop), ``pipeline`` (decode,
batch, commit, ack, then publish the batch's alerts on the same MQTT connection) and
``health`` (the health file). On SIGTERM or SIGINT: stop taking messages, commit and
ack the open batch, disconnect, write the health file a last time and return, so that
the process exits 0 within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.alerts import Alert, Thresholds
from gateway.anchor import Anchorer
from gateway.chain_check import check_recent_blocks
from gateway.checkpoints import Checkpoint
from gateway.config import Config
from gateway.decode import Decoder
from gateway.device_auth import Authenticator
from gateway.logs import get_logger, log_event
from gateway.metrics import Metrics, write_health
from gateway.permissions import check_store_permissions
from gateway.pipeline import Pipeline
from gateway.schema import BlockRow
from gateway.store import Store
from gateway.subscriber import Subscriber
from ledger import SigningKey

if TYPE_CHECKING:
    from gateway.readapi import Running

_log = get_logger("service")

FLUSH_TIMEOUT = 30.0  # how long a stop waits for the last commit before giving up on acks
# The store's connection is reopened after this many committed rows (Store.recycle_rows):
# DuckDB holds metadata for every row group a connection wrote until it is closed.
RECYCLE_ROWS = 200_000


class _ReaderCount:
    """How many read API requests hold a store cursor (a context manager per request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._count -= 1

    def active(self) -> bool:
        return self._count > 0


@dataclass
class Opened:
    store: Store
    anchorer: Anchorer
    checked: int


def open_store(config: Config, key: SigningKey, clock: Callable[[], int]) -> Opened:
    """Open the store, verify its newest blocks and build the anchorer (writer thread)."""
    check_store_permissions(config.store.path)
    store = Store.open(
        config.store.path, memory_limit=config.store.memory_limit, threads=config.store.threads
    )
    store.recycle_rows = RECYCLE_ROWS
    try:
        checked = check_recent_blocks(
            store, key, config.gateway.id, config.store.verify_blocks_on_start
        )
        anchorer = Anchorer(
            store,
            key,
            config.gateway.id,
            duplicate_window_ns=int(config.store.duplicate_window * 1e9),
            clock=clock,
            thresholds=Thresholds(config.alerts) if config.alerts.enabled else None,
        )
    except BaseException:
        store.close()
        raise
    return Opened(store, anchorer, checked)


async def serve(
    config: Config,
    key: SigningKey,
    *,
    stop: asyncio.Event | None = None,
    clock: Callable[[], int] = time.time_ns,
    handle_signals: bool = True,
) -> Metrics:
    """Run the gateway until ``stop`` is set (or SIGTERM/SIGINT); return its final metrics."""
    loop = asyncio.get_running_loop()
    stop = stop if stop is not None else asyncio.Event()
    # A broken device registry stops the start (later edits that break it are logged).
    authenticator = Authenticator.from_path(
        config.devices.registry, config.devices.require_signature
    )
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anchorgate-writer")
    try:
        opened = await loop.run_in_executor(executor, open_store, config, key, clock)
    except BaseException:
        executor.shutdown(wait=True)
        raise
    metrics = Metrics()
    metrics.height = opened.anchorer.head.height
    # Everything allocated so far lives as long as the service: keep it out of the
    # cyclic collector's full passes, which otherwise rescan it every few batches.
    gc.freeze()
    log_event(
        _log,
        logging.INFO,
        "gateway.started",
        gateway_id=config.gateway.id,
        key_id=key.key_id.hex()[:16],
        store=str(config.store.path),
        height=metrics.height,
        blocks_checked=opened.checked,
    )
    api = await _start_api(config, opened.store, executor, metrics)
    subscriber = Subscriber(config, metrics, clock=clock)
    pipeline = Pipeline(
        Decoder(config.limits, config.mqtt.topic_template),
        opened.anchorer,
        config.batch,
        metrics,
        executor,
        authenticator,
        config.devices.verify_processes,
    )
    publish = _alert_publisher(config, subscriber, metrics)
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            receive = group.create_task(subscriber.run(), name="receive")
            work = group.create_task(
                pipeline.run(
                    subscriber.messages(),
                    subscriber.ack,
                    publish,
                    _checkpoint_publisher(config, subscriber, metrics),
                ),
                name="pipeline",
            )
            health = group.create_task(_health_loop(config, metrics), name="health")
            metrics.state = "running"
            await stop.wait()
            metrics.state = "stopping"
            log_event(_log, logging.INFO, "gateway.stopping", queue_depth=metrics.queue_depth)
            subscriber.close_intake()
            try:
                await asyncio.wait_for(asyncio.shield(work), FLUSH_TIMEOUT)
            except TimeoutError:
                log_event(_log, logging.ERROR, "gateway.flush_timeout", seconds=FLUSH_TIMEOUT)
                work.cancel()
            await subscriber.stop()
            # A connect() stuck on an unreachable broker must not hold up the exit.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receive, 5.0)
            health.cancel()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        if api is not None:
            await asyncio.to_thread(api.close)
        await loop.run_in_executor(executor, opened.store.close)
        executor.shutdown(wait=True)
        # Let the collector free the service's objects again (DuckDB's bindings report
        # objects still alive at exit as leaks).
        gc.unfreeze()
    metrics.state = "stopped"
    if config.health.file is not None:
        write_health(config.health.file, metrics.snapshot())
    log_event(
        _log,
        logging.INFO,
        "gateway.stopped",
        received=metrics.received,
        stored=metrics.stored,
        rejects=metrics.rejects,
        duplicates=metrics.duplicates,
        height=metrics.height,
    )
    return metrics


def _alert_publisher(
    config: Config, subscriber: Subscriber, metrics: Metrics
) -> Callable[[Sequence[Alert]], None]:
    """Publish committed alerts on ``<alerts.topic_prefix>/<asset_id>``, QoS 1, no waiting."""
    prefix = config.alerts.topic_prefix
    gateway_id = config.gateway.id

    def publish(alerts: Sequence[Alert]) -> None:
        missed = 0
        for alert in alerts:
            if not subscriber.publish(alert.topic(prefix), alert.to_json(gateway_id)):
                missed += 1
        if missed:
            # The alerts table holds them; a subscriber that missed them reads it.
            metrics.alerts_unpublished += missed
            log_event(_log, logging.WARNING, "alert.unpublished", count=missed, see="alerts table")

    return publish


def _checkpoint_publisher(
    config: Config, subscriber: Subscriber, metrics: Metrics
) -> Callable[[BlockRow], None] | None:
    """Publish each committed block's signed header (gateway.checkpoints), retained."""
    topic = config.gateway.checkpoints
    if topic is None:
        return None

    def publish(block: BlockRow) -> None:
        message = Checkpoint(block.header, block.signature).to_json()
        if not subscriber.publish(topic, message, retain=True):
            # The blocks table holds every header; the next block's checkpoint follows.
            metrics.checkpoints_unpublished += 1

    return publish


async def _start_api(
    config: Config, store: Store, writer: ThreadPoolExecutor, metrics: Metrics
) -> Running | None:
    """Serve the read API (gateway.readapi), or log why not and run without it."""
    if not config.api.enabled:
        return None
    from gateway.readapi import make_app, start  # noqa: PLC0415 (only when enabled)
    from gateway.reader import StoreReader  # noqa: PLC0415

    readers = _ReaderCount()
    store.readers_active = readers.active

    @contextlib.contextmanager
    def open_reader() -> Iterator[StoreReader]:
        # Runs on an API worker thread: the cursor is made on the writer thread, where
        # the connection lives (and is replaced after a fatal error, or recycled when no
        # reader holds a cursor: counted before the cursor is made, on the writer thread).
        with (
            readers,
            StoreReader(writer.submit(store.read_cursor).result(), owned=True) as reader,
        ):
            yield reader

    app = make_app(open_reader, metrics.snapshot, config.store.path, config.api.token)
    try:
        running = await asyncio.to_thread(
            start,
            app,
            host=config.api.host,
            port=config.api.port,
            unix_socket=config.api.unix_socket,
        )
    except OSError as exc:
        log_event(_log, logging.WARNING, "api.unavailable", url=config.api.url, reason=str(exc))
        return None
    log_event(_log, logging.INFO, "api.listening", url=config.api.url)
    return running


async def _health_loop(config: Config, metrics: Metrics) -> None:
    path = config.health.file
    if path is None:
        return
    while True:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(write_health, path, metrics.snapshot())
        await asyncio.sleep(config.health.interval)

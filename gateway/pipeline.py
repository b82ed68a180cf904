"""The pipeline: raw messages in, decoded into batches, anchored and committed, then acked.

:meth:`Pipeline.run` takes an async iterator of chunks of :class:`RawMessage` (the
MQTT subscriber in production, a list in unit tests) and an ``ack`` callable. Two tasks:

- intake: decodes each message on arrival (bad ones become ``Rejected`` items; they
  travel with the batch so that they are stored before they are acked), applies the
  device registry's policy (gateway.device_auth) and closes a batch at
  ``max_readings`` messages or ``max_delay`` seconds after its first message. A closed
  batch's device signatures are verified at once on a worker thread, off the event
  loop, while the previous batch commits; a bad one turns its item into a reject;
- write: commits closed batches one at a time on the writer thread, then acks the
  batch's messages in arrival order, then hands the alerts the batch raised to
  ``publish`` (never before their commit). A failed commit is retried with backoff
  and nothing is acked until it succeeds.

Batches are committed in the order they were closed, so acks leave in the order the
messages arrived (MQTT 5 section 4.6). Memory is bounded by the broker: it sends no
more than Receive Maximum unacknowledged messages.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import time
from collections.abc import AsyncIterable, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gateway.alerts import Alert
from gateway.anchor import Accepted, Anchorer, Decoded, Rejected
from gateway.config import BatchSection
from gateway.decode import Decoder, detect_format
from gateway.device_auth import Authenticator, PendingSignature, verify_pending
from gateway.errors import DecodeError, StoreError
from gateway.logs import get_logger, log_event
from gateway.metrics import Metrics
from gateway.schema import BlockRow

_log = get_logger("pipeline")

RETRY_MIN_DELAY = 0.5
RETRY_MAX_DELAY = 10.0
REJECTS_LOGGED_PER_BATCH = 10


@dataclass(slots=True)
class RawMessage:
    """One message as received; ``token`` is the subscriber's handle for acking it."""

    topic: str
    payload: bytes
    received_ns: int
    token: Any = None


@dataclass(slots=True)
class Batch:
    messages: list[RawMessage] = field(default_factory=list)
    items: list[Decoded] = field(default_factory=list)
    # Signed readings to verify before the commit: (index in items, what to check).
    checks: list[tuple[int, PendingSignature]] = field(default_factory=list)
    verified: asyncio.Future[list[tuple[int, str]]] | None = None


def _verifier(processes: int) -> Executor:
    """Where signatures are verified: one thread, or ``processes`` worker processes."""
    if processes <= 0:
        return ThreadPoolExecutor(1, thread_name_prefix="anchorgate-verify")
    # spawn, not fork: the gateway has threads (writer, paho) that fork would copy badly.
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(processes, mp_context=context)


Ack = Callable[[Sequence[RawMessage]], None]
Publish = Callable[[Sequence[Alert]], None]
Checkpointer = Callable[[BlockRow], None]


class Pipeline:
    """Decode, batch, anchor, commit, ack."""

    def __init__(
        self,
        decoder: Decoder,
        anchorer: Anchorer,
        batch: BatchSection,
        metrics: Metrics,
        executor: Executor,
        authenticator: Authenticator | None = None,
        verify_processes: int = 0,
    ) -> None:
        self._decoder = decoder
        self._auth = authenticator if authenticator is not None else Authenticator(None, False)
        self._anchorer = anchorer
        self._limits = batch
        self.metrics = metrics
        self._executor = executor
        # One verifying thread: more would only contend for the GIL (cryptography holds
        # it while verifying) and make the event loop wait longer for its turn. Worker
        # processes (verify_processes > 0) verify on other cores instead.
        self._verify_processes = verify_processes
        self._verifier: Executor | None = None
        self._batch = Batch()
        self._timer: asyncio.TimerHandle | None = None
        self._closed: asyncio.Queue[Batch | None] = asyncio.Queue()

    def decode(self, message: RawMessage) -> tuple[Decoded, PendingSignature | None]:
        """The message as an Accepted reading or a Rejected one with its reason.

        An accepted signed reading comes with the signature check still to be made.
        """
        try:
            reading, signed = self._decoder.decode_message(
                message.topic, message.payload, message.received_ns
            )
            pending = self._auth.admit(message.topic, reading, signed)
        except DecodeError as exc:
            # A stranger chooses the sizes: keep no more of a reject than a reading may hold.
            limits = self._decoder.limits
            rejected = Rejected(
                message.topic[: limits.max_topic_bytes],
                message.payload[: limits.max_payload_bytes],
                message.received_ns,
                exc.field,
                exc.problem,
            )
            return rejected, None
        accepted = Accepted(
            message.topic,
            message.payload,
            message.received_ns,
            reading,
            detect_format(message.payload if signed is None else signed.reading),
            signed=signed is not None,
        )
        return accepted, pending

    async def run(
        self,
        source: AsyncIterable[Sequence[RawMessage]],
        ack: Ack,
        publish: Publish | None = None,
        checkpoint: Checkpointer | None = None,
    ) -> None:
        """Process ``source`` until it ends; the last batch is committed and acked.

        After each commit, ``publish`` gets the batch's alerts and ``checkpoint`` its
        block (gateway.checkpoints); a failure in either never stops ingestion.
        """
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._write(ack, publish, checkpoint), name="write")
                try:
                    async for chunk in source:
                        for message in chunk:
                            self._add(message)
                finally:
                    self._close_batch()
                    self._closed.put_nowait(None)
        finally:
            if self._verifier is not None:
                self._verifier.shutdown(wait=False)  # the writer awaited its batches
                self._verifier = None

    def _add(self, message: RawMessage) -> None:
        self.metrics.received += 1
        batch = self._batch
        batch.messages.append(message)
        item, pending = self.decode(message)
        if pending is not None:
            batch.checks.append((len(batch.items), pending))
        batch.items.append(item)
        if len(batch.messages) >= self._limits.max_readings:
            self._close_batch()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._limits.max_delay, self._close_batch)

    def _close_batch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self._batch
        if batch.messages:
            if batch.checks:
                # Ed25519 holds the GIL for ~0.1 ms per check: a worker thread lets the
                # loop in between, and this batch is verified while the previous commits.
                if self._verifier is None:
                    self._verifier = _verifier(self._verify_processes)
                loop = asyncio.get_running_loop()
                batch.verified = loop.run_in_executor(self._verifier, verify_pending, batch.checks)
            self._closed.put_nowait(batch)
            self._batch = Batch()

    async def _write(
        self, ack: Ack, publish: Publish | None, checkpoint: Checkpointer | None
    ) -> None:
        loop = asyncio.get_running_loop()
        while (batch := await self._closed.get()) is not None:
            if batch.verified is not None:
                for index, reason in await batch.verified:
                    item = batch.items[index]
                    batch.items[index] = Rejected(
                        item.topic, item.payload, item.received_ns, "signature", reason
                    )
            delay = RETRY_MIN_DELAY
            while True:
                started = time.monotonic()
                try:
                    outcome = await loop.run_in_executor(
                        self._executor, self._anchorer.commit, batch.items
                    )
                    break
                except StoreError as exc:
                    self.metrics.commit_failures += 1
                    log_event(
                        _log, logging.ERROR, "batch.commit_failed", error=str(exc), retry_in=delay
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_DELAY)
            seconds = time.monotonic() - started
            ack(batch.messages)
            metrics = self.metrics
            metrics.acked += len(batch.messages)
            metrics.stored += outcome.stored
            metrics.rejects += outcome.rejects
            metrics.duplicates += outcome.duplicates
            if outcome.alerts:
                metrics.alerts += len(outcome.alerts)
                self._publish(publish, outcome.alerts)
            metrics.record_batch(
                [m.received_ns for m in batch.messages], outcome.committed_ns, seconds
            )
            if outcome.height is not None:
                metrics.blocks += 1
                metrics.height = outcome.height + 1
            if outcome.block is not None and checkpoint is not None:
                try:
                    checkpoint(outcome.block)
                except Exception as exc:
                    log_event(_log, logging.ERROR, "checkpoint.publish_failed", error=repr(exc))
            log_event(
                _log,
                logging.DEBUG,
                "batch.committed",
                height=outcome.height,
                stored=outcome.stored,
                rejects=outcome.rejects,
                duplicates=outcome.duplicates,
                seconds=round(seconds, 4),
            )
            self._log_rejects(batch.items, outcome.rejects)

    @staticmethod
    def _publish(publish: Publish | None, alerts: Sequence[Alert]) -> None:
        # The alerts are committed: a failure to publish them must not stop ingestion.
        for alert in itertools.islice(alerts, REJECTS_LOGGED_PER_BATCH):
            log_event(
                _log,
                logging.INFO,
                "alert.raised",
                asset_id=alert.asset_id,
                kind=alert.kind,
                value=alert.value,
                threshold=alert.threshold,
                block=alert.block_height,
                leaf=alert.leaf_index,
            )
        if publish is None:
            return
        try:
            publish(alerts)
        except Exception as exc:
            log_event(_log, logging.ERROR, "alert.publish_failed", error=repr(exc))

    @staticmethod
    def _log_rejects(items: Sequence[Decoded], count: int) -> None:
        # A flood of bad messages must not flood the log (an SD card): the first few
        # of each batch are logged, the rest counted; all are in the rejects table.
        if not count:
            return
        rejected = (item for item in items if isinstance(item, Rejected))
        for item in itertools.islice(rejected, REJECTS_LOGGED_PER_BATCH):
            log_event(
                _log,
                logging.INFO,
                "reading.rejected",
                topic=item.topic,
                field=item.field,
                reason=item.reason,
            )
        if count > REJECTS_LOGGED_PER_BATCH:
            log_event(
                _log,
                logging.INFO,
                "reading.rejected_more",
                count=count - REJECTS_LOGGED_PER_BATCH,
                see="the rejects table",
            )

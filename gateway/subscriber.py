"""The MQTT subscriber: paho-mqtt 2.x with manual acks, driven by the asyncio event loop.

Why paho and not aiomqtt: aiomqtt 2.x acknowledges a message as soon as it is queued
(its issue #345), which loses data on a crash. This client PUBACKs a message only when
:meth:`Subscriber.ack` is called, after its batch is committed.

How it runs, as aiomqtt 2.x does it: paho's socket callbacks register the socket with
the event loop (``add_reader``/``add_writer``), so paho reads and writes only when the
socket is ready; ``loop_misc`` (keepalive) runs once a second. No thread polls.

Session: MQTT 5, ``clean_start=False`` and a Session Expiry Interval from config, so
the broker keeps our subscriptions and unacknowledged messages while we are away and
redelivers them when we return. Receive Maximum (from config, at least the batch
size) caps how many unacknowledged messages the broker sends us: that bounds memory.

Mosquitto 2.0.11 takes the client's Receive Maximum as its in-flight limit for an
MQTT 5 client (``max_inflight_messages`` applies to MQTT 3.1.1 clients), but after each
PUBACK it releases up to a whole window of queued messages, so during a backlog the
broker alone does not bound what we hold. The subscriber therefore enforces the bound
itself: it stops reading the socket while ``receive_maximum`` messages are handed over
and not yet acked, and TCP pushes back on the broker.

Acks belong to a connection: after a reconnect the broker redelivers whatever was not
acked, so acks for messages of an earlier connection are not sent (their redelivered
copies are recognised as duplicates and acked instead).

MQTT 3.1.1 (``mqtt.protocol = "3.1.1"``, for brokers without MQTT 5 such as the
demo's embedded one): the CONNECT has no properties; ``session_expiry > 0`` becomes
``clean_session=False`` (the broker then keeps the session as long as it is set to)
and 0 ``clean_session=True``. Receive Maximum is not sent, and the bound above is
the subscriber's own. Acks, redelivery and publishing work the same way.

Reconnection: one outer loop, capped exponential backoff with jitter, resubscribing
every time.

Transport security (:mod:`gateway.mqtt_tls`): with TLS the broker's certificate must
chain to ``mqtt.tls_ca_file`` (or the system CAs) and name the host we dial. A failed
handshake (an untrusted or misnamed certificate) is logged as ``mqtt.tls_failed`` at
ERROR with the reason; a broker that drops us for want of a client certificate is
``mqtt.refused`` saying so. Both are retried with the usual backoff: a fix on the
broker's side (a renewed certificate) cures them without restarting the gateway.
Plain TCP to another machine (``mqtt.allow_insecure``) logs ``mqtt.insecure`` at start.

Publishing (alerts): :meth:`Subscriber.publish` hands a QoS 1 message to paho on the
same connection, without waiting. While we are not connected, or when paho already
holds ``MAX_QUEUED_PUBLISHES`` unacknowledged messages, it refuses and returns False:
alerts are recorded in the store before they are published, so dropping a message
here loses nothing and keeps memory bounded during an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.config import Config
from gateway.errors import BrokerConnectError
from gateway.logs import get_logger, log_event
from gateway.metrics import Metrics
from gateway.mqtt_client import BufferedClient
from gateway.mqtt_tls import describe_tls_failure
from gateway.pipeline import RawMessage

_log = get_logger("mqtt")

CONNECT_TIMEOUT = 10.0
MAX_QUEUED_PUBLISHES = 1000  # outgoing QoS 1 messages paho may hold (alerts)
READS_PER_WAKEUP = 512  # packets read per readiness callback before yielding to the loop
# CONNACK reason codes that a retry will not cure; we still retry, slowly, and say so.
_FATAL_CONNACK = {"Not authorized", "Bad user name or password", "Client identifier not valid"}


class _Token:
    """What ``ack`` needs: the connection the message came on, its packet id and QoS."""

    __slots__ = ("generation", "mid", "qos")

    def __init__(self, generation: int, mid: int, qos: int) -> None:
        self.generation = generation
        self.mid = mid
        self.qos = qos


class Subscriber:
    """Receives messages into an async iterator and acks them on request."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        *,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        self._config = config
        self._mqtt = config.mqtt
        self.metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Messages travel in chunks: all those read in one socket wakeup, so the queue
        # costs per wakeup, not per message.
        self._queue: asyncio.Queue[list[RawMessage] | None] = asyncio.Queue()
        self._chunk: list[RawMessage] = []
        self._poll = select.poll()
        self._polled: int | None = None
        self._generation = 0
        self._connected = False
        self._closing = False
        self._stopping = False
        self._connack: asyncio.Future[bool] | None = None
        self._suback: asyncio.Future[list[ReasonCode]] | None = None
        self._lost: asyncio.Future[str] | None = None
        self._wake = asyncio.Event()
        self._misc_task: asyncio.Task[None] | None = None
        self._loop_thread: int | None = None
        self._pending = 0  # messages handed to the pipeline and not yet acked
        self._paused = False  # socket reads paused because _pending hit receive_maximum
        self._socket_error: str | None = None  # paho's last error log line (_paho_errors)
        self._paho_logger = self._paho_errors()
        self.client = self._make_client()

    def _make_client(self) -> BufferedClient:
        v311 = self._mqtt.protocol == "3.1.1"
        client = BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self._config.client_id,
            protocol=MQTTProtocolVersion.MQTTv311 if v311 else MQTTProtocolVersion.MQTTv5,
            clean_session=self._mqtt.session_expiry == 0 if v311 else None,
            manual_ack=True,
            reconnect_on_failure=False,
        )
        mqtt_config = self._mqtt
        client.max_queued_messages_set(MAX_QUEUED_PUBLISHES)
        if mqtt_config.username:
            client.username_pw_set(mqtt_config.username, mqtt_config.password)
        context = mqtt_config.ssl_context()  # verifies the chain and the host name
        if context is not None:
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        return client

    # -- the message stream ------------------------------------------------------------

    async def messages(self) -> AsyncIterator[list[RawMessage]]:
        """Chunks of messages in arrival order, across reconnects, until :meth:`close_intake`."""
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    def close_intake(self) -> None:
        """Stop taking messages: later ones stay unacked for the broker to redeliver."""
        if not self._closing:
            self._closing = True
            self._flush_chunk()
            self._queue.put_nowait(None)

    def ack(self, messages: Sequence[RawMessage]) -> None:
        """PUBACK committed messages, in the order given (their arrival order)."""
        self._pending -= len(messages)
        generation = self._generation
        if self._connected:
            for message in messages:
                token = message.token
                if isinstance(token, _Token) and token.generation == generation and token.qos > 0:
                    self.client.ack(token.mid, token.qos)
        if self._paused and self._pending < self._mqtt.receive_maximum:
            self._paused = False
            sock = self.client.socket()
            if sock is not None:
                self._watch(sock)
                self._read_buffered(sock)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Send a QoS 1 message without waiting; False if it cannot be sent now."""
        if not self._connected:
            return False
        try:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
        except ValueError:  # a topic paho refuses (wildcards, too long)
            return False
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    # -- connection loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, and reconnect with backoff until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self._mqtt.insecure:
            log_event(
                _log,
                logging.WARNING,
                "mqtt.insecure",
                host=self._mqtt.host,
                detail="plain TCP to another machine (mqtt.allow_insecure = true): "
                "the password and readings cross the network unencrypted",
            )
        attempt = 0
        while not self._stopping:
            was_connected, reason = await self._session()
            if self._stopping:
                break
            if was_connected:
                attempt = 0
            delay = min(self._mqtt.reconnect_max_delay, self._mqtt.reconnect_min_delay * 2**attempt)
            delay *= self._rng.uniform(0.5, 1.0)  # jitter: gateways do not reconnect in step
            attempt += 1
            log_event(_log, logging.WARNING, "mqtt.retry", reason=reason, delay=round(delay, 3))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _session(self) -> tuple[bool, str]:
        """One connection from CONNECT to its loss: whether CONNACK came, and why it ended."""
        assert self._loop is not None
        loop = self._loop
        self._connack = loop.create_future()
        self._suback = loop.create_future()
        self._lost = loop.create_future()
        self._socket_error = None
        # paho's errors are kept only until CONNACK: logging costs per packet after it.
        self.client.enable_logger(self._paho_logger)
        options: dict[str, Any] = {}  # MQTT 3.1.1: none (clean_session is the client's)
        if self._mqtt.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._mqtt.session_expiry
            properties.ReceiveMaximum = self._mqtt.receive_maximum
            properties.MaximumPacketSize = self._mqtt.max_packet_bytes
            options = {"clean_start": False, "properties": properties}
        try:
            await loop.run_in_executor(
                None,
                lambda: self.client.connect(
                    self._mqtt.host, self._mqtt.port, self._mqtt.keepalive, **options
                ),
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            tls_problem = describe_tls_failure(exc)
            if tls_problem is None:
                return False, f"connect failed: {exc}"
            log_event(
                _log,
                logging.ERROR,
                "mqtt.tls_failed",
                host=self._mqtt.host,
                port=self._mqtt.port,
                reason=tls_problem,
                check="mqtt.tls_ca_file, and that the certificate names mqtt.host",
            )
            return False, f"TLS handshake failed: {tls_problem}"
        try:
            session_present = await asyncio.wait_for(asyncio.shield(self._connack), CONNECT_TIMEOUT)
        except TimeoutError:
            self._drop_connection()
            return False, "no CONNACK in time"
        except BrokerConnectError as exc:
            self._drop_connection()
            log_event(_log, logging.ERROR, "mqtt.refused", reason=str(exc))
            return False, str(exc)
        self.metrics.connected = True
        self.metrics.connects += 1
        self._misc_task = loop.create_task(self._misc_loop(), name="mqtt-misc")
        try:
            granted = await self._subscribe()
            log_event(
                _log,
                logging.INFO,
                "mqtt.connected",
                host=self._mqtt.host,
                port=self._mqtt.port,
                client_id=self._config.client_id,
                session_present=session_present,
                filters=",".join(self._mqtt.topic_filters),
                granted=",".join(str(code) for code in granted),
            )
            reason = await self._lost
        except (TimeoutError, BrokerConnectError) as exc:
            self._drop_connection()
            reason = f"subscribe failed: {exc}"
        finally:
            self._connected = False
            self.metrics.connected = False
            if self._misc_task is not None:
                self._misc_task.cancel()
        if not self._stopping:
            log_event(_log, logging.WARNING, "mqtt.disconnected", reason=reason)
        return True, reason

    async def _subscribe(self) -> list[ReasonCode]:
        assert self._suback is not None
        filters = self._mqtt.topic_filters
        if self._mqtt.protocol == "3.1.1":  # paho takes subscribe options from MQTT 5 only
            result, _mid = self.client.subscribe([(f, 1) for f in filters])
        else:
            options = SubscribeOptions(qos=1)
            result, _mid = self.client.subscribe([(f, options) for f in filters])
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerConnectError(f"subscribe not sent: {mqtt.error_string(result)}")
        codes = await asyncio.wait_for(asyncio.shield(self._suback), CONNECT_TIMEOUT)
        refused = [
            f"{topic_filter}: {code}"
            for topic_filter, code in zip(self._mqtt.topic_filters, codes, strict=False)
            if code.is_failure or code.value < 1
        ]
        if refused:
            raise BrokerConnectError("subscription refused or below QoS 1: " + "; ".join(refused))
        return codes

    def _drop_connection(self) -> None:
        self._connected = False
        sock = self.client.socket()
        if sock is not None:
            self._unwatch(sock)
            # paho closes the socket on the next connect(); shut it now so the broker notices.
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    async def _misc_loop(self) -> None:
        while self.client.loop_misc() == mqtt.MQTT_ERR_SUCCESS:
            await asyncio.sleep(1)

    async def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (after the final acks have been queued) and end :meth:`run`."""
        self._stopping = True
        self.close_intake()
        self._wake.set()
        if self._connected and self._lost is not None and not self._lost.done():
            self.client.disconnect()
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), timeout)
            except TimeoutError:
                self._drop_connection()
                if not self._lost.done():
                    self._lost.set_result("disconnect timed out")

    # -- paho callbacks (on the event loop thread, except socket open/register) ----------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        future = self._connack
        if future is None or future.done():
            return
        if reason_code.is_failure:
            fatal = str(reason_code) in _FATAL_CONNACK
            what = "broker refused the connection" + (" (check credentials/ACL)" if fatal else "")
            future.set_exception(BrokerConnectError(f"{what}: {reason_code}"))
        else:
            # Here, not after the await: redelivered messages follow CONNACK in the same
            # read and must carry the new connection's generation.
            self._generation += 1
            self.client.disable_logger()
            self._connected = True
            future.set_result(bool(flags.session_present))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if self._suback is not None and not self._suback.done():
            self._suback.set_result(list(reason_codes))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected = False
        self.metrics.connected = False
        reason = f"disconnected: {reason_code}"
        socket_error, self._socket_error = self._socket_error, None
        if socket_error is not None:
            reason += f" ({socket_error})"
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
        if self._connack is not None and not self._connack.done():
            if socket_error is not None and "CERTIFICATE_REQUIRED" in socket_error.upper():
                # TLS 1.3: the handshake "succeeds" and the broker's alert arrives
                # with the first read, before CONNACK.
                reason = (
                    "TLS: the broker requires a client certificate: set mqtt.tls_cert_file "
                    f"and mqtt.tls_key_file ({socket_error})"
                )
            self._connack.set_exception(BrokerConnectError(reason))

    def _paho_errors(self) -> logging.Logger:
        """A private logger for paho that keeps its last ERROR line in ``_socket_error``.

        paho reports a socket error (a TLS alert, a reset) only through its log, just
        before on_disconnect; the disconnect reason then says what happened. It is
        attached from CONNECT to CONNACK, where a TLS 1.3 broker's "certificate
        required" alert arrives. A logger rather than ``on_log``: paho formats every
        debug line (one per packet) for ``on_log``; a logger at ERROR only checks the
        level, and once connected it is detached altogether.
        """
        subscriber = self

        class _Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                subscriber._socket_error = record.getMessage()

        logger = logging.Logger("anchorgate.paho", logging.ERROR)  # not in the registry
        logger.propagate = False
        logger.addHandler(_Keep(logging.ERROR))
        return logger

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if self._closing:
            return  # not acked: the broker redelivers it to our next session
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = bytes(message._topic).decode("utf-8", "replace")
        self._pending += 1
        self._chunk.append(
            RawMessage(
                topic,
                bytes(message.payload),
                self._clock(),
                _Token(self._generation, message.mid, message.qos),
            )
        )

    def _flush_chunk(self) -> None:
        if self._chunk:
            self._queue.put_nowait(self._chunk)
            self._chunk = []

    def _call_in_loop(self, function: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        if threading.get_ident() == self._loop_thread:
            function(*args)
        else:
            self._loop.call_soon_threadsafe(function, *args)

    def _on_socket_open(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self._call_in_loop(self._watch, sock)

    def _watch(self, sock: Any) -> None:
        # Always read a new socket (its CONNACK comes first); _readable pauses again
        # if the messages still being committed fill the window.
        assert self._loop is not None
        if sock.fileno() < 0:
            return  # closed before this ran (deferred from paho's thread): nothing to read
        if self._polled is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(self._polled)
        self._polled = sock.fileno()
        self._poll.register(sock, select.POLLIN)
        self._loop.add_reader(sock, self._readable, sock)

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        self._forget(self._loop.remove_reader, sock)
        self._forget(self._loop.remove_writer, sock)

    @staticmethod
    def _forget(remove: Callable[[Any], bool], sock: Any) -> None:
        # A socket closed meanwhile is still found if it was watched; if it was not,
        # asyncio raises ValueError for its fd -1, and there is nothing to remove.
        with contextlib.suppress(ValueError):
            remove(sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        if sock.fileno() >= 0:
            self._call_in_loop(self._unwatch, sock)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self._call_in_loop(self._add_writer, sock)

    def _on_socket_unregister_write(self, client: mqtt.Client, userdata: object, sock: Any) -> None:
        self._call_in_loop(self._remove_writer, sock)

    def _add_writer(self, sock: Any) -> None:
        # Deferred from paho's thread, the socket may be closed by now (a refused TLS
        # handshake): asyncio would raise for its fd -1, in a callback, as a traceback.
        assert self._loop is not None
        if sock.fileno() >= 0:
            self._loop.add_writer(sock, self._writable)

    def _remove_writer(self, sock: Any) -> None:
        assert self._loop is not None
        self._forget(self._loop.remove_writer, sock)

    def _readable(self, sock: socket.socket) -> None:
        # paho reads one packet per loop_read(); keep reading while the socket (or the
        # client's read buffer) has data so a burst costs one wakeup, not one per message.
        client = self.client
        try:
            for _ in range(READS_PER_WAKEUP):
                before = self._pending
                if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
                    break
                if client.socket() is not sock:
                    break
                # Pause only after a message: CONNACK and SUBACK must get through even
                # while the previous connection's messages are still being committed.
                if self._pending > before and self._pending >= self._mqtt.receive_maximum:
                    # Backpressure: leave further messages in the buffer, the socket and
                    # the broker.
                    self._paused = True
                    assert self._loop is not None
                    self._loop.remove_reader(sock)
                    break
                if client.buffered:
                    continue
                if isinstance(sock, ssl.SSLSocket) and sock.pending():
                    continue
                if not self._poll.poll(0):
                    break
            else:
                self._read_buffered(sock)  # the wakeup's share is read: let the loop in
        except Exception as exc:  # a broken socket: treat as a lost connection
            self._connection_broken(exc)
        finally:
            self._flush_chunk()

    def _read_buffered(self, sock: Any) -> None:
        """Read on soon if bytes wait in the client's buffer: they wake no selector."""
        if self.client.buffered and not self._paused:
            assert self._loop is not None
            self._loop.call_soon(self._readable, sock)

    def _writable(self) -> None:
        try:
            self.client.loop_write()
        except Exception as exc:
            self._connection_broken(exc)

    def _connection_broken(self, exc: BaseException) -> None:
        sock = self.client.socket()
        if sock is not None:
            self._unwatch(sock)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(f"socket error: {exc!r}")

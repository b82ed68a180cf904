"""Publishing over MQTT: a few aiomqtt connections shared by the fleet's devices.

QoS 1 and 2 go through ``aiomqtt.Client.publish``, one task per message, at most
``inflight`` unacknowledged per connection; a message counts as published once the
broker acknowledged it. QoS 0 skips aiomqtt's per-message future and hands the
message straight to the paho client underneath: on a 2-core machine, awaiting
aiomqtt's QoS 0 publish one message at a time reaches 7,500 to 9,800 messages/s, the
simulator's whole path (models, encoding, paho) 22,000 to 34,000/s depending on
the machine's other load (bench/simulate.py prints both), and the simulator must
feed a gateway faster than it ingests. aiomqtt still owns the connection, its
socket callbacks and TLS; messages are written by aiomqtt's writer callback when
we yield to the loop.

Connections speak MQTT 5 (or 3.1.1 with ``[broker] protocol = "3.1.1"``, for a broker
without MQTT 5 such as the demo's embedded one) and use the scenario's TLS context
(:meth:`~simulators.broker_settings.BrokerSettings.ssl_context`: the broker's
certificate and host name are verified). A QoS 1 or 2 publish that the broker answers
with a failure reason code (``Not authorized``: its ACL refuses this user that topic)
is counted, and ends the run with a :class:`PublishError`; aiomqtt's ``publish``
alone would report it as delivered. (MQTT 3.1.1 has no such codes: a refusing broker
drops the message or the connection.)

An abrupt disconnect (fault ``disconnect``) first waits until everything already
handed over on that connection is on the wire (QoS 0) or acknowledged (QoS 1+), so
the manifest stays exact; then it shuts the socket down, so the broker sees the TCP
connection end without an MQTT DISCONNECT, and dials again. The new connection gets a
new client id (``<client_id>-<n>.<redial>``): with the same id Mosquitto may take the
session over while the old connection's last messages still wait in its socket
buffer, and drop them, which would make the count in the manifest wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from simulators.broker_settings import BrokerSettings
from simulators.errors import PublishError, ScenarioError


class _Connection:
    def __init__(self, client: aiomqtt.Client, stack: AsyncExitStack) -> None:
        self.client = client
        self.stack = stack
        self.last: paho.MQTTMessageInfo | None = None  # latest QoS 0 message handed over
        self.marker: paho.MQTTMessageInfo | None = None  # QoS 0 message at the last pace()
        self.pending: set[asyncio.Task[None]] = set()  # QoS 1+ publishes awaiting PUBACK
        self.refused = 0  # publishes the broker answered with a failure reason code
        self.refusal = ""  # the first such reason ("Not authorized")

    @property
    def paho(self) -> paho.Client:
        # aiomqtt keeps its paho client private; the QoS 0 fast path needs it (see above).
        return self.client._client


class Publisher:
    """``settings.connections`` MQTT connections publishing at one QoS."""

    def __init__(self, settings: BrokerSettings, qos: int) -> None:
        self.settings = settings
        self.qos = qos
        self.connections: list[_Connection] = []
        self.drops = 0
        self._redials: list[int] = [0] * settings.connections

    async def _connect(self, index: int) -> _Connection:
        s = self.settings
        try:
            tls_context = s.ssl_context()
        except ScenarioError as exc:  # a file changed since the scenario was loaded
            raise PublishError(str(exc)) from None
        client = aiomqtt.Client(
            s.host,
            s.port,
            identifier=f"{s.client_id}-{index}"
            + (f".{self._redials[index]}" if self._redials[index] else ""),
            username=s.username,
            password=s.password,
            keepalive=s.keepalive,
            tls_context=tls_context,
            # MQTT 5, so that a publish the broker refuses (its ACL) comes back as a
            # PUBACK reason code instead of vanishing.
            protocol=aiomqtt.ProtocolVersion.V5
            if s.protocol == "5"
            else aiomqtt.ProtocolVersion.V311,
            max_inflight_messages=s.inflight,
        )
        # aiomqtt logs a warning per publish while more than this many are pending;
        # with a window of ``inflight`` that is our normal state, not a concern.
        client.pending_calls_threshold = s.inflight + 1
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(client)
        except aiomqtt.MqttError as exc:
            raise PublishError(f"cannot connect to MQTT broker {s.host}:{s.port}: {exc}") from None
        conn = _Connection(client, stack)
        _watch_refusals(conn)
        if self.qos == 0:
            # Nothing waits on QoS 0 confirmations (we poll MQTTMessageInfo); without a
            # callback paho skips building a ReasonCode and Properties per message.
            conn.paho.on_publish = None
        return conn

    async def __aenter__(self) -> Publisher:
        for index in range(self.settings.connections):
            self.connections.append(await self._connect(index))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.drain()
        finally:
            for conn in self.connections:
                for task in conn.pending:
                    task.cancel()
                with contextlib.suppress(aiomqtt.MqttError):
                    await conn.stack.aclose()
                _forget_disconnect(conn)
            self.connections.clear()

    def publish(self, connection: int, topic: str, payload: bytes) -> None:
        """Hand one message over; it goes out when the caller next awaits :meth:`pace`."""
        conn = self.connections[connection]
        if self.qos == 0:
            info = conn.paho.publish(topic, payload, 0)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise PublishError(f"publish on {topic} failed: {paho.error_string(info.rc)}")
            conn.last = info
            return
        task = asyncio.create_task(conn.client.publish(topic, payload, qos=self.qos, timeout=60))
        conn.pending.add(task)
        task.add_done_callback(conn.pending.discard)

    async def pace(self) -> None:
        """Let the writes happen; wait while a connection has too much outstanding."""
        await asyncio.sleep(0)
        for conn in self.connections:
            if self.qos == 0:
                # Allow one batch in the socket and one being handed over, no more.
                while conn.marker is not None and not conn.marker.is_published():
                    _check_connected(conn)
                    await asyncio.sleep(0.0005)
                conn.marker = conn.last
            else:
                await self._settle(conn, keep=self.settings.inflight - 1)

    async def drain(self, connection: int | None = None) -> None:
        """Wait until every message handed over is sent (QoS 0) or acknowledged."""
        conns = self.connections if connection is None else [self.connections[connection]]
        for conn in conns:
            while conn.last is not None and not conn.last.is_published():
                _check_connected(conn)
                await asyncio.sleep(0.001)
            await self._settle(conn, keep=0)

    async def _settle(self, conn: _Connection, keep: int) -> None:
        """Wait until at most ``keep`` QoS 1+ publishes are unacknowledged on ``conn``."""
        while len(conn.pending) > keep:
            done, _ = await asyncio.wait(
                conn.pending, timeout=0.5, return_when=asyncio.FIRST_COMPLETED
            )
            _raise_failures(done)
            _check_refusals(conn, self.settings.username)
            # aiomqtt would wait out its publish timeout on a dead connection; don't.
            _check_connected(conn)
        _check_refusals(conn, self.settings.username)

    async def drop(self, connection: int) -> None:
        """Close ``connection`` without an MQTT DISCONNECT, then connect it again."""
        await self.drain(connection)
        conn = self.connections[connection]
        sock = conn.paho.socket()
        if isinstance(sock, socket.socket):  # also ssl.SSLSocket
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # aiomqtt now finds the connection lost and says so; that is the point.
        with contextlib.suppress(aiomqtt.MqttError):
            await conn.stack.aclose()
        _forget_disconnect(conn)
        self._redials[connection] += 1
        self.connections[connection] = await self._connect(connection)
        self.drops += 1


def _check_connected(conn: _Connection) -> None:
    if not conn.paho.is_connected():
        raise PublishError("lost the connection to the MQTT broker")


def _raise_failures(done: set[asyncio.Task[None]]) -> None:
    for task in done:
        if task.cancelled():
            continue
        exc = task.exception()
        if exc is not None:
            raise PublishError(f"publish failed: {exc}") from None


def _watch_refusals(conn: _Connection) -> None:
    """Count PUBACK/PUBREC failure codes, which aiomqtt's publish ignores."""
    forward = conn.paho.on_publish

    def on_publish(
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        if reason_code.is_failure:
            conn.refused += 1
            conn.refusal = conn.refusal or str(reason_code)
        if forward is not None:
            forward(client, userdata, mid, reason_code, properties)  # type: ignore[call-arg]

    conn.paho.on_publish = on_publish


def _check_refusals(conn: _Connection, user: str | None) -> None:
    if conn.refused:
        who = f"user {user!r}" if user else "an anonymous client"
        raise PublishError(
            f"the broker refused {conn.refused} publish(es) from {who}: {conn.refusal} "
            "(its ACL does not let this user publish on these topics)"
        )


def _forget_disconnect(conn: _Connection) -> None:
    """Mark an expected disconnect's error as seen.

    Under MQTT 5 an abrupt close leaves aiomqtt's ``_disconnected`` future holding an
    "Unexpected disconnection" error that its ``__aexit__`` does not retrieve; asyncio
    would print it at garbage collection.
    """
    future = conn.client._disconnected
    if future.done() and not future.cancelled():
        future.exception()

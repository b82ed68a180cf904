"""The paho subscriber against a real Mosquitto: flow control, manual acks, reconnection."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from gateway_helpers import publish_all, readings

from gateway import subscriber as subscriber_module
from gateway.config import Config
from gateway.config_load import parse_config
from gateway.metrics import Metrics
from gateway.mosquitto import Mosquitto
from gateway.pipeline import RawMessage
from gateway.subscriber import Subscriber

pytestmark = pytest.mark.broker


def config_for(broker: Mosquitto, receive_maximum: int = 50, group: str = "") -> Config:
    return parse_config(
        f"""
        [mqtt]
        host = "{broker.host}"
        port = {broker.port}
        client_id = "sub-test"
        receive_maximum = {receive_maximum}
        shared_group = "{group}"
        reconnect_min_delay = 0.05
        reconnect_max_delay = 0.5
        [batch]
        max_readings = {receive_maximum}
        """,
        environ={},
    )


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


class Running:
    """A subscriber running in a task, collecting what it receives."""

    def __init__(self, config: Config) -> None:
        self.subscriber = Subscriber(config, Metrics())
        self.received: list[RawMessage] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Running:
        self._tasks = [
            asyncio.create_task(self.subscriber.run()),
            asyncio.create_task(self._collect()),
        ]
        await eventually(lambda: self.subscriber.metrics.connected)
        return self

    async def _collect(self) -> None:
        async for chunk in self.subscriber.messages():
            self.received.extend(chunk)

    async def __aexit__(self, *exc: object) -> None:
        await self.subscriber.stop()
        await asyncio.gather(*self._tasks)


async def in_thread(function: Callable[[], object]) -> None:
    await asyncio.to_thread(function)


async def test_receive_maximum_bounds_unacknowledged_messages(broker: Mosquitto) -> None:
    async with Running(config_for(broker, receive_maximum=50)) as running:
        await in_thread(lambda: publish_all(broker, readings(5, 200)))
        await eventually(lambda: len(running.received) == 50)
        await asyncio.sleep(0.3)
        assert len(running.received) == 50  # nothing more until we ack
        running.subscriber.ack(running.received[:1])
        await eventually(lambda: len(running.received) == 51)
        await asyncio.sleep(0.3)
        # Mosquitto 2.0.11 sends a whole window per PUBACK; we read only one more.
        assert len(running.received) == 51
        running.subscriber.ack(running.received[1:31])
        await eventually(lambda: len(running.received) == 81)
        await asyncio.sleep(0.2)
        assert len(running.received) == 81
        while len(running.received) < 200:
            acked = len(running.received)
            running.subscriber.ack(running.received[acked - 50 : acked])
            expected = min(200, acked + 50)
            await eventually(lambda: len(running.received) == expected)  # noqa: B023
        running.subscriber.ack(running.received[181:])
        await asyncio.sleep(0.1)


async def test_a_queued_burst_larger_than_one_wakeup_arrives_whole(
    broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Messages queued while we are away arrive in a few large reads, many more than
    # one wakeup handles: the ones left in the client's buffer (which wakes no
    # selector) must be read as well.
    monkeypatch.setattr(subscriber_module, "READS_PER_WAKEUP", 5)
    sent = readings(7, 1500)
    async with Running(config_for(broker, receive_maximum=2000)):
        pass  # makes the session
    await in_thread(lambda: publish_all(broker, sent))
    async with Running(config_for(broker, receive_maximum=2000)) as running:
        await eventually(lambda: len(running.received) == len(sent))
        assert [m.payload for m in running.received] == [p for _, p in sent]
        running.subscriber.ack(running.received)
        await asyncio.sleep(0.1)


async def test_unacknowledged_messages_come_back_in_the_next_session(broker: Mosquitto) -> None:
    sent = readings(3, 20)
    async with Running(config_for(broker)) as first:
        await in_thread(lambda: publish_all(broker, sent))
        await eventually(lambda: len(first.received) == 20)
        first.subscriber.ack(first.received[:5])
        await asyncio.sleep(0.1)
    async with Running(config_for(broker)) as second:
        await eventually(lambda: len(second.received) == 15)
        assert [m.payload for m in second.received] == [p for _, p in sent[5:]]
        second.subscriber.ack(second.received)
        await asyncio.sleep(0.1)
    async with Running(config_for(broker)) as third:
        await asyncio.sleep(0.3)
        assert third.received == []


async def test_reconnects_after_a_broker_restart_and_keeps_the_session(broker: Mosquitto) -> None:
    async with Running(config_for(broker)) as running:
        await in_thread(broker.restart)
        await eventually(lambda: running.subscriber.metrics.connects == 2)
        await in_thread(lambda: publish_all(broker, readings(2, 10)))
        await eventually(lambda: len(running.received) == 10)
        running.subscriber.ack(running.received)
        await asyncio.sleep(0.1)


async def test_acks_of_an_earlier_connection_are_not_sent(broker: Mosquitto) -> None:
    async with Running(config_for(broker)) as running:
        await in_thread(lambda: publish_all(broker, readings(1, 5)))
        await eventually(lambda: len(running.received) == 5)
        await in_thread(broker.restart)
        await eventually(lambda: running.subscriber.metrics.connects == 2)
        # the broker redelivers the five; acking the old copies must not ack the new ones
        await eventually(lambda: len(running.received) == 10)
        running.subscriber.ack(running.received[:5])
        await asyncio.sleep(0.2)
    async with Running(config_for(broker)) as again:
        await eventually(lambda: len(again.received) == 5)
        again.subscriber.ack(again.received)
        await asyncio.sleep(0.1)


async def test_keeps_retrying_while_the_broker_is_down(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "late")
    subscriber = Subscriber(config_for(broker), Metrics())
    task = asyncio.create_task(subscriber.run())
    await asyncio.sleep(0.5)
    assert not subscriber.metrics.connected
    broker.start()
    try:
        await eventually(lambda: subscriber.metrics.connected)
    finally:
        await subscriber.stop()
        await task
        broker.stop()


async def test_reconnects_while_the_window_is_full(broker: Mosquitto) -> None:
    async with Running(config_for(broker, receive_maximum=50)) as running:
        await in_thread(lambda: publish_all(broker, readings(5, 100)))
        await eventually(lambda: len(running.received) == 50)
        await in_thread(broker.restart)  # while reading is paused: nobody notices yet
        running.subscriber.ack(running.received[:50])  # their batch committed: resume
        # The loss is seen, the new CONNACK and SUBACK are read although the window
        # refills at once with the redelivered messages.
        await eventually(lambda: running.subscriber.metrics.connects == 2)
        await eventually(lambda: len(running.received) == 100)
        running.subscriber.ack(running.received[50:100])
        await eventually(lambda: len(running.received) == 150)
        running.subscriber.ack(running.received[100:])
        await asyncio.sleep(0.1)
    async with Running(config_for(broker)) as again:
        await asyncio.sleep(0.3)
        assert again.received == []


async def test_a_socket_closed_before_its_deferred_callbacks_raises_nothing(
    broker: Mosquitto,
) -> None:
    # paho calls these from its own thread; the loop runs them later, when the socket may
    # be closed (a refused TLS handshake). asyncio raised for its fd -1 inside a
    # callback, which the gateway logged as a traceback.
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    subscriber = Subscriber(config_for(broker), Metrics())
    subscriber._loop, subscriber._loop_thread = loop, threading.get_ident()
    sock = socket.socket()
    calls = (
        subscriber._on_socket_open,
        subscriber._on_socket_register_write,
        subscriber._on_socket_unregister_write,
    )
    thread = threading.Thread(target=lambda: [call(None, None, sock) for call in calls])  # type: ignore[arg-type]
    thread.start()
    thread.join()
    sock.close()
    await asyncio.sleep(0.05)
    assert errors == []

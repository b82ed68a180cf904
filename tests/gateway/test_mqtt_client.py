"""BufferedClient: paho's small reads served from one large read of a real socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt_client import READ_SIZE, BufferedClient


class CountingSocket:
    """A real socket that counts the recv calls made on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recvs = 0

    def recv(self, size: int) -> bytes:
        self.recvs += 1
        return self.sock.recv(size)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def client_on(sock: object) -> BufferedClient:
    client = BufferedClient(callback_api_version=CallbackAPIVersion.VERSION2)
    client._sock = sock  # type: ignore[assignment]  # what paho's connect would set
    return client


def test_small_reads_are_served_from_one_system_call(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    data = bytes(range(256)) * 40  # 10,240 bytes, well under one READ_SIZE
    theirs.sendall(data)
    counting = CountingSocket(ours)
    client = client_on(counting)
    pieces = [client._sock_recv(1), client._sock_recv(1), client._sock_recv(100)]
    while len(b"".join(pieces)) < len(data):
        pieces.append(client._sock_recv(7))
    assert b"".join(pieces) == data
    assert [len(p) for p in pieces[:3]] == [1, 1, 100]
    assert counting.recvs == 1
    assert client.buffered == 0


def test_a_short_buffer_gives_a_short_read_then_reads_the_socket_again(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(b"abc")
    client = client_on(ours)
    assert client._sock_recv(1) == b"a"
    assert client.buffered == 2
    assert client._sock_recv(10) == b"bc"  # what is buffered, as a socket would
    with pytest.raises(BlockingIOError):  # nothing more yet: paho's MQTT_ERR_AGAIN
        client._sock_recv(1)
    theirs.sendall(b"de")
    assert client._sock_recv(5) == b"de"


def test_peer_close_reads_empty(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"x")
    theirs.shutdown(socket.SHUT_WR)
    client = client_on(ours)
    assert client._sock_recv(4) == b"x"
    assert client._sock_recv(4) == b""


def test_bytes_of_an_old_socket_are_dropped_after_a_reconnect(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.sendall(b"old bytes")
    client = client_on(ours)
    assert client._sock_recv(3) == b"old"
    assert client.buffered == 6
    fresh, peer = socket.socketpair()
    try:
        fresh.setblocking(False)
        client._sock = fresh
        assert client.buffered == 0
        peer.sendall(b"new")
        assert client._sock_recv(READ_SIZE) == b"new"
    finally:
        fresh.close()
        peer.close()


def test_it_is_a_paho_client() -> None:
    assert issubclass(BufferedClient, mqtt.Client)

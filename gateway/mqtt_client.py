"""A paho client that reads its socket in large pieces instead of a few bytes at a time.

paho-mqtt 2.x reads each packet with at least three ``recv`` calls: one byte for the
packet type, one per byte of the remaining length, then the rest. At ten thousand
messages a second that is thirty thousand system calls, and each one releases the GIL
and must take it back: while the writer thread holds it (building a batch), the event
loop waits for its turn after every one of them. :class:`BufferedClient` reads up to
:data:`READ_SIZE` bytes at once and serves paho's small reads from that buffer, so a
burst of a few hundred messages costs one system call.

The buffer belongs to one socket: after a reconnect, bytes left from the old socket
are dropped (the broker redelivers what was not acknowledged). A caller that waits for
the socket to become readable must first drain :attr:`BufferedClient.buffered`: bytes
already read from the socket no longer wake a selector.

It overrides ``Client._sock_recv``, the one place paho reads the socket (paho's own
error translation for TLS still applies: the buffer is filled through it). The
dependency pin (``paho-mqtt>=2.1,<3``) keeps that method's contract: return up to
``bufsize`` bytes, ``b""`` when the peer closed, raise ``BlockingIOError`` when
nothing is available.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as mqtt

READ_SIZE = 65536  # bytes per system call: about five hundred sensor readings


class BufferedClient(mqtt.Client):
    """paho's client with a read buffer in front of its socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._read_buffer = b""
        self._read_at = 0
        self._read_socket: object | None = None
        super().__init__(*args, **kwargs)

    @property
    def buffered(self) -> int:
        """Bytes read from the current socket and not yet handed to paho."""
        if self._read_socket is not self._sock:
            return 0
        return len(self._read_buffer) - self._read_at

    def _sock_recv(self, bufsize: int) -> bytes:
        if self.buffered == 0:
            data = super()._sock_recv(max(bufsize, READ_SIZE))
            if not data:
                return data  # the peer closed the connection
            self._read_buffer, self._read_at, self._read_socket = data, 0, self._sock
        start = self._read_at
        piece = self._read_buffer[start : start + bufsize]
        self._read_at = start + len(piece)
        return piece

"""An MQTT broker inside this process, for ``anchorgate demo`` where Mosquitto is missing.

The broker is amqtt's (a maintained asyncio MQTT broker on PyPI, the ``demo`` extra),
run in a background thread with its own event loop on a free port of 127.0.0.1, so
the demo's own code stays synchronous. amqtt speaks MQTT 3.1.1 only: its clients use
``[mqtt] protocol = "3.1.1"`` (the gateway) or aiomqtt's default (the simulators,
already 3.1.1). QoS 1 and 2 and ``clean_session=false`` sessions work as MQTT 3.1.1
says; MQTT 5 features (Receive Maximum, Session Expiry, ``$share`` subscriptions) do
not exist here. It is a demo broker, not one to put in front of a real gateway: it
keeps nothing on disk, so a restart loses every session.

Sessions: amqtt's stock anonymous-login plugin marks every client anonymous, and amqtt
then keeps no session for it (no subscriptions or QoS 1 messages kept across a
reconnect). :class:`LocalClients` lets every client on this machine in without that
mark, so the gateway's ``clean_session=false`` session survives its reconnects.

By hand: ``python -m gateway.embedded_broker --port 1883`` runs it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from gateway.mosquitto import BrokerError, free_port

PROTOCOL = "3.1.1"


class LocalClients(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type hints
    """amqtt login plugin: every client may connect, and keeps its session (see above)."""

    async def authenticate(self, *, session: Session) -> bool | None:
        return True


def broker_name() -> str:
    """``amqtt <version>``, as the demo prints it."""
    return f"amqtt {version('amqtt')}"


class EmbeddedBroker:
    """amqtt's broker on 127.0.0.1:``port`` in a background thread; log in ``workdir``."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.log_path = self.workdir / "amqtt.log"
        self.name = broker_name()
        self.protocol = PROTOCOL
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: str | None = None
        self._handler: logging.Handler | None = None
        self._log_state: tuple[int, bool] = (logging.NOTSET, True)

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {f"{__name__}.LocalClients": {}},
        }

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker thread and wait until the broker listens."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        amqtt_log = logging.getLogger("amqtt")
        self._log_state = (amqtt_log.level, amqtt_log.propagate)
        amqtt_log.addHandler(self._handler)
        amqtt_log.setLevel(logging.INFO)
        amqtt_log.propagate = False  # into its log file, not over the demo's live view
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="embedded-mqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise BrokerError(f"the embedded broker did not start within {timeout} s")
        if self._error is not None:
            error = self._error
            self.stop()
            raise BrokerError(f"the embedded broker did not start: {error}")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        broker = Broker(self._config())
        try:
            await broker.start()
        except Exception as exc:  # amqtt wraps bind errors in its own exception types
            self._error = str(exc) or type(exc).__name__
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await broker.shutdown()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down (clients are disconnected) and end its thread."""
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            loop, stop = self._loop, self._stop
            if loop is not None and stop is not None:
                with contextlib.suppress(RuntimeError):  # the loop already closed
                    loop.call_soon_threadsafe(stop.set)
            thread.join(timeout)
        if self._handler is not None:
            amqtt_log = logging.getLogger("amqtt")
            amqtt_log.removeHandler(self._handler)
            amqtt_log.setLevel(self._log_state[0])
            amqtt_log.propagate = self._log_state[1]
            self._handler.close()
            self._handler = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def log(self) -> str:
        """The broker's log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """``python -m gateway.embedded_broker``: the demo's broker, by hand, until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m gateway.embedded_broker")
    parser.add_argument("--port", type=int, default=1883, help="TCP port on 127.0.0.1")
    parser.add_argument("--dir", type=Path, default=Path("broker"), help="where its log goes")
    args = parser.parse_args(argv)
    try:
        with EmbeddedBroker(args.dir, port=args.port) as broker:
            print(
                f"{broker.name} (MQTT {broker.protocol}) on {broker.host}:{broker.port}, "
                f"log {broker.log_path}; Ctrl-C stops it",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    except BrokerError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()

"""Run a local Mosquitto broker as a child process: for the demo, the tests and the benches.

The broker gets its own directory (config file, log, persistence) and a free port on
127.0.0.1. Extra configuration lines (auth, ACL, TLS listeners, queue limits) are
appended as given. :meth:`Mosquitto.restart` starts it again on the same port with the
same persistence file, which is how the tests simulate a broker restart.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

# Settings a broker in front of anchorgate needs for no loss; config/mosquitto.conf
# explains each one.
NO_LOSS_SETTINGS = (
    "max_queued_messages 0",
    "max_queued_bytes 0",
    "max_inflight_messages 0",
)


class BrokerError(RuntimeError):
    """Mosquitto could not be found or did not start; the message says why."""


def find_mosquitto() -> str | None:
    """The path of the mosquitto binary, also where Debian puts it outside PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if Path(candidate).exists():
            return candidate
    return None


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    It is taken below the kernel's ephemeral range: a broker that is restarted on its
    port must find it free, and a port in that range can meanwhile become the source
    port of an outgoing connection (even a client's TCP self-connect to it while the
    broker is down).
    """
    high = max(_ephemeral_low() - 1, 2048)
    for _ in range(200):
        port = random.randint(max(1024, high - 20000), high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BrokerError("no free TCP port below the ephemeral range")


class Mosquitto:
    """One Mosquitto process in ``workdir``, listening on 127.0.0.1:``port``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = True,
        extra_config: Iterable[str] = (),
        listener: bool = True,
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError(
                "mosquitto is not installed: run 'apt-get install mosquitto' "
                "(scripts/check does this when it can)"
            )
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        lines = []
        if listener:
            lines += [f"listener {self.port} {self.host}", "allow_anonymous true"]
        if os.geteuid() == 0:
            # Run as root, mosquitto drops to the "mosquitto" user, which cannot write
            # the log and persistence file in our directory: stay who we are.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        lines += [
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            *NO_LOSS_SETTINGS,
            *extra_config,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self._process is not None and self._process.poll() is None:
            return
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                process, self._process = self._process, None
                stderr = b""
                if process.stderr is not None:
                    stderr = process.stderr.read()
                    process.stderr.close()
                text = stderr.decode(errors="replace").strip()
                raise BrokerError(f"mosquitto exited at start: {text} {self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, which saves its persistence file)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def kill(self) -> None:
        """Stop the broker with SIGKILL, as a power cut would."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self.stop()

    def restart(self) -> None:
        """Stop and start again on the same port with the same persistence file."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        """The broker's log so far (for error messages and for tests)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

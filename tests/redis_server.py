"""A real ``redis-server`` on 127.0.0.1 for tests: started on a free port with no persistence,
killed (SIGKILL), frozen (SIGSTOP), thawed and restarted on the same port by its PID.

Test modules use it with::

    import redis_server
    from redis_server import RedisServer

    redis = redis_server.redis  # the pytest fixture, bound here so pytest finds it
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found is None:
        pytest.fail("redis-server is not installed: apt-get install redis-server (scripts/test.sh)")
    return found


class RedisServer:
    """One ``redis-server`` process we started; every signal goes to its PID only."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="jwt-headers-redis-")
        self._log = os.path.join(self._dir, "redis.log")

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--logfile",
                self._log,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server not answering on {self.port}: {self.log()}")
            time.sleep(0.02)

    def log(self) -> str:
        try:
            with open(self._log, encoding="utf-8", errors="replace") as file:
                return file.read()[-2000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing listens on the port afterwards."""
        if self.process is not None and self.process.poll() is None:
            if self.frozen:
                self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
        self.frozen = False

    frozen = False

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def restart(self) -> None:
        """Start again on the same port (after :meth:`kill`)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=5)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A started redis-server on a free loopback port; killed after the test."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()

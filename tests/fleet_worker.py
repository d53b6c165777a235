"""A fleet of worker processes (tests/test_shared_cache.py, benchmarks/fleet.py).

Run as a script, this module is one worker: the middleware around a tiny app, served over HTTP
on 127.0.0.1:<port given as argv[1]>, with the options read as a JSON object from stdin. Log
records go to stdout, one line each. The app answers ``{"user": REMOTE_USER}``; ``GET /calls``
(exempt in the fleet's config) answers how many times the app ran, so a test can see that a
refusal never reached it. Imported, :class:`Fleet` starts and stops such workers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from jwt_headers import JwtHeadersMiddleware


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class CountingApp:
    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/calls":
            body: dict[str, Any] = {"calls": self.calls}
        else:
            with self._lock:
                self.calls += 1
            body = {"user": environ.get("REMOTE_USER")}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]


ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Fleet:
    """``count`` worker processes, each serving the middleware over HTTP on its own loopback
    port with the same ``options`` (so the same IdP and Redis); stopped by their PIDs."""

    def __init__(self, options: dict[str, Any], count: int, logs: Path) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.logs = [logs / f"worker{i}.log" for i in range(count)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this tree's jwt_headers
        self.processes: list[subprocess.Popen[bytes]] = []
        for port, log in zip(self.ports, self.logs, strict=True):
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), str(port)],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=ROOT,
                )
            self.processes.append(process)
            assert process.stdin is not None
            process.stdin.write(json.dumps(options).encode())
            process.stdin.close()
        try:
            for index in range(count):
                self._wait_listening(index, 20)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, index: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.processes[index].poll() is not None:
                raise RuntimeError(f"worker {index} exited:\n{self.log(index)}")
            try:
                with socket.create_connection(("127.0.0.1", self.ports[index]), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker {index} not listening:\n{self.log(index)}"
                    ) from None
                time.sleep(0.05)

    def log(self, index: int) -> str:
        return self.logs[index].read_text(errors="replace")

    def lines(self, index: int, word: str) -> list[str]:
        return [line for line in self.log(index).splitlines() if word in line]

    def get(self, index: int, token: str | None, path: str = "/") -> tuple[int, Any, float]:
        """(status, JSON body, seconds) of one request to worker ``index``."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.ports[index]}{path}")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        return status, json.loads(body), time.monotonic() - started

    def app_calls(self) -> int:
        return sum(self.get(i, None, "/calls")[1]["calls"] for i in range(len(self.ports)))

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main() -> None:
    port = int(sys.argv[1])
    options = json.loads(sys.stdin.read())
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s"
    )
    middleware = JwtHeadersMiddleware(CountingApp(), **options)
    server = make_server("127.0.0.1", port, middleware, server_class=_Server, handler_class=_Quiet)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()

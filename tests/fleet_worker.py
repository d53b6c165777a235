"""One worker process of a fleet (tests/test_shared_cache.py, benchmarks/fleet.py): the
middleware around a tiny app, served over HTTP on 127.0.0.1:<port given as argv[1]>, with the
options read as a JSON object from stdin. Log records go to stdout, one line each.

The app answers ``{"user": REMOTE_USER}``; ``GET /calls`` (exempt in the fleet's config)
answers how many times the app ran, so a test can see a refusal never reached it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable
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

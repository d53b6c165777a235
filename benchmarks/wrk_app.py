"""The WSGI apps ``wrk.py`` serves with gunicorn: ``bare``, ``app`` (the middleware), ``timed``.

``app`` validates RS256 tokens against the key set at ``$BENCH_JWKS_URI`` with the same options
as ``bench.py``'s cache-hit case; ``wrk.py`` starts that key set on 127.0.0.1 and sets the
variable. Both wrap the same bare app, so the difference in req/s is the middleware's.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared import bare_app, validated_options

from jwt_headers import JwtHeadersMiddleware

bare = bare_app
app = JwtHeadersMiddleware(bare_app, **validated_options(os.environ["BENCH_JWKS_URI"]))


def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``app`` with its own time inside the worker in an ``X-Bench-Us`` response header, so the
    fleet measurement can tell the middleware's cost from the connection's."""
    headers: list[tuple[str, str]] = []
    status: list[str] = []

    def keep(answer: str, answer_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(answer)
        headers.extend(answer_headers)
        return None

    started = time.perf_counter()
    body = app(environ, keep)
    spent = time.perf_counter() - started
    start_response(status[0], [*headers, ("X-Bench-Us", f"{spent * 1e6:.1f}")])
    return body

#!/usr/bin/env bash
# Ready to ship (issue 16, item 5): build the sdist and the wheel from the tracked files, check
# them with twine, install the wheel (not editable) into a fresh venv outside the repo, and run
# `jwt-headers demo` and a WSGI and an ASGI request from there, so the installed wheel, not the
# source tree, is what is imported. Run by scripts/test.sh; about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/jwt-headers-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A copy of the tracked files: building in place would leave build/ and *.egg-info behind.
mkdir "$work/src"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src"
python -m build --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
python -m twine check --strict "$work"/dist/*
ls "$work"/dist/*.tar.gz "$work"/dist/*.whl >/dev/null

python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "$work"/dist/*.whl
cd "$work"   # nothing of the repo on sys.path from here on
"$work/venv/bin/jwt-headers" demo >"$work/demo.log" 2>&1 || { cat "$work/demo.log"; exit 1; }
"$work/venv/bin/python" - "$work/venv" <<'PY'
"""A WSGI and an ASGI request through the installed package."""
import asyncio
import sys
from wsgiref.util import setup_testing_defaults

import jwt_headers
from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.asgi import JwtHeadersASGIMiddleware

assert jwt_headers.__file__.startswith(sys.argv[1]), jwt_headers.__file__
config = JwtHeadersConfig(user_name_header="X-User", allow_anonymous=False)
seen = {}


def wsgi_app(environ, start_response):
    seen["wsgi"] = environ["REMOTE_USER"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def wsgi(headers):
    environ = {"REMOTE_ADDR": "127.0.0.1", **headers}
    setup_testing_defaults(environ)
    answer = {}
    body = JwtHeadersMiddleware(wsgi_app, config)(
        environ, lambda status, headers: answer.update(status=status)
    )
    return answer["status"], b"".join(body)


assert wsgi({"HTTP_X_USER": "alice"}) == ("200 OK", b"ok")
assert seen["wsgi"] == "alice"
assert wsgi({})[0] == "401 Unauthorized"


async def asgi_app(scope, receive, send):
    seen["asgi"] = (scope["user"].display_name, scope["jwt_headers.principal"].name)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def asgi(headers):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": "/", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 5000),
    }
    await JwtHeadersASGIMiddleware(asgi_app, config)(scope, receive, send)
    return sent[0]["status"]


assert asyncio.run(asgi([(b"x-user", b"alice")])) == 200
assert seen["asgi"] == ("alice", "alice")
assert asyncio.run(asgi([])) == 401
print(f"wheel {jwt_headers.__version__}: twine check, demo, WSGI and ASGI from {sys.argv[1]}: ok")
PY

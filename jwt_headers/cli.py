"""The ``jwt-headers`` command: ``demo``, ``devidp``, ``serve``, ``explain`` and ``doctor``.

Each subcommand registers its parser with ``set_defaults(run=...)``; :func:`main` dispatches and
turns a :class:`ConfigError` into its message and exit code 2, because a configuration mistake
is the user's to fix and a traceback would only hide the sentence that says how.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from werkzeug.serving import run_simple

from . import demo, devidp, doctor, explain
from ._version import __version__
from .config import JwtHeadersConfig, is_loopback
from .errors import ConfigError
from .middleware import JwtHeadersMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

#: Exit code for a bad configuration or command line (as argparse uses).
USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwt-headers",
        description="WSGI middleware that authenticates requests from headers (plain, JSON, JWT).",
        epilog="Start with 'jwt-headers demo'. See 'jwt-headers COMMAND --help' for each command.",
    )
    parser.add_argument("--version", action="version", version=f"jwt-headers {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    demo.add_parser(subparsers)
    devidp.add_parser(subparsers)
    add_serve_parser(subparsers)
    explain.add_parser(subparsers)
    doctor.add_parser(subparsers)
    return parser


def add_serve_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run a WSGI app behind the middleware, for trying things out",
        description=(
            "Import MODULE:APP, wrap it in JwtHeadersMiddleware with the options of the "
            "[jwt_headers] table of FILE.toml, and serve it with werkzeug's development server. "
            "This is for trying a configuration out; in production run the app under gunicorn "
            "(or mod_wsgi) with the middleware in its code: see the README, 'Quick start' and "
            "'Demo and serve'."
        ),
    )
    parser.add_argument("app", metavar="MODULE:APP", help="e.g. myapp:app (imported from here)")
    parser.add_argument("--config", required=True, metavar="FILE.toml", help="the options")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=devidp.port_number, default=8000, help="port (default 8000)")
    parser.set_defaults(run=serve)


def load_app(spec: str) -> WSGIApplication:
    """The object named by ``MODULE:APP``, imported with the current directory on the path."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{spec!r}: name the app as MODULE:APP, e.g. myapp:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as 'python -m' and gunicorn do
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a missing import inside the app: its traceback is the useful part
        raise ConfigError(f"{spec!r}: no module {module_name!r} here or on sys.path") from None
    app = getattr(module, attribute, None)
    if not callable(app):
        raise ConfigError(f"{spec!r}: module {module_name!r} has no WSGI callable {attribute!r}")
    wsgi_app: WSGIApplication = app
    return wsgi_app


def serve(args: argparse.Namespace) -> int:
    """``jwt-headers serve``: config first (fails fast), then the app, then werkzeug."""
    config = JwtHeadersConfig.from_file(args.config)
    app = JwtHeadersMiddleware(load_app(args.app), config)
    if not is_loopback(args.host):
        print(
            f"jwt-headers serve: listening on {args.host}, not only this machine; this server "
            "is for trying things out, use gunicorn in production",
            file=sys.stderr,
        )
    run_simple(args.host, args.port, app, use_reloader=False, threaded=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] | None = getattr(args, "run", None)
    if command is None:
        parser.print_help()
        return 0
    try:
        return command(args)
    except ConfigError as exc:
        print(f"jwt-headers: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    raise SystemExit(main())

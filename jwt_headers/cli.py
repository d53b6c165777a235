"""The ``jwt-headers`` command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jwt-headers",
        description="WSGI middleware that authenticates requests from headers (plain, JSON, JWT).",
    )
    parser.add_argument("--version", action="version", version=f"jwt-headers {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    build_parser().parse_args(argv)
    return 0

"""Outbound HTTP for the key set and userinfo: short, capped, never redirected.

Every call has explicit connect and read timeouts plus a total deadline (a server that drips one
byte per second cannot hold a request longer than the configured time), a response size cap,
no redirects (a redirect is a failed call: R27, R31) and no proxy or CA settings taken from the
environment (outbound calls go exactly where the config says): ``http_ca_bundle`` replaces the
CA certificates HTTPS answers are checked against, ``http_proxy`` sends every call through one
forward proxy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests
import urllib3


class FetchFailed(Exception):
    """The call could not be made or gave no usable answer; ``reason`` is a log-safe code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HttpSettings:
    connect_timeout: float
    read_timeout: float
    max_bytes: int
    #: A PEM file of the CA certificates that HTTPS servers' certificates must chain to (an
    #: internal CA), instead of the bundled public ones.
    ca_bundle: str | None = None
    #: The forward proxy every call goes through (``http://proxy:3128``).
    proxy: str | None = None


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    body: bytes
    #: The response's ``Cache-Control`` header, if any (the key set honours its max-age).
    cache_control: str | None = None


def new_session(settings: HttpSettings | None = None) -> requests.Session:
    """The one session of a middleware's outbound calls (key set, userinfo, discovery)."""
    session = requests.Session()
    # No HTTP(S)_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE or .netrc surprises: go where configured.
    session.trust_env = False
    if settings is not None and settings.ca_bundle is not None:
        session.verify = settings.ca_bundle
    if settings is not None and settings.proxy is not None:
        session.proxies = {"http": settings.proxy, "https": settings.proxy}
    return session


def get(
    session: requests.Session,
    url: str,
    settings: HttpSettings,
    headers: dict[str, str] | None = None,
) -> HttpAnswer:
    """GET ``url``; raise :class:`FetchFailed` on network trouble or an oversized body."""
    deadline = time.monotonic() + settings.connect_timeout + settings.read_timeout
    try:
        response = session.get(
            url,
            headers=headers,
            timeout=(settings.connect_timeout, settings.read_timeout),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout:
        raise FetchFailed("timeout") from None
    except requests.RequestException:
        raise FetchFailed("connection_error") from None
    with response:
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if time.monotonic() > deadline:
                    raise FetchFailed("timeout")  # a server dripping bytes cannot hold us longer
                # read1 returns what has arrived (waiting at most the read timeout for it), so
                # the deadline is checked between small reads, not after 64 KiB or the end.
                chunk = response.raw.read1(65536, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > settings.max_bytes:
                    raise FetchFailed("response_too_large")
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            timed_out = isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError)
            raise FetchFailed("timeout" if timed_out else "connection_error") from None
        return HttpAnswer(
            response.status_code, b"".join(chunks), response.headers.get("Cache-Control")
        )

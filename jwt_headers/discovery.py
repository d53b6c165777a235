"""OIDC discovery: the key set and userinfo URLs from the configured issuer's metadata.

With ``discovery=True`` and ``issuer="https://idp/realms/x"`` the provider's document at
``https://idp/realms/x/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0 section 4)
gives ``jwks_uri`` and ``userinfo_endpoint``; options set explicitly win. The document must name
exactly the configured issuer (section 4.3), so a document served for another issuer, or a
redirect to one, is never used. Only the configured issuer is ever asked: nothing in a token
leads to a discovery request (R33).

The document is read at start-up and again whenever the key set is refetched (its TTL, an
unknown ``kid``), so a provider that moves its keys is followed. While none was ever read the
caller answers 503; a failed re-read keeps the last good document.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from . import http
from .metrics import Metrics

logger = logging.getLogger("jwt_headers")

WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass(frozen=True)
class Endpoints:
    """What the provider's document says (``None``: it does not say)."""

    jwks_uri: str | None
    userinfo_endpoint: str | None


def _url(document: dict[str, object], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise http.FetchFailed(f"{name}_not_a_string")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise http.FetchFailed(f"{name}_not_an_http_url")
    return value


class DiscoveryClient:
    """Reads one issuer's discovery document; thread-safe, one read at a time."""

    def __init__(
        self,
        issuer: str,
        *,
        http_settings: http.HttpSettings,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.issuer = issuer
        self.url = issuer.rstrip("/") + WELL_KNOWN
        self._http = http_settings
        self._session = session or http.new_session()
        self._metrics = metrics
        self._lock = threading.Lock()
        self._endpoints: Endpoints | None = None
        self.fetches = 0

    def endpoints(self, *, refresh: bool = False) -> Endpoints:
        """The provider's endpoints: read now when ``refresh`` or never read; a failed re-read
        keeps the last good ones. Raises :class:`http.FetchFailed` when none was ever read."""
        known = self._endpoints
        if known is not None and not refresh:
            return known
        with self._lock:
            if self._endpoints is not None and self._endpoints is not known:
                return self._endpoints  # another thread read it while we waited
            try:
                self._endpoints = self._fetch()
            except http.FetchFailed as failure:
                logger.warning(
                    "discovery_failed reason=%s url=%s: %s",
                    failure.reason,
                    self.url,
                    "keeping the last good document"
                    if self._endpoints
                    else "no document yet (requests get 503)",
                )
                if self._endpoints is None:
                    raise
            return self._endpoints

    def _fetch(self) -> Endpoints:
        self.fetches += 1
        started = time.monotonic()
        ok = False
        try:
            answer = http.get(self._session, self.url, self._http)
            if answer.status != 200:
                raise http.FetchFailed(f"status_{answer.status}")
            try:
                document = json.loads(answer.body)
            except (ValueError, RecursionError):
                raise http.FetchFailed("not_json") from None
            if not isinstance(document, dict):
                raise http.FetchFailed("not_an_object")
            if document.get("issuer") != self.issuer:
                raise http.FetchFailed("issuer_mismatch")  # OIDC Discovery 4.3: exactly ours
            endpoints = Endpoints(_url(document, "jwks_uri"), _url(document, "userinfo_endpoint"))
            ok = True
            logger.info("discovery_loaded issuer=%s", self.issuer)
            return endpoints
        finally:
            if self._metrics is not None:
                self._metrics.idp_call("discovery", ok, time.monotonic() - started)

"""Finding a configured header in the WSGI environ, and deciding whether to believe it.

A header can reach us two ways (see deployment-facts.md):

1. as a plain environ key of the configured name, e.g. ``environ["OIDC_id_token_payload"]``:
   Apache's mod_wsgi / mod_proxy_uwsgi put mod_auth_openidc's values there. Only the server can
   set such a key, so it is believed whatever the peer address. CGI keys (``CONTENT_TYPE``,
   ``REMOTE_USER``...), ``HTTP_*`` keys and ``wsgi.*`` keys are never read this way: a client
   controls some of them, and none of them is an identity header;
2. as the ``HTTP_`` key (name upper-cased, ``-`` and ``_`` alike, as every WSGI server presents
   it): a request header. Unless it proves itself (a signature-checked JWT), any client could
   have sent it, so it is believed only from a peer in ``trusted_proxies`` (R16); from any other
   peer it is dropped as if absent.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from .logtools import safe

logger = logging.getLogger("jwt_headers")

#: PEP 3333 / RFC 3875 keys and the server variables Apache adds: never identity headers.
CGI_KEYS = frozenset(
    {
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "GATEWAY_INTERFACE",
        "PATH_INFO",
        "PATH_TRANSLATED",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_IDENT",
        "REMOTE_USER",
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "REQUEST_URI",
        "SCRIPT_FILENAME",
        "DOCUMENT_ROOT",
        "HTTPS",
        "REMOTE_PORT",
    }
)


def http_key(name: str) -> str:
    """The environ key a WSGI server uses for request header ``name``."""
    return "HTTP_" + name.upper().replace("-", "_")


def plain_key(name: str) -> str | None:
    """The server-set environ key for ``name``, or ``None`` when such a key must not be read."""
    upper = name.upper().replace("-", "_")
    if upper in CGI_KEYS or upper.startswith("HTTP_") or name.lower().startswith("wsgi."):
        return None
    return name


class HeaderSource:
    """One configured header: where to look for it and whether it proves itself."""

    __slots__ = ("http_key", "name", "plain_key", "self_verifying")

    def __init__(self, name: str, self_verifying: bool) -> None:
        self.name = name
        self.plain_key = plain_key(name)
        self.http_key = http_key(name)
        self.self_verifying = self_verifying


class PeerTrust:
    """Whether ``REMOTE_ADDR`` is one of ``trusted_proxies``, memoised per address.

    Parsing an address costs microseconds and the same few proxies ask on every request, so the
    answers are kept in a bounded LRU.
    """

    def __init__(self, networks: tuple[Any, ...], trust_every_peer: bool) -> None:
        self._networks = networks
        self._all = trust_every_peer
        self._cached: Callable[[str], bool] = lru_cache(maxsize=1024)(self._compute)

    def is_trusted(self, peer: object) -> bool:
        """Only strings reach the LRU: a list or dict ``REMOTE_ADDR`` (a broken server or a
        hostile test harness) is unhashable and simply not a trusted address."""
        if not isinstance(peer, str):
            return self._all
        return self._cached(peer)

    def _compute(self, peer: str) -> bool:
        if self._all:
            return True
        try:
            address = ipaddress.ip_address(peer.strip().split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)


def read_header(
    source: HeaderSource,
    environ: Mapping[str, Any],
    trust: PeerTrust,
    dropped: list[str],
) -> str | None:
    """The header's value, or ``None`` when absent, empty or not believed.

    An unbelieved header's environ key is appended to ``dropped`` so the adapter can remove it
    before the app sees it.
    """
    if source.plain_key is not None:
        value = environ.get(source.plain_key)
        if isinstance(value, str) and value.strip():
            # The server's value wins; a same-named request header from an untrusted peer
            # must still not reach the app, which may read it itself.
            if (
                source.http_key in environ
                and not source.self_verifying
                and not trust.is_trusted(environ.get("REMOTE_ADDR"))
            ):
                dropped.append(source.http_key)
            return value
    value = environ.get(source.http_key)
    if value is None:
        return None
    if source.self_verifying or trust.is_trusted(environ.get("REMOTE_ADDR")):
        return value if isinstance(value, str) and value.strip() else None
    dropped.append(source.http_key)  # even blank: the app must not see it from this peer
    if not isinstance(value, str) or not value.strip():
        return None
    logger.warning(
        "untrusted_source_header header=%s peer=%s: ignored; the peer is not in trusted_proxies",
        source.name,
        safe(environ.get("REMOTE_ADDR")),
    )
    return None


def peek_header(source: HeaderSource, environ: Mapping[str, Any], trust: PeerTrust) -> str | None:
    """The value :func:`read_header` would return, without logging or dropping anything.

    For a question asked before the request is answered ("can the caches answer this without
    I/O?"): the answer itself still comes from :func:`read_header`, so its warnings and drops
    happen once.
    """
    if source.plain_key is not None:
        value = environ.get(source.plain_key)
        if isinstance(value, str) and value.strip():
            return value
    value = environ.get(source.http_key)
    if not isinstance(value, str) or not value.strip():
        return None
    believed = source.self_verifying or trust.is_trusted(environ.get("REMOTE_ADDR"))
    return value if believed else None

"""The deployment doctor: the traps that cost people days, named with their exact fix.

Two halves. :func:`static_findings` reads a config alone: a header name with ``_`` that common
servers drop, a signature check without an issuer, unproven headers believed from wide networks,
plain-http identity-provider URLs, anonymous access with no protected path, and options that have
no effect (an ``issuer`` while ``validate_token`` is off lets a forged token through with nothing
logged). ``jwt-headers doctor --config FILE`` prints them; the middleware logs each once at
start-up, at WARNING, which Python shows even with no logging configured.

:class:`RequestWatch` looks at the first requests of a running app for what only they can show:
the configured header never arriving where the server drops ``_`` names, or arriving under another
spelling, arriving as a request header where Apache's plain environ key would be safer, no peer
ever inside ``trusted_proxies``, or two jwt-headers middlewares stacked. Each is logged once; after
:data:`WATCHED_REQUESTS` requests the watch ends and costs nothing more.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlsplit

from .config import JwtHeadersConfig, is_loopback, printable
from .sources import PeerTrust, http_key, plain_key

logger = logging.getLogger("jwt_headers")

#: Servers that silently drop request headers whose names contain ``_``.
DROPPING_SERVERS = ("gunicorn", "waitress", "werkzeug", "wsgiserver")
#: How many requests :class:`RequestWatch` looks at before it stops.
WATCHED_REQUESTS = 100

_DEFAULTS = JwtHeadersConfig.option_defaults()


@dataclass(frozen=True)
class Finding:
    """One trap: a stable ``code``, what is wrong, and the fix."""

    code: str
    message: str
    fix: str
    #: Already logged by the config itself when it was built (not logged twice at start-up).
    logged_by_config: bool = False

    def __str__(self) -> str:
        return f"{self.code}: {self.message} Fix: {self.fix}"


def _set(config: JwtHeadersConfig, name: str) -> bool:
    return bool(getattr(config, name) != _DEFAULTS[name])


def _prefix(config: JwtHeadersConfig, index: int, several: bool) -> str:
    return f"sources[{index}] ({config.user_name_header}): " if several else ""


def _headers(source: JwtHeadersConfig) -> list[tuple[str, str, bool]]:
    """(option, header name, proves itself) for the headers one source reads."""
    found = [("user_name_header", source.user_name_header, source.user_header_self_verifying)]
    if source.roles_source is not None and not source.roles_share_user_header:
        found.append(
            ("roles_header", source.roles_header_name or "", source.roles_header_self_verifying)
        )
    return found


def static_findings(config: JwtHeadersConfig) -> list[Finding]:
    """Every trap the config shows by itself, in a stable order."""
    findings: list[Finding] = []
    several = len(config.source_configs) > 1
    unproven: list[str] = []
    for index, source in enumerate(config.source_configs):
        where = _prefix(source, index, several)
        for option, name, proves in _headers(source):
            if not proves:
                unproven.append(name)
            if "_" in name:
                dashed = name.replace("_", "-")
                findings.append(
                    Finding(
                        "underscore_header",
                        f"{where}{option}={name!r} has '_': gunicorn >= 22, waitress, werkzeug "
                        "and Django's runserver drop such request headers, so it never arrives "
                        "as a request header.",
                        f"have the proxy send it as {dashed!r} (Apache: RequestHeader set "
                        f'{dashed} "%{{{name}}}e") - jwt-headers matches it, "-" and "_" are '
                        "alike - or run under mod_wsgi, which passes it as a plain environ key.",
                    )
                )
        # With providers, each provider's checks are judged as a source's would be.
        for provider in source.provider_configs or (source,):
            label = where
            if provider is not source and provider.issuer:
                label = f"{where}providers ({provider.issuer[0]}): "
            findings.extend(_validation_findings(provider, label))
        findings.extend(_no_effect_findings(source, where))
    if not any(source.validate_token for source in config.source_configs):
        for option in ("http_ca_bundle", "http_proxy"):  # request-wide: one finding, no prefix
            if _set(config, option):
                findings.append(
                    _no_effect(
                        "",
                        option,
                        "validate_token is off, so no call to the identity provider is made",
                        "set validate_token=true to check tokens, or remove the option.",
                    )
                )
    wide = ["*"] if config.trust_every_peer else []
    wide += [str(network) for network in config.trusted_networks if not network.is_loopback]
    if wide and unproven:
        findings.append(
            Finding(
                "wide_trusted_proxies",
                f"trusted_proxies={list(config.trusted_proxies)!r} reaches beyond this host "
                f"({', '.join(wide)}), and {', '.join(sorted(set(unproven)))} proves nothing by "
                "itself: any client that can connect from there chooses its user.",
                "list only the proxy's own address(es), and make sure nothing else can reach "
                "the app's port (bind it to the proxy's network, or firewall it).",
                logged_by_config=config.trust_every_peer,
            )
        )
    if config.cache_url is not None and not any(
        source.validate_token and source.validate_userinfo for source in config.source_configs
    ):
        findings.append(
            Finding(
                "cache_url_unused",
                f"cache_url={printable('cache_url', config.cache_url)!r} is set but no source "
                "validates userinfo: only userinfo outcomes are shared, so Redis is never used.",
                "leave cache_url out, or turn validate_userinfo on where the provider's check "
                "is wanted.",
            )
        )
    if config.allow_anonymous and (
        config.path_rules is None or not config.path_rules.has_protected
    ):
        findings.append(
            Finding(
                "anonymous_everywhere",
                "allow_anonymous is on and no protected_paths are set: a request without "
                "credentials reaches every path of the app, which must check REMOTE_USER itself.",
                "set protected_paths (e.g. ['/admin', '/api']) for what must never be anonymous, "
                "or allow_anonymous=false and exempt_paths for what may be.",
            )
        )
    return findings


def _validation_findings(source: JwtHeadersConfig, where: str) -> list[Finding]:
    findings: list[Finding] = []
    if not source.validate_token:
        return findings
    if source.validate_signature and not source.validate_issuer:
        findings.append(
            Finding(
                "signature_without_issuer",
                f"{where}the signature is checked but not the issuer: any token the provider "
                "signs is accepted, other realms' and tenants' included.",
                "set validate_issuer=true and issuer=<the exact 'iss' of your tokens>.",
                logged_by_config=True,
            )
        )
    for option in ("jwks_uri", "userinfo_endpoint"):
        url = getattr(source, option)
        if not isinstance(url, str):
            continue
        enabled = source.validate_signature if option == "jwks_uri" else source.validate_userinfo
        parts = urlsplit(url)
        if enabled and parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            findings.append(
                Finding(
                    "plain_http_idp",
                    f"{where}{option}={printable(option, url)!r} is plain http: keys and tokens "
                    "can be read or changed on the way.",
                    f"use the https URL of the {option.replace('_', ' ')}.",
                    logged_by_config=True,
                )
            )
    return findings


def _no_effect(where: str, option: str, why: str, fix: str) -> Finding:
    return Finding("no_effect", f"{where}{option} is set but has no effect: {why}.", fix)


def _no_effect_findings(source: JwtHeadersConfig, where: str) -> list[Finding]:
    findings: list[Finding] = []
    if not source.validate_token:
        for option in (
            "jwks_uri",
            "issuer",
            "audience",
            "userinfo_endpoint",
            "validate_issuer",
            "validate_audience",
            "validate_userinfo",
            "discovery",
        ):
            if _set(source, option):
                findings.append(
                    _no_effect(
                        where,
                        option,
                        "validate_token is off, so no token is checked (a forged token with "
                        "any iss and aud is believed from trusted_proxies, and nothing is logged)",
                        "set validate_token=true to check tokens, or remove the option.",
                    )
                )
        return findings + _format_findings(source, where)
    pairs = (
        ("audience", "validate_audience"),
        ("issuer", "validate_issuer"),
        ("userinfo_endpoint", "validate_userinfo"),
        ("jwks_uri", "validate_signature"),
    )
    for option, switch in pairs:
        if _set(source, option) and not getattr(source, switch):
            findings.append(
                _no_effect(
                    where,
                    option,
                    f"{switch} is off",
                    f"set {switch}=true to use it, or remove {option}.",
                )
            )
    return findings + _format_findings(source, where)


def _format_findings(source: JwtHeadersConfig, where: str) -> list[Finding]:
    findings: list[Finding] = []
    if source.user_name_format == "string" and _set(source, "user_name_json_path"):
        findings.append(
            _no_effect(
                where,
                "user_name_json_path",
                "user_name_format is 'string', which takes the whole value",
                "set user_name_format='json' or 'jwt' to use the path, or remove it.",
            )
        )
    if source.roles_source is None:
        for option in (
            "roles_header",
            "roles_json_path",
            "role_converter",
            "only_external_listed_roles",
        ):
            if _set(source, option):
                findings.append(
                    _no_effect(
                        where,
                        option,
                        "roles_source is not set, so no roles are read",
                        "set roles_source ('header', 'json' or 'jwt'), or remove the option.",
                    )
                )
    return findings


def log_static_findings(config: JwtHeadersConfig) -> None:
    """At start-up: each finding once, at WARNING, unless the config already said it."""
    for finding in static_findings(config):
        if not finding.logged_by_config:
            logger.warning("doctor %s", finding)


# ---------------------------------------------------------------------------- run time
class RequestWatch:
    """Looks at the first :data:`WATCHED_REQUESTS` requests for traps only traffic shows.

    Cheap: a counter per request while it watches; the adapter drops it when :meth:`observe`
    returns False.
    """

    def __init__(self, config: JwtHeadersConfig, marker: str, identity: object = None) -> None:
        self._config = config
        self._trust = PeerTrust(config.trusted_networks, config.trust_every_peer)
        self._marker = marker
        #: What the watching middleware itself puts under ``marker``: a server (or a test)
        #: that hands the same environ dict over again is not a second middleware.
        self._identity = identity
        self._lock = threading.Lock()
        self._seen = 0
        self._said: set[str] = set()
        self._arrived: set[str] = set()
        self._trusted_peer = False
        self._server = ""
        self._names = [
            (option, name, proves)
            for source in config.source_configs
            for option, name, proves in _headers(source)
        ]

    def observe(self, environ: Mapping[str, Any]) -> bool:
        """Note one request; False once the watch is over (the caller stops calling)."""
        with self._lock:
            self._seen += 1
            seen = self._seen
        marker = environ.get(self._marker)
        if marker is not None and marker != self._identity:
            self._say(
                "stacked_middlewares",
                "two jwt-headers middlewares are stacked: the inner one removes the outer "
                "one's principal and decides again. Use one middleware with sources=[...] "
                "for several identity headers.",
            )
        self._server = str(environ.get("SERVER_SOFTWARE") or self._server)
        peer = environ.get("REMOTE_ADDR")
        if not self._trusted_peer and self._trust.is_trusted(peer):
            self._trusted_peer = True
        for option, name, _proves in self._names:
            plain = plain_key(name)
            http = http_key(name)
            if plain is not None and plain in environ:
                self._arrived.add(name)
            elif http in environ:
                self._arrived.add(name)
                if "_" in name and self._behind_apache(environ):
                    self._say(
                        f"http_not_plain:{name}",
                        f"{option}={name!r} arrives as the request header {http}; under mod_wsgi "
                        f"Apache can pass it as the plain environ key {name!r}, which no client "
                        "can forge (see 'How a header is found' in the README).",
                    )
            else:
                self._look_for_other_spelling(option, name, environ)
        if seen >= WATCHED_REQUESTS:
            self._finish()
            return False
        return True

    @staticmethod
    def _behind_apache(environ: Mapping[str, Any]) -> bool:
        return (
            "mod_wsgi.version" in environ
            or "apache" in str(environ.get("SERVER_SOFTWARE", "")).lower()
        )

    def _look_for_other_spelling(self, option: str, name: str, environ: Mapping[str, Any]) -> None:
        wanted = name.upper().replace("-", "_").replace("_", "")
        for key in environ:
            if not isinstance(key, str) or not key.startswith("HTTP_"):
                continue
            if key[5:].replace("_", "") == wanted and key != http_key(name):
                self._say(
                    f"other_spelling:{name}",
                    f"{option}={name!r} never arrives, but {key} does: check the spelling.",
                )

    def _finish(self) -> None:
        server = self._server.lower()
        for option, name, _proves in self._names:
            if name in self._arrived:
                continue
            if "_" in name and any(s in server for s in DROPPING_SERVERS):
                self._say(
                    f"dropped:{name}",
                    f"{option}={name!r} never arrived in {WATCHED_REQUESTS} requests, and "
                    f"this server ({self._server}) drops request headers whose names contain "
                    f"'_'. Have the proxy send it as {name.replace('_', '-')!r}.",
                )
        unproven = [name for _option, name, proves in self._names if not proves]
        if unproven and not self._trusted_peer:
            self._say(
                "no_trusted_peer",
                f"no request in the first {WATCHED_REQUESTS} came from trusted_proxies "
                f"({', '.join(self._config.trusted_proxies)}), so {', '.join(unproven)} was "
                "never believed. Put the proxy's address (as REMOTE_ADDR shows it) in "
                "trusted_proxies.",
            )

    def _say(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._said:
                return
            self._said.add(key)
        logger.warning("doctor %s: %s", key.split(":", 1)[0], message)


# ---------------------------------------------------------------------------- the command
def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check a configuration for deployment traps",
        description=(
            "Check a configuration, without starting anything, for the deployment traps that "
            "cost people days: header names servers drop, unchecked options, trust wider than "
            "the proxy. Each finding names its fix. Exit 1 when something is found."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="FILE.toml", help="options from a [jwt_headers] table")
    source.add_argument(
        "--env", action="store_true", help="options from JWT_HEADERS_* environment variables"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``jwt-headers doctor``: print each finding; 0 when there is none, 1 otherwise."""
    stream = out if out is not None else sys.stdout
    logger.disabled = True  # the report says it all; the config's own warnings would repeat it
    try:
        config = (
            JwtHeadersConfig.from_file(args.config) if args.config else JwtHeadersConfig.from_env()
        )
    finally:
        logger.disabled = False
    findings = static_findings(config)
    if not findings:
        print("no trap found", file=stream)
        return 0
    for finding in findings:
        print(f"{finding.code}: {finding.message}\n    fix: {finding.fix}", file=stream)
    return 1

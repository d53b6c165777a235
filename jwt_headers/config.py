"""Configuration: every decision that does not depend on the request, made once.

:class:`JwtHeadersConfig` checks every option when it is built and raises :class:`ConfigError`
naming the option, the bad value and the fix, so a broken deployment fails at start-up rather
than on the first request. It also holds what the request path needs ready-made: compiled JSON
paths, the parsed role map, the trusted networks, the normalised denied names. Nothing is parsed
per request.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import logging
import math
import os
import re
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from cryptography import x509

from .decode import HEADER_ENCODINGS, media_type
from .errors import ConfigError
from .metrics import Metrics
from .metrics import resolve as resolve_metrics
from .paths import JsonPath, compile_path
from .rolemap import parse_role_map
from .rules import PathRules

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

logger = logging.getLogger("jwt_headers")

FORMATS = ("string", "json", "jwt")
ROLE_SOURCES = ("header", "json", "jwt")
DEFAULT_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "EdDSA",
)
#: Asymmetric algorithms PyJWT can verify with a key from a JWKS. HMAC and ``none`` never are.
SUPPORTED_ALGORITHMS = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES256K",
        "ES384",
        "ES512",
        "EdDSA",
    }
)
_TOKEN_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 7230 tchar: a header name
_IGNORED_IN_NAMES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})

_NetworkT = ipaddress.IPv4Network | ipaddress.IPv6Network
_ENCODING_ALIASES = {"utf-8": "utf8", "latin-1": "latin1", "iso-8859-1": "latin1"}


def normalize_user_name(name: str) -> str:
    """The form compared with ``denied_user_names``: NFKC, no white space, control or format
    characters, case-folded, so fullwidth ``root``, ``r\\u00adoot`` and ``' Admin'`` all match."""
    folded = unicodedata.normalize("NFKC", name)
    kept = "".join(
        ch
        for ch in folded
        if not ch.isspace() and unicodedata.category(ch) not in _IGNORED_IN_NAMES
    )
    return kept.casefold()


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _check_url(option: str, value: object, *, allow_file: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{option} is required: give the http(s) URL, e.g. https://idp/certs")
    try:
        parts = urlsplit(value.strip())
        hostname = parts.hostname
        if hostname and "[" in parts.netloc:
            # Python >= 3.11 refuses a bracketed host that is not an IPv6 address; 3.10 takes
            # "[not-an-ip]" as a host name.
            ipaddress.IPv6Address(hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket: "https://[::1/jwks"
        hostname = None
    if allow_file and value.strip()[:5].lower() == "file:":
        return _check_file_url(option, value.strip())
    if not hostname or parts.scheme not in ("http", "https"):
        raise ConfigError(
            f"{option}={_without_credentials(value.strip())!r} is not an http(s) URL with a "
            "host; write e.g. "
            "'https://idp.example/realms/r/protocol/openid-connect/certs'"
            + (
                " (or a local key-set file: 'file:///etc/jwt-headers/jwks.json')"
                if allow_file
                else ""
            )
        )
    url = value.strip()
    if parts.scheme == "http" and not is_loopback(hostname):
        logger.warning(
            "%s uses plain http to %s: keys and tokens can be read or changed on the way; use "
            "https",
            option,
            hostname,
        )
    return url


def _check_file_url(option: str, url: str) -> str:
    """A ``file:`` key set (an internal signer's keys on this machine): an absolute path on
    this host, ``file:///etc/...`` or ``file://localhost/etc/...``. Another host would be a
    network share the middleware cannot vouch for; a relative path depends on the working
    directory."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.netloc.lower() not in ("", "localhost")
        or not parts.path.startswith("/")
        or "\x00" in unquote(parts.path)
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(
            f"{option}={_without_credentials(url)!r} is not a local file URL; write the "
            "absolute path of the key-set file as 'file:///etc/jwt-headers/jwks.json' (no host "
            "but localhost, no query), or give the provider's http(s) URL"
        )
    return url


def file_url_path(url: str) -> str | None:
    """The local path of a ``file:`` URL the config accepted, ``None`` for any other URL."""
    if url[:5].lower() != "file:":
        return None
    return unquote(urlsplit(url).path)


def _check_ca_bundle(value: str) -> str:
    """The path of a readable PEM file holding at least one certificate: requests would take
    anything and fail every HTTPS call later (or, for a missing file, raise per request)."""
    path = value.strip()
    fix = (
        "give the path of a PEM file of the CA certificates that sign your identity provider's "
        "certificate, e.g. '/etc/ssl/certs/internal-ca.pem'"
    )
    try:
        data = Path(path).read_bytes() if path else b""
    except OSError as exc:
        raise ConfigError(
            f"http_ca_bundle={value!r} cannot be read ({exc.strerror or exc}); {fix}"
        ) from None
    try:
        found = x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else []
    except ValueError:
        found = []
    if not found:
        raise ConfigError(
            f"http_ca_bundle={value!r} holds no PEM certificate (a '-----BEGIN CERTIFICATE-----' "
            f"block) or a malformed one; {fix}"
        )
    return path


def _check_proxy(value: str) -> str:
    """An http(s) forward proxy with a host; credentials in it are proxy credentials, never
    printed (R35)."""
    url = value.strip()
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        hostname = None
    if not hostname or parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
        raise ConfigError(
            f"http_proxy={_without_credentials(url)!r} is not an http(s) proxy URL; write "
            "e.g. 'http://proxy.internal:3128' (credentials, if any, as "
            "'http://user:password@proxy.internal:3128')"
        )
    return url


def _without_credentials(url: str) -> str:
    """The URL for a message or a ``repr``, with anything before an ``@`` (``user:password@``,
    also in mistyped URLs such as ``https:/user:pw@host``) replaced: config errors go to logs and
    terminals, and a secret must not (R35)."""
    if "@" in url:
        head, _, host = url.rpartition("@")
        scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/{0,2}", head)
        url = f"{scheme.group(0) if scheme else ''}***@{host}"
    return url[:200]


#: The options that describe one identity source; the rest apply to the whole request.
SOURCE_OPTIONS = frozenset(
    {
        "user_name_header",
        "user_name_format",
        "user_name_json_path",
        "header_encoding",
        "roles_source",
        "roles_header",
        "roles_header_delimiter",
        "roles_json_path",
        "role_converter",
        "only_external_listed_roles",
        "trust_unvalidated_roles_header",
        "validate_token",
        "validate_expiry",
        "validate_signature",
        "jwks_uri",
        "validate_userinfo",
        "userinfo_endpoint",
        "validate_subject",
        "validate_audience",
        "audience_claim",
        "audience",
        "validate_issuer",
        "issuer",
        "discovery",
        "providers",
        "algorithms",
        "token_types",
        "leeway",
    }
)

#: The options one entry of ``providers`` may set: what differs between identity providers.
PROVIDER_OPTIONS = frozenset(
    {
        "issuer",
        "jwks_uri",
        "discovery",
        "userinfo_endpoint",
        "audience",
        "audience_claim",
        "algorithms",
        "token_types",
    }
)
#: Options that name one provider: with ``providers`` they go in each entry, never beside it.
_PROVIDER_ONLY = ("issuer", "jwks_uri", "discovery", "userinfo_endpoint")

#: Options holding a URL: shown through :func:`_without_credentials` wherever they are printed.
URL_OPTIONS = frozenset({"jwks_uri", "userinfo_endpoint", "http_proxy", "cache_url"})


def printable(option: str, value: Any) -> Any:
    """An option's value fit to print (``repr``, ``explain``): URLs without credentials."""
    if option in URL_OPTIONS and isinstance(value, str):
        return _without_credentials(value)
    if (
        option in ("sources", "providers")
        and isinstance(value, Sequence)
        and not isinstance(value, str)
    ):
        return [
            {str(k): printable(str(k), v) for k, v in entry.items()}
            if isinstance(entry, Mapping)
            else entry
            for entry in value
        ]
    return value


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: plain http there never leaves the box."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


#: ``JWT_HEADERS_<NAME>`` variables that a Django ``settings.py`` may read for
#: ``jwt_headers.django`` (its settings, not middleware options): ``from_env`` leaves them, and
#: every ``JWT_HEADERS_DJANGO_*``, alone instead of refusing them, so one environment feeds both.
DJANGO_SETTING_NAMES = frozenset(
    {"CREATE_UNKNOWN_USER", "SYNC_GROUPS", "STAFF_ROLES", "SUPERUSER_ROLES"}
)


def _is_django_setting(name: str) -> bool:
    upper = name.upper()
    return upper in DJANGO_SETTING_NAMES or upper.startswith("DJANGO_")


@dataclass(frozen=True, init=False, repr=False, eq=False)
class JwtHeadersConfig:
    """All options of the middleware (see the README's table for each one).

    Build it with keywords, :meth:`from_mapping`, :meth:`from_env` or :meth:`from_file`; it is
    immutable and checked completely when built.
    """

    # --- user name
    user_name_header: str = ""
    user_name_format: str = "string"
    user_name_json_path: str | None = None
    header_encoding: str = "auto"
    # --- roles
    roles_source: str | None = None
    roles_header: str | None = None
    roles_header_delimiter: str = ","
    roles_json_path: str | None = None
    role_converter: str = ""
    only_external_listed_roles: bool = False
    trust_unvalidated_roles_header: bool = False
    # --- token validation
    validate_token: bool = False
    validate_expiry: bool = True
    validate_signature: bool = True
    jwks_uri: str | None = None
    validate_userinfo: bool = False
    userinfo_endpoint: str | None = None
    validate_subject: bool = True
    validate_audience: bool = False
    audience_claim: str = "aud"
    audience: tuple[str, ...] | None = None
    validate_issuer: bool = False
    issuer: tuple[str, ...] | None = None
    discovery: bool = False
    # --- several identity providers (each a mapping of PROVIDER_OPTIONS), routed by exact iss
    providers: tuple[Mapping[str, Any], ...] | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    token_types: tuple[str, ...] | None = None
    leeway: float = 30
    # --- trust and anonymous requests
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8", "::1")
    allow_anonymous: bool = True
    denied_user_names: tuple[str, ...] = ()
    # --- several identity sources (each a mapping of the per-source options above)
    sources: tuple[Mapping[str, Any], ...] | None = None
    # --- metrics: None, "prometheus" or an observer object (jwt_headers.metrics.Metrics)
    metrics: Any = None
    # --- path and method rules
    exempt_paths: tuple[str, ...] = ()
    exempt_methods: tuple[str, ...] = ("OPTIONS",)
    protected_paths: tuple[str, ...] = ()
    # --- limits and caches
    max_header_bytes: int = 16384
    token_cache_size: int = 10_000
    negative_cache_size: int = 1000
    negative_cache_ttl: float = 30
    # --- the key set and userinfo calls
    jwks_cache_ttl: float = 300
    jwks_refresh_cooldown: float = 30
    jwks_max_stale: float = 86400
    jwks_prefetch: bool = False
    userinfo_cache_ttl: float = 300
    http_connect_timeout: float = 2.0
    http_read_timeout: float = 3.0
    max_response_bytes: int = 1_048_576
    http_ca_bundle: str | None = None
    http_proxy: str | None = None
    # --- shared cache
    cache_url: str | None = None
    cache_timeout: float = 0.05

    # Derived at build time; not options.
    user_path: JsonPath | None = field(default=None, init=False)
    roles_path: JsonPath | None = field(default=None, init=False)
    role_map: Mapping[str, tuple[str, ...]] = field(default_factory=dict, init=False)
    trusted_networks: tuple[_NetworkT, ...] = field(default=(), init=False)
    trust_every_peer: bool = field(default=False, init=False)
    denied_normalized: frozenset[str] = field(default=frozenset(), init=False)
    path_rules: PathRules | None = field(default=None, init=False)
    metrics_observer: Metrics | None = field(default=None, init=False)
    #: One config per identity source, in order; ``(self,)`` without ``sources``.
    source_configs: tuple[JwtHeadersConfig, ...] = field(default=(), init=False)
    #: One config per ``providers`` entry, in order (each with exactly one issuer); ``()``
    #: without ``providers``.
    provider_configs: tuple[JwtHeadersConfig, ...] = field(default=(), init=False)

    _LIST_OPTIONS: ClassVar[frozenset[str]] = frozenset(
        {
            "audience",
            "issuer",
            "algorithms",
            "trusted_proxies",
            "denied_user_names",
            "token_types",
            "exempt_paths",
            "exempt_methods",
            "protected_paths",
        }
    )

    def __init__(self, **options: Any) -> None:
        known = self.option_names()
        for name, value in options.items():
            if name not in known:
                raise ConfigError(_unknown_option_message(name, known))
            object.__setattr__(self, name, value)
        for option in dataclasses.fields(self):
            if option.init and option.name not in options:
                object.__setattr__(self, option.name, option.default)
        self._check(frozenset(options))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def option_defaults(cls) -> dict[str, Any]:
        """Each option's default, by name (what ``repr``, ``explain`` and the doctor compare
        against to tell which options were set)."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.init}

    @classmethod
    def option_names(cls) -> frozenset[str]:
        """Names accepted as options (keywords, mapping keys, env suffixes, TOML keys)."""
        return frozenset(f.name for f in dataclasses.fields(cls) if f.init)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> JwtHeadersConfig:
        """Build from text values as an ini file, env or TOML gives them.

        ``"true"``/``"false"``, ``"30"`` and ``"a, b"`` are converted to the option's type;
        keys are case-insensitive and ``-`` may stand for ``_``.
        """
        known = cls.option_names()
        defaults = cls.option_defaults()
        options: dict[str, Any] = {}
        for raw_key, value in mapping.items():
            key = str(raw_key).strip().lower().replace("-", "_")
            if key not in known:
                raise ConfigError(_unknown_option_message(str(raw_key), known))
            if key in options:
                raise ConfigError(
                    f"{key} is given twice (as {raw_key!r} and another spelling); keep one, so "
                    "a second line cannot silently override the first"
                )
            options[key] = (
                _from_text(key, value, defaults[key]) if isinstance(value, str) else value
            )
        return cls(**options)

    @classmethod
    def from_env(
        cls, prefix: str = "JWT_HEADERS_", environ: Mapping[str, str] | None = None
    ) -> JwtHeadersConfig:
        """Build from ``<prefix><OPTION>`` variables, e.g. ``JWT_HEADERS_USER_NAME_HEADER``."""
        source = os.environ if environ is None else environ
        found = {
            key[len(prefix) :]: value
            for key, value in source.items()
            if key.startswith(prefix) and not _is_django_setting(key[len(prefix) :])
        }
        return cls.from_mapping(found)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> JwtHeadersConfig:
        """Build from the ``[jwt_headers]`` table of a TOML file."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {os.fspath(path)!r} cannot be read: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(
                f"config file {os.fspath(path)!r} is not UTF-8 text; TOML files must be UTF-8, "
                "save it in that encoding"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {exc}") from None
        table = data.get("jwt_headers")
        if not isinstance(table, dict):
            raise ConfigError(
                f"config file {os.fspath(path)!r} has no [jwt_headers] table; put the options "
                "under a line '[jwt_headers]'"
            )
        return cls.from_mapping(table)

    def replace(self, **changes: Any) -> JwtHeadersConfig:
        """A copy with some options changed (checked again)."""
        defaults = self.option_defaults()
        options = {
            name: getattr(self, name)
            for name in self.option_names()
            if getattr(self, name) != defaults[name]
        }
        options.update(changes)
        return type(self)(**options)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={printable(f.name, getattr(self, f.name))!r}"
            for f in dataclasses.fields(self)
            if f.init and getattr(self, f.name) != f.default
        )
        return f"JwtHeadersConfig({shown})"

    # ------------------------------------------------------------------ derived facts
    @property
    def reads_jwt(self) -> bool:
        return self.user_name_format == "jwt" or self.roles_source == "jwt"

    @property
    def checks_signature(self) -> bool:
        """True when JWTs are verified by signature: such a token proves itself (R16)."""
        return self.validate_token and self.validate_signature

    @property
    def user_header_self_verifying(self) -> bool:
        return self.user_name_format == "jwt" and self.checks_signature

    @property
    def roles_header_name(self) -> str | None:
        """The header roles come from, or ``None`` when there are no roles."""
        if self.roles_source is None:
            return None
        return self.roles_header or self.user_name_header

    @property
    def roles_share_user_header(self) -> bool:
        return self.roles_source is not None and _same_header(
            self.roles_header_name or "", self.user_name_header
        )

    @property
    def roles_header_self_verifying(self) -> bool:
        return self.roles_source == "jwt" and self.checks_signature

    # ------------------------------------------------------------------ checks
    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check(self, given: frozenset[str]) -> None:
        self._check_types()
        self._check_outbound()
        self._set("metrics_observer", resolve_metrics(self.metrics))
        if self.sources is None:
            self._check_user_name()
            self._check_roles()
            self._check_validation()
            self._set("source_configs", (self,))
        else:
            self._set("source_configs", self._check_sources(given))
        self._check_trust()
        self._check_shared_cache()
        rules = PathRules(self.exempt_paths, self.exempt_methods, self.protected_paths)
        self._set("exempt_methods", tuple(sorted(rules.exempt_methods)))
        self._set("path_rules", None if rules.empty else rules)

    def _check_types(self) -> None:
        for option in dataclasses.fields(self):
            if not option.init:
                continue
            value = getattr(self, option.name)
            default = option.default
            if option.name in ("sources", "providers", "metrics"):
                continue  # checked entry by entry (_check_sources/_providers); resolved in _check
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{option.name}={value!r}: must be true or false")
            elif option.name in self._LIST_OPTIONS:
                if value is not None or default is not None:
                    self._set(option.name, _as_list(option.name, value))
            elif isinstance(default, int | float):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                    or value < 0
                ):
                    raise ConfigError(f"{option.name}={value!r}: must be a finite number >= 0")
                if option.name not in _FLOAT_OPTIONS and not isinstance(value, int):
                    raise ConfigError(f"{option.name}={value!r}: must be a whole number >= 0")
            elif (
                isinstance(default, str)
                and not isinstance(value, str)
                and not (value is None and option.name == "user_name_header")  # "is required"
            ):
                raise ConfigError(
                    f"{option.name}={value!r}: must be a string; leave it out for the default "
                    f"{default!r}"
                )
            elif value is not None and not isinstance(value, str):
                raise ConfigError(f"{option.name}={value!r}: must be a string")
        if self.max_header_bytes < 1:
            raise ConfigError("max_header_bytes must be at least 1 (default 16384)")
        for name in ("http_connect_timeout", "http_read_timeout", "max_response_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be greater than 0")
        if self.negative_cache_ttl > 60:
            raise ConfigError(
                f"negative_cache_ttl={self.negative_cache_ttl!r}: at most 60 seconds, so a token "
                "refused for a passing reason is not refused for long"
            )
        if self.userinfo_cache_ttl > 300:
            raise ConfigError(
                f"userinfo_cache_ttl={self.userinfo_cache_ttl!r}: at most 300 seconds (R32), so a "
                "token revoked at the identity provider stops working within five minutes"
            )

    def _check_outbound(self) -> None:
        """``http_ca_bundle`` and ``http_proxy``: checked now, as a bad one would otherwise
        show only as 503s (every HTTPS call failing) once tokens arrive."""
        if self.http_ca_bundle is not None:
            self._set("http_ca_bundle", _check_ca_bundle(self.http_ca_bundle))
        if self.http_proxy is not None:
            self._set("http_proxy", _check_proxy(self.http_proxy))

    def _check_shared_cache(self) -> None:
        """``cache_url`` names a Redis server (redis-py reads it); ``cache_timeout`` bounds
        what a slow or frozen Redis may cost a request, so it stays short."""
        if not 0 < self.cache_timeout <= 1:
            raise ConfigError(
                f"cache_timeout={self.cache_timeout!r}: give seconds greater than 0 and at most "
                "1 (default 0.05): a request waits this long for a slow Redis before going on "
                "without it"
            )
        url = self.cache_url
        if url is None:
            return
        url = url.strip()
        shown = _without_credentials(url)
        try:
            parts = urlsplit(url)
            scheme, host = parts.scheme.lower(), parts.hostname
        except ValueError:
            scheme, host = "", None
        if scheme not in _CACHE_SCHEMES or (scheme != "unix" and not host):
            raise ConfigError(
                f"cache_url={shown!r} is not a Redis URL; write e.g. "
                "'redis://127.0.0.1:6379/0', 'rediss://user:password@redis.example:6380/0' "
                "(TLS) or 'unix:///run/redis/redis.sock', or leave cache_url unset for "
                "in-process caches only"
            )
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"cache_url={shown!r} needs redis-py, which is not installed: "
                "pip install 'jwt-headers[redis]'"
            ) from None
        self._set("cache_url", url)

    def _check_sources(self, given: frozenset[str]) -> tuple[JwtHeadersConfig, ...]:
        """Build one config per ``sources`` entry: the entry's options on top of this config's
        request-wide ones, checked as a single-source config is, errors naming the entry."""
        entries = self.sources
        if isinstance(entries, str | bytes | Mapping) or not isinstance(entries, Sequence):
            raise ConfigError(
                f"sources={entries!r}: give a list of mappings, one per identity source, e.g. "
                "[{'user_name_header': 'Authorization', 'user_name_format': 'jwt', ...}]"
            )
        if not entries:
            raise ConfigError(
                "sources is empty: give at least one source, or leave sources out and set "
                "user_name_header (one source)"
            )
        misplaced = sorted(given & SOURCE_OPTIONS)
        if misplaced:
            raise ConfigError(
                f"{', '.join(misplaced)} given beside sources: with sources, each source's "
                "options go in its entry; move them into the sources entry they belong to"
            )
        known = self.option_names()
        shared = {
            name: getattr(self, name) for name in given if name not in SOURCE_OPTIONS | {"sources"}
        }
        built: list[JwtHeadersConfig] = []
        for index, entry in enumerate(entries):
            where = f"sources[{index}]"
            options = _entry_options(
                where,
                entry,
                SOURCE_OPTIONS,
                suggest=known,
                example="each source is a mapping of options, e.g. "
                "{'user_name_header': 'OIDC_id_token_payload', 'user_name_format': 'json', "
                "'user_name_json_path': 'preferred_username'}",
                elsewhere="applies to the whole request, not to one source; set it at the top "
                "level, beside sources",
            )
            label = options.get("user_name_header")
            try:
                built.append(type(self)(**shared, **options))
            except ConfigError as exc:
                named = f"{where} ({label})" if isinstance(label, str) and label else where
                raise ConfigError(f"{named}: {exc}") from None
        return tuple(built)

    def _check_user_name(self) -> None:
        if not self.user_name_header:
            raise ConfigError(
                "user_name_header is required: name the header that carries the user, e.g. "
                "'OIDC_id_token_payload' or 'Authorization'"
            )
        _check_header_name("user_name_header", self.user_name_header)
        fmt = self.user_name_format.strip().lower()
        if fmt not in FORMATS:
            raise ConfigError(
                f"user_name_format={self.user_name_format!r} is unknown; use one of "
                "'string', 'json', 'jwt'"
            )
        self._set("user_name_format", fmt)
        encoding = _ENCODING_ALIASES.get(
            self.header_encoding.strip().lower(), self.header_encoding.strip().lower()
        )
        if encoding not in HEADER_ENCODINGS:
            raise ConfigError(
                f"header_encoding={self.header_encoding!r} is unknown; use one of "
                "'auto' (UTF-8 when the bytes are UTF-8, else as received), 'utf8', 'latin1', "
                "'base64url'"
            )
        if encoding == "base64url" and fmt == "jwt":
            raise ConfigError(
                "header_encoding='base64url' decodes string and json headers (mod_auth_openidc's "
                "OIDCPassClaimsAs ... base64url); a JWT is base64url already: leave "
                "header_encoding unset with user_name_format='jwt'"
            )
        self._set("header_encoding", encoding)
        if fmt != "string":
            if not self.user_name_json_path:
                raise ConfigError(
                    f"user_name_json_path is required with user_name_format={fmt!r}: the path to "
                    "the user name, e.g. 'preferred_username'"
                )
            self._set("user_path", compile_path("user_name_json_path", self.user_name_json_path))
        names = _as_list("denied_user_names", self.denied_user_names)
        self._set("denied_normalized", frozenset(normalize_user_name(n) for n in names))

    def _check_roles(self) -> None:
        source = self.roles_source.strip().lower() if self.roles_source else None
        if source is not None and source not in ROLE_SOURCES:
            raise ConfigError(
                f"roles_source={self.roles_source!r} is unknown; use 'header', 'json', 'jwt' or "
                "leave it unset for no roles"
            )
        self._set("roles_source", source)
        if self.roles_header:
            _check_header_name("roles_header", self.roles_header)
        if not self.roles_header_delimiter:
            raise ConfigError("roles_header_delimiter must not be empty (default ',')")
        self._set("role_map", parse_role_map(self.role_converter))
        if source is None:
            return
        if source in ("json", "jwt"):
            if not self.roles_json_path:
                raise ConfigError(
                    f"roles_json_path is required with roles_source={source!r}, e.g. "
                    "'realm_access.roles' or 'resource_access.<client>.roles'"
                )
            self._set("roles_path", compile_path("roles_json_path", self.roles_json_path))
        if self.roles_share_user_header and source != self.user_name_format:
            raise ConfigError(
                f"roles_source={source!r} reads the user-name header {self.user_name_header!r}, "
                f"whose format is {self.user_name_format!r}; set roles_header to the header that "
                f"holds the roles, or roles_source={self.user_name_format!r}"
                if self.user_name_format != "string"
                else f"roles_source={source!r} reads the user-name header, which holds a plain "
                "string; set roles_header to the header that holds the roles"
            )

    def _check_validation(self) -> None:
        if self.token_types:
            self._set("token_types", tuple(media_type(t) for t in self.token_types))
        if not self.validate_token:
            if self.providers is not None:
                raise ConfigError(
                    "providers routes tokens to their provider's checks, but validate_token is "
                    "off; set validate_token=true (and validate_signature, the default) or "
                    "remove providers"
                )
            if self.token_types:
                raise ConfigError(
                    "token_types is only checked with validate_token=true (an unvalidated "
                    "token's typ proves nothing); turn validate_token on or leave token_types out"
                )
            return
        if not self.reads_jwt:
            raise ConfigError(
                "validate_token is on but no JWT is read: set user_name_format='jwt' or "
                "roles_source='jwt', or turn validate_token off"
            )
        if self.roles_source in ("json", "header") and not self.trust_unvalidated_roles_header:
            raise ConfigError(
                f"roles_source={self.roles_source!r} is not validated while validate_token is on: "
                "roles could be injected beside a valid token. Read roles from the token "
                "(roles_source='jwt') or set trust_unvalidated_roles_header=true (the roles "
                "header is then honoured only from trusted_proxies)"
            )
        if not (
            self.validate_expiry
            or self.validate_signature
            or self.validate_userinfo
            or self.validate_audience
            or self.validate_issuer
        ):
            raise ConfigError(
                "validate_token is on but every check is off: enable validate_signature "
                "(with jwks_uri), validate_expiry, validate_userinfo, validate_audience or "
                "validate_issuer"
            )
        for alg in self.algorithms:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ConfigError(
                    f"algorithms: {alg!r} is refused: keys come from a JWKS, so only asymmetric "
                    "algorithms are safe (e.g. RS256, ES256, EdDSA)"
                )
            if alg not in SUPPORTED_ALGORITHMS:
                raise ConfigError(
                    f"algorithms: {alg!r} is unknown; choose from "
                    f"{', '.join(sorted(SUPPORTED_ALGORITHMS))}"
                )
        if not self.algorithms:
            raise ConfigError("algorithms must name at least one algorithm, e.g. RS256")
        if self.providers is not None:
            self._set("provider_configs", self._check_providers())
            return
        if self.discovery:
            self._check_discovery()
        if self.validate_signature and not (self.discovery and self.jwks_uri is None):
            self._set("jwks_uri", _check_url("jwks_uri", self.jwks_uri, allow_file=True))
            if not self.validate_issuer:
                logger.warning(
                    "validate_signature is on without validate_issuer: any token signed by the "
                    "keys at jwks_uri is accepted, including other tenants' or realms' on a shared "
                    "identity provider; set validate_issuer=true and issuer=<the 'iss' value>"
                )
        if self.validate_userinfo and not (self.discovery and self.userinfo_endpoint is None):
            self._set("userinfo_endpoint", _check_url("userinfo_endpoint", self.userinfo_endpoint))
        if self.validate_audience:
            if not self.audience:
                raise ConfigError(
                    "audience is required with validate_audience: the value(s) the "
                    f"{self.audience_claim or 'aud'} claim must hold, e.g. 'my-api'"
                )
            if not self.audience_claim or not self.audience_claim.strip():
                raise ConfigError("audience_claim must name a claim, e.g. 'aud' or 'azp'")
        if self.validate_issuer and not self.issuer:
            raise ConfigError(
                "issuer is required with validate_issuer: the exact 'iss' value(s), e.g. "
                "'https://idp.example/realms/r'"
            )

    def _check_providers(self) -> tuple[JwtHeadersConfig, ...]:
        """Build one config per ``providers`` entry: this source's options with the entry's on
        top, the issuer check always on (a token is routed by its exact ``iss``, which its own
        provider's keys must then prove), errors naming the entry."""
        entries = self.providers
        if isinstance(entries, str | bytes | Mapping) or not isinstance(entries, Sequence):
            raise ConfigError(
                f"providers={entries!r}: give a list of mappings, one per identity provider, "
                "e.g. [{'issuer': 'https://idp.example/realms/a', 'discovery': true}]"
            )
        if not entries:
            raise ConfigError(
                "providers is empty: give at least one provider, or leave providers out and set "
                "issuer and jwks_uri (one provider)"
            )
        beside = [name for name in _PROVIDER_ONLY if getattr(self, name) not in (None, False, ())]
        if beside:
            raise ConfigError(
                f"{', '.join(beside)} given beside providers: with providers, each provider's "
                "issuer, jwks_uri, discovery and userinfo_endpoint go in its entry; move them "
                "there"
            )
        defaults = self.option_defaults()
        base = {
            name: getattr(self, name)
            for name in self.option_names() - {"providers", "sources"}
            if getattr(self, name) != defaults[name]
        }
        built: list[JwtHeadersConfig] = []
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            where = f"providers[{index}]"
            options = _entry_options(
                where,
                entry,
                PROVIDER_OPTIONS,
                suggest=PROVIDER_OPTIONS,
                example="each provider is a mapping of options, e.g. "
                "{'issuer': 'https://idp.example/realms/a', 'jwks_uri': "
                "'https://idp.example/realms/a/protocol/openid-connect/certs'}",
                elsewhere="applies to every provider of the source, not to one; set it beside "
                f"providers (a provider sets only {', '.join(sorted(PROVIDER_OPTIONS))})",
            )
            issuer = options.get("issuer")
            if isinstance(issuer, list | tuple) and len(issuer) == 1:
                issuer = issuer[0]
            if not isinstance(issuer, str) or not issuer.strip() or "," in issuer:
                raise ConfigError(
                    f"{where}: issuer is required, exactly one: the provider's 'iss' value, e.g. "
                    "'https://idp.example/realms/a' (tokens are routed to a provider by it)"
                )
            issuer = issuer.strip()
            if issuer in seen:
                raise ConfigError(
                    f"{where}: issuer {issuer!r} is also providers[{seen[issuer]}]'s; a token "
                    "must route to exactly one provider, so each issuer appears once"
                )
            seen[issuer] = index
            options["issuer"] = (issuer,)
            if "audience" in options:
                options["validate_audience"] = True  # an audience given is an audience checked
            try:
                forced = {"validate_issuer": True, "validate_token": True}
                built.append(type(self)(**{**base, **options, **forced}))
            except ConfigError as exc:
                raise ConfigError(f"{where} ({issuer}): {exc}") from None
        return tuple(built)

    def _check_discovery(self) -> None:
        """``discovery`` reads ``<issuer>/.well-known/openid-configuration``: one configured
        issuer, an http(s) URL; the document must name exactly it (R33: never a token's)."""
        issuers = self.issuer or ()
        if len(issuers) != 1:
            raise ConfigError(
                "discovery needs exactly one issuer (the provider's 'iss', e.g. "
                f"'https://idp.example/realms/r'); got {list(issuers)!r}. For several providers "
                "give one source per provider"
            )
        _check_url("issuer", issuers[0])
        if not self.validate_issuer:
            raise ConfigError(
                "discovery trusts the keys of the issuer it reads; set validate_issuer=true so "
                "only that issuer's tokens are accepted (a shared provider signs other realms' "
                "tokens with the same keys)"
            )
        if not (self.validate_signature or self.validate_userinfo):
            raise ConfigError(
                "discovery finds jwks_uri and userinfo_endpoint, but neither validate_signature "
                "nor validate_userinfo is on; turn one on, or discovery off"
            )

    def _check_trust(self) -> None:
        networks: list[_NetworkT] = []
        trust_all = False
        for entry in self.trusted_proxies:
            if entry == "*":
                trust_all = True
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(
                    f"trusted_proxies: {entry!r} is not an IP address or CIDR; write e.g. "
                    "'10.0.0.5', '10.0.0.0/24', '::1', or '*' to trust every peer"
                ) from None
        self._set("trusted_networks", tuple(networks))
        self._set("trust_every_peer", trust_all)
        if self.sources is not None:
            return  # each source's config warns for its own headers
        unproven = [] if self.user_header_self_verifying else [self.user_name_header]
        roles_header = self.roles_header_name
        if (
            roles_header is not None
            and not self.roles_share_user_header
            and not self.roles_header_self_verifying
        ):
            unproven.append(roles_header)
        if trust_all and unproven:
            logger.warning(
                "trusted_proxies='*': headers that prove nothing by themselves (%s) are accepted "
                "from every peer, so any client that reaches this app directly can choose its "
                "user or roles; list the proxy's addresses in trusted_proxies instead",
                ", ".join(unproven),
            )


def _entry_options(
    where: str,
    entry: object,
    allowed: frozenset[str],
    *,
    suggest: frozenset[str],
    example: str,
    elsewhere: str,
) -> dict[str, Any]:
    """The options of one ``sources`` or ``providers`` entry, keys read as ``from_mapping``
    reads them and text values converted; every mistake names the entry (``where``): not a
    mapping (``example`` shows one), an option that belongs ``elsewhere``, an unknown name (the
    closest of ``suggest``), a name given twice."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} is {entry!r}: {example}")
    known = JwtHeadersConfig.option_names()
    defaults = JwtHeadersConfig.option_defaults()
    options: dict[str, Any] = {}
    for raw_key, value in entry.items():
        key = str(raw_key).strip().lower().replace("-", "_")
        if key not in allowed:
            if key in known:
                raise ConfigError(f"{where}: {key} {elsewhere}")
            raise ConfigError(f"{where}: " + _unknown_option_message(str(raw_key), suggest))
        if key in options:
            raise ConfigError(f"{where}: {key} is given twice; keep one")
        options[key] = _from_text(key, value, defaults[key]) if isinstance(value, str) else value
    return options


def _same_header(a: str, b: str) -> bool:
    return a.upper().replace("-", "_") == b.upper().replace("-", "_")


def _check_header_name(option: str, name: str) -> None:
    if not _TOKEN_NAME.fullmatch(name):
        raise ConfigError(
            f"{option}={name!r} is not a valid header name (letters, digits, '-' and '_'; no "
            "spaces or ':'), e.g. 'OIDC_id_token_payload'"
        )


def _as_list(option: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return _split_list(value)
    if isinstance(value, Sequence | set | frozenset):
        items = []
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(f"{option}: {item!r} is not a string; give a list of strings")
            if item.strip():
                items.append(item.strip())
        return tuple(items)
    raise ConfigError(f"{option}={value!r}: give a list of strings or a comma-separated string")


_FLOAT_OPTIONS = frozenset(
    {
        "leeway",
        "negative_cache_ttl",
        "jwks_cache_ttl",
        "jwks_refresh_cooldown",
        "jwks_max_stale",
        "userinfo_cache_ttl",
        "http_connect_timeout",
        "http_read_timeout",
        "cache_timeout",
    }
)
_CACHE_SCHEMES = ("redis", "rediss", "unix")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _from_text(option: str, text: str, default: Any) -> Any:
    if option == "providers":
        try:  # JWT_HEADERS_PROVIDERS: a JSON list of objects
            return json.loads(text)
        except ValueError:
            raise ConfigError(
                "providers: not valid JSON; write a JSON list of objects, e.g. "
                '[{"issuer": "https://idp.example/realms/a", "discovery": true}, '
                '{"issuer": "https://login.example", "jwks_uri": "https://login.example/keys"}]'
            ) from None
    if option == "sources":
        try:  # JWT_HEADERS_SOURCES, an ini file: a JSON list of objects
            return json.loads(text)
        except ValueError:
            raise ConfigError(
                "sources: not valid JSON; write a JSON list of objects, e.g. "
                '[{"user_name_header": "Authorization", "user_name_format": "jwt", '
                '"user_name_json_path": "preferred_username"}]'
            ) from None
    if option == "roles_header_delimiter":
        return text  # a space or tab is a real delimiter; stripping would make it ""
    value = text.strip()
    if isinstance(default, bool):
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"{option}={text!r}: must be true or false")
    if option in JwtHeadersConfig._LIST_OPTIONS:
        return _split_list(value)
    if isinstance(default, int | float):
        try:
            return int(value)
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{option}={text!r}: must be a number, e.g. {default}") from None
        if option not in _FLOAT_OPTIONS:
            raise ConfigError(f"{option}={text!r}: must be a whole number, e.g. {default}")
        return number
    if default is None and value == "":
        return None
    return value


def _unknown_option_message(name: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(name.lower(), sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see the README for the options"
    return f"{name!r} is not an option of jwt-headers{hint}"

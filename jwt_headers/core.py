"""The pipeline, free of WSGI: a request's headers in, a :class:`Principal` (or nothing) out.

``sources`` finds the header and decides whether to believe it, ``decode`` parses it once,
``verify`` checks a JWT (when asked), ``identity`` reads the name and roles, ``rolemap`` converts
them. The result is cached per exact header value: the same token or JSON header again (every
request of a session) costs one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .cache import LocalCache, TokenCache
from .config import JwtHeadersConfig
from .decode import Document, bearer_token, check_size, decode_json, decode_jwt, value_text
from .discovery import DiscoveryClient
from .errors import InvalidToken, Refusal, Unauthenticated
from .flight import SingleFlight
from .http import FetchFailed, HttpSettings, new_session
from .identity import (
    add_format_hint,
    check_user_name,
    name_from_claims,
    roles_from_claims,
    roles_from_header,
)
from .jwks import JwksClient
from .logtools import fingerprint, safe
from .metrics import Metrics
from .principal import Claims, Principal
from .providers import ProviderRouter
from .rolemap import convert_roles
from .rules import PathRule
from .shared import SharedCache
from .sources import HeaderSource, PeerTrust, peek_header, read_header
from .userinfo import UserinfoClient
from .verify import TokenVerifier

logger = logging.getLogger("jwt_headers")

#: The result for a header that is present but not ours (``Basic ...``): the request is anonymous.
_NOT_OURS = object()
#: What :meth:`Authenticator.cached_answerer`'s function returns when only I/O can answer.
MISS = object()
#: Refusals worth remembering: the same bad token again costs a lookup, not a signature check.
#: Time-dependent ones are not kept (the token may become valid within the negative TTL).
#: An unknown kid may be published a moment later: the key set's own cooldown governs those.
_NOT_NEGATIVELY_CACHED = frozenset({"not_yet_valid", "issued_in_future", "unknown_key"})


def build_shared_cache(config: JwtHeadersConfig, clock: Callable[[], float]) -> SharedCache | None:
    """The Redis client of ``cache_url``, or ``None``: one per :class:`Authenticator`, shared
    by its sources."""
    if config.cache_url is None:
        return None
    return SharedCache(config.cache_url, timeout=config.cache_timeout, clock=clock)


def build_verifier(
    config: JwtHeadersConfig,
    clock: Callable[[], float],
    shared: SharedCache | None = None,
) -> TokenVerifier | ProviderRouter | None:
    """The configured checks, with their HTTP clients, or ``None`` when nothing is validated;
    with ``providers``, one set of checks per provider behind a router on the exact ``iss``.

    ``shared``: where userinfo outcomes are shared (built from ``cache_url`` when not given).
    """
    if not config.validate_token:
        return None
    if config.provider_configs:
        return ProviderRouter(
            {
                provider.issuer[0]: _build_checks(provider, clock, shared)
                for provider in config.provider_configs
                if provider.issuer
            }
        )
    return _build_checks(config, clock, shared)


def _build_checks(
    config: JwtHeadersConfig, clock: Callable[[], float], shared: SharedCache | None
) -> TokenVerifier:
    settings = HttpSettings(
        config.http_connect_timeout,
        config.http_read_timeout,
        config.max_response_bytes,
        ca_bundle=config.http_ca_bundle,
        proxy=config.http_proxy,
    )
    session = new_session(settings)
    jwks_uri: str | Callable[[bool], str] | None = config.jwks_uri
    userinfo_endpoint: str | Callable[[], str] | None = config.userinfo_endpoint
    if config.discovery:
        discovery = _start_discovery(config, settings, session)
        if jwks_uri is None:
            jwks_uri = _discovered_jwks_uri(discovery)
        if userinfo_endpoint is None:
            userinfo_endpoint = _discovered_userinfo(discovery)
    jwks = None
    if config.validate_signature and jwks_uri:
        jwks = JwksClient(
            jwks_uri,
            algorithms=config.algorithms,
            http_settings=settings,
            cache_ttl=config.jwks_cache_ttl,
            refresh_cooldown=config.jwks_refresh_cooldown,
            max_stale=config.jwks_max_stale,
            clock=clock,
            session=session,
            metrics=config.metrics_observer,
        )
        if config.jwks_prefetch:
            jwks.prefetch()
    userinfo = None
    if config.validate_userinfo and userinfo_endpoint:
        if shared is None:
            shared = build_shared_cache(config, clock)
        # What decides the provider's answer, so shared entries never cross configurations.
        scope = (
            f"userinfo={userinfo_endpoint}"
            if isinstance(userinfo_endpoint, str)
            else f"issuer={(config.issuer or ('',))[0]}"
        )
        userinfo = UserinfoClient(
            userinfo_endpoint,
            http_settings=settings,
            validate_subject=config.validate_subject,
            session=session,
            metrics=config.metrics_observer,
            shared=shared,
            shared_scope=scope,
            cache_ttl=config.userinfo_cache_ttl,
            negative_ttl=config.negative_cache_ttl,
            leeway=config.leeway,
        )
    return TokenVerifier(config, clock=clock, jwks=jwks, userinfo=userinfo)


def _start_discovery(
    config: JwtHeadersConfig, settings: HttpSettings, session: Any
) -> DiscoveryClient:
    """Read the provider's document now; a provider that is down does not stop the app (its
    requests get 503 until the document can be read)."""
    assert config.issuer is not None  # the config checks demand exactly one with discovery
    discovery = DiscoveryClient(
        config.issuer[0], http_settings=settings, session=session, metrics=config.metrics_observer
    )
    with contextlib.suppress(FetchFailed):
        discovery.endpoints()
    return discovery


def _discovered_jwks_uri(discovery: DiscoveryClient) -> Callable[[bool], str]:
    def jwks_uri(refetch: bool) -> str:
        found = discovery.endpoints(refresh=refetch).jwks_uri
        if found is None:
            raise FetchFailed("discovery_has_no_jwks_uri")
        return found

    return jwks_uri


def _discovered_userinfo(discovery: DiscoveryClient) -> Callable[[], str]:
    def userinfo_endpoint() -> str:
        found = discovery.endpoints().userinfo_endpoint
        if found is None:
            raise FetchFailed("discovery_has_no_userinfo_endpoint")
        return found

    return userinfo_endpoint


#: Role tuples already made, by value: the principals of one user's (or one team's) tokens then
#: share one tuple and its strings instead of holding a copy each (R26: bytes per cached token).
#: Bounded: a flood of made-up role sets only empties it now and then.
_ROLE_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}
MAX_ROLE_SETS = 1024


def _shared_roles(roles: tuple[str, ...]) -> tuple[str, ...]:
    known = _ROLE_SETS.get(roles)
    if known is not None:
        return known
    if len(_ROLE_SETS) >= MAX_ROLE_SETS:
        _ROLE_SETS.clear()
    roles = tuple(sys.intern(role) for role in roles)
    _ROLE_SETS[roles] = roles
    return roles


def _fingerprint(value: str, fmt: str) -> str:
    """The log fingerprint: of the token itself for a JWT, however it was sent."""
    if fmt == "jwt":
        with contextlib.suppress(InvalidToken):
            value = bearer_token(value) or value
    return fingerprint(value)


def _copy_refusal(refusal: Refusal) -> InvalidToken:
    """A fresh refusal with the same log-safe fields and no traceback, cause or context."""
    copy = InvalidToken(refusal.reason, refusal.message)
    copy.header, copy.fingerprint, copy.detail = refusal.header, refusal.fingerprint, refusal.detail
    return copy


def _digest(key: Any) -> bytes:
    text = key if isinstance(key, str) else "\0".join(part or "" for part in key)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def check_same_subject(user: Mapping[str, Any], roles: Mapping[str, Any]) -> None:
    """R40: a roles token from a second header must be about the user the first one names
    (``sub``, and ``iss`` when the user's document has one); else its roles would go to
    whoever presents someone else's roles token beside their own identity."""
    subject = user.get("sub")
    same = isinstance(subject, str) and roles.get("sub") == subject
    if same and "iss" in user:
        same = roles.get("iss") == user["iss"]
    if not same:
        raise InvalidToken("roles_subject_mismatch", "the roles token is about another subject")


class Verifier(Protocol):
    """Checks a decoded JWT; returns until when the result may be cached (``None``: no limit)."""

    def __call__(self, document: Document, /) -> float | None: ...


class Authenticator:
    """Turns request headers into a :class:`Principal` according to one config.

    The path rules first; then each identity source in order (one without ``sources``). The
    first source whose header is present decides; another present source must name the same
    user, or the request is refused (``conflicting_credentials``): two credentials never
    resolve to "the first one" silently. Build one per config at start-up and share it between
    threads.
    """

    def __init__(
        self,
        config: JwtHeadersConfig,
        *,
        clock: Callable[[], float] = time.time,
        verifier: Verifier | None = None,
        cache: TokenCache | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._rules = config.path_rules
        self._metrics = config.metrics_observer
        trust = PeerTrust(config.trusted_networks, config.trust_every_peer)
        #: One Redis client for every source (``None`` without ``cache_url``).
        self.shared = build_shared_cache(config, clock)
        self.readers = tuple(
            SourceReader(
                source,
                trust,
                clock=clock,
                verifier=verifier if index == 0 else None,
                cache=cache if index == 0 else None,
                shared=self.shared,
            )
            for index, source in enumerate(config.source_configs)
        )
        self._looked_for = ",".join(reader.header for reader in self.readers)
        first = self.readers[0]
        # The first source's parts, for tests and tools that look inside one source.
        self.verifier, self._cache, self._refused = first.verifier, first._cache, first._refused
        # The common case, decided here once: one source, no metrics, and at most a method
        # rule (the default exempts OPTIONS). Then a request costs one source read.
        rules = config.path_rules
        self._only_methods: frozenset[str] | None = None
        if rules is not None and not rules.has_paths:
            self._only_methods = rules.exempt_methods
        one_header = first._roles is None and first._rival_key is None
        if len(self.readers) == 1 and (
            one_header or (self._metrics is None and (rules is None or not rules.has_paths))
        ):
            self.authenticate = self._fast_path(first)  # type: ignore[method-assign,assignment]

    def authenticate(self, environ: Mapping[str, Any]) -> tuple[Principal | None, list[str]]:
        """The principal (``None``: anonymous) and the environ keys of unbelieved headers.

        Raises :class:`Refusal` when the request must not reach the app.
        """
        found, unbelieved, _reader = self.authenticate_by(environ)
        return found, unbelieved

    def _fast_path(self, reader: SourceReader) -> Callable[[Mapping[str, Any]], Any]:
        """:meth:`authenticate` for one source, no metrics and at most a method rule, with
        everything it needs bound as locals: the cache-hit path runs millions of times."""
        read, anonymous_ok = reader.read, self.config.allow_anonymous
        methods = self._only_methods or frozenset()
        if reader._roles is None and reader._rival_key is None:
            return self._one_header_path(reader, methods)

        def authenticate(environ: Mapping[str, Any]) -> tuple[Principal | None, list[str]]:
            if methods:
                method = environ.get("REQUEST_METHOD")
                if type(method) is str and method in methods:
                    return None, []  # an exempt method: nothing read
            dropped: list[str] = []
            principal = read(environ, dropped)
            if principal is None and not anonymous_ok:
                raise Unauthenticated()
            return principal, dropped

        return authenticate

    def _one_header_path(
        self, reader: SourceReader, methods: frozenset[str]
    ) -> Callable[[Mapping[str, Any]], Any]:
        """The fast path when the source reads one header: :meth:`SourceReader.read` inlined
        (the same steps, keyed by the header value alone), one call less per request."""
        source, trust = reader._user, reader._trust
        cache_get, miss = reader._cache.get, reader._miss
        anonymous_ok = self.config.allow_anonymous
        metrics = self._metrics
        if metrics is not None:
            return self._one_header_path_with_metrics(reader, methods, metrics)

        rules = self._rules if self._rules is not None and self._rules.has_paths else None

        def authenticate(environ: Mapping[str, Any]) -> tuple[Principal | None, list[str]]:
            protected = False
            if rules is not None:
                rule = rules.decide(
                    environ.get("REQUEST_METHOD"),
                    environ.get("SCRIPT_NAME"),
                    environ.get("PATH_INFO"),
                )
                if rule is PathRule.EXEMPT:
                    return None, []  # nothing read, no IdP call: anonymous by the rule
                protected = rule is PathRule.PROTECTED
            elif methods:
                method = environ.get("REQUEST_METHOD")
                if type(method) is str and method in methods:
                    return None, []  # an exempt method: nothing read
            dropped: list[str] = []
            value = read_header(source, environ, trust, dropped)
            if value is not None:
                result = cache_get(value)
                if result is None:
                    result = miss(value, value, None)
                if result is not _NOT_OURS:
                    return result, dropped
            if protected or not anonymous_ok:
                raise Unauthenticated()
            return None, dropped

        return authenticate

    def _one_header_path_with_metrics(
        self, reader: SourceReader, methods: frozenset[str], metrics: Metrics
    ) -> Callable[[Mapping[str, Any]], Any]:
        """:meth:`_one_header_path`, reporting each step to ``metrics`` as
        :meth:`authenticate_by` does."""
        source, trust = reader._user, reader._trust
        cache_get, miss = reader._cache.get, reader._miss
        anonymous_ok = self.config.allow_anonymous
        hit, allowed = metrics.token_cache, metrics.allowed

        rules = self._rules if self._rules is not None and self._rules.has_paths else None

        def authenticate(environ: Mapping[str, Any]) -> tuple[Principal | None, list[str]]:
            protected = False
            if rules is not None:
                rule = rules.decide(
                    environ.get("REQUEST_METHOD"),
                    environ.get("SCRIPT_NAME"),
                    environ.get("PATH_INFO"),
                )
                if rule is PathRule.EXEMPT:
                    metrics.exempt()
                    return None, []
                protected = rule is PathRule.PROTECTED
            elif methods:
                method = environ.get("REQUEST_METHOD")
                if type(method) is str and method in methods:
                    metrics.exempt()
                    return None, []
            dropped: list[str] = []
            try:
                value = read_header(source, environ, trust, dropped)
                if value is not None:
                    result = cache_get(value)
                    hit(result is not None)
                    if result is None:
                        result = miss(value, value, None)
                    if result is not _NOT_OURS:
                        for _ in dropped:
                            metrics.untrusted_header()
                        allowed()
                        return result, dropped
                if protected or not anonymous_ok:
                    raise Unauthenticated()
            except Refusal as refusal:
                metrics.refused(refusal.reason)
                raise
            for _ in dropped:
                metrics.untrusted_header()
            metrics.anonymous()
            return None, dropped

        return authenticate

    def log_unauthenticated(self, refusal: Refusal) -> None:
        """Log a 401 for a missing credential, naming the headers looked for: the usual cause
        is a header that never arrived (a proxy that did not send it, a server that dropped a
        name with ``_``), and without a line the newcomer sees only the 401 (issue 17)."""
        refusal.header = self._looked_for
        _log_refusal(refusal)

    def report_refusal(self, reason: str) -> None:
        """Count a refusal decided outside the pipeline (the adapter's last-resort net)."""
        if self._metrics is not None:
            self._metrics.refused(reason)

    def authenticate_by(
        self, environ: Mapping[str, Any]
    ) -> tuple[Principal | None, list[str], SourceReader | None]:
        """As :meth:`authenticate`, and the source that decided (``None``: none did)."""
        rule = PathRule.DEFAULT
        if self._rules is not None:
            rule = self._rules.decide(
                environ.get("REQUEST_METHOD"), environ.get("SCRIPT_NAME"), environ.get("PATH_INFO")
            )
        metrics = self._metrics
        if rule is PathRule.EXEMPT:  # no header read, no IdP call: anonymous by the rule
            if metrics is not None:
                metrics.exempt()
            return None, [], None
        if metrics is None:
            return self._read_sources(environ, rule)
        try:
            principal, dropped, decider = self._read_sources(environ, rule)
        except Refusal as refusal:
            metrics.refused(refusal.reason)
            raise
        for _ in dropped:
            metrics.untrusted_header()
        if principal is not None:
            metrics.allowed()
        else:
            metrics.anonymous()
        return principal, dropped, decider

    def _read_sources(
        self, environ: Mapping[str, Any], rule: PathRule
    ) -> tuple[Principal | None, list[str], SourceReader | None]:
        dropped: list[str] = []
        decided: Principal | None = None
        decider: SourceReader | None = None
        for reader in self.readers:
            principal = reader.read(environ, dropped)
            if principal is None:
                continue
            if decider is None:
                decided, decider = principal, reader
            elif decided is not None and principal.name != decided.name:
                reader.refuse_conflict(decider)
        if decided is None:
            if not self.config.allow_anonymous or rule is PathRule.PROTECTED:
                raise Unauthenticated()
            return None, dropped, None
        return decided, dropped, decider

    # ------------------------------------------------------------------ for async adapters
    def answers_without_io(self, environ: Mapping[str, Any]) -> bool:
        """Whether :meth:`authenticate` can answer this request from the caches alone, with
        no identity-provider (or Redis) call: an exempt path, no present header that needs a
        check, or every present token already in the token cache or the refusal cache.

        An event-loop adapter asks this first and runs :meth:`authenticate` on the loop when
        True, in a worker thread otherwise. The answer itself always comes from
        :meth:`authenticate`, so it is exactly the WSGI adapter's (rules, sources, conflicts,
        metrics, logs); this only chooses where it runs. Side-effect free: nothing is logged,
        counted or cached here. False is the safe side: a request it cannot vouch for (a
        ``Basic`` header, an entry that expires in between) merely takes the thread.
        """
        rules = self._rules
        if (
            rules is not None
            and rules.decide(
                environ.get("REQUEST_METHOD"), environ.get("SCRIPT_NAME"), environ.get("PATH_INFO")
            )
            is PathRule.EXEMPT
        ):
            return True
        for reader in self.readers:
            if not reader.answers_without_io(environ):
                break
        else:
            return True
        return False

    def cached_answerer(self) -> Callable[[Mapping[str, Any]], Any]:
        """A function that answers a request as :meth:`authenticate` would, without any I/O,
        or returns :data:`MISS` (having logged, counted and cached nothing) when only
        :meth:`authenticate`, in a worker thread, may answer it.

        For the common case (one source reading one header, no metrics) it is the fast path
        with "not in the caches" turned into :data:`MISS`: one pass. Any other configuration
        asks :meth:`answers_without_io` first, then calls :meth:`authenticate` (two passes over
        the headers, still no I/O).
        """
        first = self.readers[0]
        if not (
            len(self.readers) == 1
            and first._roles is None
            and first._rival_key is None
            and self._metrics is None
        ):
            answers_without_io, authenticate = self.answers_without_io, self.authenticate

            def two_passes(environ: Mapping[str, Any]) -> Any:
                if answers_without_io(environ):
                    return authenticate(environ)
                return MISS

            return two_passes

        source, trust = first._user, first._trust
        cache_get, refused_get, miss = first._cache.get, first._refused.get, first._miss
        checks = first.verifier is not None
        anonymous_ok = self.config.allow_anonymous
        methods = self._only_methods or frozenset()
        rules = self._rules if self._rules is not None and self._rules.has_paths else None

        def one_pass(environ: Mapping[str, Any]) -> Any:
            protected = False
            if rules is not None:
                rule = rules.decide(
                    environ.get("REQUEST_METHOD"),
                    environ.get("SCRIPT_NAME"),
                    environ.get("PATH_INFO"),
                )
                if rule is PathRule.EXEMPT:
                    return None, []
                protected = rule is PathRule.PROTECTED
            elif methods:
                method = environ.get("REQUEST_METHOD")
                if type(method) is str and method in methods:
                    return None, []
            dropped: list[str] = []
            value = read_header(source, environ, trust, dropped)
            if value is not None:
                result = cache_get(value)
                if result is None:
                    if checks and refused_get(_digest(value)) is None:
                        return MISS  # a new token: its checks may call the IdP
                    result = miss(value, value, None)  # refused before, or no I/O to do
                if result is not _NOT_OURS:
                    return result, dropped
            if protected or not anonymous_ok:
                raise Unauthenticated()
            return None, dropped

        return one_pass


class SourceReader:
    """One identity source: its headers, decoder, checks and caches.

    ``read`` gives the principal its header names, ``None`` when the header is absent, blank,
    not believed or another auth scheme, and raises :class:`Refusal` when it is present but
    unusable.
    """

    def __init__(
        self,
        config: JwtHeadersConfig,
        trust: PeerTrust,
        *,
        clock: Callable[[], float],
        verifier: Verifier | None = None,
        cache: TokenCache | None = None,
        shared: SharedCache | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.verifier = verifier if verifier is not None else build_verifier(config, clock, shared)
        self._verify = self.verifier
        self._cache = cache if cache is not None else LocalCache(config.token_cache_size, clock)
        self._refused = LocalCache(config.negative_cache_size, clock)
        self._flight = SingleFlight()
        self._trust = trust
        self._metrics = config.metrics_observer
        key_sets = (
            list(self.verifier.key_sets())
            if isinstance(self.verifier, ProviderRouter)
            else [getattr(self.verifier, "jwks", None)]
        )
        for jwks in key_sets:
            if isinstance(jwks, JwksClient):
                jwks.on_revoked = self._forget_principals
        self._user = HeaderSource(config.user_name_header, config.user_header_self_verifying)
        # R19: a robot's Authorization beside a proxy's token header must not silently lose.
        self._rival_key: str | None = None
        if config.user_name_format == "jwt" and self._user.http_key != "HTTP_AUTHORIZATION":
            self._rival_key = "HTTP_AUTHORIZATION"
        self._roles: HeaderSource | None = None
        if config.roles_source is not None and not config.roles_share_user_header:
            self._roles = HeaderSource(
                config.roles_header_name or "", config.roles_header_self_verifying
            )

    @property
    def header(self) -> str:
        return self.config.user_name_header

    def _forget_principals(self, revoked: frozenset[str]) -> None:
        """R41: a key was withdrawn; every cached principal is checked again on its next
        request (those signed by the withdrawn key are then refused as ``unknown_key``).
        Forgetting all is simpler than tracking each entry's ``kid`` and costs one signature
        check per token, once per withdrawal."""
        self._cache.clear()

    def read(self, environ: Mapping[str, Any], dropped: list[str]) -> Principal | None:
        """This source's principal, or ``None`` (absent, not believed, another scheme); the
        environ keys of unbelieved headers are appended to ``dropped``."""
        user_value = read_header(self._user, environ, self._trust, dropped)
        roles_value = None
        if self._roles is not None:
            roles_value = read_header(self._roles, environ, self._trust, dropped)
        if user_value is None:
            return None
        if self._rival_key is not None:
            rival = environ.get(self._rival_key)
            if isinstance(rival, str) and rival and rival != user_value:
                self._refuse_conflict(user_value, rival)
        key = user_value if self._roles is None else (user_value, roles_value)
        result = self._cache.get(key)
        if self._metrics is not None:
            self._metrics.token_cache(result is not None)
        if result is None:
            result = self._miss(key, user_value, roles_value)
        if result is _NOT_OURS:
            return None
        principal: Principal = result
        return principal

    def refuse_conflict(self, decider: SourceReader) -> None:
        """Refuse: this source's header names another user than the source that decided."""
        refusal = InvalidToken(
            "conflicting_credentials",
            f"{decider.header} and {self.header} name different users",
        )
        refusal.header = self.header
        _log_refusal(refusal)
        raise refusal

    def _refuse_conflict(self, user_value: str, rival: str) -> None:
        """Refuse when ``Authorization`` carries another bearer token than the token header."""
        try:
            theirs, ours = bearer_token(rival), bearer_token(user_value)
        except InvalidToken:
            return  # an unusable credential is not a second identity; ours is judged on its own
        if theirs is None or ours is None or theirs == ours:
            return
        refusal = InvalidToken(
            "conflicting_credentials",
            f"Authorization and {self.config.user_name_header} carry different tokens",
        )
        refusal.header, refusal.fingerprint = self.config.user_name_header, fingerprint(ours)
        _log_refusal(refusal)
        raise refusal

    # ------------------------------------------------------------------ cache misses
    def _miss(self, key: Any, user_value: str, roles_value: str | None) -> Any:
        digest = _digest(key)
        known = self._refused.get(digest)
        if known is not None:
            refusal = _copy_refusal(known)
            _log_refusal(refusal)
            raise refusal
        try:
            return self._flight.run(digest, lambda: self._resolve(key, user_value, roles_value))
        except Refusal as refusal:
            _log_refusal(refusal)
            if isinstance(refusal, InvalidToken) and refusal.reason not in _NOT_NEGATIVELY_CACHED:
                # A copy that was never raised: the original's traceback would pin every
                # frame it passed through (the environ, the decoded token) for the TTL (R25).
                self._refused.set(digest, _copy_refusal(refusal), self.config.negative_cache_ttl)
            raise

    def _resolve(self, key: Any, user_value: str, roles_value: str | None) -> Any:
        cached = self._cache.get(key)  # a concurrent flight may have just filled it
        if cached is not None:
            return cached
        deadlines: list[float] = []
        document, name = self._read_user(user_value, deadlines)
        if name is None:  # not cached: cheap to see again, and must not evict principals
            return _NOT_OURS
        roles = self._read_roles(document, user_value, roles_value, deadlines)
        principal = Principal(
            name=sys.intern(name),  # one string per user, however many tokens are cached
            roles=_shared_roles(
                convert_roles(roles, self.config.role_map, self.config.only_external_listed_roles)
            ),
            claims=None
            if document is None
            else Claims(
                user_value,
                is_jwt=self.config.user_name_format == "jwt",
                encoding=self.config.header_encoding,
            ),
        )
        ttl = min(deadlines) - self.clock() if deadlines else None
        self._cache.set(key, principal, ttl)
        return principal

    def _decode(self, value: str, fmt: str, deadlines: list[float]) -> Document | None:
        """Decode (and, for a JWT, verify) one header value; ``None``: another auth scheme."""
        check_size(value, self.config.max_header_bytes)
        if fmt == "json":
            return decode_json(value, self.config.header_encoding)
        token = bearer_token(value)
        if token is None:
            return None
        document = decode_jwt(token)
        if self._verify is not None:
            deadline = self._verify(document)
            if deadline is not None:
                deadlines.append(deadline)
        return document

    def _read_user(self, value: str, deadlines: list[float]) -> tuple[Document | None, str | None]:
        config = self.config
        try:
            if config.user_name_format == "string":
                check_size(value, config.max_header_bytes)
                # decode first: \xa0 may be half a UTF-8 character
                name = value_text(value, config.header_encoding).strip()
                return None, (check_user_name(name, config) if name else None)
            document = self._decode(value, config.user_name_format, deadlines)
            if document is None:
                return None, None
            assert config.user_path is not None  # guaranteed by the config checks
            name = name_from_claims(document.claims, config.user_path)
            return document, check_user_name(name, config)
        except Refusal as refusal:
            refusal.header = refusal.header or config.user_name_header
            fmt = config.user_name_format
            add_format_hint(refusal, value, fmt, "user_name_format")
            refusal.fingerprint = refusal.fingerprint or _fingerprint(value, fmt)
            raise

    def _read_roles(
        self,
        user_document: Document | None,
        user_value: str,
        roles_value: str | None,
        deadlines: list[float],
    ) -> list[str]:
        config = self.config
        source = config.roles_source
        if source is None:
            return []
        if self._roles is None:  # roles come from the user-name header, already decoded
            if source == "header":
                return list(
                    roles_from_header(
                        value_text(user_value, config.header_encoding),
                        config.roles_header_delimiter,
                    )
                )
            assert user_document is not None and config.roles_path is not None
            return list(roles_from_claims(user_document.claims, config.roles_path))
        if roles_value is None:
            return []
        try:
            if source == "header":
                check_size(roles_value, config.max_header_bytes)
                return list(
                    roles_from_header(
                        value_text(roles_value, config.header_encoding),
                        config.roles_header_delimiter,
                    )
                )
            document = self._decode(roles_value, source, deadlines)
            if document is None:
                return []
            if source == "jwt" and user_document is not None:
                check_same_subject(user_document.claims, document.claims)
            assert config.roles_path is not None
            return list(roles_from_claims(document.claims, config.roles_path))
        except Refusal as refusal:
            refusal.header = refusal.header or config.roles_header_name
            add_format_hint(refusal, roles_value, source, "roles_source")
            refusal.fingerprint = refusal.fingerprint or _fingerprint(roles_value, source)
            raise

    def answers_without_io(self, environ: Mapping[str, Any]) -> bool:
        """Whether :meth:`read` needs no I/O for this request (see
        :meth:`Authenticator.answers_without_io`): no checks configured, no believed header,
        or its key already in the token cache or the refusal cache."""
        if self.verifier is None:
            return True  # string and JSON headers, unchecked JWTs: decoding only
        user_value = peek_header(self._user, environ, self._trust)
        if user_value is None:
            return True
        roles_value = None
        if self._roles is not None:
            roles_value = peek_header(self._roles, environ, self._trust)
        key = user_value if self._roles is None else (user_value, roles_value)
        if self._cache.get(key) is not None:
            return True
        return self._refused.get(_digest(key)) is not None


def _log_refusal(refusal: Refusal) -> None:
    """One line per refused request; the record also carries ``reason`` and ``fingerprint``
    as attributes, for structured log handlers (and tests) that should not parse text."""
    level = logging.WARNING if refusal.status >= 500 else logging.INFO
    logger.log(
        level,
        "%s%s header=%s fp=%s: %s",
        refusal.reason,
        f" {refusal.detail}" if refusal.detail else "",
        safe(refusal.header),
        refusal.fingerprint,
        refusal.message,
        extra={"reason": refusal.reason, "fingerprint": refusal.fingerprint},
    )


__all__ = ["MISS", "Authenticator", "InvalidToken", "Verifier"]

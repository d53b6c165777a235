"""Counters an operator can graph: what the pipeline decided, and what the identity provider cost.

The pipeline reports to one observer object, handed over at start-up (option ``metrics``): no
module globals, and no Prometheus import in the core. Without one nothing is called at all. Any
object with the methods of :class:`Metrics` will do (a StatsD client wrapper, a test recorder);
``metrics="prometheus"`` uses :class:`PrometheusMetrics`, which registers its collectors with
prometheus_client's default registry (``pip install jwt-headers[prometheus]``).

The methods are called on the request path, so they must be cheap and must not raise; the
Prometheus observer binds its labelled children once, so a cache hit costs two counter
increments.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError


@runtime_checkable
class Metrics(Protocol):
    """What the pipeline reports. ``reason`` is a refusal's reason code (``expired``...)."""

    def allowed(self) -> None:
        """A request reached the app with a principal."""

    def anonymous(self) -> None:
        """A request reached the app without one (no credential, allowed)."""

    def exempt(self) -> None:
        """A request matched ``exempt_paths``/``exempt_methods``: nothing was read."""

    def refused(self, reason: str) -> None:
        """A request was answered 401/503 for ``reason``."""

    def untrusted_header(self) -> None:
        """A header that proves nothing came from a peer outside ``trusted_proxies``."""

    def token_cache(self, hit: bool) -> None:
        """The token cache answered (``hit``) or the value had to be decoded and checked."""

    def idp_call(self, endpoint: str, ok: bool, seconds: float) -> None:
        """One call to the identity provider: ``endpoint`` is ``jwks`` or ``userinfo``."""


#: Results of :meth:`PrometheusMetrics.shared_cache`, the optional observer method called once
#: per userinfo check with ``cache_url``: ``hit`` (Redis had the outcome), ``waited`` (another
#: worker's call answered), ``miss`` (this worker asked the provider), ``unavailable`` (Redis
#: failed or is being left alone: this worker asked).
SHARED_CACHE_RESULTS = ("hit", "waited", "miss", "unavailable")


#: The methods of :class:`Metrics`, which an observer object must all have.
OBSERVER_METHODS = (
    "allowed",
    "anonymous",
    "exempt",
    "refused",
    "untrusted_header",
    "token_cache",
    "idp_call",
)

#: The names, for the README and for callers that wrap another metrics library.
METRIC_NAMES = (
    "jwt_headers_requests_total",
    "jwt_headers_refusals_total",
    "jwt_headers_untrusted_headers_total",
    "jwt_headers_token_cache_total",
    "jwt_headers_idp_requests_total",
    "jwt_headers_idp_request_seconds",
    "jwt_headers_shared_cache_total",
)


class PrometheusMetrics:
    """The counters and the latency histogram in a prometheus_client registry.

    ``jwt_headers_requests_total{outcome}`` (allowed, anonymous, exempt, refused),
    ``jwt_headers_refusals_total{reason}``, ``jwt_headers_untrusted_headers_total``,
    ``jwt_headers_token_cache_total{result}`` (hit, miss),
    ``jwt_headers_idp_requests_total{endpoint,result}`` (jwks/userinfo, ok/failed),
    ``jwt_headers_shared_cache_total{result}`` (with ``cache_url``) and
    ``jwt_headers_idp_request_seconds{endpoint}``. One instance per registry: use
    :func:`prometheus_metrics`, so two middlewares in one process share the collectors instead
    of failing on duplicate names.
    """

    def __init__(self, registry: Any = None) -> None:
        try:
            import prometheus_client  # type: ignore[import-not-found,unused-ignore]
        except ImportError:  # pragma: no cover - depends on the environment
            raise ConfigError(
                "metrics='prometheus' needs prometheus_client: "
                "pip install 'jwt-headers[prometheus]'"
            ) from None
        if registry is None:
            registry = prometheus_client.REGISTRY
        counter, histogram = prometheus_client.Counter, prometheus_client.Histogram
        requests = counter(
            "jwt_headers_requests",
            "Requests by what jwt-headers decided",
            ["outcome"],
            registry=registry,
        )
        self._allowed = requests.labels("allowed")
        self._anonymous = requests.labels("anonymous")
        self._exempt = requests.labels("exempt")
        self._refused_total = requests.labels("refused")
        self._refusals = counter(
            "jwt_headers_refusals",
            "Refused requests by reason code",
            ["reason"],
            registry=registry,
        )
        self._untrusted = counter(
            "jwt_headers_untrusted_headers",
            "Identity headers ignored because the peer is not in trusted_proxies",
            registry=registry,
        )
        cache = counter(
            "jwt_headers_token_cache",
            "Token cache lookups by result",
            ["result"],
            registry=registry,
        )
        self._hit, self._miss = cache.labels("hit"), cache.labels("miss")
        self._idp = counter(
            "jwt_headers_idp_requests",
            "Calls to the identity provider by endpoint and result",
            ["endpoint", "result"],
            registry=registry,
        )
        shared = counter(
            "jwt_headers_shared_cache",
            "Userinfo checks by what the shared cache (cache_url) gave",
            ["result"],
            registry=registry,
        )
        self._shared = {result: shared.labels(result) for result in SHARED_CACHE_RESULTS}
        self._latency = histogram(
            "jwt_headers_idp_request_seconds",
            "Duration of calls to the identity provider",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )

    def allowed(self) -> None:
        self._allowed.inc()

    def anonymous(self) -> None:
        self._anonymous.inc()

    def exempt(self) -> None:
        self._exempt.inc()

    def refused(self, reason: str) -> None:
        self._refused_total.inc()
        self._refusals.labels(reason).inc()

    def untrusted_header(self) -> None:
        self._untrusted.inc()

    def token_cache(self, hit: bool) -> None:
        (self._hit if hit else self._miss).inc()

    def shared_cache(self, result: str) -> None:
        """Optional for other observers (called only when present): see
        :data:`SHARED_CACHE_RESULTS`."""
        self._shared[result].inc()

    def idp_call(self, endpoint: str, ok: bool, seconds: float) -> None:
        self._idp.labels(endpoint, "ok" if ok else "failed").inc()
        self._latency.labels(endpoint).observe(seconds)


#: The exporter of each registry, keyed by the registry itself and forgotten with it: keyed by
#: ``id()``, a registry made after another was collected could get its id and be handed the
#: old one's exporter, counting into a registry nobody reads (seen on CPython 3.13).
_BY_REGISTRY: weakref.WeakKeyDictionary[Any, PrometheusMetrics] = weakref.WeakKeyDictionary()
_DEFAULT: list[PrometheusMetrics] = []  # the default registry's, made on first use
_LOCK = threading.Lock()


def prometheus_metrics(registry: Any = None) -> PrometheusMetrics:
    """The one :class:`PrometheusMetrics` of ``registry`` (default: the default registry)."""
    with _LOCK:
        if registry is None:
            if not _DEFAULT:
                _DEFAULT.append(PrometheusMetrics())
            return _DEFAULT[0]
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = PrometheusMetrics(registry)
        return found


def resolve(value: object) -> Metrics | None:
    """The ``metrics`` option as an observer: ``None``, ``"prometheus"`` or an object."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if value.strip().lower() == "prometheus":
            return prometheus_metrics()
        raise ConfigError(
            f"metrics={value!r} is unknown; use 'prometheus' (pip install "
            "'jwt-headers[prometheus]'), an object with the methods of "
            "jwt_headers.metrics.Metrics, or leave it unset"
        )
    missing = [name for name in OBSERVER_METHODS if not callable(getattr(value, name, None))]
    if missing:
        raise ConfigError(
            f"metrics={type(value).__name__} object lacks {', '.join(missing)}; give an object "
            "with the methods of jwt_headers.metrics.Metrics, or 'prometheus'"
        )
    return value  # type: ignore[return-value]

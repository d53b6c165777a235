"""Metrics (issue 13): the observer hook the pipeline reports to, and the Prometheus exporter.

Real IdP (the fake one on 127.0.0.1) for the key-set and userinfo counts; the Prometheus
collectors are read back from prometheus_client's default registry, as a scrape would.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from typing import Any

import idp
import prometheus_client
import pytest
from conftest import NOW, STRANGER, STRING, FrozenClock, RecordingApp, call
from idp import ISSUER, mint

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.metrics import METRIC_NAMES, SHARED_CACHE_RESULTS, Metrics, prometheus_metrics

idp_server = idp.idp_server


class Recorder:
    """A metrics observer that counts what it is told."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.idp: list[tuple[str, bool, float]] = []

    def allowed(self) -> None:
        self.events["allowed"] += 1

    def anonymous(self) -> None:
        self.events["anonymous"] += 1

    def exempt(self) -> None:
        self.events["exempt"] += 1

    def refused(self, reason: str) -> None:
        self.events[f"refused:{reason}"] += 1

    def untrusted_header(self) -> None:
        self.events["untrusted"] += 1

    def token_cache(self, hit: bool) -> None:
        self.events["hit" if hit else "miss"] += 1

    def idp_call(self, endpoint: str, ok: bool, seconds: float) -> None:
        self.idp.append((endpoint, ok, seconds))


def send(middleware: JwtHeadersMiddleware, peer: str = "127.0.0.1", **environ: Any) -> Any:
    middleware.app = RecordingApp()
    return call(middleware, environ=environ, peer=peer)


def test_recorder_is_a_metrics_observer():
    assert isinstance(Recorder(), Metrics)


def test_request_outcomes_are_counted():
    recorder = Recorder()
    middleware = JwtHeadersMiddleware(
        RecordingApp(), **STRING, metrics=recorder, exempt_paths=["/healthz"]
    )
    send(middleware, HTTP_X_USER="alice")  # miss, allowed
    send(middleware, HTTP_X_USER="alice")  # hit, allowed
    send(middleware)  # anonymous
    send(middleware, HTTP_X_USER="bad\x01name")  # miss, refused
    send(middleware, HTTP_X_USER="alice", peer=STRANGER)  # dropped, anonymous
    middleware.app = RecordingApp()
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "REMOTE_ADDR": "127.0.0.1"}
    middleware(environ, lambda *args: None)  # exempt
    assert recorder.events == Counter(
        {
            "allowed": 2,
            "anonymous": 2,
            "hit": 1,
            "miss": 2,
            "refused:bad_user_name": 1,
            "untrusted": 1,
            "exempt": 1,
        }
    )


def test_unauthenticated_and_internal_error_are_counted_as_refusals():
    recorder = Recorder()
    middleware = JwtHeadersMiddleware(
        RecordingApp(), **STRING, allow_anonymous=False, metrics=recorder
    )
    send(middleware)
    middleware.authenticator.authenticate = lambda environ: 1 / 0  # type: ignore[method-assign]
    send(middleware, HTTP_X_USER="alice")
    assert recorder.events == Counter({"refused:unauthenticated": 1, "refused:internal_error": 1})


def validating(server: idp.IdpServer, recorder: Recorder) -> JwtHeadersMiddleware:
    return JwtHeadersMiddleware(
        RecordingApp(),
        clock=FrozenClock(),
        user_name_header="Authorization",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        validate_token=True,
        jwks_uri=server.jwks_uri,
        validate_issuer=True,
        issuer=ISSUER,
        validate_userinfo=True,
        userinfo_endpoint=server.userinfo_endpoint,
        metrics=recorder,
    )


def test_identity_provider_calls_are_counted_with_their_latency(idp_server):
    recorder = Recorder()
    middleware = validating(idp_server, recorder)
    token = mint(None, idp_server.key, NOW)
    assert send(middleware, HTTP_AUTHORIZATION=f"Bearer {token}").status == 200
    assert send(middleware, HTTP_AUTHORIZATION=f"Bearer {token}").status == 200  # cached
    assert [(endpoint, ok) for endpoint, ok, _ in recorder.idp] == [
        ("jwks", True),
        ("userinfo", True),
    ]
    assert all(0 <= seconds < 5 for _, _, seconds in recorder.idp)
    idp_server.userinfo_mode = "500"
    other = mint(None, idp_server.key, NOW)
    assert send(middleware, HTTP_AUTHORIZATION=f"Bearer {other}").status == 503
    assert recorder.idp[-1][:2] == ("userinfo", False)
    assert recorder.events["refused:userinfo_unavailable"] == 1


def test_failed_key_set_fetch_is_counted(idp_server):
    recorder = Recorder()
    idp_server.jwks_mode = "500"
    middleware = validating(idp_server, recorder)
    token = mint(None, idp_server.key, NOW)
    assert send(middleware, HTTP_AUTHORIZATION=f"Bearer {token}").status == 503
    assert [(endpoint, ok) for endpoint, ok, _ in recorder.idp] == [("jwks", False)]
    assert recorder.events["refused:jwks_unavailable"] == 1


# --------------------------------------------------------------------------- Prometheus
def sample(name: str, **labels: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0.0


def test_prometheus_exporter_counts_into_the_default_registry(idp_server):
    before = {
        "allowed": sample("jwt_headers_requests_total", outcome="allowed"),
        "refused": sample("jwt_headers_requests_total", outcome="refused"),
        "bad": sample("jwt_headers_refusals_total", reason="bad_user_name"),
        "hit": sample("jwt_headers_token_cache_total", result="hit"),
        "untrusted": sample("jwt_headers_untrusted_headers_total"),
    }
    middleware = JwtHeadersMiddleware(RecordingApp(), **STRING, metrics="prometheus")
    second = JwtHeadersMiddleware(RecordingApp(), **STRING, metrics="prometheus")  # no clash
    send(middleware, HTTP_X_USER="alice")
    send(second, HTTP_X_USER="alice")
    send(second, HTTP_X_USER="alice")
    send(middleware, HTTP_X_USER="bad\x01name")
    send(middleware, HTTP_X_USER="alice", peer=STRANGER)
    assert sample("jwt_headers_requests_total", outcome="allowed") == before["allowed"] + 3
    assert sample("jwt_headers_requests_total", outcome="refused") == before["refused"] + 1
    assert sample("jwt_headers_refusals_total", reason="bad_user_name") == before["bad"] + 1
    assert sample("jwt_headers_token_cache_total", result="hit") == before["hit"] + 1
    assert sample("jwt_headers_untrusted_headers_total") == before["untrusted"] + 1
    exposition = prometheus_client.generate_latest().decode()
    for name in METRIC_NAMES:
        assert name.removesuffix("_total") in exposition


def test_prometheus_histogram_of_identity_provider_calls(idp_server):
    count = sample("jwt_headers_idp_request_seconds_count", endpoint="jwks")
    ok = sample("jwt_headers_idp_requests_total", endpoint="jwks", result="ok")
    middleware = validating(idp_server, prometheus_metrics())  # type: ignore[arg-type]
    token = mint(None, idp_server.key, NOW)
    assert send(middleware, HTTP_AUTHORIZATION=f"Bearer {token}").status == 200
    assert sample("jwt_headers_idp_request_seconds_count", endpoint="jwks") == count + 1
    assert sample("jwt_headers_idp_requests_total", endpoint="jwks", result="ok") == ok + 1


def test_prometheus_in_its_own_registry():
    registry = prometheus_client.CollectorRegistry()
    metrics = prometheus_metrics(registry)
    assert prometheus_metrics(registry) is metrics
    metrics.refused("expired")
    assert registry.get_sample_value("jwt_headers_refusals_total", {"reason": "expired"}) == 1


def test_a_new_registry_gets_its_own_exporter_even_at_a_reused_address():
    """``prometheus_metrics`` used to key its exporters by ``id(registry)``: a registry made
    after another was collected often gets the same id, and was handed the dead registry's
    exporter, so nothing counted into it (a test failed this way on CPython 3.13). Each
    registry now has its own exporter, whatever its address."""
    first = prometheus_client.CollectorRegistry()
    prometheus_metrics(first).refused("expired")
    address = id(first)
    del first
    gc.collect()
    kept = []
    for _ in range(100):  # CPython usually hands the freed address to the next registry
        registry = prometheus_client.CollectorRegistry()
        if id(registry) == address:
            break
        kept.append(registry)
    prometheus_metrics(registry).refused("expired")
    assert registry.get_sample_value("jwt_headers_refusals_total", {"reason": "expired"}) == 1


def test_prometheus_shared_cache_counter_has_every_result():
    """``jwt_headers_shared_cache_total{result}``: every result the userinfo check reports
    exists from the start (a dashboard shows 0, not "no data"), and each counts on its own."""
    registry = prometheus_client.CollectorRegistry()
    metrics = prometheus_metrics(registry)
    for result in SHARED_CACHE_RESULTS:
        assert registry.get_sample_value("jwt_headers_shared_cache_total", {"result": result}) == 0
    metrics.shared_cache("hit")
    metrics.shared_cache("hit")
    metrics.shared_cache("unavailable")
    counts = {
        result: registry.get_sample_value("jwt_headers_shared_cache_total", {"result": result})
        for result in SHARED_CACHE_RESULTS
    }
    assert counts == {"hit": 2, "waited": 0, "miss": 0, "unavailable": 1}


# --------------------------------------------------------------------------- configuration
def test_metrics_from_text_forms(tmp_path):
    assert JwtHeadersConfig.from_mapping({**STRING, "metrics": "prometheus"}).metrics_observer
    env = {"JWT_HEADERS_USER_NAME_HEADER": "X-User", "JWT_HEADERS_METRICS": "Prometheus"}
    assert JwtHeadersConfig.from_env(environ=env).metrics_observer is prometheus_metrics()
    assert JwtHeadersConfig(**STRING).metrics_observer is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("statsd", "metrics='statsd' is unknown"),
        (object(), "object lacks allowed, anonymous"),
        (7, "int object lacks"),
    ],
)
def test_bad_metrics_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        JwtHeadersConfig(**STRING, metrics=value)


def test_metrics_reach_every_source():
    recorder = Recorder()
    middleware = JwtHeadersMiddleware(
        RecordingApp(),
        sources=[{"user_name_header": "X-User"}, {"user_name_header": "X-Other"}],
        metrics=recorder,
    )
    send(middleware, HTTP_X_OTHER="alice")
    assert recorder.events == Counter({"allowed": 1, "miss": 1})
    assert json.dumps(sorted(recorder.events))  # plain data, nothing else recorded


def test_flask_sample_serves_metrics():
    """samples/flask_app.py with JWT_HEADERS_METRICS=prometheus: /metrics shows the counters."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "samples" / "flask_app.py"
    spec = importlib.util.spec_from_file_location("sample_flask_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.create_app(JwtHeadersConfig(**STRING, metrics="prometheus"))
    client = app.test_client()
    assert client.get("/whoami", headers={"X-User": "alice"}).json["user"] == "alice"
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert 'jwt_headers_requests_total{outcome="allowed"}' in scrape.get_data(as_text=True)
    plain = module.create_app(JwtHeadersConfig(**STRING))
    assert plain.test_client().get("/metrics").status_code == 404  # only when asked for

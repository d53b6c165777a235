"""The README's "Flask, Django and PasteDeploy" examples and its Flask metrics snippet, run as
written (issue 17 item 5: every example is executed, so one that stops working fails CI).

Each example is taken from README.rst with ``example()``; only what the README marks as the
reader's own (``...``, ``egg:myapp``) is filled, with ``fill()``. The requests come from
127.0.0.1, inside the default ``trusted_proxies``, and go through the examples' own objects: the
Flask app's test client, the pipeline PasteDeploy loads.
"""

from __future__ import annotations

import json
from typing import Any

import prometheus_client
from conftest import RecordingApp, assert_accepted, assert_invalid_token, call
from docs_examples import example, fill
from flask import Flask, request
from paste.deploy import loadapp
from prometheus_client.parser import text_string_to_metric_families

from jwt_headers import JwtHeadersMiddleware

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
OUTSIDER = {"REMOTE_ADDR": "10.0.0.1"}  # not in the default trusted_proxies (loopback)


# --------------------------------------------------------------------------- Flask
def test_flask_init_app_and_roles_required_as_written():
    """The Flask example, executed as written (app.config keys, ``init_app``, a view under
    ``@roles_required``): what the table above it promises, through Flask's test client. The
    X-User/X-Roles headers need no ``trusted_proxies``: the default (loopback) believes them
    from 127.0.0.1, and ignores them from another peer."""
    code = example(
        "README.rst", "from jwt_headers.flask import current_principal, init_app, roles_required"
    )
    namespace: dict[str, Any] = {"__name__": "readme_flask_app"}
    exec(compile(code, "README.rst", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app.wsgi_app, JwtHeadersMiddleware)  # init_app wrapped wsgi_app
    client = app.test_client()

    admin = {"X-User": "alice", "X-Roles": "ROLE_ADMINISTRATOR"}
    answer = client.get("/admin", headers=admin, environ_base=LOOPBACK)
    assert answer.status_code == 200, answer.data
    assert answer.json == {"user": "alice"}

    answer = client.get(
        "/admin", headers={"X-User": "alice", "X-Roles": "ROLE_USER"}, environ_base=LOOPBACK
    )
    assert answer.status_code == 403, answer.data
    error = answer.json["error"]
    assert error["code"] == "INSUFFICIENT_ROLE"
    assert (error["required"], error["granted"]) == (["ROLE_ADMINISTRATOR"], ["ROLE_USER"])

    for headers, environ in (({}, LOOPBACK), (admin, OUTSIDER)):
        answer = client.get("/admin", headers=headers, environ_base=environ)
        assert answer.status_code == 401, answer.data
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.json["error"]["code"] == "UNAUTHENTICATED"


# --------------------------------------------------------------------------- Metrics
def test_flask_metrics_snippet_serves_the_counters():
    """The Metrics section's Flask snippet, executed as written on a Flask ``app`` (with
    ``JwtHeadersMiddleware`` imported, as in the Quick start); its ``...`` is the other options,
    filled with a plain-header config that refuses anonymous requests, so ``exempt_paths`` is
    what lets the scraper in. GET /metrics without a header is 200 in Prometheus' text format,
    and counts the requests made before it. prometheus_client's default registry outlives a
    test, so the counts are compared with their values before (the exporter is one per
    registry, so a second middleware does not register the collectors again)."""
    code = fill(example("README.rst", "import prometheus_client"), "...", "**OPTIONS", count=1)
    app = Flask("readme_metrics_app")
    app.add_url_rule("/whoami", "whoami", lambda: {"user": request.environ.get("REMOTE_USER")})
    namespace: dict[str, Any] = {
        "app": app,
        "JwtHeadersMiddleware": JwtHeadersMiddleware,
        "OPTIONS": {"user_name_header": "X-User", "allow_anonymous": False},
    }

    def count(outcome: str) -> float:
        value = prometheus_client.REGISTRY.get_sample_value(
            "jwt_headers_requests_total", {"outcome": outcome}
        )
        return value or 0.0

    before = {outcome: count(outcome) for outcome in ("allowed", "refused", "exempt")}
    exec(compile(code, "README.rst", "exec"), namespace)
    client = app.test_client()
    answer = client.get("/whoami", headers={"X-User": "alice"}, environ_base=LOOPBACK)
    assert (answer.status_code, answer.json) == (200, {"user": "alice"})
    assert client.get("/whoami", environ_base=LOOPBACK).status_code == 401

    scrape = client.get("/metrics", environ_base=LOOPBACK)
    assert scrape.status_code == 200, scrape.data
    assert scrape.headers["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape.get_data(as_text=True))
        for sample in family.samples
    }
    for outcome in ("allowed", "refused", "exempt"):
        key = ("jwt_headers_requests_total", (("outcome", outcome),))
        assert samples[key] == before[outcome] + 1, (outcome, samples.get(key))


# --------------------------------------------------------------------------- PasteDeploy
def make_app(global_conf: dict[str, str], **local_conf: str) -> RecordingApp:
    """The ``[app:myapp]`` factory standing for the reader's own application."""
    assert local_conf == {}
    return RecordingApp()


def test_paste_deploy_pipeline_as_written(tmp_path):
    """The PasteDeploy ini, written to a file as shown with only ``use = egg:myapp`` (the
    README's placeholder for the reader's app) pointed at a test app, loaded with
    ``paste.deploy.loadapp``: the JSON header names alice and is accepted from 127.0.0.1 (the
    underscore spelling the ini names, and the dashed one: one environ key in-process), the
    names in ``denied_user_names`` are refused before the app runs, a request without the
    header is anonymous, and another peer's header is ignored (default ``trusted_proxies``)."""
    ini = fill(
        example("README.rst", "[pipeline:main]"),
        "use = egg:myapp",
        f"use = call:{__name__}:make_app",
        count=1,
    )
    (tmp_path / "app.ini").write_text(ini, encoding="utf-8")
    pipeline = loadapp(f"config:{tmp_path / 'app.ini'}")
    assert isinstance(pipeline, JwtHeadersMiddleware)
    assert isinstance(pipeline.app, RecordingApp)  # make_app's, behind the filter

    def ask(claims: dict[str, str] | None, header: str = "OIDC_id_token_payload", **kw: Any):
        pipeline.app = RecordingApp()  # a fresh one per request: did this request reach it?
        return call(pipeline, {header: json.dumps(claims)} if claims else {}, **kw)

    for header in ("OIDC_id_token_payload", "OIDC-Id-Token-Payload"):
        assert_accepted(ask({"preferred_username": "alice"}, header), "alice")
    for name in ("root", "admin", "Admin"):
        assert_invalid_token(ask({"preferred_username": name}), "denied_user_name")
    answer = ask(None)
    assert answer.status == 200 and answer.app.called and answer.user is None
    answer = ask({"preferred_username": "alice"}, peer=OUTSIDER["REMOTE_ADDR"])
    assert answer.status == 200 and answer.app.called and answer.user is None

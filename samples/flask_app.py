"""A Flask app behind jwt-headers, configured from ``JWT_HEADERS_*`` environment variables.

The same file serves both sample deployments; only the environment differs:

- ``flask.env``: behind Apache with mod_auth_openidc (``apache/jwt-headers.conf``), the user and
  roles read from the ID token payload Apache passes on;
- ``robot.env``: robots sending ``Authorization: Bearer <JWT>``, every token checked against the
  identity provider;
- ``browsers_and_robots.toml``: both in one app (two identity sources), with
  ``from_file('browsers_and_robots.toml')``.

Run (see README.rst in this folder)::

    set -a; . samples/flask.env; set +a
    gunicorn -c samples/gunicorn.conf.py --chdir samples flask_app:app

The middleware wraps ``app.wsgi_app`` rather than ``app``, so Flask's own helpers
(``app.test_client()``, ``app.run``) still work and every request, including errors raised by
Flask itself, passes through authentication first. A broken configuration raises
``ConfigError`` at import, so gunicorn refuses to start instead of serving unprotected.

Do not add ``werkzeug.middleware.proxy_fix.ProxyFix(x_for=...)`` in front of the middleware
unless the proxy's address is the only one that can reach the app: jwt-headers decides whether
to believe an unsigned header from ``REMOTE_ADDR`` (``trusted_proxies``), and ProxyFix would
let ``X-Forwarded-For`` choose that address.
"""

from __future__ import annotations

import logging

from flask import Flask, request

from jwt_headers import PRINCIPAL_KEY, JwtHeadersConfig, JwtHeadersMiddleware, Principal

# jwt-headers logs refusals and ignored headers (reason code and fingerprint, never a token) on
# the "jwt_headers" logger; send them to stderr, where gunicorn's error log goes.
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def create_app(config: JwtHeadersConfig | None = None) -> Flask:
    """The app, protected by jwt-headers (``config`` defaults to the ``JWT_HEADERS_*`` env)."""
    app = Flask(__name__)
    if config is None:
        config = JwtHeadersConfig.from_env()
    app.wsgi_app = JwtHeadersMiddleware(app.wsgi_app, config)  # type: ignore[method-assign]

    if config.metrics == "prometheus":  # JWT_HEADERS_METRICS=prometheus

        @app.get("/metrics")
        def metrics() -> tuple[bytes, int, dict[str, str]]:
            """Prometheus scrapes the middleware's counters here (jwt-headers[prometheus])."""
            import prometheus_client

            headers = {"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
            return prometheus_client.generate_latest(), 200, headers

    @app.get("/whoami")
    def whoami() -> dict[str, object]:
        """Who the middleware says is calling: what an app would base its decisions on."""
        principal: Principal | None = request.environ.get(PRINCIPAL_KEY)
        if principal is None:
            return {"user": None, "roles": [], "anonymous": True}
        return {"user": principal.name, "roles": list(principal.roles), "anonymous": False}

    @app.get("/health")
    def health() -> dict[str, str]:
        """For load balancers and start-up checks: answers whoever asks, token or not."""
        return {"status": "ok"}

    return app


def from_file(path: str) -> Flask:
    """The app configured from a TOML file's ``[jwt_headers]`` table, for options the
    environment cannot hold comfortably (``browsers_and_robots.toml``'s ``sources``)::

        gunicorn --chdir samples "flask_app:from_file('browsers_and_robots.toml')"
    """
    return create_app(JwtHeadersConfig.from_file(path))


def __getattr__(name: str) -> Flask:
    """``flask_app:app`` is built from the environment when first asked for, so importing the
    module for ``from_file`` needs no ``JWT_HEADERS_*`` variables."""
    if name == "app":
        app = create_app()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The WSGI entry point: Django behind jwt-headers (``gunicorn ... mysite.wsgi``).

jwt-headers wraps the whole Django application, outside every Django middleware: it judges the
identity headers, removes any ``REMOTE_USER`` that came from upstream, and sets ``REMOTE_USER``
and ``jwt_headers.principal`` for Django's ``RemoteUserMiddleware`` to read. Its options come
from the ``JWT_HEADERS_*`` environment variables (``samples/django.env``). The config is built
before Django is loaded, so a mistake stops gunicorn at start-up with a ``ConfigError`` naming
the option, instead of serving without authentication.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

config = JwtHeadersConfig.from_env()
application = JwtHeadersMiddleware(get_wsgi_application(), config)

"""The WSGI entry point: Django behind jwt-headers (``gunicorn ... mysite.wsgi``).

jwt-headers wraps the whole Django application, outside every Django middleware: it judges the
identity headers, removes any ``REMOTE_USER`` that came from upstream, and sets ``REMOTE_USER``
and ``jwt_headers.principal`` for Django's middleware to read. Its options are the
``JWT_HEADERS`` setting (``settings.py`` fills it from the ``JWT_HEADERS_*`` environment,
``samples/django.env``); a mistake stops gunicorn at start-up with a ``ConfigError`` naming the
option, instead of serving without authentication.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_application = get_wsgi_application()  # sets Django up: jwt_headers.django needs that

from jwt_headers.django import middleware_from_settings  # noqa: E402

application = middleware_from_settings(django_application)

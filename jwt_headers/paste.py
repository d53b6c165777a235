"""PasteDeploy entry point, so an ini pipeline can put the middleware in front of an app.

Options are the ``[filter:...]`` section's own keys, in text form, as ``from_mapping`` reads
them. ``global_conf`` ([DEFAULT] values, ``here``, ``__file__``) is not read: its keys belong
to the whole file, and mixing them in would turn every unrelated default into an unknown-option
error.

Example::

    [pipeline:main]
    pipeline = jwt_headers myapp

    [filter:jwt_headers]
    use = egg:jwt-headers
    user_name_header = OIDC_id_token_payload
    user_name_format = json
    user_name_json_path = preferred_username
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .config import JwtHeadersConfig
from .middleware import JwtHeadersMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["filter_app_factory"]


def filter_app_factory(
    app: WSGIApplication, global_conf: Mapping[str, Any], **local_conf: Any
) -> JwtHeadersMiddleware:
    """Wrap ``app`` with the middleware configured by the filter section's keys."""
    return JwtHeadersMiddleware(app, JwtHeadersConfig.from_mapping(local_conf))

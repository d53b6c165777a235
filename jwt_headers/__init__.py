"""jwt-headers: WSGI and ASGI middleware that authenticates requests from headers.

The user name comes from a plain, JSON or JWT header (as Apache mod_auth_openidc or a robot's
``Authorization: Bearer`` sends it), roles from a header or the token's claims; JWTs can be
validated (expiry, JWKS signature, userinfo, audience, issuer). See the README.
"""

from ._version import __version__
from .config import JwtHeadersConfig
from .core import Authenticator
from .errors import ConfigError, IdpUnavailable, InvalidToken, Refusal, Unauthenticated
from .middleware import PRINCIPAL_KEY, JwtHeadersMiddleware
from .principal import Claims, Principal

__all__ = [
    "PRINCIPAL_KEY",
    "Authenticator",
    "Claims",
    "ConfigError",
    "IdpUnavailable",
    "InvalidToken",
    "JwtHeadersConfig",
    "JwtHeadersMiddleware",
    "Principal",
    "Refusal",
    "Unauthenticated",
    "__version__",
]

"""User name and roles from a decoded document, through the paths compiled at start-up.

The name must be exactly one non-empty string (R14): a path that finds nothing, several values,
a number or a list is an unusable header, never "the first one". Role values that are not
strings are skipped rather than stringified (R21): ``true`` is not a role.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from .config import JwtHeadersConfig, normalize_user_name
from .decode import parse_json_array
from .errors import InvalidToken
from .paths import JsonPath

logger = logging.getLogger("jwt_headers")

MAX_USER_NAME = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def name_from_claims(claims: dict[str, Any], path: JsonPath) -> str:
    found = path(claims)
    if len(found) != 1:
        raise InvalidToken(
            "no_user_name",
            "user name path matches nothing"
            if not found
            else "user name path matches several values",
        )
    name = found[0]
    if not isinstance(name, str) or not name:
        raise InvalidToken("no_user_name", "user name path does not lead to a non-empty string")
    return name


def check_user_name(name: str, config: JwtHeadersConfig) -> str:
    """Refuse names an app should never see; return the name unchanged otherwise."""
    if len(name) > MAX_USER_NAME:
        raise InvalidToken("bad_user_name", f"user name longer than {MAX_USER_NAME} characters")
    if _CONTROL.search(name):
        raise InvalidToken("bad_user_name", "user name contains control characters")
    if name != name.strip():
        raise InvalidToken("bad_user_name", "user name has leading or trailing white space")
    if config.denied_normalized and normalize_user_name(name) in config.denied_normalized:
        raise InvalidToken("denied_user_name", "this user name is not accepted here")
    return name


def roles_from_claims(claims: dict[str, Any], path: JsonPath) -> Iterator[str]:
    """A string match is one role; a list match gives its string items."""
    for match in path(claims):
        if isinstance(match, str):
            if match:
                yield match
        elif isinstance(match, list):
            for item in match:
                if isinstance(item, str):
                    if item:
                        yield item
                else:
                    logger.debug("ignored non-string role of type %s", type(item).__name__)
        else:
            logger.debug("ignored roles value of type %s", type(match).__name__)


def roles_from_header(value: str, delimiter: str) -> Iterator[str]:
    """A delimited list (mod_auth_openidc joins an array claim with ``,``), or a JSON array of
    strings when the value starts with ``[`` (a claim header passed as JSON); a value that starts
    like an array but is not one is refused rather than split into odd role names."""
    text = value.strip()
    if text.startswith("["):
        for item in parse_json_array(text, "roles header"):
            if isinstance(item, str) and item.strip():
                yield item.strip()
            elif not isinstance(item, str):
                logger.debug("ignored non-string role of type %s", type(item).__name__)
        return
    for item in text.split(delimiter):
        role = item.strip()
        if role:
            yield role

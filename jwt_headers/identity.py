"""User name and roles from a decoded document, through the paths compiled at start-up.

The name must be exactly one non-empty string (R14): a path that finds nothing, several values,
a number or a list is an unusable header, never "the first one". Role values that are not
strings are skipped rather than stringified (R21): ``true`` is not a role.

A refusal says what to fix without repeating what the header held (R35): it names the
configured path that matched nothing, and the format the header seems to be in when it is not
the configured one, but never a claim value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from .config import JwtHeadersConfig, normalize_user_name
from .decode import parse_json_array
from .errors import InvalidToken, Refusal
from .paths import JsonPath

logger = logging.getLogger("jwt_headers")

MAX_USER_NAME = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: A compact JWS, perhaps after ``Bearer``: what a JWT looks like to someone expecting JSON.
_LOOKS_LIKE_JWT = re.compile(
    r"(?:[Bb][Ee][Aa][Rr][Ee][Rr] +)?eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
)


def name_from_claims(claims: dict[str, Any], path: JsonPath) -> str:
    found = path(claims)
    if len(found) != 1:
        raise InvalidToken(
            "no_user_name",
            f"user name path {path.text!r} matches nothing"
            if not found
            else f"user name path {path.text!r} matches several values",
        )
    name = found[0]
    if not isinstance(name, str) or not name:
        raise InvalidToken(
            "no_user_name", f"user name path {path.text!r} does not lead to a non-empty string"
        )
    return name


def format_hint(value: str, expected: str, option: str) -> str | None:
    """What to set when a header is plainly in the other format than ``expected``: a JWT where
    JSON was configured, or a JSON document where a JWT was. Only the shape of the value is
    looked at, and the hint names the option and its value, never anything the header holds."""
    text = value.strip()
    if expected == "json" and _LOOKS_LIKE_JWT.fullmatch(text):
        return f"the header holds a JWT; set {option}='jwt'"
    if expected == "jwt" and text.startswith("{"):
        return f"the header holds a JSON document; set {option}='json'"
    return None


def add_format_hint(refusal: Refusal, value: str, expected: str, option: str) -> None:
    """Append :func:`format_hint` to a refusal of a header in the other format (the reason
    code stays as it is: logs, metrics and tests key on it)."""
    hint = format_hint(value, expected, option)
    if hint is not None and hint not in refusal.message:
        refusal.message = f"{refusal.message}: {hint}"


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
    """A string match is one role; a list match gives its string items.

    A path that matches nothing gives no roles, which is normal for a user without any, but
    is also what a mistyped path looks like: the DEBUG line names the path, so the second case
    can be told from the first without logging the claims."""
    matches = path(claims)
    if not matches:
        logger.debug("roles path %r matches nothing: no roles from it", path.text)
    for match in matches:
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

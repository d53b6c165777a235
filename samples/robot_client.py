"""A robot calling an API protected by jwt-headers (``robot.env``): OAuth2 client credentials.

It asks the identity provider's token endpoint for an access token with its own client id and
secret (RFC 6749 section 4.4, client authentication by HTTP Basic), then calls the API with
``Authorization: Bearer <token>`` and prints the API's status and body. It never prints or logs
the token: whoever reads a token can act as the robot until it expires.

Usage::

    export ROBOT_CLIENT_SECRET=...          # not an argument: arguments show in `ps`
    python samples/robot_client.py \\
        --token-url https://idp.example/realms/r/protocol/openid-connect/token \\
        --client-id my-robot --api-url https://api.app.example/whoami

Every option can come from the environment instead (``ROBOT_TOKEN_URL``, ``ROBOT_CLIENT_ID``,
``ROBOT_API_URL``, ``ROBOT_RESOURCE``, ``ROBOT_SCOPE``). ``--resource`` asks for a token for
one API (RFC 8707 resource indicator: it becomes the token's ``aud``, which ``robot.env``
checks); providers that set the audience by other means (Keycloak's audience mappers) need none.

Exit status: 0 for a 2xx answer from the API, 1 for any other answer, 2 when no token was had.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import requests

TIMEOUT = (5.0, 30.0)  # (connect, read) seconds; requests has no default timeout at all


class TokenError(Exception):
    """The token endpoint refused or could not be reached (the message holds no secret)."""


def fetch_token(
    token_url: str,
    client_id: str,
    client_secret: str,
    *,
    resource: str | None = None,
    scope: str | None = None,
    session: requests.Session | None = None,
) -> str:
    """An access token for the robot, by the client credentials grant."""
    form = {"grant_type": "client_credentials"}
    if resource:
        form["resource"] = resource
    if scope:
        form["scope"] = scope
    http = session or requests.Session()
    try:
        response = http.post(token_url, data=form, auth=(client_id, client_secret), timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise TokenError(f"token endpoint unreachable: {type(exc).__name__}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200 or not isinstance(answer, dict):
        # An OAuth2 error answer holds "error" and "error_description", never a token.
        detail = answer if isinstance(answer, dict) else response.text[:200]
        raise TokenError(f"token endpoint answered {response.status_code}: {detail}")
    token = answer.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenError("token endpoint answered 200 without an access_token")
    return token


def call_api(
    api_url: str, token: str, *, session: requests.Session | None = None
) -> requests.Response:
    """GET the API with the token as a Bearer credential (RFC 6750), never in the URL."""
    http = session or requests.Session()
    return http.get(api_url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--token-url", default=env("ROBOT_TOKEN_URL"), help="token endpoint")
    parser.add_argument("--client-id", default=env("ROBOT_CLIENT_ID"), help="robot's client id")
    parser.add_argument("--api-url", default=env("ROBOT_API_URL"), help="URL to call")
    parser.add_argument("--resource", default=env("ROBOT_RESOURCE"), help="RFC 8707 resource")
    parser.add_argument("--scope", default=env("ROBOT_SCOPE"), help="space-separated scopes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Get a token, call the API, print its status and body."""
    parser = _parser()
    args = parser.parse_args(argv)
    missing = [
        option
        for option, value in (
            ("--token-url", args.token_url),
            ("--client-id", args.client_id),
            ("--api-url", args.api_url),
        )
        if not value
    ]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or the ROBOT_* environment variables)")
    secret = os.environ.get("ROBOT_CLIENT_SECRET")
    if not secret:
        parser.error("set ROBOT_CLIENT_SECRET in the environment")
    with requests.Session() as session:
        try:
            token = fetch_token(
                args.token_url,
                args.client_id,
                secret,
                resource=args.resource,
                scope=args.scope,
                session=session,
            )
        except TokenError as exc:
            print(f"no token: {exc}", file=sys.stderr)
            return 2
        try:
            response = call_api(args.api_url, token, session=session)
        except requests.RequestException as exc:
            print(f"API unreachable: {type(exc).__name__}", file=sys.stderr)
            return 1
    print(f"status: {response.status_code}")
    print(response.text.rstrip("\n"))  # the body's own newline: no blank line after it
    return 0 if response.ok else 1


if __name__ == "__main__":
    sys.exit(main())

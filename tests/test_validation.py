"""Token validation for robots (`Authorization: Bearer <JWT>` checked against a JWKS).

Requirements covered (security.md): R6 expiry, R7 nbf/iat, R8 audience, R9 issuer,
R11-R14 parsing, size and user-name shape, R16 (a signature-checked token needs no trusted
proxy), R20 roles only from a validated token, R23/R24 token cache, R25 negative cache,
R34 refusal shape. Every time-dependent test runs on a frozen clock; tokens are minted
relative to the same ``now``. Nothing sleeps.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import idp
import jwt
import pytest
from conftest import (
    LOOPBACK,
    NOW,
    STRANGER,
    Answer,
    FrozenClock,
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    call,
)
from idp import DELETE, ISSUER, SUBJECT, make_key, mint

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

LEEWAY = 30  # the default
ROLES_PATH = "resource_access.live-key2.roles"
TOKEN_ROLES = ("GeonetworkAdministrator", "GeoserverAdministrator")
OTHER_ISSUER = "https://login.example.test/tenant-b"

#: The access token of headers-examples.md (Keycloak realm dave-test2, exp 1708555947).
SEED_ACCESS_TOKEN = (
    "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICItb0QyZXphcjF3ZHBUUmZCS0NqMFY4cm5ZVkJGQmxJLW5ldzFEREJCNTJrIn0"
    ".eyJleHAiOjE3MDg1NTU5NDcsImlhdCI6MTcwODU1NTY0NywiYXV0aF90aW1lIjoxNzA4NTU1Mjg4LCJqdGkiOiI0M2UyYjUwZS1hYjJkLTQ2OWQtYWJjOC01Nzc1YTY0MTMwNTkiLCJpc3MiOiJodHRwOi8vbG9jYWxob3N0Ojc3NzcvcmVhbG1zL2RhdmUtdGVzdDIiLCJhdWQiOiJhY2NvdW50Iiwic3ViIjoiOThjZmUwNjAtZjk4MC00YTA1LTg2MTItNmM2MDkyMTlmZmU5IiwidHlwIjoiQmVhcmVyIiwiYXpwIjoibGl2ZS1rZXkyIiwibm9uY2UiOiI0UGhxbVpTSjM1NUtCdEpQYkFQX1Bkd3FpTG5jN0IxbEEyU0dwQjB6WHI0Iiwic2Vzc2lvbl9zdGF0ZSI6Ijc3MTJiMzY0LTMzOWEtNDA1My1hZTBjLTdkM2FkZmNhOTAwNSIsImFjciI6IjAiLCJyZWFsbV9hY2Nlc3MiOnsicm9sZXMiOlsiZGVmYXVsdC1yb2xlcy1kYXZlLXRlc3QyIiwib2ZmbGluZV9hY2Nlc3MiLCJ1bWFfYXV0aG9yaXphdGlvbiJdfSwicmVzb3VyY2VfYWNjZXNzIjp7ImxpdmUta2V5MiI6eyJyb2xlcyI6WyJHZW9uZXR3b3JrQWRtaW5pc3RyYXRvciIsIkdlb3NlcnZlckFkbWluaXN0cmF0b3IiXX0sImFjY291bnQiOnsicm9sZXMiOlsibWFuYWdlLWFjY291bnQiLCJtYW5hZ2UtYWNjb3VudC1saW5rcyIsInZpZXctcHJvZmlsZSJdfX0sInNjb3BlIjoib3BlbmlkIHBob25lIG9mZmxpbmVfYWNjZXNzIG1pY3JvcHJvZmlsZS1qd3QgcHJvZmlsZSBhZGRyZXNzIGVtYWlsIiwic2lkIjoiNzcxMmIzNjQtMzM5YS00MDUzLWFlMGMtN2QzYWRmY2E5MDA1IiwidXBuIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQiLCJlbWFpbF92ZXJpZmllZCI6ZmFsc2UsImFkZHJlc3MiOnt9LCJuYW1lIjoiZGF2aWQgYmxhc2J5IiwiZ3JvdXBzIjpbImRlZmF1bHQtcm9sZXMtZGF2ZS10ZXN0MiIsIm9mZmxpbmVfYWNjZXNzIiwidW1hX2F1dGhvcml6YXRpb24iXSwicHJlZmVycmVkX3VzZXJuYW1lIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQiLCJnaXZlbl9uYW1lIjoiZGF2aWQiLCJmYW1pbHlfbmFtZSI6ImJsYXNieSIsImVtYWlsIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQifQ"
    ".Iq8YJ99s_HBd-gU2zaDqGbJadCE--7PlS2kRHaegYTil7WoNKfjfcH-K-59mHGzJm-V_SefE-iWG63z2c6ChddzhvG8I_O5vDNFoGlGOQFunZC379SqhqhCEdwscEUDkNA3iTTXvK9vn0muStDiv9OzpJ1zcpqYqsgxGbolGgLJgeuK8yNDH7kzDtoRzHiHw2rx4seeVpxUYAjyg_cCkEjRt3wzud7H3xlfQWRx75YfpJ0pnVphuXYR7Z8x9p6hCPtrBfDeriudm-wkwXtcV2LNlXrZ2zpKS_6Zdxzza2lN30q_6DQXHGo8EAIr8SiiQrxPQulNiX9r8XmQ917Ep0g"
)
SEED_EXP = 1708555947
SEED_IAT = 1708555647


# --------------------------------------------------------------------------- helpers


def robot_options(server: idp.IdpServer, **extra: Any) -> dict[str, Any]:
    """A D2 robot config: Bearer JWT in Authorization, signature via the fake IdP's JWKS."""
    options: dict[str, Any] = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": server.jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
    }
    options.update(extra)
    return options


def robot(
    server: idp.IdpServer, clock: FrozenClock | None = None, **extra: Any
) -> JwtHeadersMiddleware:
    return JwtHeadersMiddleware(
        RecordingApp(), clock=clock or FrozenClock(), **robot_options(server, **extra)
    )


def send(
    middleware: JwtHeadersMiddleware,
    token: str,
    *,
    peer: str = STRANGER,
    extra_headers: dict[str, str] | None = None,
) -> Answer:
    """One request with ``Authorization: Bearer <token>``; a fresh recording app each time, so
    ``app.called`` is about this request only."""
    middleware.app = RecordingApp()
    headers = {"Authorization": f"Bearer {token}", **(extra_headers or {})}
    return call(middleware, headers, peer=peer)


def assert_refused(answer: Answer, reason: str, fragment: str | None = None) -> None:
    """R34: 401, `Bearer error="invalid_token"`, JSON body INVALID_TOKEN naming the failed check,
    no cookie, the app never ran, and the refusal was for ``reason``."""
    assert_invalid_token(answer, reason, fragment)
    assert "Set-Cookie" not in answer.headers


def raw_payload(claims: dict[str, Any], **literals: str) -> str:
    """The claims' JSON text with some members replaced by raw JSON literals (``1e400``...)."""
    marked = dict(claims)
    for name in literals:
        marked[name] = f"@@{name}@@"
    text = json.dumps(marked, separators=(",", ":"))
    for name, literal in literals.items():
        text = text.replace(f'"@@{name}@@"', literal)
    return text


def raw_sign(key: idp.TestKey, header_text: str, payload_text: str) -> str:
    """A token whose header and payload segments are exactly these texts, validly signed."""
    algorithm = jwt.get_algorithm_by_name(key.alg)
    signing_input = f"{idp.b64url(header_text)}.{idp.b64url(payload_text)}"
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.private_key))
    return f"{signing_input}.{idp.b64url(signature)}"


# --------------------------------------------------------------------------- accepted
@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "ES384", "EdDSA"])
def test_r16_good_token_accepted_from_untrusted_peer(idp_server, alg):
    """R1/R16: a signature-checked token from a peer outside trusted_proxies is accepted, with
    the user name and the roles of the token."""
    key = make_key(alg)
    idp_server.keys = [key]
    middleware = robot(idp_server, roles_source="jwt", roles_json_path=ROLES_PATH)
    answer = send(middleware, mint(None, key, NOW), peer=STRANGER)
    principal = assert_accepted(answer)
    assert principal.roles == TOKEN_ROLES
    assert principal.claims is not None
    assert principal.claims["sub"] == SUBJECT
    assert principal.claims["iss"] == ISSUER
    assert idp_server.jwks_requests == 1


def test_r16_bare_token_without_scheme_accepted(idp_server):
    """Contract: a value with no scheme is the token itself."""
    middleware = robot(idp_server)
    middleware.app = RecordingApp()
    answer = call(middleware, {"Authorization": mint(None, idp_server.key, NOW)}, peer=STRANGER)
    assert_accepted(answer)


# --------------------------------------------------------------------------- R6 expiry
@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        pytest.param({"exp": DELETE}, "token has no valid exp", id="missing"),
        pytest.param({"exp": "9999999999"}, "exp", id="numeric-string"),
        pytest.param({"exp": str(NOW + 300)}, "exp", id="string-near"),
        pytest.param({"exp": True}, "exp", id="bool-true"),
        pytest.param({"exp": None}, "exp", id="null"),
        pytest.param({"exp": [NOW + 300]}, "exp", id="list"),
        pytest.param({"exp": {"value": NOW + 300}}, "exp", id="object"),
    ],
)
def test_r6_exp_must_be_a_json_number(idp_server, overrides, fragment):
    """R6: exp is required and must be a JSON number (not string, bool, null, list, object)."""
    answer = send(robot(idp_server), mint(overrides, idp_server.key, NOW))
    assert_refused(answer, "no_valid_exp", fragment)


@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_r6_exp_overflowing_to_infinity_refused(idp_server, literal):
    """R6: not NaN/inf. JSON cannot spell Infinity, but 1e400 overflows to it in Python."""
    payload = raw_payload(idp.access_claims(None, NOW), exp=literal)
    token = idp_server.key.sign(payload)
    assert_refused(send(robot(idp_server), token), "no_valid_exp", "exp")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_r6_r12_exp_non_json_constant_refused(idp_server, literal):
    """R6/R12: NaN and Infinity are not JSON; a payload holding them is refused."""
    payload = raw_payload(idp.access_claims(None, NOW), exp=literal)
    token = idp_server.key.sign(payload)
    assert_refused(send(robot(idp_server), token), "malformed", "JSON")


def test_r6_exp_float_accepted(idp_server):
    """R6: a float exp is a JSON number like any other."""
    token = mint({"exp": NOW + 120.5}, idp_server.key, NOW)
    assert_accepted(send(robot(idp_server), token))


@pytest.mark.parametrize("expired_for", [LEEWAY, LEEWAY + 1, 3600])
def test_r6_expired_beyond_leeway_refused(idp_server, expired_for):
    """R6: exp <= now - leeway is expired ("token expired"); the default leeway is 30 s."""
    token = mint({"exp": NOW - expired_for, "iat": NOW - 600}, idp_server.key, NOW)
    answer = send(robot(idp_server, FrozenClock(NOW)), token)
    assert_refused(answer, "expired", "token expired")


@pytest.mark.parametrize("expired_for", [0, 1, LEEWAY - 1])
def test_r6_expired_within_leeway_accepted(idp_server, expired_for):
    """R6: exp > now - leeway is still good (clock skew)."""
    token = mint({"exp": NOW - expired_for, "iat": NOW - 600}, idp_server.key, NOW)
    assert_accepted(send(robot(idp_server, FrozenClock(NOW)), token))


def test_r6_default_leeway_is_small():
    """R6 SHOULD: default leeway <= 60 s."""
    config = JwtHeadersConfig(user_name_header="X-User")
    assert 0 <= config.leeway <= 60


@pytest.mark.parametrize(
    ("leeway", "exp_offset", "accepted"),
    [
        pytest.param(0, 1, True, id="leeway0-exp-next-second"),
        pytest.param(0, 0, False, id="leeway0-exp-now"),
        pytest.param(0, -1, False, id="leeway0-expired-1s"),
        pytest.param(120, -119, True, id="leeway120-expired-119s"),
        pytest.param(120, -120, False, id="leeway120-expired-120s"),
        pytest.param(5.5, -5, True, id="leeway5.5-expired-5s"),
        pytest.param(5.5, -6, False, id="leeway5.5-expired-6s"),
    ],
)
def test_r6_leeway_option(idp_server, leeway, exp_offset, accepted):
    """R6: the `leeway` option moves the expiry boundary."""
    token = mint({"exp": NOW + exp_offset, "iat": NOW - 600}, idp_server.key, NOW)
    answer = send(robot(idp_server, FrozenClock(NOW), leeway=leeway), token)
    if accepted:
        assert_accepted(answer)
    else:
        assert_refused(answer, "expired", "token expired")


def test_r6_validate_expiry_false_accepts_expired_token(idp_server):
    """Contract: validate_expiry covers exp/nbf/iat; off, an expired (signed) token passes."""
    expired = mint({"exp": NOW - 86400, "iat": NOW - 90000}, idp_server.key, NOW)
    no_exp = mint({"exp": DELETE}, idp_server.key, NOW)
    middleware = robot(idp_server, FrozenClock(NOW), validate_expiry=False)
    assert_accepted(send(middleware, expired))
    assert_accepted(send(middleware, no_exp))
    # ... while the same middleware still checks the signature.
    forged = mint({"exp": NOW - 86400}, make_key("RS256", kid=idp_server.key.kid), NOW)
    assert_refused(send(middleware, forged), "bad_signature", "signature")


# --------------------------------------------------------------------------- R7 nbf / iat
IN_FUTURE = {"nbf": "not_yet_valid", "iat": "issued_in_future"}


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize("ahead", [LEEWAY + 1, 3600])
def test_r7_nbf_iat_in_future_beyond_leeway_refused(idp_server, claim, ahead):
    """R7: nbf (MUST) and iat (SHOULD) more than `leeway` in the future -> 401."""
    token = mint({claim: NOW + ahead}, idp_server.key, NOW)
    assert_refused(send(robot(idp_server, FrozenClock(NOW)), token), IN_FUTURE[claim], claim)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize("ahead", [0, 1, LEEWAY])
def test_r7_nbf_iat_in_future_within_leeway_accepted(idp_server, claim, ahead):
    """R7: up to `leeway` seconds ahead is clock skew, accepted."""
    token = mint({claim: NOW + ahead}, idp_server.key, NOW)
    assert_accepted(send(robot(idp_server, FrozenClock(NOW)), token))


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_r7_leeway_option_applies_to_nbf_iat(idp_server, claim):
    """R7: with leeway=0 one second ahead is already too early."""
    token = mint({claim: NOW + 1}, idp_server.key, NOW)
    assert_refused(
        send(robot(idp_server, FrozenClock(NOW), leeway=0), token), IN_FUTURE[claim], claim
    )


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize(
    "value",
    [str(NOW - 10), "0", True, False, None, [NOW], {"t": NOW}],
    ids=["numeric-string", "zero-string", "true", "false", "null", "list", "object"],
)
def test_r7_non_numeric_nbf_iat_refused(idp_server, claim, value):
    """R7 SHOULD: a non-numeric nbf/iat -> 401, naming the claim."""
    token = mint({claim: value}, idp_server.key, NOW)
    assert_refused(send(robot(idp_server, FrozenClock(NOW)), token), f"bad_{claim}", claim)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_r7_infinite_nbf_iat_refused(idp_server, claim):
    """R7: -1e400 (negative infinity) is no usable time either."""
    payload = raw_payload(idp.access_claims(None, NOW), **{claim: "-1e400"})
    assert_refused(send(robot(idp_server), idp_server.key.sign(payload)), f"bad_{claim}", claim)


def test_r7_validate_expiry_false_skips_nbf(idp_server):
    """Contract: validate_expiry covers nbf and iat as well."""
    token = mint({"nbf": NOW + 3600, "iat": NOW + 3600}, idp_server.key, NOW)
    assert_accepted(send(robot(idp_server, FrozenClock(NOW), validate_expiry=False), token))


def test_r7_not_yet_valid_token_becomes_valid_later(idp_server):
    """R7 + R25: a token refused as not yet valid is accepted once its time has come (the
    refusal is not remembered beyond its reason)."""
    clock = FrozenClock(NOW)
    middleware = robot(idp_server, clock)
    token = mint({"nbf": NOW + 60, "exp": NOW + 600}, idp_server.key, NOW)
    assert_refused(send(middleware, token), "not_yet_valid", "nbf")
    clock.advance(31)  # nbf = now + 29: within the leeway
    assert_accepted(send(middleware, token))


# --------------------------------------------------------------------------- R9 issuer
def test_r9_exact_issuer_accepted(idp_server):
    assert_accepted(send(robot(idp_server), mint({"iss": ISSUER}, idp_server.key, NOW)))


@pytest.mark.parametrize(
    "iss",
    [
        pytest.param(ISSUER + "/", id="trailing-slash"),
        pytest.param(ISSUER.upper(), id="upper-case"),
        pytest.param(ISSUER.replace("idp.example", "IDP.example"), id="host-case"),
        pytest.param(ISSUER.replace("dave-test2", "Dave-test2"), id="path-case"),
        pytest.param(ISSUER[:-1], id="prefix"),
        pytest.param("https://idp.example.test", id="origin-only"),
        pytest.param(ISSUER + "-evil", id="superstring"),
        pytest.param(ISSUER + "/../dave-test2", id="dot-segments"),
        pytest.param(" " + ISSUER, id="leading-space"),
        pytest.param(ISSUER + " ", id="trailing-space"),
        pytest.param(ISSUER.replace("https", "http"), id="scheme"),
        pytest.param("", id="empty"),
        pytest.param(f"{ISSUER}, {OTHER_ISSUER}", id="comma-list-in-token"),
    ],
)
def test_r9_issuer_not_exactly_equal_refused(idp_server, iss):
    """R9: exact string equality only (CVE-2024-53861): no prefix, case, slash games."""
    token = mint({"iss": iss}, idp_server.key, NOW)
    assert_refused(send(robot(idp_server), token), "wrong_issuer", "issuer")


@pytest.mark.parametrize(
    "iss",
    [DELETE, None, 1, True, [ISSUER], {"iss": ISSUER}],
    ids=["missing", "null", "number", "bool", "list", "object"],
)
def test_r9_missing_or_non_string_issuer_refused(idp_server, iss):
    """R9: missing iss, or an iss that is not a string (even a list holding the issuer)."""
    token = mint({"iss": iss}, idp_server.key, NOW)
    assert_refused(send(robot(idp_server), token), "wrong_issuer", "issuer")


@pytest.mark.parametrize(
    "issuer",
    [
        pytest.param([ISSUER, OTHER_ISSUER], id="list"),
        pytest.param((OTHER_ISSUER, ISSUER), id="tuple"),
        pytest.param(f"{ISSUER}, {OTHER_ISSUER}", id="comma-string"),
        pytest.param(f" {OTHER_ISSUER} ,{ISSUER},", id="comma-string-untidy"),
    ],
)
def test_r9_several_issuers_accept_each(idp_server, issuer):
    """Contract: `issuer` may be a list, or a comma-separated string, of exact values."""
    middleware = robot(idp_server, issuer=issuer)
    for iss in (ISSUER, OTHER_ISSUER):
        assert_accepted(send(middleware, mint({"iss": iss}, idp_server.key, NOW)))
    for iss in (f"{ISSUER}, {OTHER_ISSUER}", ISSUER + "/", "https://login.example.test"):
        assert_refused(
            send(middleware, mint({"iss": iss}, idp_server.key, NOW)), "wrong_issuer", "issuer"
        )


# --------------------------------------------------------------------------- R8 audience
def audience_robot(server: idp.IdpServer, **extra: Any) -> JwtHeadersMiddleware:
    extra.setdefault("audience", idp.AUDIENCE)
    return robot(server, validate_audience=True, **extra)


@pytest.mark.parametrize(
    "aud",
    [
        pytest.param(idp.AUDIENCE, id="string"),
        pytest.param([idp.AUDIENCE], id="list-of-one"),
        pytest.param(["account", idp.AUDIENCE], id="list-second"),
    ],
)
def test_r8_audience_accepted(idp_server, aud):
    """R8: a string, or a list of strings holding the configured audience."""
    answer = send(audience_robot(idp_server), mint({"aud": aud}, idp_server.key, NOW))
    assert_accepted(answer)


@pytest.mark.parametrize(
    ("aud", "fragment"),
    [
        pytest.param(DELETE, "aud", id="missing"),
        pytest.param([], "aud", id="empty-list"),
        pytest.param("", "aud", id="empty-string"),
        pytest.param(None, "aud", id="null"),
        pytest.param(1, "aud", id="number"),
        pytest.param({"aud": idp.AUDIENCE}, "aud", id="object"),
        pytest.param([idp.AUDIENCE, 1], "aud", id="non-string-element"),
        pytest.param([idp.AUDIENCE, None], "aud", id="null-element"),
        pytest.param([[idp.AUDIENCE]], "aud", id="nested-list"),
        pytest.param("live-key", "aud", id="substring"),
        pytest.param("live-key22", "aud", id="superstring"),
        pytest.param("x-live-key2", "aud", id="suffix-match"),
        pytest.param("Live-Key2", "aud", id="case"),
        pytest.param(" live-key2", "aud", id="leading-space"),
        pytest.param("live-key2,account", "aud", id="comma-string"),
        pytest.param(["account"], "aud", id="other-audience"),
    ],
)
def test_r8_audience_refused(idp_server, aud, fragment):
    """R8: missing claim, empty list, non-string element, substring/superstring/case -> 401."""
    answer = send(audience_robot(idp_server), mint({"aud": aud}, idp_server.key, NOW))
    assert_refused(answer, "wrong_audience", fragment)


@pytest.mark.parametrize(
    "audience",
    [
        pytest.param(["api-1", idp.AUDIENCE], id="list"),
        pytest.param(("api-1", "api-2", idp.AUDIENCE), id="tuple"),
        pytest.param(f"api-1, {idp.AUDIENCE}", id="comma-string"),
    ],
)
def test_r8_several_configured_audiences(idp_server, audience):
    """Contract: `audience` is a value or a list (a comma-separated string in code too)."""
    middleware = audience_robot(idp_server, audience=audience)
    assert_accepted(send(middleware, mint({"aud": idp.AUDIENCE}, idp_server.key, NOW)))
    assert_accepted(send(middleware, mint({"aud": ["x", "api-1"]}, idp_server.key, NOW)))
    assert_refused(
        send(middleware, mint({"aud": "api"}, idp_server.key, NOW)), "wrong_audience", "aud"
    )
    assert_refused(
        send(middleware, mint({"aud": ["account"]}, idp_server.key, NOW)), "wrong_audience", "aud"
    )


def test_r8_audience_claim_azp(idp_server):
    """R8: the audience check applies to any claim name (`azp` here), not `aud`."""
    middleware = audience_robot(idp_server, audience_claim="azp", audience="robot-client")
    # `aud` does not name robot-client: it is not the claim being checked.
    good = mint({"azp": "robot-client", "aud": "account"}, idp_server.key, NOW)
    assert_accepted(send(middleware, good))
    # `aud` holds the audience, `azp` does not: refused (the configured claim is checked).
    wrong = mint({"azp": "live-key2", "aud": "robot-client"}, idp_server.key, NOW)
    assert_refused(send(middleware, wrong), "wrong_audience", "azp")
    missing = mint({"azp": DELETE, "aud": "robot-client"}, idp_server.key, NOW)
    assert_refused(send(middleware, missing), "wrong_audience", "azp")
    for bad in ("robot-clien", "robot-client2", ["robot-client", 7], []):
        assert_refused(
            send(middleware, mint({"azp": bad}, idp_server.key, NOW)), "wrong_audience", "azp"
        )


@pytest.mark.parametrize("claim", ["appid", "client_id"])
def test_r8_audience_claim_other_names(idp_server, claim):
    """R8: `appid`, `client_id` work the same way."""
    middleware = audience_robot(idp_server, audience_claim=claim, audience="app-7")
    assert_accepted(send(middleware, mint({claim: "app-7"}, idp_server.key, NOW)))
    assert_refused(
        send(middleware, mint({claim: "app-77"}, idp_server.key, NOW)), "wrong_audience", claim
    )
    assert_refused(send(middleware, mint(None, idp_server.key, NOW)), "wrong_audience", claim)


# --------------------------------------------------------------------------- token_types
@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_token_types_accepts_the_listed_typ_as_a_media_type(idp_server, typ):
    """RFC 8725 3.11 explicit typing; RFC 7515 4.1.9: ``typ`` is a media type, compared
    case-insensitively, with ``application/`` optional."""
    middleware = robot(idp_server, token_types="at+jwt")
    assert_accepted(send(middleware, mint({}, idp_server.key, NOW, headers={"typ": typ})))


@pytest.mark.parametrize("typ", ["JWT", "id_token+jwt", "at+jw", None, 7, ["at+jwt"]])
def test_token_types_refuses_another_or_missing_typ(idp_server, caplog, typ):
    """An ID token (``typ: JWT``) signed by the same IdP must not pass where only access tokens
    (``at+jwt``) are meant: 401 naming the check, app not called, the typ in the log detail but
    never the token."""
    caplog.set_level(logging.DEBUG, logger="jwt_headers")
    middleware = robot(idp_server, token_types=["at+jwt"])
    token = mint({}, idp_server.key, NOW, headers={"typ": typ})
    answer = send(middleware, token)
    assert_refused(answer, "wrong_type", "token type (typ) is not accepted")
    assert any("wrong_type" in r.getMessage() for r in caplog.records)
    assert not any(token.split(".")[1] in r.getMessage() for r in caplog.records)


def test_token_types_unset_does_not_look_at_typ(idp_server):
    middleware = robot(idp_server)
    assert_accepted(send(middleware, mint({}, idp_server.key, NOW, headers={"typ": "whatever"})))


def test_token_types_without_validate_token_is_a_config_error():
    with pytest.raises(ConfigError, match="token_types is only checked with validate_token"):
        JwtHeadersConfig(
            user_name_header="Authorization",
            user_name_format="jwt",
            user_name_json_path="preferred_username",
            token_types="at+jwt",
        )


# --------------------------------------------------------------------------- seed token
def seed_middleware(clock: FrozenClock) -> JwtHeadersMiddleware:
    return JwtHeadersMiddleware(
        RecordingApp(),
        clock=clock,
        user_name_header="OIDC_access_token",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        roles_source="jwt",
        roles_json_path=ROLES_PATH,
        validate_token=True,
        validate_signature=False,
        validate_expiry=True,
    )


def send_seed(middleware: JwtHeadersMiddleware) -> Answer:
    middleware.app = RecordingApp()
    return call(middleware, {"OIDC-Access-Token": SEED_ACCESS_TOKEN}, peer=LOOPBACK)


def test_r6_seed_access_token_refused_as_expired():
    """R6: the real Keycloak token of headers-examples.md (exp 1708555947) is expired today,
    even with signature checking off (trusted loopback proxy)."""
    assert_refused(send_seed(seed_middleware(FrozenClock(NOW))), "expired", "token expired")
    assert_refused(send_seed(seed_middleware(FrozenClock(time.time()))), "expired", "token expired")


def test_r6_seed_access_token_at_its_own_time():
    """Positive control for the above: at issue time (and within leeway after exp) the seed token
    is read as david.blasby@geocat.net with its roles; beyond the leeway it is refused."""
    principal = assert_accepted(send_seed(seed_middleware(FrozenClock(SEED_IAT + 60))))
    assert principal.roles == TOKEN_ROLES
    assert_accepted(send_seed(seed_middleware(FrozenClock(SEED_EXP + LEEWAY - 1))))
    assert_refused(
        send_seed(seed_middleware(FrozenClock(SEED_EXP + LEEWAY))), "expired", "token expired"
    )


# --------------------------------------------------------------------------- R20 roles token
def roles_robot(server: idp.IdpServer, clock: FrozenClock | None = None) -> JwtHeadersMiddleware:
    return robot(
        server,
        clock,
        roles_source="jwt",
        roles_header="X-Roles-Token",
        roles_json_path=ROLES_PATH,
    )


def roles_token(key: idp.TestKey, roles: list[str], **overrides: Any) -> str:
    claims = {"resource_access": {idp.CLIENT_ID: {"roles": roles}}, **overrides}
    return mint(claims, key, NOW)


def test_r20_valid_roles_token_gives_roles(idp_server):
    """R20 positive control: a validated roles token in its own header gives the roles, from
    any peer (signature-checked, R16/R22)."""
    middleware = roles_robot(idp_server)
    user = mint({"resource_access": {}}, idp_server.key, NOW)
    roles = roles_token(idp_server.key, ["ROLE_A", "ROLE_B"])
    principal = assert_accepted(send(middleware, user, extra_headers={"X-Roles-Token": roles}))
    assert principal.roles == ("ROLE_A", "ROLE_B")


@pytest.mark.parametrize(
    ("case", "reason", "fragment"),
    [
        ("unknown-key", "unknown_key", "key"),
        ("known-kid-wrong-key", "bad_signature", "signature"),
        ("expired", "expired", "token expired"),
        ("wrong-issuer", "wrong_issuer", "issuer"),
        ("no-exp", "no_valid_exp", "exp"),
        ("alg-none", "alg_not_allowed", "alg"),
        ("not-a-jws", "malformed", "JWS"),
    ],
)
def test_r20_roles_token_failing_validation_refused(idp_server, case, reason, fragment):
    """R20: roles are read from a token only after it passed the same checks as the user
    token; a roles token that fails -> 401, although the user token is fine."""
    key = idp_server.key
    admin = ["GeoserverAdministrator"]
    tokens = {
        "unknown-key": lambda: roles_token(make_key("RS256"), admin),
        "known-kid-wrong-key": lambda: roles_token(make_key("RS256", kid=key.kid), admin),
        "expired": lambda: roles_token(key, admin, exp=NOW - 3600, iat=NOW - 7200),
        "wrong-issuer": lambda: roles_token(key, admin, iss=ISSUER + "/"),
        "no-exp": lambda: roles_token(key, admin, exp=DELETE),
        "alg-none": lambda: idp.compact_jws(
            {"alg": "none", "typ": "JWT"},
            idp.access_claims({"resource_access": {idp.CLIENT_ID: {"roles": admin}}}, NOW),
            b"x",
        ),
        "not-a-jws": lambda: "GeoserverAdministrator",
    }
    middleware = roles_robot(idp_server, FrozenClock(NOW))
    user = mint({"resource_access": {}}, key, NOW)
    assert_accepted(send(middleware, user))  # the user token alone is fine
    answer = send(middleware, user, extra_headers={"X-Roles-Token": tokens[case]()})
    assert_refused(answer, reason, fragment)


def test_r20_roles_token_checked_for_audience_too(idp_server):
    """R20: same switches for the roles token as for the user token (audience here)."""
    middleware = robot(
        idp_server,
        roles_source="jwt",
        roles_header="X-Roles-Token",
        roles_json_path=ROLES_PATH,
        validate_audience=True,
        audience=idp.AUDIENCE,
    )
    user = mint(None, idp_server.key, NOW)
    roles = roles_token(idp_server.key, ["ROLE_X"], aud="other-api")
    assert_refused(
        send(middleware, user, extra_headers={"X-Roles-Token": roles}), "wrong_audience", "aud"
    )


def test_r20_r24_cached_roles_end_with_the_roles_token(idp_server):
    """R20/R24: a principal built from a user token and a separate roles token is cached only
    until the EARLIER of the two expires. Once the roles token is past exp + leeway, the same
    pair of headers is checked again and refused, although the user token is still good: an
    expired roles token never keeps granting its roles from the cache."""
    clock = FrozenClock(NOW)
    middleware = roles_robot(idp_server, clock)
    user = mint({"exp": NOW + 3600}, idp_server.key, NOW)
    roles = roles_token(idp_server.key, ["ROLE_ADMIN"], exp=NOW + 60)
    headers = {"X-Roles-Token": roles}
    assert assert_accepted(send(middleware, user, extra_headers=headers)).roles == ("ROLE_ADMIN",)
    clock.advance(60 + LEEWAY - 1)  # still within the roles token's leeway: a cache hit
    assert assert_accepted(send(middleware, user, extra_headers=headers)).roles == ("ROLE_ADMIN",)
    clock.advance(2)
    assert_refused(send(middleware, user, extra_headers=headers), "expired", "token expired")
    assert_accepted(send(middleware, user))  # the user token alone is still good


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({}, True),
        ({"sub": "someone-else"}, False),
        ({"sub": DELETE}, False),
        ({"sub": 7}, False),
        ({"iss": OTHER_ISSUER}, False),
    ],
    ids=["same-subject", "other-sub", "no-sub", "number-sub", "other-iss"],
)
def test_r40_roles_token_must_be_about_the_same_subject(idp_server, overrides, accepted):
    """R40: a roles token in its own header is another user's, or another issuer's (both
    issuers accepted here), and its roles would go to the user token's holder: 401
    roles_subject_mismatch. The same subject's roles token gives its roles."""
    middleware = robot(
        idp_server,
        roles_source="jwt",
        roles_header="X-Roles-Token",
        roles_json_path=ROLES_PATH,
        issuer=[ISSUER, OTHER_ISSUER],
    )
    user = mint({"resource_access": {}}, idp_server.key, NOW)
    roles = roles_token(idp_server.key, ["ROLE_ADMIN"], **overrides)
    answer = send(middleware, user, extra_headers={"X-Roles-Token": roles})
    if accepted:
        assert assert_accepted(answer).roles == ("ROLE_ADMIN",)
    else:
        assert_refused(answer, "roles_subject_mismatch", "another subject")


# --------------------------------------------------------------------------- R11-R14 shape
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        pytest.param(DELETE, "no_user_name", id="missing"),
        pytest.param("", "no_user_name", id="empty"),
        pytest.param(None, "no_user_name", id="null"),
        pytest.param(42, "no_user_name", id="number"),
        pytest.param(True, "no_user_name", id="bool"),
        pytest.param(["alice"], "no_user_name", id="list-of-one"),
        pytest.param(["alice", "bob"], "no_user_name", id="list"),
        pytest.param({"name": "alice"}, "no_user_name", id="object"),
        pytest.param(" alice", "bad_user_name", id="leading-space"),
        pytest.param("alice ", "bad_user_name", id="trailing-space"),
        pytest.param("a" * 257, "bad_user_name", id="too-long"),
    ],
)
def test_r14_user_name_must_be_one_plain_string(idp_server, name, reason):
    """R14: the user-name path must find exactly one non-empty string (and SHOULD: no
    surrounding white space, at most 256 characters), even in a validly signed token."""
    token = mint({"preferred_username": name}, idp_server.key, NOW)
    assert_refused(send(robot(idp_server), token), reason, "user name")


def test_r14_non_ascii_user_name_survives(idp_server):
    """R14: a UTF-8 name in a signed token reaches the app unchanged."""
    token = mint({"preferred_username": "jos\u00e9.\u00fc\u00df@example.test"}, idp_server.key, NOW)
    assert_accepted(send(robot(idp_server), token), "jos\u00e9.\u00fc\u00df@example.test")


def test_r14_user_name_of_256_characters_accepted(idp_server):
    token = mint({"preferred_username": "a" * 256}, idp_server.key, NOW)
    assert_accepted(send(robot(idp_server), token), "a" * 256)


def test_r11_claims_are_the_signed_ones(idp_server):
    """R11: the user name and `claims` come from the same parse as the checked signature."""
    token = mint({"preferred_username": "carol", "email": "c@example.test"}, idp_server.key, NOW)
    principal = assert_accepted(send(robot(idp_server), token), "carol")
    assert principal.claims is not None
    _, payload = idp.decode_parts(token)
    assert dict(principal.claims)["email"] == payload["email"] == "c@example.test"
    assert principal.claims["preferred_username"] == "carol"


def test_r13_oversized_header_refused(idp_server):
    """R13: a header beyond max_header_bytes (default 16 KiB) -> 401, no JWKS fetched."""
    token = mint({"padding": "x" * 20_000}, idp_server.key, NOW)
    answer = send(robot(idp_server), token)
    assert_refused(answer, "oversized", "longer than")
    assert idp_server.jwks_requests == 0


def test_r13_max_header_bytes_option(idp_server):
    """R13: the cap is configurable."""
    token = mint(None, idp_server.key, NOW)
    assert len(token) > 1000
    assert_refused(
        send(robot(idp_server, max_header_bytes=1000), token), "oversized", "longer than"
    )
    assert_accepted(send(robot(idp_server, max_header_bytes=len(token) + 100), token))


@pytest.mark.parametrize("where", ["payload", "header"])
@pytest.mark.parametrize("depth", [40, 4000])
def test_r13_deep_json_refused_even_when_signed(idp_server, where, depth):
    """R13: JSON nesting depth is bounded: 401, never a 500 or a RecursionError."""
    key = idp_server.key
    deep = "[" * depth + "]" * depth
    claims = raw_payload(idp.access_claims(None, NOW), deep=deep)
    if where == "payload":
        token = key.sign(claims)
    else:
        header = f'{{"alg":"RS256","kid":"{key.kid}","typ":"JWT","x":{deep}}}'
        token = raw_sign(key, header, json.dumps(idp.access_claims(None, NOW)))
    answer = send(robot(idp_server, max_header_bytes=65536), token)
    assert_refused(answer, "malformed", "nested")


def test_r13_huge_header_answered_fast(idp_server):
    """R13: the size cap comes before any base64/JSON work: a 1 MiB value is refused in well
    under 10 ms (best of five, each a new string so no hash is reused)."""
    middleware = robot(idp_server)
    timings = []
    for i in range(5):
        value = "Bearer " + "eyJ" + "A" * (1 << 20) + str(i)
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "REMOTE_ADDR": STRANGER,
            "HTTP_AUTHORIZATION": value,
        }
        statuses: list[str] = []

        def start_response(status, headers, exc_info=None, statuses=statuses):
            statuses.append(status)

        started = time.perf_counter()
        body = b"".join(middleware(environ, start_response))
        timings.append(time.perf_counter() - started)
        assert statuses == ["401 Unauthorized"]
        assert json.loads(body)["error"]["code"] == "INVALID_TOKEN"
    assert min(timings) < 0.010, timings
    assert idp_server.jwks_requests == 0


# --------------------------------------------------------------------------- R1 allow-list
def test_r1_algorithm_outside_configured_list_refused(idp_server):
    """R1: the allow-list comes from configuration; an RS256 token with algorithms=("ES256",)
    is refused before any key lookup."""
    token = mint(None, idp_server.key, NOW)
    answer = send(robot(idp_server, algorithms=("ES256", "EdDSA")), token)
    assert_refused(answer, "alg_not_allowed", "algorithm")
    assert idp_server.jwks_requests == 0


def test_r1_supported_but_not_default_algorithm_refused(idp_server):
    """R1: ES512 is supported but not in the default list: a valid ES512 token is refused."""
    key = make_key("ES512")
    idp_server.keys = [idp_server.key, key]
    assert_refused(send(robot(idp_server), mint(None, key, NOW)), "alg_not_allowed", "algorithm")
    # ... and accepted when the operator lists it.
    assert_accepted(send(robot(idp_server, algorithms=("RS256", "ES512")), mint(None, key, NOW)))


# --------------------------------------------------------------------------- R23-R25 caches
def test_r23_same_token_twice_served_from_cache(idp_server):
    """R23: the second request with the same token costs no signature work: the principal
    handed to the app is the very same object, and the IdP is not asked again."""
    clock = FrozenClock(NOW)
    middleware = robot(idp_server, clock)
    token = mint(None, idp_server.key, NOW)
    first = assert_accepted(send(middleware, token))
    fetched = idp_server.jwks_requests
    assert fetched == 1
    second = assert_accepted(send(middleware, token))
    assert second is first
    assert idp_server.jwks_requests == fetched
    # Even with the key set gone and past its TTL, a cached token needs no key.
    idp_server.jwks_mode = "500"
    clock.advance(301)  # beyond jwks_cache_ttl (300), before exp + leeway (330)
    third = assert_accepted(send(middleware, token))
    assert third is first
    assert idp_server.jwks_requests == fetched


def test_r23_a_different_token_is_not_served_the_cached_result(idp_server):
    """R23: the key is the full token: another token of the same user is checked itself."""
    middleware = robot(idp_server)
    first = assert_accepted(send(middleware, mint(None, idp_server.key, NOW)))
    other = assert_accepted(send(middleware, mint(None, idp_server.key, NOW)))
    assert other is not first
    assert (other.name, other.roles) == (first.name, first.roles)
    assert other.claims["jti"] != first.claims["jti"]


def test_r24_cached_token_refused_after_exp_plus_leeway(idp_server):
    """R24: a cached positive result never outlives exp + leeway."""
    clock = FrozenClock(NOW)
    middleware = robot(idp_server, clock)
    token = mint({"exp": NOW + 300}, idp_server.key, NOW)
    first = assert_accepted(send(middleware, token))
    clock.advance(300 + LEEWAY - 1)  # one second before exp + leeway: still good
    assert assert_accepted(send(middleware, token)) is first
    clock.advance(1)  # now == exp + leeway
    assert_refused(send(middleware, token), "expired", "token expired")
    clock.advance(3600)
    assert_refused(send(middleware, token), "expired", "token expired")


def test_r24_cached_token_with_small_leeway(idp_server):
    """R24: with leeway=0 the cached result ends exactly at exp."""
    clock = FrozenClock(NOW)
    middleware = robot(idp_server, clock, leeway=0)
    token = mint({"exp": NOW + 10}, idp_server.key, NOW)
    assert_accepted(send(middleware, token))
    clock.advance(9.5)
    assert_accepted(send(middleware, token))
    clock.advance(0.5)
    assert_refused(send(middleware, token), "expired", "token expired")


def test_r25_refused_token_replayed_still_refused_and_others_unaffected(idp_server):
    """R25: a replayed bad token is still refused (negative cache) without asking the IdP
    again, and a different, valid token is not affected. (An unknown kid is the one refusal
    not remembered: R29 wants a newly published key found within one cooldown.)"""
    clock = FrozenClock(NOW)
    middleware = robot(idp_server, clock, negative_cache_ttl=60)
    forger_key = make_key("RS256", kid=idp_server.key.kid)
    bad = mint(None, forger_key, NOW)  # the IdP's kid, another key: a bad signature
    assert_refused(send(middleware, bad), "bad_signature", "signature")
    fetched = idp_server.jwks_requests
    assert_refused(send(middleware, bad), "bad_signature", "signature")
    clock.advance(31)
    assert_refused(send(middleware, bad), "bad_signature", "signature")
    assert idp_server.jwks_requests == fetched
    good = mint(None, idp_server.key, NOW)
    assert_accepted(send(middleware, good))
    assert_accepted(send(middleware, good))
    assert_refused(send(middleware, bad), "bad_signature", "signature")


def test_r25_bad_signature_replayed_after_good_token(idp_server):
    """R23/R25: a tampered copy of a cached good token is refused, each time; the good token
    stays accepted."""
    middleware = robot(idp_server)
    good = mint(None, idp_server.key, NOW)
    principal = assert_accepted(send(middleware, good))
    forged = mint(None, make_key("RS256", kid=idp_server.key.kid), NOW)
    for _ in range(3):
        assert_refused(send(middleware, forged), "bad_signature", "signature")
        assert assert_accepted(send(middleware, good)) is principal


def test_r23_two_configs_never_share_results(idp_server):
    """R23: the cache belongs to one config: two middlewares reading the same token decide
    independently, in either order."""
    clock = FrozenClock(NOW)
    token = mint({"aud": "api-a", "email": "robot@example.test"}, idp_server.key, NOW)
    strict = robot(idp_server, clock, validate_audience=True, audience="api-b")
    lenient = robot(idp_server, clock, validate_audience=True, audience="api-a")
    by_email = robot(idp_server, clock, user_name_json_path="email")
    other_issuer = robot(idp_server, clock, issuer=OTHER_ISSUER)
    for _ in range(2):
        assert_accepted(send(lenient, token))
        assert_refused(send(strict, token), "wrong_audience", "aud")
        assert_refused(send(other_issuer, token), "wrong_issuer", "issuer")
        assert_accepted(send(by_email, token), "robot@example.test")
        assert_accepted(send(lenient, token))


def test_r23_configs_with_different_key_sets_never_share(idp_server):
    """R23: a token good for one IdP's keys is not good for a middleware using another IdP."""
    with idp.IdpServer() as other_idp:
        token = mint(None, idp_server.key, NOW)
        mine = robot(idp_server)
        theirs = robot(other_idp)
        assert_accepted(send(mine, token))
        assert_refused(send(theirs, token), "unknown_key", "key")
        assert_accepted(send(mine, token))
        assert_refused(send(theirs, token), "unknown_key", "key")
    assert not other_idp.errors

"""Forged and malformed tokens against a robot config checking signatures via a JWKS.

Requirements covered (security.md): R1 algorithm allow-list, R2 one algorithm per key and
unusable keys, R3 no key from the token, R4 kid, R5 signature encodings, R12 compact JWS only,
R14 control characters in the user name, R23 cache keyed by the full token, R31 (no usable
key at all: 503), R33 no outbound request from token content, R34 refusal shape and R35 no
token, segment or claim set in any body or log record.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import logging
from typing import Any

import idp
import jwt
import pytest
from conftest import NOW, STRANGER, Answer, FrozenClock, RecordingApp, assert_invalid_token, call
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID
from idp import ISSUER, USER_NAME, b64url, compact_jws, hmac_sign, make_key, mint

from jwt_headers import JwtHeadersMiddleware, Principal

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

LOGGER = "jwt_headers"
#: The order of the P-256 group.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

#: Keys made once: generating RSA keys is the slow part of these tests.
EC_KEY = make_key("ES256", kid="ec-signing-key")
ATTACKER_RSA = make_key("RS256", kid="attacker-key")
SECOND_RSA = make_key("RS256", kid="second-rsa-key")


# --------------------------------------------------------------------------- helpers


def robot(server: idp.IdpServer, **extra: Any) -> JwtHeadersMiddleware:
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
    return JwtHeadersMiddleware(RecordingApp(), clock=FrozenClock(), **options)


def send(middleware: JwtHeadersMiddleware, token: str, *, raw: bool = False) -> Answer:
    """``Authorization: Bearer <token>`` from a peer outside trusted_proxies. ``raw`` puts the
    value straight into the environ (no HTTP-level checks on tabs, newlines...)."""
    middleware.app = RecordingApp()
    value = f"Bearer {token}"
    if raw:
        return call(middleware, environ={"HTTP_AUTHORIZATION": value}, peer=STRANGER)
    return call(middleware, {"Authorization": value}, peer=STRANGER)


def accepted(answer: Answer, name: str = USER_NAME) -> Principal:
    assert answer.status == 200, answer.body
    assert answer.app.called
    assert answer.user == name
    principal = answer.principal
    assert isinstance(principal, Principal)
    assert principal.name == name
    return principal


def _decoded_texts(token: str) -> list[str]:
    """The header and payload JSON texts of a token, where they decode."""
    texts = []
    for segment in token.split(".")[:2]:
        try:
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
            text = raw.decode("utf-8")
        except ValueError:
            continue
        texts.append(text)
        with contextlib.suppress(ValueError):
            texts.append(repr(json.loads(text)))
    return [text for text in texts if len(text) >= 8]


def assert_no_leak(token: str, answer: Answer, caplog: pytest.LogCaptureFixture) -> None:
    """R35: neither the body nor any log record holds the token, a segment, or its JSON."""
    ours = [r for r in caplog.records if r.name.startswith(LOGGER)]
    assert any("fp=" in r.getMessage() for r in ours), "the refusal was not logged"
    secrets = [token, *(s for s in token.split(".") if len(s) >= 8), *_decoded_texts(token)]
    places = [
        answer.body.decode("utf-8", "replace"),
        "\n".join(f"{k}: {v}" for k, v in answer.headers.items()),
        caplog.text,
        *(r.getMessage() for r in caplog.records),
        *(str(r.args) for r in caplog.records),
    ]
    for secret in secrets:
        for place in places:
            assert secret not in place


def refused(
    middleware: JwtHeadersMiddleware,
    token: str,
    caplog: pytest.LogCaptureFixture,
    reason: str,
    fragment: str | None = None,
    *,
    raw: bool = False,
) -> Answer:
    """Send ``token``; assert R34 (401 invalid_token, JSON body, app not called, refused for
    ``reason``) and R35."""
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = send(middleware, token, raw=raw)
    assert_invalid_token(answer, reason, fragment)
    assert "Set-Cookie" not in answer.headers
    assert_no_leak(token, answer, caplog)
    return answer


def raw_sign(key: idp.TestKey, header: str | bytes, payload: str | bytes, alg: str = "") -> str:
    """A validly signed token whose header and payload segments are exactly these bytes."""
    algorithm = jwt.get_algorithm_by_name(alg or key.alg)
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.private_key))
    return f"{signing_input}.{b64url(signature)}"


def claims_text(**overrides: Any) -> str:
    return json.dumps(idp.access_claims(overrides, NOW), separators=(",", ":"))


def with_signature(token: str, signature: bytes) -> str:
    header, payload, _ = token.split(".")
    return f"{header}.{payload}.{b64url(signature)}"


def signature_of(token: str) -> bytes:
    segment = token.split(".")[2]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def ec_raw(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def ec_parts(signature: bytes) -> tuple[int, int]:
    return int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")


def only_jwks_requested(server: idp.IdpServer) -> bool:
    return {recorded.path for recorded in server.requests} <= {"/jwks"}


# --------------------------------------------------------------------------- R1 algorithms
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize(
    ("signature", "reason", "fragment"),
    [
        pytest.param(b"", "malformed", "signature", id="empty-signature"),
        pytest.param(b"\x00", "alg_not_allowed", "alg", id="one-byte"),
        pytest.param(b"signature-of-nothing", "alg_not_allowed", "alg", id="text"),
    ],
)
def test_r1_alg_none_refused(idp_server, caplog, alg, signature, reason, fragment):
    """R1/R12: unsecured tokens (alg none in any case), with or without a signature."""
    token = compact_jws(
        {"alg": alg, "typ": "JWT", "kid": idp_server.key.kid},
        idp.access_claims(None, NOW),
        signature,
    )
    refused(robot(idp_server), token, caplog, reason, fragment)


@pytest.mark.parametrize("alg", ["none", "NONE"])
def test_r1_alg_none_with_a_real_signature_refused(idp_server, caplog, alg):
    """R1: alg none carrying the genuine RS256 signature of the same bytes' twin."""
    genuine = mint(None, idp_server.key, NOW)
    header = {"alg": alg, "typ": "JWT", "kid": idp_server.key.kid}
    payload = idp.decode_parts(genuine)[1]
    token = compact_jws(header, payload, signature_of(genuine))
    refused(robot(idp_server), token, caplog, "alg_not_allowed", "alg")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize(
    "secret",
    ["public-pem", "public-der", "public-jwk-json", "modulus", "empty"],
)
def test_r1_hmac_algorithm_confusion_refused(idp_server, caplog, alg, secret):
    """R1 (RS->HS confusion): an HMAC token keyed with the RSA public key in any encoding,
    or with an empty secret, is refused; HS* are never used with JWKS keys."""
    key = idp_server.key
    secrets = {
        "public-pem": key.public_pem(),
        "public-der": key.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "public-jwk-json": json.dumps(key.public_jwk()).encode(),
        "modulus": key.public_jwk()["n"].encode(),
        "empty": b"",
    }
    token = hmac_sign(
        idp.access_claims(None, NOW), secrets[secret], headers={"kid": key.kid}, alg=alg
    )
    middleware = robot(idp_server)
    refused(middleware, token, caplog, "alg_not_allowed", "algorithm")
    assert idp_server.jwks_requests == 0  # refused before any key lookup


def test_r1_hmac_signature_under_rs256_header_refused(idp_server, caplog):
    """R1: header says RS256, the signature is HMAC-SHA256 keyed with the public PEM."""
    key = idp_server.key
    hmac_token = hmac_sign(idp.access_claims(None, NOW), key.public_pem(), {"kid": key.kid})
    header = {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    token = compact_jws(header, idp.decode_parts(hmac_token)[1], signature_of(hmac_token))
    refused(robot(idp_server), token, caplog, "bad_signature", "signature")


@pytest.mark.parametrize(
    "alg",
    ["rs256", "RS256 ", " RS256", "RS-256", "RSA256", "ES512", "EdDSA\u0000", "HS256\u0000"],
)
def test_r1_alg_not_exactly_allowed_refused(idp_server, caplog, alg):
    """R1: the allow-list is matched exactly (no case folding, no trimming)."""
    key = idp_server.key
    token = raw_sign(key, json.dumps({"alg": alg, "kid": key.kid}), claims_text(), "RS256")
    refused(robot(idp_server), token, caplog, "alg_not_allowed", "alg")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"typ": "JWT"}, id="missing"),
        pytest.param({"alg": None}, id="null"),
        pytest.param({"alg": ""}, id="empty"),
        pytest.param({"alg": 256}, id="number"),
        pytest.param({"alg": ["RS256"]}, id="list"),
        pytest.param({"alg": {"name": "RS256"}}, id="object"),
        pytest.param({"alg": True}, id="bool"),
    ],
)
def test_r12_header_needs_a_string_alg(idp_server, caplog, header):
    """R12: the header is a JSON object with a string alg."""
    key = idp_server.key
    token = raw_sign(key, json.dumps({**header, "kid": key.kid}), claims_text(), "RS256")
    refused(robot(idp_server), token, caplog, "malformed", "alg")


def fingerprints(token: str) -> set[str]:
    """Accept the fingerprint of the token or of the whole header value in the R1 log test."""
    return {hashlib.sha256(value.encode()).hexdigest()[:8] for value in (token, f"Bearer {token}")}


@pytest.mark.parametrize("alg", ["HS256", "none", "RS256-but-a-very-long-algorithm-name"])
def test_r1_alg_not_allowed_log_line(idp_server, caplog, alg):
    """R1 log: one record `alg_not_allowed alg=<value, truncated to 16 chars> fp=<fp>`."""
    key = idp_server.key
    token = raw_sign(key, json.dumps({"alg": alg, "kid": key.kid}), claims_text(), "RS256")
    refused(robot(idp_server), token, caplog, "alg_not_allowed", "alg")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER)]
    wanted = [
        line
        for line in lines
        if "alg_not_allowed" in line
        and f"alg={alg[:16]}" in line
        and any(f"fp={fp}" in line for fp in fingerprints(token))
    ]
    assert wanted, lines
    assert all(alg not in line for line in lines if len(alg) > 16)


def test_r35_log_fingerprint_is_of_the_token(idp_server, caplog):
    """Contract/R35: the log carries the first 8 hex digits of the *token's* SHA-256, so an
    operator can find a complaint's token in the log."""
    token = mint(None, ATTACKER_RSA, NOW)
    refused(robot(idp_server), token, caplog, "unknown_key", "key")
    expected = hashlib.sha256(token.encode()).hexdigest()[:8]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER)]
    assert any(f"fp={expected}" in line for line in lines), (expected, lines)


# --------------------------------------------------------------------------- R2 key binding
def test_r2_rs256_token_with_kid_of_ec_key_refused(idp_server, caplog):
    """R2: the token's alg must equal its key's: RS256 header, kid of the ES256 key."""
    idp_server.keys = [idp_server.key, EC_KEY]
    token = mint(None, idp_server.key, NOW, headers={"kid": EC_KEY.kid})
    refused(robot(idp_server), token, caplog, "alg_key_mismatch", "does not match")
    assert any("alg_key_mismatch" in r.getMessage() for r in caplog.records)


def test_r2_es256_token_with_kid_of_rsa_key_refused(idp_server, caplog):
    idp_server.keys = [idp_server.key, EC_KEY]
    token = mint(None, EC_KEY, NOW, headers={"kid": idp_server.key.kid})
    refused(robot(idp_server), token, caplog, "alg_key_mismatch", "does not match")
    assert any("alg_key_mismatch" in r.getMessage() for r in caplog.records)


def test_r2_ec_key_without_alg_is_bound_to_its_curve(idp_server, caplog):
    """R2: with no JWK `alg`, the algorithm is derived from kty/crv (P-256 -> ES256)."""
    jwk = EC_KEY.public_jwk()
    del jwk["alg"]
    idp_server.keys = [idp_server.key, jwk]
    middleware = robot(idp_server)
    accepted(send(middleware, mint(None, EC_KEY, NOW)))
    token = mint(None, idp_server.key, NOW, headers={"kid": EC_KEY.kid})
    refused(middleware, token, caplog, "alg_key_mismatch", "does not match")


@pytest.mark.parametrize("token_alg", ["PS256", "RS512", "PS512"])
def test_r2_rs256_bound_key_not_used_for_other_rsa_algorithms(idp_server, caplog, token_alg):
    """R2: a JWKS key with `alg: RS256` never verifies PS256/RS512 tokens, even genuinely
    signed by its private key."""
    token = mint(None, idp_server.key, NOW, alg=token_alg)
    refused(robot(idp_server), token, caplog, "alg_key_mismatch", "does not match")


def test_r2_ps256_bound_key_not_used_for_rs256(idp_server, caplog):
    key = make_key("PS256")
    idp_server.keys = [key]
    middleware = robot(idp_server)
    accepted(send(middleware, mint(None, key, NOW)))
    refused(
        middleware, mint(None, key, NOW, alg="RS256"), caplog, "alg_key_mismatch", "does not match"
    )


def oct_jwk(secret: bytes, kid: str = "hmac-key") -> dict[str, Any]:
    return {"kty": "oct", "k": b64url(secret), "kid": kid, "alg": "HS256", "use": "sig"}


def test_r2_oct_key_in_jwks_never_used(idp_server, caplog):
    """R2: a symmetric key published in the JWKS never verifies anything."""
    secret = b"s3cret-published-by-mistake-0123456789"
    idp_server.keys = [idp_server.key, oct_jwk(secret)]
    middleware = robot(idp_server)
    hs = hmac_sign(idp.access_claims(None, NOW), secret, {"kid": "hmac-key"})
    refused(middleware, hs, caplog, "alg_not_allowed")
    # The same HMAC under an allowed alg name: the oct key is not in the key set at all.
    lying = compact_jws(
        {"alg": "RS256", "typ": "JWT", "kid": "hmac-key"},
        idp.decode_parts(hs)[1],
        signature_of(hs),
    )
    refused(middleware, lying, caplog, "unknown_key", "key")
    accepted(send(middleware, mint(None, idp_server.key, NOW)))


def unusable_jwk(key: idp.TestKey, how: str) -> dict[str, Any]:
    jwk = key.public_jwk()
    if how == "use-enc":
        jwk["use"] = "enc"
    elif how == "key-ops-encrypt":
        del jwk["use"]
        jwk["key_ops"] = ["encrypt"]
    elif how == "key-ops-sign-only":
        del jwk["use"]
        jwk["key_ops"] = ["sign"]
    elif how == "key-ops-not-a-list":
        del jwk["use"]
        jwk["key_ops"] = "verify"
    elif how == "use-sig-ops-encrypt":
        jwk["key_ops"] = ["encrypt", "wrapKey"]
    return jwk


UNUSABLE = ["use-enc", "key-ops-encrypt", "key-ops-sign-only", "key-ops-not-a-list"]


@pytest.mark.parametrize("how", [*UNUSABLE, "use-sig-ops-encrypt"])
def test_r2_keys_not_for_verification_never_used(idp_server, caplog, how):
    """R2: keys with `use` other than sig or `key_ops` lacking verify are never used."""
    idp_server.keys = [idp_server.key, unusable_jwk(SECOND_RSA, how)]
    middleware = robot(idp_server)
    refused(middleware, mint(None, SECOND_RSA, NOW), caplog, "unknown_key", "key")
    accepted(send(middleware, mint(None, idp_server.key, NOW)))


@pytest.mark.parametrize(
    "extra",
    [{"key_ops": ["verify"]}, {"key_ops": ["verify", "sign"]}, {"use": "sig"}],
    ids=["ops-verify", "ops-verify-sign", "use-sig"],
)
def test_r2_keys_for_verification_are_used(idp_server, extra):
    """R2 positive control: `key_ops: ["verify"]` or `use: sig` keys verify."""
    jwk = SECOND_RSA.public_jwk()
    del jwk["use"]
    jwk.update(extra)
    idp_server.keys = [jwk]
    accepted(send(robot(idp_server), mint(None, SECOND_RSA, NOW)))


@pytest.mark.parametrize("how", [*UNUSABLE, "oct"])
def test_r2_r31_key_set_without_usable_key_is_unavailable(idp_server, caplog, how):
    """R2 + R27/R31: when every published key is unusable the key set counts as a failed
    fetch; with no key ever fetched the request is refused with 503 IDP_UNAVAILABLE and a
    Retry-After of whole seconds >= 1 (fail closed), never accepted."""
    if how == "oct":
        idp_server.keys = [oct_jwk(b"0123456789abcdef0123456789abcdef", kid=SECOND_RSA.kid)]
    else:
        idp_server.keys = [unusable_jwk(SECOND_RSA, how)]
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    token = mint(None, SECOND_RSA, NOW)
    answer = send(robot(idp_server), token)
    assert answer.status == 503, answer.body
    assert not answer.app.called
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json["error"]["code"] == "IDP_UNAVAILABLE"
    assert int(answer.headers["Retry-After"]) >= 1
    assert idp_server.jwks_requests == 1
    assert_no_leak(token, answer, caplog)


# --------------------------------------------------------------------------- R3/R33 no key from the token
def attacker_certificate(key: idp.TestKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.example.test")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key)
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key.private_key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c"])
@pytest.mark.parametrize(
    ("kid", "reason", "fragment"),
    [
        pytest.param(ATTACKER_RSA.kid, "unknown_key", "key", id="attacker-kid"),
        pytest.param("legit", "bad_signature", "signature", id="legit-kid"),
        pytest.param(None, "bad_signature", "signature", id="no-kid"),
    ],
)
def test_r3_key_material_in_the_header_never_used(
    idp_server, caplog, member, kid, reason, fragment
):
    """R3/R33: `jwk`, `jku`, `x5u`, `x5c` never supply the key nor cause a request: the token
    signed by the attacker's key is refused (unknown kid, or bad signature for the IdP's own
    key), and nothing but the configured jwks_uri is ever requested."""
    values = {
        "jwk": ATTACKER_RSA.public_jwk(),
        "jku": idp_server.url("/evil"),
        "x5u": idp_server.url("/evil"),
        "x5c": [attacker_certificate(ATTACKER_RSA)],
    }
    header: dict[str, Any] = {member: values[member]}
    # kid None: TestKey.sign drops the member (a token without kid)
    header["kid"] = idp_server.key.kid if kid == "legit" else kid
    token = ATTACKER_RSA.sign(idp.access_claims(None, NOW), headers=header)
    refused(robot(idp_server), token, caplog, reason, fragment)
    assert idp_server.hits("/evil") == 0
    assert only_jwks_requested(idp_server)


def test_r3_jku_pointing_at_the_real_jwks_changes_nothing(idp_server, caplog):
    """R3/R33: a jku naming another server's real key set (the attacker's) is ignored and
    that server never hears from us."""
    with idp.IdpServer(keys=[ATTACKER_RSA]) as evil:
        token = mint(
            None, ATTACKER_RSA, NOW, headers={"jku": evil.jwks_uri, "kid": ATTACKER_RSA.kid}
        )
        refused(robot(idp_server), token, caplog, "unknown_key", "key")
        assert evil.total_requests == 0


# --------------------------------------------------------------------------- R4 kid
@pytest.mark.parametrize(
    "kid",
    [
        pytest.param(1, id="number"),
        pytest.param(0, id="zero"),
        pytest.param(1.5, id="float"),
        pytest.param(True, id="bool"),
        pytest.param({"kid": "x"}, id="object"),
        pytest.param(["x"], id="list"),
        pytest.param("", id="empty"),
        pytest.param("k" * 257, id="257-chars"),
        pytest.param("k" * 5000, id="5000-chars"),
    ],
)
def test_r4_unusable_kid_refused_before_any_lookup(idp_server, caplog, kid):
    """R4: a non-string, empty or over-long kid -> 401 before the JWKS is even fetched."""
    token = idp_server.key.sign(idp.access_claims(None, NOW), headers={"kid": kid})
    refused(robot(idp_server), token, caplog, "bad_kid", "kid")
    assert idp_server.jwks_requests == 0


def test_r4_null_kid_refused_before_any_lookup(idp_server, caplog):
    """R4: `"kid": null` is a non-string kid too (not "no kid")."""
    key = idp_server.key
    header = json.dumps({"alg": "RS256", "kid": None, "typ": "JWT"})
    token = raw_sign(key, header, claims_text())
    refused(robot(idp_server), token, caplog, "bad_kid", "kid")
    assert idp_server.jwks_requests == 0


def test_r4_kid_of_256_characters_is_a_normal_kid(idp_server, caplog):
    """R4 boundary: 256 characters is allowed and compared exactly."""
    key = make_key("ES256", kid="k" * 256)
    idp_server.keys = [key]
    middleware = robot(idp_server)
    accepted(send(middleware, mint(None, key, NOW)))
    other = mint(None, key, NOW, headers={"kid": "k" * 255 + "K"})
    refused(middleware, other, caplog, "unknown_key", "key")


@pytest.mark.parametrize(
    "variant",
    ["upper", "lower-prefix", "trailing-space", "leading-space", "nul", "path", "query", "glob"],
)
def test_r4_kid_compared_exactly(idp_server, caplog, variant):
    """R4: kid equality is exact; a kid is never used in a path or query."""
    kid = idp_server.key.kid
    variants = {
        "upper": kid.upper() if kid.upper() != kid else kid.lower(),
        "lower-prefix": kid[:-1],
        "trailing-space": kid + " ",
        "leading-space": " " + kid,
        "nul": kid + "\u0000",
        "path": f"../jwks/{kid}",
        "query": f"{kid}?x=1",
        "glob": "*",
    }
    token = mint(None, idp_server.key, NOW, headers={"kid": variants[variant]})
    refused(robot(idp_server), token, caplog, "unknown_key", "key")
    assert only_jwks_requested(idp_server)
    assert all(r.raw_path == "/jwks" for r in idp_server.requests)


def test_r4_kid_of_one_key_signature_of_another_refused(idp_server, caplog):
    """R4: the kid selects the key; no fallback to the other keys of the set."""
    idp_server.keys = [idp_server.key, SECOND_RSA]
    token = mint(None, SECOND_RSA, NOW, headers={"kid": idp_server.key.kid})
    refused(robot(idp_server), token, caplog, "bad_signature", "signature")


# --------------------------------------------------------------------------- R5 signatures
def test_r5_r23_signature_of_another_token_spliced_in(idp_server, caplog):
    """R5/R23: header+payload of one token with the signature of another (both valid and
    cached): refused both ways; the cache is keyed by the whole token."""
    middleware = robot(idp_server)
    alice = mint({"preferred_username": "alice"}, idp_server.key, NOW)
    admin = mint({"preferred_username": "admin"}, idp_server.key, NOW)
    accepted(send(middleware, alice), "alice")
    accepted(send(middleware, admin), "admin")
    refused(
        middleware, with_signature(alice, signature_of(admin)), caplog, "bad_signature", "signature"
    )
    refused(
        middleware, with_signature(admin, signature_of(alice)), caplog, "bad_signature", "signature"
    )
    # a signature from a different key of the same IdP
    idp_server.keys = [idp_server.key, SECOND_RSA]
    other = mint({"preferred_username": "admin"}, SECOND_RSA, NOW)
    refused(
        middleware, with_signature(alice, signature_of(other)), caplog, "bad_signature", "signature"
    )
    accepted(send(middleware, alice), "alice")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_r5_r23_bit_flipped_signature_refused(idp_server, caplog, alg, position):
    """R5/R23: one flipped bit in the signature, after the genuine token was cached."""
    key = idp_server.key if alg == "RS256" else make_key(alg)
    idp_server.keys = [idp_server.key, key] if alg != "RS256" else [key]
    middleware = robot(idp_server)
    genuine = mint(None, key, NOW)
    accepted(send(middleware, genuine))
    signature = bytearray(signature_of(genuine))
    index = {"first": 0, "middle": len(signature) // 2, "last": len(signature) - 1}[position]
    signature[index] ^= 0x01
    refused(
        middleware, with_signature(genuine, bytes(signature)), caplog, "bad_signature", "signature"
    )


def test_r5_r23_tampered_payload_and_header_refused(idp_server, caplog):
    """R5/R23: change the payload (user name) or the header, keep the signature."""
    middleware = robot(idp_server)
    genuine = mint(None, idp_server.key, NOW)
    accepted(send(middleware, genuine))
    header, payload = idp.decode_parts(genuine)
    signature = signature_of(genuine)
    payload["preferred_username"] = "admin"
    refused(
        middleware, compact_jws(header, payload, signature), caplog, "bad_signature", "signature"
    )
    _, payload_b64, signature_b64 = genuine.split(".")
    new_header = b64url(json.dumps({**header, "typ": "at+jwt"}))
    refused(
        middleware,
        f"{new_header}.{payload_b64}.{signature_b64}",
        caplog,
        "bad_signature",
        "signature",
    )


@pytest.mark.parametrize(
    "how", ["drop-last-byte", "drop-first-byte", "half", "one-byte", "two-chars-less"]
)
def test_r5_truncated_signature_refused(idp_server, caplog, how):
    genuine = mint(None, idp_server.key, NOW)
    signature = signature_of(genuine)
    cut = {
        "drop-last-byte": signature[:-1],
        "drop-first-byte": signature[1:],
        "half": signature[: len(signature) // 2],
        "one-byte": signature[:1],
    }
    # two characters less: 340 characters, which decode to 255 bytes
    token = genuine[:-2] if how == "two-chars-less" else with_signature(genuine, cut[how])
    refused(robot(idp_server), token, caplog, "bad_signature", "signature")


@pytest.mark.parametrize(
    ("suffix", "fragment"), [("", "no signature"), (".", "three segments")], ids=["empty", "dot"]
)
def test_r5_r12_empty_signature_refused(idp_server, caplog, suffix, fragment):
    """R5/R12: a JWS with an empty signature segment (`h.p.`) or a trailing extra dot."""
    genuine = mint(None, idp_server.key, NOW)
    header, payload, _ = genuine.split(".")
    refused(robot(idp_server), f"{header}.{payload}.{suffix}", caplog, "malformed", fragment)


def test_r5_r12_unsigned_two_segment_and_four_segment_refused(idp_server, caplog):
    genuine = mint(None, idp_server.key, NOW)
    header, payload, signature = genuine.split(".")
    middleware = robot(idp_server)
    refused(middleware, f"{header}.{payload}", caplog, "malformed", "three segments")
    refused(
        middleware,
        f"{header}.{payload}.{signature}.{signature}",
        caplog,
        "malformed",
        "three segments",
    )
    refused(middleware, f"{header}{payload}{signature}", caplog, "malformed", "three segments")


@pytest.fixture
def ec_setup(idp_server):
    """A JWKS with the EC key, a middleware, and a genuine ES256 token (accepted, cached)."""
    idp_server.keys = [idp_server.key, EC_KEY]
    middleware = robot(idp_server)
    genuine = mint(None, EC_KEY, NOW)
    accepted(send(middleware, genuine))
    return middleware, genuine


@pytest.mark.parametrize(
    "case",
    ["r0-s0", "r0", "s0", "r-n", "s-n", "r-n-s-n", "all-ff", "r-n-plus-1", "s-n-plus-1"],
)
def test_r5_ecdsa_r_or_s_out_of_range_refused(ec_setup, caplog, case):
    """R5: ECDSA r or s outside [1, n-1] (incl. the "psychic signature" r = s = 0)."""
    middleware, genuine = ec_setup
    r, s = ec_parts(signature_of(genuine))
    signatures = {
        "r0-s0": bytes(64),
        "r0": ec_raw(0, s),
        "s0": ec_raw(r, 0),
        "r-n": ec_raw(P256_N, s),
        "s-n": ec_raw(r, P256_N),
        "r-n-s-n": ec_raw(P256_N, P256_N),
        "all-ff": b"\xff" * 64,
        "r-n-plus-1": ec_raw(P256_N + 1, s),
        "s-n-plus-1": ec_raw(r, P256_N + 1),
    }
    refused(
        middleware, with_signature(genuine, signatures[case]), caplog, "bad_signature", "signature"
    )


def test_r5_der_encoded_ecdsa_signature_refused(ec_setup, caplog):
    """R5: JWS ES256 signatures are raw r||s; the DER form of the same (r, s) is refused."""
    middleware, genuine = ec_setup
    r, s = ec_parts(signature_of(genuine))
    der = encode_dss_signature(r, s)
    assert decode_dss_signature(der) == (r, s)
    refused(middleware, with_signature(genuine, der), caplog, "bad_signature", "signature")


def test_r5_ecdsa_high_s_is_never_a_crash(ec_setup, caplog):
    """R5 SHOULD: (r, n - s) is also a valid ECDSA signature of the same bytes. It may be
    accepted or refused, but never a 500; if accepted it is the same user, and the original
    token keeps working (no cache confusion)."""
    middleware, genuine = ec_setup
    r, s = ec_parts(signature_of(genuine))
    high = with_signature(genuine, ec_raw(r, P256_N - s))
    assert high != genuine
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    first = send(middleware, high)
    assert first.status in (200, 401), first.body
    if first.status == 200:
        accepted(first)
    else:
        assert_invalid_token(first, "bad_signature")
        assert_no_leak(high, first, caplog)
    again = send(middleware, high)
    assert again.status == first.status
    accepted(send(middleware, genuine))


@pytest.mark.parametrize(
    "how", ["zero-prefixed", "zero-suffixed", "doubled", "leading-byte-dropped"]
)
def test_r5_rsa_signature_of_wrong_length_refused(idp_server, caplog, how):
    """R5: an RSA signature must be exactly the modulus length (256 bytes for RSA-2048), even
    when it denotes the same number (a leading zero byte)."""
    middleware = robot(idp_server)
    genuine = mint(None, idp_server.key, NOW)
    accepted(send(middleware, genuine))
    signature = signature_of(genuine)
    assert len(signature) == 256
    forms = {
        "zero-prefixed": b"\x00" + signature,
        "zero-suffixed": signature + b"\x00",
        "doubled": signature * 2,
        "leading-byte-dropped": signature[1:],
    }
    refused(middleware, with_signature(genuine, forms[how]), caplog, "bad_signature", "signature")


def test_r5_ps256_wrong_length_refused(idp_server, caplog):
    key = make_key("PS256")
    idp_server.keys = [key]
    genuine = mint(None, key, NOW)
    middleware = robot(idp_server)
    accepted(send(middleware, genuine))
    zero = with_signature(genuine, b"\x00" + signature_of(genuine))
    refused(middleware, zero, caplog, "bad_signature", "signature")


def test_r5_eddsa_signature_from_another_key_refused(idp_server, caplog):
    key = make_key("EdDSA")
    impostor = make_key("EdDSA", kid=key.kid)
    idp_server.keys = [key]
    refused(robot(idp_server), mint(None, impostor, NOW), caplog, "bad_signature", "signature")


# --------------------------------------------------------------------------- R12 JWS shape
@pytest.mark.parametrize(
    "crit",
    [
        pytest.param({"crit": ["exp"]}, id="exp"),
        pytest.param({"crit": ["http://example.test/ext"], "http://example.test/ext": 1}, id="ext"),
        pytest.param({"crit": []}, id="empty-list"),
        pytest.param({"crit": "exp"}, id="string"),
        pytest.param({"crit": ["b64"], "b64": True}, id="b64-true"),
    ],
)
def test_r12_crit_refused(idp_server, caplog, crit):
    """R12: `crit` names something we do not implement (we implement nothing) -> 401, even
    with a valid signature."""
    token = mint(None, idp_server.key, NOW, headers=crit)
    refused(robot(idp_server), token, caplog, "malformed", "crit")


@pytest.mark.parametrize(
    ("with_crit", "fragment"), [(True, "crit"), (False, "b64")], ids=["with-crit", "without-crit"]
)
def test_r12_b64_false_refused(idp_server, caplog, with_crit, fragment):
    """R12 (RFC 7797): unencoded payloads are refused."""
    headers: dict[str, Any] = {"b64": False}
    if with_crit:
        headers["crit"] = ["b64"]
    token = mint(None, idp_server.key, NOW, headers=headers)
    refused(robot(idp_server), token, caplog, "malformed", fragment)


def test_r12_b64_false_with_raw_payload_refused(idp_server, caplog):
    """R12: a real RFC 7797 token (payload bytes unencoded in the signing input)."""
    key = idp_server.key
    header = {"alg": "RS256", "kid": key.kid, "b64": False, "crit": ["b64"]}
    header_b64 = b64url(json.dumps(header))
    payload = claims_text()
    algorithm = jwt.get_algorithm_by_name("RS256")
    signature = algorithm.sign(
        f"{header_b64}.{payload}".encode(), algorithm.prepare_key(key.private_key)
    )
    token = f"{header_b64}.{b64url(payload)}.{b64url(signature)}"
    refused(robot(idp_server), token, caplog, "malformed")


@pytest.mark.parametrize("shape", ["jwe", "jwe-dir", "six"])
def test_r12_jwe_and_other_segment_counts_refused(idp_server, caplog, shape):
    """R12: JWE (five segments) and other shapes are refused."""
    jwe_header = b64url(json.dumps({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": "k"}))
    parts = [b64url(bytes(range(i, i + 32))) for i in range(4)]
    tokens = {
        "jwe": ".".join([jwe_header, *parts]),
        "jwe-dir": ".".join([b64url(json.dumps({"alg": "dir", "enc": "A128GCM"})), "", *parts[1:]]),
        "six": ".".join([jwe_header, *parts, parts[0]]),
    }
    answer = refused(robot(idp_server), tokens[shape], caplog, "malformed")
    if shape != "six":
        assert "JWE" in answer.json["error"]["message"]
    assert idp_server.jwks_requests == 0


@pytest.mark.parametrize("cty", ["JWT", "jwt", "Jwt"])
def test_r12_nested_token_refused(idp_server, caplog, cty):
    """R12 SHOULD: `cty: JWT` (a nested token) is refused, even validly signed."""
    inner = mint(None, SECOND_RSA, NOW)
    claims = idp.access_claims({"inner": inner}, NOW)
    token = idp_server.key.sign(claims, headers={"cty": cty})
    refused(robot(idp_server), token, caplog, "malformed", "nested")


@pytest.mark.parametrize(
    "duplicate",
    [
        pytest.param(',"preferred_username":"admin"', id="user-name"),
        pytest.param(f',"exp":{NOW + 10**8}', id="exp"),
        pytest.param(',"iss":"https://evil.example.test"', id="iss"),
        pytest.param(
            ',"resource_access":{"live-key2":{"roles":["ROLE_ADMINISTRATOR"]}}', id="roles"
        ),
    ],
)
def test_r12_duplicate_member_names_in_payload_refused(idp_server, caplog, duplicate):
    """R12 SHOULD (R11): duplicate member names in the payload -> 401 even with a valid
    signature over exactly those bytes (PyJWT would let the last one win)."""
    payload = claims_text()[:-1] + duplicate + "}"
    token = idp_server.key.sign(payload)  # verbatim payload, valid signature
    refused(robot(idp_server), token, caplog, "malformed", "JSON")


@pytest.mark.parametrize(
    "header",
    [
        '{"alg":"RS256","kid":"%s","alg":"none"}',
        '{"alg":"RS256","kid":"%s","kid":"other"}',
        '{"alg":"RS256","kid":"%s","typ":"JWT","typ":"JWT"}',
    ],
    ids=["alg", "kid", "typ"],
)
def test_r12_duplicate_member_names_in_header_refused(idp_server, caplog, header):
    token = raw_sign(idp_server.key, header % idp_server.key.kid, claims_text())
    refused(robot(idp_server), token, caplog, "malformed", "JSON")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        pytest.param(b'{"preferred_username":"\xff\xfe","exp":1}', "UTF-8", id="invalid-utf8"),
        pytest.param(b"[1, 2]", "object", id="array"),
        pytest.param(b'"david"', "object", id="string"),
        pytest.param(b"null", "object", id="null"),
        pytest.param(b"", "JSON", id="empty"),
        pytest.param(b"{", "JSON", id="truncated"),
        pytest.param(b'{"exp": NaN}', "JSON", id="nan"),
        pytest.param(b'{"exp": Infinity}', "JSON", id="infinity"),
    ],
)
def test_r12_payload_must_be_a_json_object(idp_server, caplog, payload, fragment):
    """R12: payload is a JSON object in UTF-8 without NaN/Infinity, even validly signed."""
    token = idp_server.key.sign(payload)
    refused(robot(idp_server), token, caplog, "malformed", fragment)


def test_r12_header_must_be_a_json_object(idp_server, caplog):
    key = idp_server.key
    middleware = robot(idp_server)
    refused(middleware, raw_sign(key, '["RS256"]', claims_text()), caplog, "malformed", "object")
    refused(
        middleware,
        raw_sign(key, b'{"alg":"RS256\xff"}', claims_text()),
        caplog,
        "malformed",
        "UTF-8",
    )


def _padded(segment: str) -> str:
    return segment + ("=" * (-len(segment) % 4) or "=")


@pytest.mark.parametrize(
    "mangle",
    [
        "pad-header",
        "pad-payload",
        "pad-signature",
        "pad-signature-one",
        "space-after-header",
        "space-before-payload",
        "space-in-signature",
        "tab-in-payload",
        "newline-in-header",
        "crlf-before-signature",
        "nbsp-in-signature",
        "standard-alphabet",
        "non-canonical-last-char",
        "nul-in-payload",
    ],
)
def test_r12_non_canonical_segments_refused(idp_server, caplog, mangle):
    """R12: exactly three canonical base64url segments: no `=` padding, no white space or
    other characters inside, no standard-alphabet characters, no non-zero unused bits."""
    middleware = robot(idp_server)
    genuine = mint(None, idp_server.key, NOW)
    accepted(send(middleware, genuine))  # the genuine token is good (and cached)
    h, p, s = genuine.split(".")
    last = s[-1]
    sibling = ALPHABET[ALPHABET.index(last) ^ 1]
    standard = s.replace("-", "+").replace("_", "/")
    if standard == s:
        standard = s[:-2] + "+" + s[-1]
    tokens = {
        "pad-header": f"{_padded(h)}.{p}.{s}",
        "pad-payload": f"{h}.{_padded(p)}.{s}",
        "pad-signature": f"{h}.{p}.{_padded(s)}",
        "pad-signature-one": f"{h}.{p}.{s}=",
        "space-after-header": f"{h} .{p}.{s}",
        "space-before-payload": f"{h}. {p}.{s}",
        "space-in-signature": f"{h}.{p}.{s[:100]} {s[100:]}",
        "tab-in-payload": f"{h}.{p[:50]}\t{p[50:]}.{s}",
        "newline-in-header": f"{h[:10]}\n{h[10:]}.{p}.{s}",
        "crlf-before-signature": f"{h}.{p}.\r\n{s}",
        "nbsp-in-signature": f"{h}.{p}.{s[:10]}\u00a0{s[10:]}",
        "standard-alphabet": f"{h}.{p}.{standard}",
        "non-canonical-last-char": f"{h}.{p}.{s[:-1]}{sibling}",
        "nul-in-payload": f"{h}.{p[:20]}\u0000{p[20:]}.{s}",
    }
    token = tokens[mangle]
    assert token != genuine
    refused(middleware, token, caplog, "malformed", raw=True)


# --------------------------------------------------------------------------- R14 user name
@pytest.mark.parametrize(
    "name",
    [
        "alice\u0000",
        "\u0000admin",
        "alice\u0000admin",
        "ali\nce",
        "alice\r\nX-Injected: 1",
        "ali\tce",
        "alice\u001b[31m",
        "alice\u007f",
        "alice\u001f",
        "\u0008admin",
    ],
    ids=["nul-end", "nul-start", "nul-inside", "lf", "crlf", "tab", "esc", "del", "us", "bs"],
)
def test_r14_control_characters_in_user_name_refused(idp_server, caplog, name):
    """R14 SHOULD: a user name with control characters is refused even in a valid token."""
    token = mint({"preferred_username": name}, idp_server.key, NOW)
    refused(robot(idp_server), token, caplog, "bad_user_name", "control")


# --------------------------------------------------------------------------- R35 logs and bodies
def test_r35_refusals_leak_nothing_even_at_debug(idp_server, caplog):
    """R35: across a mix of refusals (bad signature, expiry, issuer, malformed), no log record
    or body contains the token, a segment, or the claim set; a fingerprint is logged."""
    middleware = robot(idp_server, validate_audience=True, audience="someone-else")
    tokens = [
        (mint(None, ATTACKER_RSA, NOW), "unknown_key"),
        (mint(None, make_key("RS256", kid=idp_server.key.kid), NOW), "bad_signature"),
        (mint({"exp": NOW - 3600}, idp_server.key, NOW), "expired"),
        (mint({"iss": "https://evil.example.test"}, idp_server.key, NOW), "wrong_issuer"),
        (mint(None, idp_server.key, NOW), "wrong_audience"),
        # refused for its audience before its name is read
        (mint({"preferred_username": "bad\u0000name"}, idp_server.key, NOW), "wrong_audience"),
    ]
    for token, reason in tokens:
        answer = refused(middleware, token, caplog, reason)
        assert answer.json["error"]["message"]
        # and once more, answered from the negative cache
        refused(middleware, token, caplog, reason)

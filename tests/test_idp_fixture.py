"""Tests of the fake IdP fixture itself (tests/idp.py): keys, tokens, and every server mode."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import idp
import jwt
import pytest
import requests
from idp import (
    AUDIENCE,
    DELETE,
    ISSUER,
    SUBJECT,
    USER_NAME,
    IdpServer,
    TestKey,
    access_claims,
    compact_jws,
    dead_url,
    decode_parts,
    hmac_sign,
    make_key,
    mint,
)

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

KINDS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
T = 5  # requests timeout (seconds) for calls expected to be answered


def get(url: str, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", T)
    kwargs.setdefault("allow_redirects", False)
    return requests.get(url, **kwargs)


def verify(token: str, jwks: dict, **kwargs) -> dict:
    keyset = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    key = keyset[kid]
    return jwt.decode(
        token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE, issuer=ISSUER, **kwargs
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, TestKey]:
    return {kind: make_key(kind) for kind in KINDS}


# --------------------------------------------------------------------------- keys and tokens


@pytest.mark.parametrize("kind", KINDS)
def test_make_key_public_jwk(keys, kind):
    key = keys[kind]
    assert key.alg == kind
    assert isinstance(key.kid, str)
    assert len(key.kid) >= 16
    jwk = key.public_jwk()
    assert jwk["kid"] == key.kid
    assert jwk["alg"] == kind
    assert jwk["use"] == "sig"
    expected = {
        "RS256": ("RSA", None, {"n", "e"}),
        "PS256": ("RSA", None, {"n", "e"}),
        "ES256": ("EC", "P-256", {"x", "y"}),
        "ES384": ("EC", "P-384", {"x", "y"}),
        "EdDSA": ("OKP", "Ed25519", {"x"}),
    }[kind]
    assert jwk["kty"] == expected[0]
    assert jwk.get("crv") == expected[1]
    assert expected[2] <= set(jwk)
    assert not any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi")), "private material"
    assert jwt.PyJWK(jwk).algorithm_name == kind


def test_kids_are_random():
    assert make_key("ES256").kid != make_key("ES256").kid
    assert make_key("ES256", kid="fixed").kid == "fixed"


def test_unknown_kind():
    with pytest.raises(ValueError):
        make_key("HS256")


@pytest.mark.parametrize("kind", KINDS)
def test_sign_verifies_with_public_jwk(keys, kind):
    key = keys[kind]
    token = key.sign({"sub": "x", "n": 1})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": kind, "typ": "JWT", "kid": key.kid}
    claims = jwt.decode(token, jwt.PyJWK(key.public_jwk()).key, algorithms=[kind])
    assert claims == {"sub": "x", "n": 1}


def test_sign_header_overrides(keys):
    key = keys["RS256"]
    assert "kid" not in jwt.get_unverified_header(key.sign({}, {"kid": None}))
    assert "typ" not in jwt.get_unverified_header(key.sign({}, {"typ": None}))
    assert jwt.get_unverified_header(key.sign({}, {"kid": "other"}))["kid"] == "other"
    extras = {
        "jku": "https://evil.example/jwks",
        "jwk": keys["ES256"].public_jwk(),
        "x5u": "https://evil.example/cert",
        "crit": ["exp"],
    }
    header, _ = decode_parts(key.sign({}, extras))
    for name, value in extras.items():
        assert header[name] == value


def test_sign_with_other_alg(keys):
    key = keys["RS256"]
    token = key.sign({"a": 1}, alg="PS512")
    assert jwt.get_unverified_header(token)["alg"] == "PS512"
    assert jwt.decode(token, key.public_key, algorithms=["PS512"]) == {"a": 1}


def test_sign_lying_header_alg_and_odd_members(keys):
    key = keys["ES256"]
    # header says RS256 while the signature is ES256 over exactly these bytes
    token = key.sign({"a": 1}, {"alg": "RS256"})
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    signing_input, _, sig = token.rpartition(".")
    raw = jwt.utils.base64url_decode(sig)
    alg = jwt.get_algorithm_by_name("ES256")
    assert alg.verify(signing_input.encode(), key.public_key, raw)
    # non-string kid, b64=false, NaN and a non-string iss are written as asked
    header, payload = decode_parts(key.sign({"iss": 5}, {"kid": 123, "b64": False}))
    assert header["kid"] == 123
    assert header["b64"] is False
    assert payload == {"iss": 5}
    payload = jwt.utils.base64url_decode(key.sign({"exp": float("nan")}).split(".")[1])
    assert payload == b'{"exp":NaN}'
    raw_payload = b'{"sub":"a","sub":"b"}'
    assert (
        jwt.utils.base64url_decode(key.sign(raw_payload, {"alg": "none"}).split(".")[1])
        == raw_payload
    )


def test_compact_and_hmac_helpers(keys):
    token = compact_jws({"alg": "none"}, {"sub": "x"})
    assert token.endswith(".")
    assert token.count(".") == 2
    secret = keys["RS256"].public_pem()
    forged = hmac_sign({"sub": "x"}, secret, {"kid": "k"})
    assert jwt.get_unverified_header(forged) == {"alg": "HS256", "typ": "JWT", "kid": "k"}
    # PyJWT refuses a PEM as HMAC key; check the MAC by hand
    signing_input, _, sig = forged.rpartition(".")
    import hashlib
    import hmac

    expected = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert jwt.utils.base64url_decode(sig) == expected


def test_access_claims_shape():
    now = 1_700_000_000
    claims = access_claims(now=now)
    assert claims["exp"] == now + 300
    assert claims["iat"] == now
    assert "nbf" not in claims
    assert claims["iss"] == ISSUER
    assert AUDIENCE in claims["aud"]
    assert claims["sub"] == SUBJECT
    assert claims["preferred_username"] == USER_NAME
    assert claims["realm_access"]["roles"]
    assert claims["resource_access"]["live-key2"]["roles"] == [
        "GeonetworkAdministrator",
        "GeoserverAdministrator",
    ]
    assert claims["azp"] == "live-key2"
    assert "scope" in claims
    assert "email" in claims
    assert 800 <= len(json.dumps(claims, separators=(",", ":"))) <= 1300


def test_overrides_and_delete():
    claims = access_claims({"exp": DELETE, "sub": 42, "nbf": 5, "missing": DELETE}, now=100)
    assert "exp" not in claims
    assert "missing" not in claims
    assert claims["sub"] == 42
    assert claims["nbf"] == 5
    assert repr(DELETE) == "DELETE"


def test_mint_verifies(keys):
    key = keys["ES384"]
    now = int(time.time())
    token = mint({"preferred_username": "robot"}, key, now)
    claims = verify(token, {"keys": [key.public_jwk()]})
    assert claims["preferred_username"] == "robot"
    assert claims["exp"] == now + 300
    expired = mint(None, key, now - 3600)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(expired, {"keys": [key.public_jwk()]})
    assert jwt.get_unverified_header(mint(None, key, headers={"kid": None})).get("kid") is None


# --------------------------------------------------------------------------- JWKS


def test_jwks_ok_and_tokens_verify(keys):
    all_keys = list(keys.values())
    with IdpServer(all_keys) as server:
        response = get(server.jwks_uri)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        jwks = response.json()
        assert [k["kid"] for k in jwks["keys"]] == [k.kid for k in all_keys]
        for key in all_keys:
            assert verify(mint({}, key), jwks)["sub"] == SUBJECT
        assert server.jwks_requests == 1
        assert server.userinfo_requests == 0


def test_rotation_and_raw_dict_keys(idp_server):
    old = idp_server.key
    new = make_key("ES256")
    idp_server.keys = [new, {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]
    jwks = get(idp_server.jwks_uri).json()
    assert [k["kid"] for k in jwks["keys"]] == [new.kid, "hmac"]
    assert old.kid not in {k["kid"] for k in jwks["keys"]}
    assert idp_server.key is new


@pytest.mark.parametrize(
    ("mode", "status", "check"),
    [
        ("500", 500, lambda r: r.json()),
        ("garbage", 200, lambda r: r.content.startswith(b"<!DOCTYPE html>")),
        ("not_object", 200, lambda r: r.json() == []),
        ("empty", 200, lambda r: r.json() == {"keys": []}),
    ],
)
def test_jwks_simple_modes(idp_server, mode, status, check):
    idp_server.jwks_mode = mode
    response = get(idp_server.jwks_uri)
    assert response.status_code == status
    assert check(response)
    assert idp_server.jwks_requests == 1


def test_jwks_redirect(idp_server):
    idp_server.jwks_mode = "redirect"
    response = get(idp_server.jwks_uri)
    assert response.status_code == 302
    assert response.headers["Location"] == idp_server.url("/jwks/moved")
    assert idp_server.hits("/jwks/moved") == 0
    followed = get(idp_server.jwks_uri, allow_redirects=True)
    assert followed.json()["keys"][0]["kid"] == idp_server.key.kid
    assert idp_server.hits("/jwks/moved") == 1
    assert idp_server.jwks_requests == 2


@pytest.mark.parametrize("mode", ["huge", "huge_unsized"])
def test_jwks_huge(idp_server, mode):
    idp_server.jwks_mode = mode
    response = get(idp_server.jwks_uri)
    assert response.status_code == 200
    assert len(response.content) >= 2 * 1024 * 1024
    if mode == "huge":
        assert int(response.headers["Content-Length"]) == len(response.content)
    else:
        assert "Content-Length" not in response.headers
    assert response.json()["keys"][0]["kid"] == idp_server.key.kid  # valid, only too big


def test_jwks_huge_client_gives_up_early(idp_server):
    idp_server.jwks_mode = "huge"
    with get(idp_server.jwks_uri, stream=True) as response:
        assert len(response.raw.read(1024)) == 1024
    # the server's broken-pipe is expected, not an error (checked by the fixture teardown)


def test_jwks_down(idp_server):
    idp_server.jwks_mode = "down"
    with pytest.raises(requests.ConnectionError):
        get(idp_server.jwks_uri)
    assert idp_server.jwks_requests == 1


def test_jwks_slow(idp_server):
    idp_server.jwks_mode = "slow"
    idp_server.delay = 30
    started = time.perf_counter()
    with pytest.raises(requests.ReadTimeout):
        get(idp_server.jwks_uri, timeout=0.3)
    assert time.perf_counter() - started < 2
    started = time.perf_counter()
    idp_server.stop()  # does not wait for the 30 s
    assert time.perf_counter() - started < 2


def test_slow_answers_after_delay(idp_server):
    idp_server.jwks_mode = "slow"
    idp_server.delay = 0.3
    started = time.perf_counter()
    response = get(idp_server.jwks_uri)
    assert time.perf_counter() - started >= 0.3
    assert response.json()["keys"][0]["kid"] == idp_server.key.kid


def test_trickle_defeats_a_per_read_timeout(idp_server):
    idp_server.jwks_mode = "trickle"
    idp_server.delay = 1.0
    started = time.perf_counter()
    response = get(idp_server.jwks_uri, timeout=0.5)  # each read is quick, the whole is not
    assert time.perf_counter() - started >= 0.9
    assert response.json()["keys"][0]["kid"] == idp_server.key.kid


def test_hold_and_release(idp_server):
    idp_server.jwks_mode = "hold"
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(get, idp_server.jwks_uri) for _ in range(4)]
        assert idp_server.wait_for("/jwks", 4)
        assert not any(f.done() for f in futures)
        idp_server.release()
        assert all(f.result().status_code == 200 for f in futures)


def test_hold_is_ended_by_stop(idp_server):
    idp_server.jwks_mode = "hold"
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(get, idp_server.jwks_uri)
        assert idp_server.wait_for("/jwks", 1)
        idp_server.stop()
        with pytest.raises(requests.ConnectionError):
            future.result()


def test_unknown_mode_rejected(idp_server):
    with pytest.raises(ValueError):
        idp_server.jwks_mode = "timeout"
    with pytest.raises(ValueError):
        idp_server.userinfo_mode = "empty"
    idp_server.userinfo_mode = "418"
    assert get(idp_server.userinfo_endpoint).status_code == 418


# --------------------------------------------------------------------------- userinfo


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_userinfo_ok_echoes_token_sub(idp_server):
    token = mint({"sub": "abc-123"}, idp_server.key)
    response = get(idp_server.userinfo_endpoint, headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["sub"] == "abc-123"
    assert body["preferred_username"] == USER_NAME
    (call,) = idp_server.userinfo_calls
    assert call.authorization == f"Bearer {token}"
    assert call.query == ""
    assert token not in call.raw_path
    assert idp_server.userinfo_requests == 1


def test_userinfo_records_query_string(idp_server):
    token = mint({}, idp_server.key)
    response = get(idp_server.userinfo_endpoint, params={"access_token": token})
    assert response.status_code == 401  # only the header is accepted, as a real IdP may
    (call,) = idp_server.userinfo_calls
    assert call.authorization is None
    assert token in call.query


def test_userinfo_post(idp_server):
    token = mint({}, idp_server.key)
    response = requests.post(idp_server.userinfo_endpoint, headers=bearer(token), timeout=T)
    assert response.json()["sub"] == SUBJECT
    assert idp_server.userinfo_calls[0].method == "POST"


def test_userinfo_ok_without_token_sub(idp_server):
    token = mint({"sub": DELETE}, idp_server.key)
    body = get(idp_server.userinfo_endpoint, headers=bearer(token)).json()
    assert "sub" not in body
    assert body["preferred_username"] == USER_NAME


def test_userinfo_sub_override_and_body(idp_server):
    token = mint({}, idp_server.key)
    idp_server.userinfo_sub = 123
    assert get(idp_server.userinfo_endpoint, headers=bearer(token)).json()["sub"] == 123
    idp_server.userinfo_body = {"sub": None}
    assert get(idp_server.userinfo_endpoint, headers=bearer(token)).json() == {"sub": None}


@pytest.mark.parametrize("value", [None, "Basic dXNlcjpwYXNz", "Bearer ", "Bearer not-a-jwt"])
def test_userinfo_without_usable_token_is_401(idp_server, value):
    headers = {} if value is None else {"Authorization": value}
    response = get(idp_server.userinfo_endpoint, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("status", ["401", "403", "404", "500"])
def test_userinfo_status_modes(idp_server, status):
    idp_server.userinfo_mode = status
    response = get(idp_server.userinfo_endpoint, headers=bearer(mint({}, idp_server.key)))
    assert response.status_code == int(status)
    if status == "401":
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("no_sub", {}), ("not_object", [])],
)
def test_userinfo_json_modes(idp_server, mode, expected):
    idp_server.userinfo_mode = mode
    response = get(idp_server.userinfo_endpoint, headers=bearer(mint({}, idp_server.key)))
    assert response.status_code == 200
    assert response.json() == expected


def test_userinfo_garbage(idp_server):
    idp_server.userinfo_mode = "garbage"
    response = get(idp_server.userinfo_endpoint, headers=bearer(mint({}, idp_server.key)))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_userinfo_redirect(idp_server):
    idp_server.userinfo_mode = "redirect"
    token = mint({}, idp_server.key)
    response = get(idp_server.userinfo_endpoint, headers=bearer(token))
    assert response.status_code == 302
    assert response.headers["Location"] == idp_server.url("/userinfo/moved")
    followed = get(idp_server.userinfo_endpoint, headers=bearer(token), allow_redirects=True)
    assert followed.json()["sub"] == SUBJECT
    assert idp_server.hits("/userinfo/moved") == 1


def test_userinfo_down(idp_server):
    idp_server.userinfo_mode = "down"
    with pytest.raises(requests.ConnectionError):
        get(idp_server.userinfo_endpoint, headers=bearer(mint({}, idp_server.key)))
    assert idp_server.userinfo_requests == 1


def test_userinfo_slow(idp_server):
    idp_server.userinfo_mode = "slow"
    idp_server.delay = 30
    started = time.perf_counter()
    with pytest.raises(requests.ReadTimeout):
        get(idp_server.userinfo_endpoint, headers=bearer(mint({}, idp_server.key)), timeout=0.3)
    assert time.perf_counter() - started < 2


# --------------------------------------------------------------------------- counters, lifecycle


def test_counters_are_thread_safe(idp_server):
    token = mint({}, idp_server.key)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: get(idp_server.jwks_uri), range(25)))
        list(
            pool.map(lambda _: get(idp_server.userinfo_endpoint, headers=bearer(token)), range(15))
        )
    assert idp_server.jwks_requests == 25
    assert idp_server.userinfo_requests == 15
    assert idp_server.total_requests == 40
    get(idp_server.url("/nothing"))
    assert idp_server.hits("/nothing") == 1
    idp_server.reset()
    assert idp_server.total_requests == idp_server.jwks_requests == 0


def test_discovery_document(idp_server):
    doc = get(idp_server.url("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == ISSUER
    assert doc["jwks_uri"] == idp_server.jwks_uri
    assert doc["userinfo_endpoint"] == idp_server.userinfo_endpoint


def test_context_manager_stops():
    with IdpServer([make_key("EdDSA")]) as server:
        url = server.jwks_uri
        assert server.url("/jwks").startswith("http://127.0.0.1:")
        assert server.port > 0
        assert get(url).status_code == 200
        threads = {t.name for t in threading.enumerate()}
        assert f"fake-idp-{server.port}" in threads
    with pytest.raises(requests.ConnectionError):
        get(url, timeout=1)
    assert f"fake-idp-{server.port}" not in {t.name for t in threading.enumerate()}
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        server.start()


def test_dead_url_refuses():
    with pytest.raises(requests.ConnectionError):
        get(dead_url(), timeout=1)


def test_fixture_is_fresh_per_test(idp_server):
    assert idp_server.total_requests == 0
    assert idp_server.jwks_mode == "ok"
    assert idp_server.userinfo_mode == "ok"

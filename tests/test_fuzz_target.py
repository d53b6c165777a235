"""The atheris target (``fuzz/fuzz_middleware.py``) run in CI without atheris (R37).

Long coverage-guided runs happen outside CI (``fuzz/README.rst``); this keeps the target, its
input format and its invariants working between them: every seed of the committed corpus, and
random bytes from hypothesis, must pass the target's own assertions (status 200/401/503, the
app called exactly on 200, the contract's JSON body, no ERROR record, no token text in a body
or log line, and the identity oracle).

The identity oracle (``check_identity``, built on the independent model ``predict``) is proven
to see what it is for: deliberately broken middlewares (an upstream ``REMOTE_USER`` let
through, every peer trusted, no signature check, no expiry check, another claim read as the
name, a role map that invents a role, a middleware that refuses what it must accept) each make
it fail on an input the real middleware passes. And the model is not vacuous: on well-formed
inputs it predicts acceptance exactly where the middleware accepts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jwt_headers import JwtHeadersMiddleware

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"

# Indexes into the target's _PEERS and its extras flags (byte 1 of an input).
LOOPBACK, STRANGER, IPV6_LOOPBACK, NO_PEER, LIST_PEER, EMPTY_PEER, MAPPED_PEER = range(7)
MALLORY, ROLES_HEADER, RIVAL, SERVER_SET = 0x08, 0x10, 0x20, 0x40
STRING, JSON, JWT, JWT_CLAIMS, JWT_SIGNED = range(5)
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def target():
    module = _load("fuzz_middleware")
    yield module
    module._IDP.stop()
    logger = logging.getLogger("jwt_headers")
    logger.removeHandler(module._LOG)
    logger.propagate = True  # give the jwt_headers logger back to caplog in later modules


def extras(peer: int, flags: int = 0) -> int:
    """Byte 1 of an input: the peer ``_PEERS[peer]`` and the given flags."""
    return next(b for b in range(256) if b & 0x78 == flags and b % 7 == peer)


def data(config: int, peer: int, value: bytes, flags: int = 0, mode: int = 0) -> bytes:
    return bytes([config, extras(peer, flags), mode]) + value


def token_parts(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> bytes:
    """A mode 1 input's rest: the target base64url-encodes the three parts."""
    return json.dumps(header).encode() + b"\0" + json.dumps(payload).encode() + b"\0" + signature


def claims(target: ModuleType, **overrides: Any) -> dict[str, Any]:
    """Claims config 3 accepts (issuer, audience, expiry), with ``overrides``."""
    good = {
        "iss": target._IDP.issuer,
        "aud": target.AUDIENCE,
        "exp": int(time.time()) + 3600,
        "preferred_username": "alice",
        "roles": ["r1", "r2"],
    }
    return {**good, **overrides}


def replaced(target: ModuleType, config: int, middleware: Any) -> list[Any]:
    """The target's five middlewares with ``config``'s replaced."""
    middlewares = list(target._MIDDLEWARES)
    middlewares[config] = middleware
    return middlewares


def variant(target: ModuleType, config: int, **options: Any) -> list[Any]:
    """The five middlewares, ``config``'s rebuilt with ``options`` changed."""
    built = JwtHeadersMiddleware(target._APP, **{**target._CONFIGS[config], **options})
    return replaced(target, config, built)


# ---------------------------------------------------------------------------- corpus and bytes
def test_corpus_is_what_make_corpus_writes():
    """A change of the input format must come with a regenerated corpus."""
    make_corpus = _load("make_corpus")
    expected = {hashlib.sha256(seed).hexdigest()[:16]: seed for seed in make_corpus.SEEDS}
    committed = {path.name: path.read_bytes() for path in (FUZZ / "corpus").iterdir()}
    assert committed == expected


@pytest.mark.parametrize("seed", sorted(p.name for p in (FUZZ / "corpus").iterdir()))
def test_corpus_seed_keeps_the_invariants(target, seed):
    target.test_one_input((FUZZ / "corpus" / seed).read_bytes())


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(min_size=3, max_size=2048))
def test_random_bytes_keep_the_invariants(target, data):
    target.test_one_input(data)


# ---------------------------------------------------------------------------- must accept
@pytest.mark.parametrize("peer", [LOOPBACK, STRANGER, NO_PEER, MAPPED_PEER])
@pytest.mark.parametrize("rest", [b"", b"\x00"], ids=["bearer", "bare"])
def test_the_minted_token_is_accepted_and_one_edit_is_not(target, peer, rest):
    """The target can tell good from bad: without this the invariants could hold vacuously
    (every request refused). A signature-checked token is accepted from any peer."""
    target.test_one_input(data(JWT_SIGNED, peer, rest, mode=2))
    assert target._APP.called
    assert target._APP.user == "alice"
    assert target._APP.principal.roles == ("ADMIN", "USER")
    target.test_one_input(data(JWT_SIGNED, peer, b"\x05\x41\x10\x2e", mode=2))
    assert not target._APP.called


@pytest.mark.parametrize("config", [JWT, JWT_CLAIMS])
def test_the_minted_token_is_accepted_from_a_trusted_peer_without_signature_check(target, config):
    target.test_one_input(data(config, LOOPBACK, b"", MALLORY, mode=2))
    assert target._APP.user == "alice"
    assert target._APP.principal.roles == ("ADMIN", "USER")


def test_a_middleware_that_refuses_what_it_must_accept_fails_the_oracle(target):
    """The minted token for another audience: the oracle knows it must be accepted."""
    middlewares = variant(target, JWT_SIGNED, audience="other-api")
    with pytest.raises(AssertionError, match="status 401, the model says alice"):
        target.run_one(data(JWT_SIGNED, STRANGER, b"", mode=2), middlewares)


def test_a_middleware_that_refuses_ignored_headers_fails_the_oracle(target):
    """A stranger's plain header is ignored as if absent: anonymous, not refused."""

    def refuses_everything(environ, start_response):
        body = b'{"error": {"code": "INVALID_TOKEN", "message": "no"}}'
        start_response("401 Unauthorized", [("Content-Type", "application/json")])
        return [body]

    request = data(STRING, STRANGER, b"alice")
    target.test_one_input(request)
    assert target._APP.called and target._APP.user is None
    with pytest.raises(AssertionError, match="status 401, the model says anonymous"):
        target.run_one(request, replaced(target, STRING, refuses_everything))


# ---------------------------------------------------------------------------- bypasses caught
def test_an_upstream_remote_user_let_through_fails_the_oracle(target):
    """R18 broken: a pipeline that puts back the REMOTE_USER the middleware removed."""
    upstream_key = "test.upstream_remote_user"

    def restores(environ, start_response):
        if upstream_key in environ:
            environ.setdefault("REMOTE_USER", environ[upstream_key])
        return target._APP(environ, start_response)

    inner = JwtHeadersMiddleware(restores, **target._CONFIGS[STRING])

    def leaky(environ, start_response):
        if "REMOTE_USER" in environ:
            environ[upstream_key] = environ["REMOTE_USER"]
        return inner(environ, start_response)

    request = data(STRING, STRANGER, b"alice", MALLORY)
    target.test_one_input(request)
    with pytest.raises(AssertionError, match="upstream REMOTE_USER"):
        target.run_one(request, replaced(target, STRING, leaky))


@pytest.mark.parametrize(
    ("config", "value"),
    [(STRING, b"alice"), (JSON, b'{"preferred_username": "alice"}')],
)
@pytest.mark.parametrize("peer", [STRANGER, NO_PEER, LIST_PEER, EMPTY_PEER, MAPPED_PEER])
def test_trusting_every_peer_fails_the_oracle(target, config, value, peer):
    """R16 broken: a header that proves nothing, believed from an untrusted peer."""
    request = data(config, peer, value)
    target.test_one_input(request)
    assert target._APP.user is None
    with pytest.raises(AssertionError, match="the model predicts nobody"):
        target.run_one(request, variant(target, config, trusted_proxies=("*",)))


def test_the_server_set_key_is_believed_from_any_peer(target):
    """The plain environ key (set by mod_wsgi) wins whatever the peer; roles from the
    stranger's own X-Roles request header are still ignored (R22)."""
    target.test_one_input(data(STRING, STRANGER, b"r1", SERVER_SET | ROLES_HEADER))
    assert target._APP.user == "r1"
    assert target._APP.principal.roles == ()
    target.test_one_input(data(STRING, LOOPBACK, b"r1", ROLES_HEADER))
    assert target._APP.principal.roles == ("r1",)  # config 0 has no role map


def test_a_bad_signature_accepted_fails_the_oracle(target):
    """R1-R5 broken: config 4 without its signature check accepts a forged token."""
    forged = token_parts({"alg": "RS256", "kid": target._IDP.kid}, claims(target), b"forged")
    request = data(JWT_SIGNED, LOOPBACK, forged, mode=1)
    target.test_one_input(request)
    assert not target._APP.called
    broken = variant(target, JWT_SIGNED, validate_signature=False)
    with pytest.raises(AssertionError, match="the model predicts nobody"):
        target.run_one(request, broken)


def test_an_edited_signed_token_accepted_fails_the_oracle(target):
    """The oracle's signature check is its own (PyJWT on the published key): a token whose
    payload was edited after signing is nobody, whatever the middleware says."""
    header, payload, signature = target._GOOD.split(".")
    document = json.loads(target._unb64(payload))
    document["preferred_username"] = "root"
    edited = f"{header}.{target._b64(json.dumps(document).encode())}.{signature}"
    environ = target.request(JWT_SIGNED, extras(LOOPBACK), edited)
    outcome = target.Outcome(200, True, "root", None)
    with pytest.raises(AssertionError, match="'root', the model predicts nobody"):
        target.check_identity(JWT_SIGNED, environ, edited, outcome)


def test_an_expired_token_accepted_fails_the_oracle(target):
    """R6 broken: config 3 without its expiry check."""
    expired = claims(target, exp=int(time.time()) - 3600)
    request = data(JWT_CLAIMS, LOOPBACK, token_parts({"alg": "RS256"}, expired, b"s"), mode=1)
    target.test_one_input(request)
    assert not target._APP.called
    with pytest.raises(AssertionError, match="the model predicts nobody"):
        target.run_one(request, variant(target, JWT_CLAIMS, validate_expiry=False))


def test_another_claim_read_as_the_name_fails_the_oracle(target):
    middlewares = variant(target, JWT, user_name_json_path="sub")
    with pytest.raises(AssertionError, match="accepted 'u1', the model says 'alice'"):
        target.run_one(data(JWT, LOOPBACK, b"", mode=2), middlewares)


def test_a_role_from_nowhere_fails_the_oracle(target):
    middlewares = variant(target, JWT_SIGNED, role_converter="r1=ADMIN;r1=USER;r1=ROOT")
    with pytest.raises(AssertionError, match=r"roles \['ROOT'\] from nowhere"):
        target.run_one(data(JWT_SIGNED, STRANGER, b"", mode=2), middlewares)


def test_roles_from_the_wrong_header_fail_the_oracle(target):
    """Config 1's roles come from its JSON document, never from an X-Roles header."""
    value = b'{"preferred_username": "alice", "roles": ["r2"]}'
    request = data(JSON, LOOPBACK, value, ROLES_HEADER)
    target.test_one_input(request)
    assert target._APP.principal.roles == ("READER",)
    environ = target.request(JSON, extras(LOOPBACK, ROLES_HEADER), value.decode())
    principal = target._APP.principal
    forged = type(principal)(name="alice", roles=("READER", "ADMIN"), claims=principal.claims)
    outcome = target.Outcome(200, True, "alice", forged)
    with pytest.raises(AssertionError, match=r"roles \['ADMIN'\] from nowhere"):
        target.check_identity(JSON, environ, value.decode(), outcome)


def test_the_rival_authorization_header_is_never_the_user(target):
    """Configs 0 and 1 read their own header only: the Bearer token the target adds beside
    them names nobody, so an app handed 'alice' from it is a finding."""
    environ = target.request(STRING, extras(STRANGER, RIVAL), "bob")
    outcome = target.Outcome(200, True, "alice", None)
    with pytest.raises(AssertionError, match="the model predicts nobody"):
        target.check_identity(STRING, environ, "bob", outcome)


# ---------------------------------------------------------------------------- model precision
PEERS = st.sampled_from([LOOPBACK, LOOPBACK, IPV6_LOOPBACK, STRANGER, NO_PEER, MAPPED_PEER])
FLAGS = st.sampled_from([0, MALLORY, ROLES_HEADER, SERVER_SET, MALLORY | SERVER_SET])


def _accepted_as_predicted(target: ModuleType, request: bytes) -> None:
    """Run ``request`` (oracle included) and require the model's prediction to be exact."""
    before = time.time()
    target.test_one_input(request)
    index, value = request[0], target._value(request[2], request[3:])
    environ = target.request(index, request[1], value)
    prediction = target.predict(index, environ, value, (before, time.time()))
    assert target._APP.user == prediction.name, (prediction, target._APP.user)
    event("accepted" if prediction.name is not None else "not accepted")
    if prediction.name is not None:
        assert target._APP.principal.roles == prediction.roles


@SETTINGS
@given(name=st.text(max_size=40), peer=PEERS, flags=FLAGS)
def test_the_model_predicts_plain_headers_exactly(target, name, peer, flags):
    """With ROLES_HEADER in flags the value is its own X-Roles header too."""
    value = name.encode("utf-8")
    _accepted_as_predicted(target, data(STRING, peer, value, flags))


NAMES = st.one_of(
    st.just("alice"),
    st.sampled_from([" alice", "", "a\u0000b", "x" * 257, "x" * 256, "jos\u00e9", "ROOT"]),
    st.integers(),
    st.lists(st.just("alice"), max_size=2),
    st.none(),
)
ROLES = st.one_of(st.lists(st.sampled_from(["r1", "r2", "ADMIN", "", "x"])), st.just("r1"))


@SETTINGS
@given(name=NAMES, roles=ROLES, peer=PEERS, flags=FLAGS)
def test_the_model_predicts_json_headers_exactly(target, name, roles, peer, flags):
    value = json.dumps({"preferred_username": name, "roles": roles}).encode()
    _accepted_as_predicted(target, data(JSON, peer, value, flags))


@SETTINGS
@given(
    iss=st.sampled_from(["good", "good", "good/", "other", None, 7]),
    aud=st.sampled_from(["fuzz-api", ["x", "fuzz-api"], ["fuzz-api", 1], [], "x", None]),
    exp=st.sampled_from([3600, 3600, -10, -3600, "future", 1e400, 10**400, True, None]),
    nbf=st.sampled_from([None, 0, 10, 3600, "0"]),
    name=NAMES,
    roles=ROLES,
    peer=PEERS,
    config=st.sampled_from([JWT, JWT_CLAIMS]),
)
def test_the_model_predicts_unsigned_tokens_exactly(
    target, iss, aud, exp, nbf, name, roles, peer, config
):
    now = int(time.time())
    claims = {
        "iss": target._IDP.issuer + "/" if iss == "good/" else target._IDP.issuer,
        "aud": aud,
        "exp": str(now + 3600) if exp == "future" else now + exp if type(exp) is int else exp,
        "nbf": now + nbf if isinstance(nbf, int) else nbf,
        "preferred_username": name,
        "roles": roles,
    }
    if iss != "good" and iss != "good/":
        claims["iss"] = iss
    claims = {key: value for key, value in claims.items() if value is not None}
    value = token_parts({"alg": "RS256", "typ": "JWT"}, claims, b"signature")
    _accepted_as_predicted(target, data(config, peer, value, mode=1))

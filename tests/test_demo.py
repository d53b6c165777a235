"""The development identity provider, ``jwt-headers demo`` and ``jwt-headers serve``.

Everything runs for real on 127.0.0.1: DevIdp over HTTP, the demo's servers, and ``serve`` as a
separate process, polled until its port accepts and stopped by PID.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import requests

from jwt_headers import JwtHeadersConfig, cli, demo
from jwt_headers.devidp import DevIdp

JWT_PATTERN = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")
CLIENTS = {"robot": ("s3cret", {"preferred_username": "robot", "realm_access": {"roles": ["r1"]}})}
GRANT = {"grant_type": "client_credentials"}


@pytest.fixture
def idp():
    with DevIdp(clients=CLIENTS) as running:
        yield running


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy between the test and 127.0.0.1
    return s


def verified_claims(idp: DevIdp, token: str) -> dict:
    """Verify ``token`` with the key the provider publishes at its jwks_uri, as a client would."""
    key_set = jwt.PyJWKSet.from_dict(session().get(idp.jwks_uri, timeout=5).json())
    kid = jwt.get_unverified_header(token)["kid"]
    (key,) = [k for k in key_set.keys if k.key_id == kid]
    return jwt.decode(
        token, key.key, algorithms=["RS256"], audience=idp.audience, issuer=idp.issuer
    )


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


# ---------------------------------------------------------------------- DevIdp
def test_discovery_names_every_endpoint_on_loopback(idp):
    answer = session().get(f"{idp.issuer}/.well-known/openid-configuration", timeout=5)
    assert answer.status_code == 200
    document = answer.json()
    assert document["issuer"] == idp.issuer == f"http://127.0.0.1:{idp.port}"
    assert document["jwks_uri"] == idp.jwks_uri == f"{idp.issuer}/jwks"
    assert document["token_endpoint"] == idp.token_endpoint == f"{idp.issuer}/token"
    assert document["userinfo_endpoint"] == idp.userinfo_endpoint == f"{idp.issuer}/userinfo"


def test_jwks_verifies_minted_tokens_and_only_those(idp):
    claims = verified_claims(idp, idp.mint({"sub": "alice", "scope": "x"}, expires_in=60))
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 60
    with DevIdp() as other:
        stranger = other.mint({"sub": "alice", "iss": idp.issuer})
    with pytest.raises(ValueError):  # another provider's key: not in this key set
        verified_claims(idp, stranger)


def test_mint_drops_claims_overridden_with_none(idp):
    token = idp.mint({"sub": "alice", "exp": None})
    assert "exp" not in jwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("how", ["basic", "form"])
def test_client_credentials_give_a_signed_token_with_the_client_claims(idp, how):
    if how == "basic":
        answer = session().post(idp.token_endpoint, auth=("robot", "s3cret"), data=GRANT)
    else:
        form = {**GRANT, "client_id": "robot", "client_secret": "s3cret"}
        answer = session().post(idp.token_endpoint, data=form)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert answer.headers["Cache-Control"] == "no-store"
    claims = verified_claims(idp, body["access_token"])
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == "demo-api"
    assert claims["sub"] == "service-account-robot"
    assert claims["preferred_username"] == "robot"
    assert claims["realm_access"] == {"roles": ["r1"]}
    assert claims["exp"] - claims["iat"] == 300
    assert abs(claims["iat"] - time.time()) < 60


@pytest.mark.parametrize(
    ("auth", "form", "status", "error"),
    [
        (("robot", "wrong"), GRANT, 401, "invalid_client"),
        (("nobody", "s3cret"), GRANT, 401, "invalid_client"),
        (None, {**GRANT, "client_id": "robot", "client_secret": "wrong"}, 401, "invalid_client"),
        (None, GRANT, 401, "invalid_client"),
        (("robot", "s3cret"), {"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
    ids=["bad-secret", "unknown-client", "bad-form-secret", "no-credentials", "other-grant"],
)
def test_token_endpoint_refuses_with_a_json_error(idp, auth, form, status, error):
    answer = session().post(idp.token_endpoint, auth=auth, data=form, timeout=5)
    assert answer.status_code == status
    assert answer.json()["error"] == error
    assert "access_token" not in answer.text


def test_userinfo_accepts_its_own_valid_token(idp):
    token = idp.mint({"sub": "alice", "preferred_username": "al"})
    answer = session().get(idp.userinfo_endpoint, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.json() == {"sub": "alice", "preferred_username": "al"}


@pytest.mark.parametrize("kind", ["expired", "other-key", "garbage", "no-sub", "missing"])
def test_userinfo_refuses_bad_tokens(idp, kind):
    with DevIdp() as other:
        tokens = {
            "expired": idp.mint({"sub": "alice"}, expires_in=-60),
            "other-key": other.mint({"sub": "alice", "iss": idp.issuer}),
            "garbage": "not.a.token",
            "no-sub": idp.mint({}),
        }
    headers = {"Authorization": f"Bearer {tokens[kind]}"} if kind in tokens else {}
    answer = session().get(idp.userinfo_endpoint, headers=headers, timeout=5)
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_token"}
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_requests_are_counted_per_path(idp):
    s = session()
    s.get(idp.jwks_uri, timeout=5)
    s.get(idp.jwks_uri, timeout=5)
    s.post(idp.token_endpoint, data=GRANT, timeout=5)
    assert idp.requests == 3
    assert idp.requests_by_path == {"/jwks": 2, "/token": 1}


def test_binds_loopback_only_unless_asked_and_stops():
    with pytest.raises(ValueError, match="allow_remote"):
        DevIdp(host="0.0.0.0")
    idp = DevIdp()
    with pytest.raises(RuntimeError):
        idp.issuer  # noqa: B018 - not started: no address yet
    with idp:
        port = idp.port
        assert not refuses_connections(port)
    assert refuses_connections(port)


# ---------------------------------------------------------------------- jwt-headers demo
@pytest.fixture
def recorded(monkeypatch):
    """Every token DevIdp mints and every DevIdp started during the test."""
    seen = {"tokens": [], "idps": []}
    mint, start = DevIdp.mint, DevIdp.start

    def recording_mint(self, *args, **kwargs):
        token = mint(self, *args, **kwargs)
        seen["tokens"].append(token)
        return token

    def recording_start(self):
        seen["idps"].append(self)
        return start(self)

    monkeypatch.setattr(DevIdp, "mint", recording_mint)
    monkeypatch.setattr(DevIdp, "start", recording_start)
    return seen


def api_port(output: str) -> int:
    return int(re.search(r"sample API +http://127\.0\.0\.1:(\d+)/", output).group(1))


def test_demo_shows_every_answer_never_a_token_and_stops(capsys, recorded, tmp_path, monkeypatch):
    configs = []
    build = demo.demo_config
    monkeypatch.setattr(demo, "demo_config", lambda idp: configs.append(build(idp)) or configs[-1])
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out

    for expected in ("200 OK", "401 Unauthorized", "token expired", "signature is not valid"):
        assert expected in out
    assert out.count("401 Unauthorized") == 3
    assert '{"user":"report-robot","roles":["ROLE_READER"]}' in out
    assert out.count('"user":null') == 2  # no token, Basic
    assert "IdP not asked" in out  # the cache hit
    assert "7 of 7 answers as expected" in out
    assert "UNEXPECTED" not in out
    assert max(len(line) for line in out.splitlines()) <= 79

    assert len(recorded["tokens"]) >= 2  # the robot's and the expired one
    for token in recorded["tokens"]:
        for segment in token.split("."):
            assert segment not in out
    assert not JWT_PATTERN.search(out)
    (idp,) = recorded["idps"]
    secret = idp.clients[demo.ROBOT][0]
    assert secret not in out

    assert refuses_connections(idp.port)
    assert refuses_connections(api_port(out))

    # The printed config is a file `serve --config` reads, and it is the config the demo used.
    table = out[out.index("[jwt_headers]") :].split("\n\n")[0]
    path = tmp_path / "demo.toml"
    path.write_text(table, encoding="utf-8")
    assert repr(JwtHeadersConfig.from_file(path)) == repr(configs[0])


def test_demo_exits_1_when_an_answer_is_not_the_expected_one(capsys, monkeypatch):
    mint = DevIdp.mint
    monkeypatch.setattr(DevIdp, "mint", lambda self, claims, expires_in=300: mint(self, claims))
    assert cli.main(["demo"]) == 1  # the "expired" token is now valid: 200, not 401
    out = capsys.readouterr().out
    assert "UNEXPECTED: status 200, expected 401" in out
    assert "6 of 7 answers as expected" in out


def test_demo_ctrl_c_stops_both_servers(capsys, monkeypatch, recorded):
    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo.Tour, "forged", interrupt)
    assert cli.main(["demo"]) == demo.INTERRUPTED
    out = capsys.readouterr().out
    assert "Interrupted: servers stopped." in out
    (idp,) = recorded["idps"]
    assert refuses_connections(idp.port)
    assert refuses_connections(api_port(out))


@pytest.mark.skipif(shutil.which("curl") is None, reason="the printed command uses curl")
def test_demo_keep_running_prints_a_curl_command_that_works(capsys, monkeypatch):
    port = free_port()
    answers = []

    def run_the_printed_command():
        out = capsys.readouterr().out
        sys.stdout.write(out)  # keep it for the assertions below
        lines = out[out.index("Serving until Ctrl-C") :].splitlines()[1:]
        script = "\n".join(line[2:] for line in lines if line.startswith("  "))
        bin_dir = str(Path(sys.executable).parent)  # python3 of this venv
        done = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        )
        answers.append(done.stdout)
        raise KeyboardInterrupt  # what Ctrl-C does

    monkeypatch.setattr(demo, "wait_for_interrupt", run_the_printed_command)
    assert cli.main(["demo", "--keep-running", "--port", str(port)]) == 0
    assert json.loads(answers[0]) == {"user": "report-robot", "roles": ["ROLE_READER"]}
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:{port}/reports" in out
    assert out.rstrip().endswith("Servers stopped.")
    assert refuses_connections(port)


# ---------------------------------------------------------------------- jwt-headers serve
SAMPLE_APP = """
import json

def app(environ, start_response):
    principal = environ.get("jwt_headers.principal")
    body = {"user": environ.get("REMOTE_USER"), "roles": list(principal.roles) if principal else []}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
"""
GOOD_CONFIG = """
[jwt_headers]
user_name_header = "X-User"
roles_source = "header"
roles_header = "X-Roles"
role_converter = "ext-admin=ROLE_ADMINISTRATOR"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}: {process.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # the only sleep: polling for the port
    pytest.fail(f"nothing listens on port {port} after {limit} s")


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jwt_headers.cli", "serve", *args]


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "serve_sample_app.py").write_text(SAMPLE_APP, encoding="utf-8")
    (tmp_path / "auth.toml").write_text(GOOD_CONFIG, encoding="utf-8")
    (tmp_path / "bad.toml").write_text(
        '[jwt_headers]\nuser_name_header = "X-User"\nuser_name_fromat = "jwt"\n',
        encoding="utf-8",
    )
    return tmp_path


def test_serve_runs_the_app_behind_the_middleware(app_dir):
    port = free_port()
    process = subprocess.Popen(
        serve_command("serve_sample_app:app", "--config", "auth.toml", "--port", str(port)),
        cwd=app_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/"
        s = session()
        answer = s.get(url, headers={"X-User": "alice", "X-Roles": "ext-admin,other"}, timeout=5)
        assert answer.json() == {"user": "alice", "roles": ["ROLE_ADMINISTRATOR", "other"]}
        assert s.get(url, timeout=5).json() == {"user": None, "roles": []}
    finally:
        process.terminate()  # SIGTERM to its PID
        process.communicate(timeout=10)
    assert refuses_connections(port)


def test_serve_bad_config_exits_2_naming_the_option(app_dir):
    done = subprocess.run(
        serve_command("serve_sample_app:app", "--config", "bad.toml", "--port", str(free_port())),
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "user_name_fromat" in done.stderr
    assert "did you mean 'user_name_format'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("serve_sample_app:nothing", "no WSGI callable 'nothing'"),
        ("no_such_module_here:app", "no module 'no_such_module_here'"),
        ("serve_sample_app", "MODULE:APP"),
    ],
)
def test_serve_names_a_missing_app_clearly(app_dir, monkeypatch, capsys, spec, message):
    monkeypatch.chdir(app_dir)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(app_dir))])
    monkeypatch.delitem(sys.modules, "serve_sample_app", raising=False)
    assert cli.main(["serve", spec, "--config", "auth.toml"]) == 2
    assert message in capsys.readouterr().err


def test_serve_imports_the_app_from_the_current_directory(app_dir, monkeypatch):
    monkeypatch.chdir(app_dir)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(app_dir))])
    monkeypatch.delitem(sys.modules, "serve_sample_app", raising=False)
    app = cli.load_app("serve_sample_app:app")
    assert app.__module__ == "serve_sample_app"
    monkeypatch.delitem(sys.modules, "serve_sample_app")


# ---------------------------------------------------------------------- the command itself
def test_version_help_and_no_command(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("jwt-headers ")
    assert cli.main([]) == 0
    listed = capsys.readouterr().out
    assert "demo" in listed
    assert "serve" in listed
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert "gunicorn" in capsys.readouterr().out


def test_demo_port_in_use_exits_1_and_stops_the_idp(capsys, recorded):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["demo", "--port", str(port)]) == 1
    assert "in use" in capsys.readouterr().err
    (idp,) = recorded["idps"]
    assert refuses_connections(idp.port)

"""The README is part of the product: it renders cleanly and documents every option."""

import ast
import http.client
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import docutils.core
import idp
from conftest import (
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    call,
    stop_process,
    wait_until_listening,
)
from docs_examples import example
from idp import mint

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.errors import IdpUnavailable
from jwt_headers.userinfo import _SHARED_REFUSALS

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

README = Path(__file__).resolve().parent.parent / "README.rst"


def test_readme_renders_without_warnings():
    docutils.core.publish_string(
        README.read_text(encoding="utf-8"),
        writer="null",
        settings_overrides={"report_level": 2, "halt_level": 2},
    )


def test_every_option_is_in_the_readme_options_table():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("\nOptions\n") : text.index("\nHow a header is found\n")]
    documented = set(re.findall(r"\* - ``([a-z_]+)``", table))
    assert documented == set(JwtHeadersConfig.option_names())


def test_ci_runs_the_readme_test_command():
    command = example("README.rst", "bash scripts/test.sh").strip()
    assert command == "bash scripts/test.sh"
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci


# --------------------------------------------------------------------------- Quick start
# The Quick start is what a newcomer copies: its examples are run here as written (only the
# port and the provider's URL are replaced), so an example that stops working fails CI.

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
START_TIMEOUT = 20.0


def section(title: str, underline: str = "-") -> str:
    """The text of a README section, up to the next title of the same level."""
    text = README.read_text(encoding="utf-8")
    heading = f"\n{title}\n{underline * len(title)}\n"
    body = text.index(heading) + len(heading)
    following = re.search(rf"\n[^\n]+\n{re.escape(underline)}{{3,}}\n", text[body:])
    return text[body : body + following.start()] if following else text[body:]


def flask_app_block() -> str:
    return example("README.rst", "app = Flask(__name__)\napp.wsgi_app = JwtHeadersMiddleware(")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def send(port: int, headers: list[tuple[str, str]], source: str = "127.0.0.1"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.putrequest("GET", "/")
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def curl_request(command: str, port: int) -> tuple[list[tuple[str, str]], int]:
    """The headers of a README ``curl -H ... URL`` line, and the URL's port, checked."""
    words = shlex.split(command)
    assert words[0] == "curl"
    headers = [tuple(part.strip() for part in value.split(":", 1)) for value in words[2:-1:2]]
    assert words[1:-1:2] == ["-H"] * len(headers)
    assert words[-1] == "http://127.0.0.1:8000/"
    return headers, port


def test_quick_start_installs_what_its_examples_import():
    """The pip lines name the framework and the server the examples need (issue 17: the Quick
    start did not say to install Flask, gunicorn or Django); CI has them via the dev extra."""
    block = example("README.rst", "pip install jwt-headers flask gunicorn")
    named = {
        word
        for line in block.splitlines()
        for word in line.split("#")[0].split()[2:]
        if line.startswith("pip install jwt-headers ")
    }
    assert named == {"jwt-headers", "flask", "gunicorn", "django"}
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for package in named - {"jwt-headers"}:
        assert re.search(rf'"{package}>=', pyproject, re.IGNORECASE), package
        assert importlib.util.find_spec(package) is not None, package


def test_quick_start_apache_line_is_the_one_the_e2e_test_runs():
    """The Apache directive that renames the header is copied from the sample configuration
    tests/test_e2e_apache.py runs, so the Quick start's Apache half is the tested one."""
    block = example("README.rst", "RequestHeader set OIDC-Id-Token-Payload")
    sample = (ROOT / "samples" / "apache" / "jwt-headers.conf").read_text(encoding="utf-8")
    for line in block.splitlines():
        assert f"    {line}\n" in sample, line


def test_quick_start_flask_app_under_gunicorn_as_written_r16(tmp_path):
    """The Quick start's app.py, gunicorn command and curl lines, run as written: the dashed
    header reaches the app through gunicorn (the underscore spelling does not), a refusal is a
    visible INFO line in gunicorn's log exactly as the README prints it, trusted_proxies keeps
    another peer's header out (R16), and no header is a 401, not an anonymous 200."""
    (tmp_path / "app.py").write_text(flask_app_block(), encoding="utf-8")
    commands = example("README.rst", "gunicorn --bind 127.0.0.1:8000 app:app").splitlines()
    serve, curls = commands[0], commands[1:]
    assert serve == "gunicorn --bind 127.0.0.1:8000 app:app"
    assert len(curls) == 2
    port = free_port()
    argv = [sys.executable, "-m", *shlex.split(serve.replace(":8000", f":{port}"))]
    argv.insert(-1, "--no-control-socket")  # gunicorn >= 25.1 would write under ~/.gunicorn
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_HEADERS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=log_file, stderr=log_file)

    def log() -> str:
        return log_path.read_text(encoding="utf-8", errors="replace")

    try:
        wait_until_listening(process, port, START_TIMEOUT, log)
        text = section("Quick start")
        headers, _ = curl_request(curls[0], port)
        status, body = send(port, headers)
        assert status == 200, (body, log())
        stated = re.search(r"The first answers ``(\{.*?\})``", text)
        assert stated is not None
        assert body == json.loads(stated.group(1))

        headers, _ = curl_request(curls[1], port)
        status, body = send(port, headers)
        assert status == 401, body
        assert body["error"]["code"] == "INVALID_TOKEN"
        line = example("README.rst", "INFO jwt_headers: no_user_name")
        assert line.strip() in log().splitlines(), log()

        # The underscore spelling is dropped by gunicorn: no header at all, so 401, not 200.
        value = headers[0][1]
        status, body = send(port, [("OIDC_id_token_payload", '{"preferred_username": "bob"}')])
        assert (status, body["error"]["code"]) == (401, "UNAUTHENTICATED")
        stated = re.search(r"``(INFO jwt_headers: unauthenticated [^`]*)``", text)
        assert stated is not None
        assert stated.group(1) in log().splitlines(), log()  # the dropped header shows
        status, body = send(port, [])
        assert (status, body["error"]["code"]) == (401, "UNAUTHENTICATED")
        # From a peer that is not Apache (not in trusted_proxies) the header is ignored.
        good, _ = curl_request(curls[0], port)
        status, body = send(port, good, source="127.0.0.2")
        assert (status, body["error"]["code"]) == (401, "UNAUTHENTICATED")
        assert "untrusted_source_header" in log()
        assert value not in log() and good[0][1] not in log()  # R35: values never logged
    finally:
        stop_process(process)


def django_config_options() -> dict[str, object]:
    """The keyword arguments of the Django example's ``JwtHeadersConfig(...)``, as written."""
    block = example("README.rst", "get_wsgi_application(),")
    tree = ast.parse(block)  # the whole file at least compiles
    (call_node,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "JwtHeadersConfig"
    ]
    return {kw.arg: ast.literal_eval(kw.value) for kw in call_node.keywords if kw.arg}


def test_quick_start_django_robot_config_against_the_fake_idp_r8(idp_server):
    """The Django example's options, with only jwks_uri pointed at the fake IdP: a token from
    its issuer for its audience is accepted with realm roles; one for another audience is a 401
    wrong_audience (R8), the app not called."""
    options = django_config_options()
    assert str(options["jwks_uri"]).startswith("https://")
    options["jwks_uri"] = idp_server.jwks_uri
    config = JwtHeadersConfig(**options)  # type: ignore[arg-type]
    claims = {"iss": options["issuer"], "aud": options["audience"]}
    token = mint(claims, idp_server.key)
    answer = call(
        JwtHeadersMiddleware(RecordingApp(), config), {"Authorization": f"Bearer {token}"}
    )
    assert_accepted(answer)
    assert list(answer.principal.roles) == idp.access_claims()["realm_access"]["roles"]
    other = mint({**claims, "aud": "another-api"}, idp_server.key)
    refused = call(
        JwtHeadersMiddleware(RecordingApp(), config), {"Authorization": f"Bearer {other}"}
    )
    assert_invalid_token(refused, "wrong_audience")


def test_quick_start_django_logging_shows_refusals(tmp_path):
    """The Django LOGGING snippet, given to logging.config.dictConfig in a fresh interpreter,
    makes an INFO line of the jwt_headers logger visible (Django's own default would not)."""
    block = example("README.rst", "LOGGING = {")
    script = block + (
        "import logging, logging.config\n"
        "logging.config.dictConfig(LOGGING)\n"
        "logging.getLogger('jwt_headers').info('expired header=Authorization fp=0: x')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert "expired header=Authorization fp=0: x" in done.stderr


# --------------------------------------------------------------------------- Running in production


def raised_reasons() -> set[str]:
    """Every reason code ``InvalidToken`` is raised with in jwt_headers/*.py: literal first
    arguments, the f-string ``bad_{name}`` expanded with the claims verify.py checks as
    numbers, and the userinfo refusals a shared cache replays."""
    reasons: set[str] = set()
    for path in sorted((ROOT / "jwt_headers").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        for prefix, reason in re.findall(r'InvalidToken\(\s*(f?)"([^"]*)"', source):
            if prefix and "{" in reason:
                assert reason == "bad_{name}", f"{path.name}: a new f-string reason {reason!r}"
                numeric = set(re.findall(r'_number\(claims, "(\w+)"\)', source)) - {"exp"}
                assert numeric == {"nbf", "iat"}
                reasons |= {f"bad_{name}" for name in numeric}
            else:
                reasons.add(reason)
    reasons |= set(_SHARED_REFUSALS)
    assert len(reasons) > 20, "the scan found suspiciously few reasons"
    return reasons


def test_every_reason_code_the_code_raises_is_in_the_readme_list():
    """An operator looks a log line's reason code up in "Running in production": a new code
    added without a row there fails here."""
    production = section("Running in production")
    table = production[production.index("   * - reason\n") :]
    table = table[: table.index("\n\n", table.index("``internal_error``"))]
    listed = set(
        re.findall(
            r"``([a-z_]+)``",
            "\n".join(line for line in table.splitlines() if line.startswith("   * - ")),
        )
    )
    missing = raised_reasons() - listed
    assert not missing, f"reason codes missing from the README list: {sorted(missing)}"
    assert not listed - raised_reasons(), "the README lists codes the code never raises"


def test_running_in_production_quotes_the_defaults():
    """The outage timeline quotes default seconds; they must be the config's defaults."""
    production = section("Running in production")
    defaults = JwtHeadersConfig.option_defaults()
    quoted = re.findall(r"``(\w+)`` \((\d+) s", production)
    assert {name for name, _ in quoted} >= {
        "jwks_refresh_cooldown",
        "jwks_cache_ttl",
        "userinfo_cache_ttl",
        "negative_cache_ttl",
    }
    for name, seconds in quoted:
        assert defaults[name] == int(seconds), name
    assert "``jwks_max_stale`` (a day)" in production
    assert defaults["jwks_max_stale"] == 86400
    assert "``http_read_timeout`` (2 + 3 s)" in production
    assert (defaults["http_connect_timeout"], defaults["http_read_timeout"]) == (2, 3)
    assert "Retry-After: 5" in production
    assert IdpUnavailable("userinfo_unavailable", "x").retry_after == 5


def test_the_devidp_example_runs_as_written():
    """The README's DevIdp example (issue 17: it used to hold a literal ``...``): executed as
    written, then its middleware accepts the token it minted, as its last comment says."""
    from werkzeug.test import Client

    code = example("README.rst", "from jwt_headers.devidp import DevIdp")
    check = "        # e.g. werkzeug.test.Client(protected)"
    assert check.strip() in code
    code = code.replace(
        check.strip(),
        "answers.append(Client(protected).get('/', headers={'Authorization': f'Bearer {token}'}))"
        "  #",
    )
    answers: list = []
    exec(compile(code, "README.rst", "exec"), {"Client": Client, "answers": answers})
    (answer,) = answers
    assert answer.status_code == 200
    assert answer.get_data() == b"alice"

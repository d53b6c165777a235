"""The README's command-line examples, run (issue 17 item 5): pip lines, ``jwt-headers demo``,
``serve``, ``devidp`` and ``explain``, the shared cache's TOML, the log line and its
fingerprint one-liner, and the benchmark commands with the table they print.

A command is run as written: through ``bash`` (or, for a server, its words) from the repository
root or a temporary directory, with this checkout's ``jwt_headers`` first on ``PYTHONPATH`` and
the virtualenv's ``bin`` first on ``PATH`` (so ``jwt-headers``, ``python`` and ``pip`` are this
environment's). Only ports, URLs and paths are filled, with ``fill``, which fails when the
placeholder is gone. A server is waited for with ``wait_until_listening`` and stopped by its PID.
Output the README shows is compared with the program's, with only what varies normalised (the
port, a fingerprint, the measured numbers).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from the tomli dependency
    import tomli as tomllib

import idp
import jwt
import pytest
import redis_server
import requests
from conftest import (
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    call,
    stop_process,
    wait_until_listening,
)
from docs_examples import example, fill
from idp import SUBJECT, mint
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_readme import free_port, section

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware, cli, devidp
from jwt_headers.devidp import DevIdp
from jwt_headers.shared import KEY_PREFIX

idp_server = idp.idp_server  # the pytest fixtures, bound here so pytest finds them
redis = redis_server.redis

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent  # jwt-headers, python and pip of this environment
START_TIMEOUT = 20.0


# --------------------------------------------------------------------------- running commands


def shell_env() -> dict[str, str]:
    """The environment a README command runs in: this checkout's package, this venv's tools,
    no ``JWT_HEADERS_*`` of the caller, no proxy between a command and 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_HEADERS_")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "/usr/bin:/bin")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1"
    return env


def run_shell(
    script: str, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``script`` run by bash, as a reader pastes it into a terminal."""
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=shell_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def serving(command: str, port: int, cwd: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server command line (its words; a trailing ``# comment`` dropped) run in the
    background until the ``with`` block ends; it must listen on ``port``."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            shlex.split(command, comments=True),
            cwd=cwd,
            env=shell_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(process, port, START_TIMEOUT, lambda: read(log))
        yield process
    finally:
        stop_process(process, signal.SIGINT)


def read(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


def matches_transcript(expected: list[str], actual: list[str]) -> bool:
    """``actual`` is ``expected`` line for line, where an expected line of only ``...`` (after
    its indent) stands for one or more lines with that indent (the README elides them)."""
    pattern = []
    for line in expected:
        if line.strip() == "...":
            indent = line[: len(line) - len(line.lstrip())]
            pattern.append(rf"(?:{re.escape(indent)}[^\n]*\n)+")
        else:
            pattern.append(re.escape(line) + "\n")
    return re.fullmatch("".join(pattern), "".join(f"{line}\n" for line in actual)) is not None


# --------------------------------------------------------------------------- pip lines

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def build_backend_installed() -> bool:
    """Whether this environment's packages satisfy ``[build-system] requires``, so pip can
    build the project's metadata with ``--no-build-isolation`` (offline)."""
    from importlib.metadata import PackageNotFoundError, version

    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            return False
        if not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


def pip_dry_run(line: str) -> list[str]:
    """A README ``pip install`` line for this project, resolved by pip (``--dry-run``,
    ``--no-index``: nothing downloaded, nothing installed); the names pip would install.

    The line must name this project, as ``-e .`` from the repository root or by its name, and
    only extras it declares (pip itself merely warns about an unknown extra). The requirements
    the line brings in, the project's ``dependencies`` plus those of the named extras as
    pyproject.toml lists them, are then resolved by pip against this environment offline: a
    requirement the environment cannot satisfy fails here. When this environment also has the
    build backend pyproject.toml asks for, the line itself runs too, the project filled in as
    this checkout's path, with ``--no-build-isolation`` (an isolated build would download the
    backend; a Python 3.11 venv's own setuptools 65 is older than the ``setuptools>=77`` the
    licence expression needs, so on such a venv only the requirements are resolved).
    """
    words = shlex.split(line, comments=True)
    assert words[:2] == ["pip", "install"], line
    project = PYPROJECT["project"]
    if words[2:] == ["-e", "."]:
        editable, extras = True, set()
    else:
        (target,) = words[2:]
        named = Requirement(target)
        assert canonicalize_name(named.name) == canonicalize_name(project["name"]), line
        assert not named.specifier and named.url is None, line
        editable, extras = False, set(named.extras)
    optional = project.get("optional-dependencies", {})
    assert extras <= set(optional), (
        f"{line}: extras not in pyproject.toml: {extras - set(optional)}"
    )
    requirements = list(project["dependencies"])
    for extra in sorted(extras):
        requirements += optional[extra]
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet"]
    would_install: list[str] = []
    runs = [[*requirements]]
    if build_backend_installed():
        path = f"{ROOT}[{','.join(sorted(extras))}]" if extras else str(ROOT)
        runs.append(["--no-build-isolation", *(["-e"] if editable else []), path])
    for arguments in runs:
        done = subprocess.run(
            [*pip, "--report", "-", *arguments],
            cwd=ROOT,
            env=shell_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{line}: pip {arguments}\n{done.stdout}\n{done.stderr}"
        report = json.loads(done.stdout)
        would_install += [item["metadata"]["name"] for item in report["install"]]
    return would_install


def test_install_line_resolves_offline_and_the_demo_passes():
    """``pip install -e . && jwt-headers demo``: the pip half through ``pip_dry_run`` (every
    requirement already satisfied here, so it would install nothing but the project), the demo
    half as written, from the repository root: exit code 0, all seven answers as expected,
    both servers stopped ("then stops everything")."""
    line = example("README.rst", "pip install -e . && jwt-headers demo").strip()
    install, demo = line.split(" && ")
    assert set(pip_dry_run(install)) <= {"jwt-headers"}
    done = run_shell(demo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 of 7 answers as expected." in done.stdout
    assert done.stdout.rstrip().endswith("Servers stopped.")


# --------------------------------------------------------------------------- Running at scale


def test_redis_extra_and_cache_url_share_a_userinfo_outcome(tmp_path, idp_server, redis):
    """The shared-cache block: its pip line through ``pip_dry_run`` (the ``redis`` extra
    exists and is satisfied); its ``[jwt_headers]`` table, written to a file with the URL
    pointed at a real redis-server and read by ``JwtHeadersConfig.from_file``, with the
    validation options of a userinfo-checked Bearer token added: one request stores its
    userinfo outcome in Redis (a hashed key, no token text), and a second worker built from the
    same file accepts the token without asking the provider. The environment spelling the text
    gives, ``JWT_HEADERS_CACHE_URL=...``, gives the same ``cache_url``."""
    block = example("README.rst", "pip install 'jwt-headers[redis]'")
    pip_line, toml = block.split("\n", 1)
    assert set(pip_dry_run(pip_line)) <= {"jwt-headers"}
    # The block's table is what goes into an app's own [jwt_headers] table: here the options
    # of a Bearer token checked by signature and userinfo follow it, in the same table.
    app_options = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": idp_server.jwks_uri,
        "validate_userinfo": True,
        "userinfo_endpoint": idp_server.userinfo_endpoint,
    }
    table = fill(toml, "127.0.0.1:6379", f"127.0.0.1:{redis.port}", count=1)
    table += "".join(f"{name} = {json.dumps(value)}\n" for name, value in app_options.items())
    path = tmp_path / "auth.toml"
    path.write_text(table)
    from_file = JwtHeadersConfig.from_file(path)
    assert from_file.cache_url == redis.url
    assert from_file.validate_userinfo
    token = mint(None, idp_server.key)
    for _worker in range(2):
        middleware = JwtHeadersMiddleware(RecordingApp(), JwtHeadersConfig.from_file(path))
        assert_accepted(call(middleware, {"Authorization": f"Bearer {token}"}))
    assert idp_server.userinfo_requests == 1  # the second worker took the shared outcome
    client = redis.client()
    (key,) = [k.decode() for k in client.scan_iter("*")]
    assert key.startswith(KEY_PREFIX)
    assert json.loads(client.get(key)) == {"v": 1, "ok": True, "sub": SUBJECT}
    assert not any(part in key for part in token.split("."))

    stated = re.search(
        r"or ``(JWT_HEADERS_CACHE_URL)=(\S+)`` in the environment", section("Running at scale")
    )
    assert stated is not None
    name, value = stated.groups()
    value = fill(value, "127.0.0.1:6379", f"127.0.0.1:{redis.port}", count=1)
    environ = {name: value, "JWT_HEADERS_USER_NAME_HEADER": "Authorization"}
    assert JwtHeadersConfig.from_env(environ=environ).cache_url == from_file.cache_url


def normalised(line: str) -> str:
    """A measured line with every number, and the spaces that right-align it, replaced by
    `` #`` (the labels kept; ``number_ends`` checks the alignment)."""
    return re.sub(r" *\d+(?:[.,]\d+)*", " #", line)


def number_ends(line: str) -> list[int]:
    """Where each number of a line ends: the right edges of its columns."""
    return [match.end() for match in re.finditer(r"\d+(?:\.\d+)?", line)]


@pytest.fixture(scope="module")
def fleet_output() -> str:
    """``python benchmarks/fleet.py`` as the README's benchmark block writes it, in its
    quickest mode (5 tokens x 2 requests, still 4 workers and a real redis-server): run once
    for the two tests that compare its output."""
    line = next(
        line
        for line in example("README.rst", "python benchmarks/bench.py").splitlines()
        if line.startswith("python benchmarks/fleet.py")
    )
    quick = fill(line, "benchmarks/fleet.py", "benchmarks/fleet.py --tokens 5 --repeat 2", count=1)
    started = time.monotonic()
    done = run_shell(quick, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"the quickest fleet run took {elapsed:.0f} s"
    return done.stdout


def test_fleet_prints_the_table_the_readme_shows(fleet_output):
    """The measured table of "Running at scale", against ``benchmarks/fleet.py``'s output in
    its quickest mode: the same lines, labels and column edges, numbers aside; and what the
    text reads from it holds in kind: fewer userinfo calls with cache_url, the same key-set
    fetches with or without it."""
    shown = example("README.rst", "jwt-headers fleet:").rstrip("\n").splitlines()
    printed = fleet_output.rstrip("\n").splitlines()
    assert [normalised(line) for line in printed] == [normalised(line) for line in shown]
    for mine, theirs in zip(printed[1:], shown[1:], strict=True):
        assert number_ends(mine) == number_ends(theirs), (mine, theirs)
    rows = {line[:24].strip(): line[24:].split() for line in printed[2:4]}
    without, shared = rows["without cache_url"], rows["with cache_url"]
    assert float(shared[0]) < float(without[0])  # userinfo calls per 1 000: fewer with Redis
    assert shared[1] == without[1]  # key-set fetches: the same


# --------------------------------------------------------------------------- Reading the logs


def test_refusal_log_line_and_its_fingerprint_one_liner(idp_server, capsys, caplog):
    """Reading the logs: an expired Bearer token sent through the middleware logs exactly
    the README's one line (its 8-hex fingerprint aside); the one-liner that computes a
    fingerprint, run as written with TOKEN filled by that token, prints the fingerprint of
    that line, and ``jwt-headers explain`` shows the same ``fp=`` for the token."""
    options = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": idp_server.jwks_uri,
    }
    now = int(time.time())
    token = mint({"exp": now - 600, "iat": now - 900}, idp_server.key)
    caplog.set_level("INFO", logger="jwt_headers")
    answer = call(
        JwtHeadersMiddleware(RecordingApp(), **options), {"Authorization": f"Bearer {token}"}
    )
    assert_invalid_token(answer, "expired")
    (logged,) = [r.getMessage() for r in caplog.records if getattr(r, "reason", None)]
    shown = example("README.rst", "expired header=Authorization fp=").strip()
    fingerprint = re.compile(r"fp=[0-9a-f]{8}\b")
    assert fingerprint.sub("fp=#", logged) == fingerprint.sub("fp=#", shown)
    (logged_fp,) = fingerprint.findall(logged)

    one_liner = example("README.rst", "hashlib.sha256(sys.argv[1].encode()).hexdigest()[:8]")
    done = run_shell(fill(one_liner, " TOKEN", f" {shlex.quote(token)}", count=1))
    assert done.returncode == 0, done.stderr
    assert f"fp={done.stdout.strip()}" == logged_fp

    args = []
    for name, value in options.items():
        args += ["-o", f"{name}={value}"]
    assert cli.main(["explain", *args, "-H", f"Authorization: Bearer {token}"]) == 1
    report = capsys.readouterr().out
    assert f"{logged_fp}," in report  # "fp=xxxxxxxx, N bytes, format jwt"
    assert "expiry" in report and "FAIL" in report


# --------------------------------------------------------------------------- Benchmarks


def test_benchmark_commands_run_in_their_quickest_modes(fleet_output):
    """The four commands of "Benchmarks": ``bench.py`` in its quick mode without the churn
    scenarios (with ``--wrk`` when wrk is installed, which runs the same table and targets
    plus gunicorn + wrk; otherwise ``--help`` must offer ``--wrk``), and the flags the first
    line's comment names; ``profile_case.py "RS256, cache miss"`` with few calls (the case
    exists: exactly one case profiled); ``fleet.py`` as run for the table above."""
    lines = example("README.rst", "python benchmarks/bench.py").rstrip("\n").splitlines()
    bench, bench_wrk, profile, fleet = lines
    assert shlex.split(bench, comments=True) == ["python", "benchmarks/bench.py"]
    assert shlex.split(bench_wrk, comments=True) == ["python", "benchmarks/bench.py", "--wrk"]
    help_text = run_shell(fill(bench, "benchmarks/bench.py", "benchmarks/bench.py --help", 1))
    assert help_text.returncode == 0, help_text.stderr
    for flag in [*re.findall(r"--[a-z-]+", bench.split("#", 1)[1]), "--wrk"]:
        assert flag in help_text.stdout, flag

    quick = "benchmarks/bench.py --quick --no-churn"
    run = (
        fill(bench_wrk, "benchmarks/bench.py", quick, 1)
        if shutil.which("wrk")
        else fill(bench, "benchmarks/bench.py", quick, 1)
    )
    done = run_shell(run, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^case +us/req +x bare +added +/decode$", out, re.MULTILINE), out
    assert "\ntargets (issue 15)\n" in out
    assert re.search(r"^new token RS256 / jwt\.decode RS256 .* (MET|MISSED)$", out, re.MULTILINE)
    wrk_line = re.search(r"^gunicorn gthread \+ wrk: cache hit / bare req/s +(.*)$", out, re.M)
    assert wrk_line is not None, out
    if shutil.which("wrk"):
        assert re.fullmatch(r"[\d.]+  goal >= [\d.]+  (MET|MISSED)", wrk_line.group(1))

    quick_profile = fill(
        profile, '"RS256, cache miss"', '"RS256, cache miss" --calls 20 --top 5', 1
    )
    done = run_shell(quick_profile)
    assert done.returncode == 0, done.stdout + done.stderr
    profiled = re.findall(r"^== (.*): [\d.]+ us/call without the profiler", done.stdout, re.M)
    assert len(profiled) == 1 and "RS256, cache miss" in profiled[0], done.stdout
    assert "tottime" in done.stdout

    assert shlex.split(fleet, comments=True) == ["python", "benchmarks/fleet.py"]
    assert fleet_output.startswith("jwt-headers fleet: ")


# --------------------------------------------------------------------------- Demo and serve

MYAPP = '''\
"""The reader's own app of the README's serve example: answers with REMOTE_USER."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [(environ.get("REMOTE_USER") or "-").encode()]
'''


def test_serve_example_answers_alice_and_a_config_mistake_exits_2(tmp_path):
    """``jwt-headers serve``: the README's auth.toml written as shown, a ``myapp.py`` defining
    the WSGI ``app`` (the reader's own), the serve line run in that directory with only a free
    port added, and the curl line (curl itself when installed) gets ``alice``. Then the promise
    after it: the same serve line with a misspelt option in auth.toml prints the ConfigError
    message (the one ``JwtHeadersConfig.from_file`` raises) and exits with code 2."""
    block = example("README.rst", "jwt-headers serve myapp:app --config auth.toml")
    lines = block.splitlines()
    assert lines[0] == "# auth.toml"
    blank = lines.index("")
    toml = "\n".join(lines[1:blank]) + "\n"
    serve_line, curl_line = lines[blank + 1 :]
    (tmp_path / "auth.toml").write_text(toml)
    (tmp_path / "myapp.py").write_text(MYAPP)
    port = free_port()
    command = fill(serve_line, "--config auth.toml", f"--config auth.toml --port {port}", 1)
    curl = fill(curl_line, "127.0.0.1:8000", f"127.0.0.1:{port}", 1)
    with serving(command, port, tmp_path, tmp_path / "serve.log") as process:
        if shutil.which("curl"):
            done = run_shell(curl, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            body = done.stdout
        else:  # the same request: its one header, to its URL
            words = shlex.split(curl)
            assert words[:2] == ["curl", "-H"] and len(words) == 4, curl
            name, value = (part.strip() for part in words[2].split(":", 1))
            session = requests.Session()
            session.trust_env = False
            body = session.get(words[3], headers={name: value}, timeout=10).text
        assert body == "alice", read(tmp_path / "serve.log")
        assert process.poll() is None

    bad = fill(toml, "trusted_proxies =", "trusted_proxy =", 1)
    (tmp_path / "auth.toml").write_text(bad)
    with pytest.raises(ConfigError) as raised:
        JwtHeadersConfig.from_file(tmp_path / "auth.toml")
    done = run_shell(command, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert str(raised.value) in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- devidp


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy between the test and 127.0.0.1
    return s


def mint_as_curl_would(command: str) -> dict[str, Any]:
    """The requests equivalent of a printed ``curl -s -u ID:SECRET --data-urlencode K=V URL``."""
    words = shlex.split(command)
    assert words[:3] == ["curl", "-s", "-u"], command
    client, _, secret = words[3].partition(":")
    rest = words[4:-1]
    assert rest[::2] == ["--data-urlencode"] * (len(rest) // 2), command
    form = dict(item.split("=", 1) for item in rest[1::2])
    answer = session().post(words[-1], data=form, auth=(client, secret), timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_devidp_prints_the_transcript_and_its_commands_mint_accepted_tokens(tmp_path):
    """The devidp transcript: its command run as written from the repository root, a free port
    added (8700 is the default), prints the transcript's lines (the port read as 8700; the
    ``...`` line stands for the options the README elides); the two curl commands it prints
    (curl itself when installed, else their requests equivalent) each get an access_token that
    a middleware built from the full printed ``[jwt_headers]`` table accepts, with the roles
    the transcript lists. Stopped with SIGINT, as Ctrl-C."""
    transcript = example("README.rst", "$ jwt-headers devidp --users samples/devidp-users.toml")
    first, *expected = transcript.rstrip("\n").splitlines()
    command = first.removeprefix("$ ")
    port = free_port()
    log = tmp_path / "devidp.log"
    with serving(f"{command} --port {port}", port, ROOT, log):
        deadline = time.monotonic() + START_TIMEOUT
        while "Serving until Ctrl-C." not in read(log) and time.monotonic() < deadline:
            time.sleep(0.05)  # the banner is written right after the bind: polling the server
        out = read(log)
        printed = out.replace(f"127.0.0.1:{port}", "127.0.0.1:8700").rstrip("\n").splitlines()
        assert matches_transcript(expected, printed), out

        lines = out.splitlines()
        start = lines.index("  [jwt_headers]")
        end = next(i for i in range(start, len(lines)) if not lines[i].startswith("  "))
        table = "\n".join(line[2:] for line in lines[start:end]) + "\n"
        (tmp_path / "auth.toml").write_text(table)
        middleware = JwtHeadersMiddleware(
            RecordingApp(), JwtHeadersConfig.from_file(tmp_path / "auth.toml")
        )
        curls = [line.strip() for line in lines if line.startswith("  curl ")]
        assert len(curls) == 2
        expected_users = {
            "service-account-report-robot": ["demo-reader"],
            "alice": ["demo-admin", "demo-reader"],
        }
        for curl, (user, roles) in zip(curls, expected_users.items(), strict=True):
            if shutil.which("curl"):
                done = run_shell(curl)
                assert done.returncode == 0, done.stderr
                token = json.loads(done.stdout)["access_token"]
            else:
                token = mint_as_curl_would(curl)["access_token"]
            principal = assert_accepted(
                call(middleware, {"Authorization": f"Bearer {token}"}), user
            )
            assert sorted(principal.roles) == roles
    assert "Stopped." in read(log)


def test_devidp_users_excerpt_is_the_sample_file_and_loads(tmp_path):
    """The ``--users`` excerpt: every line of it (without its ``#`` annotation) is a line of
    samples/devidp-users.toml, in the same order, and each table it shows is that table of the
    file, complete; DevIdp loads the file, and a password-grant token for alice carries the
    roles (as ``realm_access.roles``) and the claims shown, a client-credentials token for
    report-robot its roles."""
    block = example("README.rst", "[users.alice]")
    path = ROOT / "samples" / "devidp-users.toml"
    file_text = path.read_text(encoding="utf-8")
    file_lines = file_text.splitlines()
    position = 0
    for line in block.splitlines():
        bare = line.split("  #", 1)[0].rstrip()
        if not bare:
            continue
        assert bare in file_lines[position:], f"{bare!r} is not in {path.name} (in this order)"
        position = file_lines.index(bare, position) + 1
    shown, held = tomllib.loads(block), tomllib.loads(file_text)
    for kind, entries in shown.items():
        for name, entry in entries.items():
            assert held[kind][name] == entry, (kind, name)

    users, clients = devidp.load_users(str(path))
    with DevIdp(clients=clients, users=users) as provider:
        ((client, client_entry),) = shown["clients"].items()
        for name, entry in shown["users"].items():
            answer = session().post(
                provider.token_endpoint,
                auth=(client, client_entry["secret"]),
                data={"grant_type": "password", "username": name, "password": entry["password"]},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
            assert claims["preferred_username"] == name
            assert claims["realm_access"]["roles"] == entry["roles"]
            for claim, value in entry["claims"].items():
                assert claims[claim] == value, claim
        answer = session().post(
            provider.token_endpoint,
            auth=(client, client_entry["secret"]),
            data={"grant_type": "client_credentials"},
            timeout=10,
        )
        claims = jwt.decode(answer.json()["access_token"], options={"verify_signature": False})
        assert claims["realm_access"]["roles"] == client_entry["roles"]


# --------------------------------------------------------------------------- explain


def test_explain_transcript_is_what_the_commands_print():
    """The explain transcript: its three ``$`` commands run as one bash script from the
    repository root (samples/flask.env loaded, the JSON header given with ``-H``) print
    exactly the transcript's output, and exit 0 (the app would be called)."""
    transcript = example("README.rst", "$ jwt-headers explain --env")
    lines = transcript.rstrip("\n").splitlines()
    commands = [line.removeprefix("$ ") for line in lines if line.startswith("$ ")]
    assert lines[: len(commands)] == [f"$ {c}" for c in commands] and len(commands) == 3
    output = lines[len(commands) :]
    done = run_shell("\n".join(commands))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip("\n").splitlines() == output
    assert done.stderr == ""

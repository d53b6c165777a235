"""The README's command-line examples, run (issue 17 item 5): the pip lines with
``jwt-headers demo`` and the shared cache's TOML.

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
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from the tomli dependency
    import tomli as tomllib

import idp
import redis_server
from conftest import RecordingApp, assert_accepted, call, wait_until_listening
from docs_examples import example, fill
from idp import SUBJECT, mint
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_readme import section

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware
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


def stop(process: subprocess.Popen[bytes], first: signal.Signals = signal.SIGINT) -> None:
    """Stop a server we started, by its PID: ``first`` (Ctrl-C by default), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(first)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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
        stop(process)


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

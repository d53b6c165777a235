#!/usr/bin/env bash
# Install jwt-headers with its dev extra into .venv, then lint, type-check, run the tests, check
# the built wheel and run the mutation check.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -e ".[dev]"
ruff check jwt_headers tests benchmarks samples scripts fuzz
ruff format --check jwt_headers tests benchmarks samples scripts fuzz
mypy
bash .ci/e2e-setup.sh   # Apache + mod_auth_openidc and the test provider's npm modules
# tests/test_shared_cache.py starts its own redis-server on 127.0.0.1 (never the system's).
if ! command -v redis-server >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
python -m pytest -q -p no:cacheprovider
bash scripts/check_wheel.sh   # sdist + wheel, twine check, the wheel in a fresh venv: demo, WSGI, ASGI
bash scripts/other_pythons.sh   # the suite again on Python 3.10 and 3.13, where installed
python scripts/mutants.py   # every security control removed in turn must fail a test

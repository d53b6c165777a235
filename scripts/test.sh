#!/usr/bin/env bash
# Install jwt-headers with its dev extra into .venv, then lint, type-check, run the tests and
# the mutation check.
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
python -m pytest -q -p no:cacheprovider
python scripts/mutants.py   # every security control removed in turn must fail a test

#!/usr/bin/env bash
# The test suite again under the oldest and the newest Python the package supports
# (requires-python >= 3.10): each found interpreter gets a fresh venv outside the repository,
# the dev extra, and the whole suite. 3.11 is .venv's, run by scripts/test.sh itself.
# OTHER_PYTHONS="3.10 3.13" (the default) chooses the versions; a version this machine does not
# have (neither python3.X on PATH nor a pyenv install) is reported and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

find_python() {
    # The first candidate that really runs as that version: a pyenv shim on PATH exists for
    # every name but fails for a version that is not selected.
    local version="$1" found
    for found in "$(command -v "python$version" || true)" \
        "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python; do
        if [ -x "$found" ] && "$found" -c "import sys; sys.exit(
                '%d.%d' % sys.version_info[:2] != '$version')" 2>/dev/null; then
            echo "$found"
            return 0
        fi
    done
    return 1
}

for version in ${OTHER_PYTHONS:-3.10 3.13}; do
    if ! python="$(find_python "$version")"; then
        echo "other Pythons: python$version is not installed here: skipped"
        continue
    fi
    venv="$(mktemp -d "${TMPDIR:-/tmp}/jwt-headers-py$version.XXXXXX")"
    trap 'rm -rf "$venv"' EXIT
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$root[dev]"
    echo "other Pythons: $("$venv/bin/python" --version), the whole suite"
    "$venv/bin/python" -m pytest -q -p no:cacheprovider
    rm -rf "$venv"
    trap - EXIT
done

#!/usr/bin/env bash
# Install what tests/test_e2e_apache.py needs, and only what is missing (safe to run again):
# Apache with mod_auth_openidc from Debian, and the pinned npm modules of the test's OpenID
# provider (tests/e2e/package-lock.json). Node.js >= 20 itself must already be there.
# The test installs nothing and fails, naming the missing piece, when something is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
[ -x /usr/sbin/apache2 ] || packages+=(apache2)
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || packages+=(libapache2-mod-auth-openidc)
if [ "${#packages[@]}" -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # policy-rc.d exit 101: the packages' scripts must not start the system's Apache (it would
    # listen on every address; the test runs its own, on loopback). Removed again on exit.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod +x /usr/sbin/policy-rc.d
        trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! command -v node >/dev/null; then
    echo "e2e-setup: node (Node.js >= 20) is not installed; install it, then run this again" >&2
    exit 1
fi
# npm ci when the modules are missing or not the pinned version (package.json changed).
pinned=$(cd tests/e2e && node -p "require('./package.json').dependencies['oidc-provider']")
installed=$(cd tests/e2e && node -p \
    "try { require('./node_modules/oidc-provider/package.json').version } catch { '' }")
if [ "$installed" != "$pinned" ]; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi

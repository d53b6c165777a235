"""Remove one security control at a time and check that the tests notice (issues 5 and 18).

Each mutant is a small edit that removes a control (the algorithm allow-list, the expiry check,
the trusted-proxy check, the userinfo status check...) or turns a refusal into a crash. The
script clones the committed tree into a temporary directory, applies one mutant there, runs the
test modules that guard that control with ``pytest -x`` and reports ``CAUGHT`` (a test failed,
naming the first) or ``MISSED``; the working tree is never touched. Two mutants run at a time,
each in its own clone. It prints a score and exits 1 when any mutant is missed or stale (its
control is no longer written as the mutant expects), so ``.ci/run`` fails on a surviving
mutant::

    python scripts/mutants.py                    # every mutant
    python scripts/mutants.py userinfo cache     # the mutants whose name holds a word
    python scripts/mutants.py --list

A new security control comes with a mutant here, and with the test that catches it.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    control: str
    removed: str
    tests: tuple[str, ...]


def _m(name: str, path: str, control: str, removed: str, *tests: str) -> Mutant:
    return Mutant(name, f"jwt_headers/{path}", control, removed, tuple(f"tests/{t}" for t in tests))


MUTANTS: list[Mutant] = [
    # --- signature, claims (R1-R9)
    _m(
        "R1 alg allow-list",
        "verify.py",
        "if alg not in self._algorithms:",
        "if False:",
        "test_forgery.py",
    ),
    _m(
        "R6 exp required",
        "verify.py",
        '    if exp is None:\n        raise InvalidToken("no_valid_exp", "token has no valid exp")',
        "    if exp is None:\n        return float('inf')",
        "test_validation.py",
    ),
    _m("R6 expired", "verify.py", "if exp <= now - leeway:", "if False:", "test_validation.py"),
    _m(
        "R7 nbf",
        "verify.py",
        "if nbf is not None and nbf > now + leeway:",
        "if False:",
        "test_validation.py",
    ),
    _m(
        "R8 audience",
        "verify.py",
        "if not accepted:",
        "if False:",
        "test_validation.py",
    ),
    _m(
        "R9 issuer",
        "verify.py",
        "if not isinstance(issuer, str) or issuer not in issuers:",
        "if not isinstance(issuer, str):",
        "test_validation.py",
    ),
    # --- userinfo (R10, R31): only a 200 is an answer
    _m(
        "R10 userinfo: only 200",
        "userinfo.py",
        "if answer.status != 200:",
        "if answer.status >= 500:",
        "test_userinfo.py",
    ),
    # --- parsing (R12, R13) and the reason a refusal is given
    _m("R12 crit", "decode.py", 'if "crit" in header:', "if False:", "test_forgery.py"),
    _m("R13 size cap", "decode.py", "if len(value) > limit:", "if False:", "test_outcomes.py"),
    _m(
        "R25 role-set memo bounded",
        "core.py",
        "if len(_ROLE_SETS) >= MAX_ROLE_SETS:",
        "if False:",
        "test_known_headers.py",
    ),
    _m(
        "R25 header memo bounded",
        "decode.py",
        "if len(_KNOWN_HEADERS) >= MAX_KNOWN_HEADERS:",
        "if False:",
        "test_known_headers.py",
    ),
    _m(
        "R12 decoder crashes",
        "decode.py",
        'raise InvalidToken("malformed", "token is not a compact JWS (three segments)")',
        'raise TypeError("three segments")',
        "test_outcomes.py",
    ),
    # --- key sets (R4)
    _m(
        "R4 non-string kid in key set",
        "jwks.py",
        "        if kid is not None and not isinstance(kid, str):\n            continue\n",
        "",
        "test_keyset.py",
    ),
    # --- header trust (R16, R18)
    _m(
        "R16 trusted proxies",
        "sources.py",
        '    if source.self_verifying or trust.is_trusted(environ.get("REMOTE_ADDR")):\n'
        "        return value",
        "    return value",
        "test_trust.py",
    ),
    _m(
        "R18 upstream REMOTE_USER",
        "middleware.py",
        '        environ.pop("REMOTE_USER", None)\n',
        "",
        "test_outcomes.py",
    ),
    # --- roles (R20, R24): a separate roles token bounds the cached principal
    _m(
        "R24 roles token exp in cache deadline",
        "core.py",
        "document = self._decode(roles_value, source, deadlines)",
        "document = self._decode(roles_value, source, [])",
        "test_validation.py",
    ),
    _m(
        "R40 roles token of the same subject",
        "core.py",
        "                check_same_subject(user_document.claims, document.claims)\n",
        "                pass\n",
        "test_validation.py",
    ),
    # --- caches (R25)
    _m(
        "R25 negative cache bound",
        "core.py",
        "self._refused = LocalCache(config.negative_cache_size, clock)",
        "self._refused = LocalCache(10**9, clock)",
        "test_keyset.py",
    ),
    _m(
        "R25 token cache oversize guard",
        "cache.py",
        "        if weight > self._data.maxsize:\n            return\n",
        "",
        "test_outcomes.py",
    ),
    # --- several sources and header decoding (issue 13)
    _m(
        "sources: different users conflict",
        "core.py",
        "elif decided is not None and principal.name != decided.name:",
        "elif False:",
        "test_sources.py",
    ),
    _m(
        "sources: every present source is read",
        "core.py",
        "                decided, decider = principal, reader\n",
        "                decided, decider = principal, reader\n                break\n",
        "test_sources.py",
    ),
    _m(
        "R14 json must be UTF-8",
        "decode.py",
        'if utf8_only or encoding == "utf8":',
        'if encoding == "utf8":',
        "test_encoding.py",
    ),
    # --- discovery (issue 14)
    _m(
        "discovery: the document's issuer",
        "discovery.py",
        'if document.get("issuer") != self.issuer:',
        "if False:",
        "test_discovery.py",
    ),
    _m(
        "R33 discovery: http(s) URLs only",
        "discovery.py",
        'if parts.scheme not in ("http", "https") or not parts.hostname:',
        "if False:",
        "test_discovery.py",
    ),
    _m(
        "R31 first-fetch back-off",
        "jwks.py",
        "            return float(min(self._cooldown, 2 ** min(state.failures_in_row - 1, 16)))",
        "            return self._cooldown",
        "test_keyset.py",
    ),
    _m(
        "R41 withdrawn key forgets cached results",
        "core.py",
        "            jwks.on_revoked = self._forget_principals\n",
        "            pass\n",
        "test_keyset.py",
    ),
    _m(
        "kid-less lookups bounded",
        "jwks.py",
        "return tuple(matching[:MAX_KIDLESS_KEYS])",
        "return tuple(matching)",
        "test_keyset.py",
    ),
    _m(
        "kid-less lookups: keys without kid first",
        "jwks.py",
        "        matching.sort(key=lambda key: key.key_id is not None)  # stable: set order kept\n",
        "",
        "test_keyset.py",
    ),
    _m(
        "file key set: read again when it changes (R41)",
        "jwks.py",
        "        if stamp != state.file_stamp or state.file_racy:\n"
        "            with state.fetch_lock:",
        "        if state.keys is None:\n            with state.fetch_lock:",
        "test_keyset.py",
    ),
    _m(
        "file key set: freshly modified file read again",
        "jwks.py",
        "    return now - racy <= max(stamp[3], stamp[4]) <= now + racy",
        "    return False",
        "test_keyset.py",
    ),
    _m(
        "file key set: a future stamp is not read on every lookup",
        "jwks.py",
        "max(stamp[3], stamp[4]) <= now + racy",
        "max(stamp[3], stamp[4]) <= now + 10**30",
        "test_keyset.py",
    ),
    _m(
        "R27 file key set size cap",
        "jwks.py",
        "    if len(body) > max_bytes:",
        "    if False:",
        "test_keyset.py",
    ),
    _m(
        "file key set: this host only",
        "config.py",
        'or parts.netloc.lower() not in ("", "localhost")',
        "or False",
        "test_config.py",
    ),
    _m(
        "R42 weak keys skipped",
        "jwks.py",
        "and not _weak(key)]",
        "]",
        "test_keyset.py",
    ),
    # --- outbound calls (issue 14): the configured CA and proxy, never the environment's
    _m(
        "R31 http_ca_bundle verifies HTTPS",
        "http.py",
        "        session.verify = settings.ca_bundle\n",
        "        pass\n",
        "test_outbound.py",
    ),
    _m(
        "http_ca_bundle must hold a certificate",
        "config.py",
        '    if not found:\n        raise ConfigError(\n            f"http_ca_bundle=',
        '    if False:\n        raise ConfigError(\n            f"http_ca_bundle=',
        "test_outbound.py",
    ),
    _m(
        "R31 http_proxy carries every call",
        "http.py",
        'session.proxies = {"http": settings.proxy, "https": settings.proxy}',
        "session.proxies = {}",
        "test_outbound.py",
    ),
    _m(
        "environment proxies ignored",
        "http.py",
        "session.trust_env = False",
        "session.trust_env = True",
        "test_outbound.py",
    ),
    _m(
        "R35 proxy credentials masked",
        "config.py",
        'URL_OPTIONS = frozenset({"jwks_uri", "userinfo_endpoint", "http_proxy", "cache_url"})',
        'URL_OPTIONS = frozenset({"jwks_uri", "userinfo_endpoint", "cache_url"})',
        "test_outbound.py",
    ),
    _m(
        "R35 cache_url password masked",
        "config.py",
        'URL_OPTIONS = frozenset({"jwks_uri", "userinfo_endpoint", "http_proxy", "cache_url"})',
        'URL_OPTIONS = frozenset({"jwks_uri", "userinfo_endpoint", "http_proxy"})',
        "test_shared_cache.py",
    ),
    # --- path rules (issue 13)
    _m(
        "rules: protected paths",
        "rules.py",
        'return _PROTECTED if found == "protected" else _EXEMPT',
        'return _DEFAULT if found == "protected" else _EXEMPT',
        "test_rules.py",
    ),
    _m(
        "rules: protected, dotted spellings",
        "rules.py",
        'if "protected" in (normal, as_sent):',
        "if False:",
        "test_rules.py",
    ),
    _m(
        "rules: exempt only if both forms are",
        "rules.py",
        'if normal == as_sent == "exempt":',
        'if "exempt" in (normal, as_sent):',
        "test_rules.py",
    ),
    _m(
        "rules: dot segments resolved",
        "rules.py",
        "            if segments:\n                segments.pop()\n            continue\n",
        "            segments.append(part)\n            continue\n",
        "test_rules.py",
    ),
    _m(
        "rules: prefix ends at a segment",
        "rules.py",
        'f"(?s:{re.escape(prefix)}(?:/.*)?)\\\\Z"',
        'f"(?s:{re.escape(prefix)}.*)\\\\Z"',
        "test_rules.py",
    ),
    # --- several providers (issue 14)
    _m(
        "providers: an unknown issuer is refused",
        "providers.py",
        "verifier = self.by_issuer.get(issuer) if isinstance(issuer, str) else None",
        "verifier = next(iter(self.by_issuer.values()))",
        "test_providers.py",
    ),
    _m(
        "providers: each provider checks its issuer",
        "config.py",
        'forced = {"validate_issuer": True, "validate_token": True}',
        'forced = {"validate_token": True}',
        "test_providers.py",
    ),
    # --- the shared cache on Redis (issue 14)
    _m(
        "shared: R24 TTL bounded by the token",
        "userinfo.py",
        "return min(ttl, float(exp) + self._leeway - now)",
        "return ttl",
        "test_shared_cache.py",
    ),
    _m(
        "shared: R32 acceptance keeps its remaining life",
        "userinfo.py",
        "return min(remaining, self._cache_ttl)",
        "return self._cache_ttl",
        "test_shared_cache.py",
    ),
    _m(
        "shared: R31 an IdP outage is never shared",
        "userinfo.py",
        "except InvalidToken as refusal:  # refused by the provider; 503s are never shared",
        "except Exception as refusal:  # type: ignore[misc]",
        "test_shared_cache.py",
    ),
    _m(
        "shared: single flight, others wait",
        "userinfo.py",
        "            if not claimed:\n",
        "            if False:\n",
        "test_shared_cache.py",
    ),
    _m(
        "shared: single flight, claim released",
        "userinfo.py",
        "            if claimed:\n                self.shared.release(key)",
        "            if False:\n                self.shared.release(key)",
        "test_shared_cache.py",
    ),
    _m(
        "shared: subject re-checked",
        "userinfo.py",
        'if self._validate_subject and claims.get("sub") != subject:',
        "if False:",
        "test_shared_cache.py",
    ),
    _m(
        "shared: R31 Redis error is a miss",
        "shared.py",
        "            self._failed(error)\n            return None\n        self._succeeded()",
        "            raise\n        self._succeeded()",
        "test_shared_cache.py",
    ),
    _m(
        "shared: no read during the pause",
        "shared.py",
        "if self._clock() < self._skip_until:\n            return None",
        "if False:\n            return None",
        "test_shared_cache.py",
    ),
    _m(
        "shared: no write during the pause",
        "shared.py",
        "if ttl_ms < 1 or self._clock() < self._skip_until:",
        "if ttl_ms < 1:",
        "test_shared_cache.py",
    ),
    _m(
        "shared: R24 a key without TTL is a miss",
        "shared.py",
        "if not isinstance(pttl, int) or isinstance(pttl, bool) or pttl <= 0:",
        "if False:",
        "test_shared_cache.py",
    ),
    # --- logs (R34, R37)
    _m(
        "R34 fingerprint only",
        "logtools.py",
        'return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]',
        "return value[:40]",
        "test_logging.py",
    ),
    _m(
        "R37 catch-all",
        "middleware.py",
        "        except Exception as exc:  # fail closed: request input never makes a 500\n",
        "        except ZeroDivisionError as exc:\n",
        "test_logging.py",
    ),
    # --- devidp: a development provider hands out tokens; it must stay on this machine
    _m(
        "devidp: binds loopback only",
        "devidp.py",
        "if not allow_remote and not is_loopback(host):",
        "if False:",
        "test_demo.py",
        "test_devidp.py",
    ),
    _m(
        "devidp: --host loopback only",
        "devidp.py",
        "if not args.allow_remote and not is_loopback(args.host):",
        "if False:",
        "test_devidp.py",
    ),
    _m(
        "devidp: password grant checks the password",
        "devidp.py",
        "if user is None or not hmac.compare_digest(user[0].encode(), password.encode()):",
        "if user is None:",
        "test_devidp.py",
    ),
    # --- Django (issue 17): the stateless mode's promises, roles_required, system checks
    _m(
        "django stateless: no session written",
        "django.py",
        "    if request is None or getattr(request, STATELESS_ATTR, False):\n        return False",
        "    if request is None:\n        return False",
        "test_django_stateless.py",
        "test_sample_django.py",
    ),
    _m(
        "django stateless: 401 not the login redirect",
        "django.py",
        "if principal is None and self._is_login_redirect(response):",
        "if False:",
        "test_django_stateless.py",
        "test_sample_django.py",
    ),
    _m(
        "django stateless: never login()",
        "django.py",
        "    user = auth.authenticate(request, remote_user=principal.name)\n",
        "    user = auth.authenticate(request, remote_user=principal.name)\n"
        "    if user is not None:\n"
        "        auth.login(request, user)\n",
        "test_django_stateless.py",
    ),
    _m(
        "django roles_required: anonymous 401",
        "django.py",
        "        if principal is None:\n            return _unauthenticated()\n        if any(",
        "        if principal is None:\n            return None\n        if any(",
        "test_django_stateless.py",
    ),
    _m(
        "django roles_required: every role",
        "django.py",
        "if any(role not in principal.roles for role in required):",
        "if False:",
        "test_django_stateless.py",
    ),
    _m(
        "django check E001 RemoteUserMiddleware",
        "django_checks.py",
        "if (session_mode or our_backend) and not stateless and not remote_user:",
        "if False:",
        "test_django_checks.py",
    ),
    _m(
        "django check E003 options in settings",
        "django_checks.py",
        "        elif key.lower() in options:",
        "        elif False:",
        "test_django_checks.py",
    ),
    _m(
        "django check E004 stateless with RemoteUserMiddleware",
        "django_checks.py",
        "if stateless and remote_user:",
        "if False:",
        "test_django_checks.py",
    ),
    # --- the ASGI adapter (issue 16)
    _m(
        "R18 asgi scope keys removed first",
        "asgi.py",
        "        for key in SCOPE_KEYS:\n            scope.pop(key, None)\n",
        "        for key in ():\n            scope.pop(key, None)\n",
        "test_asgi.py",
    ),
    _m(
        "R16 asgi untrusted peer without client",
        "asgi.py",
        '"REMOTE_ADDR": client[0] if client else None,',
        '"REMOTE_ADDR": client[0] if client else "127.0.0.1",',
        "test_asgi.py",
    ),
    _m(
        "R16 asgi unbelieved header removed from the scope",
        "asgi.py",
        "            self._drop_headers(scope, frozenset(dropped))",
        "            pass",
        "test_asgi.py",
    ),
    _m(
        "asgi websocket refused before accept",
        "asgi.py",
        '            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})',
        '            await send({"type": "websocket.accept"})\n'
        '            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})',
        "test_asgi.py",
    ),
    _m(
        "asgi identity-provider I/O off the loop",
        "asgi.py",
        "            if answer is MISS:  # identity-provider I/O ahead:",
        "            if answer is MISS:\n"
        "                answer = authenticator.authenticate(view)\n"
        "            if False:  #",
        "test_asgi.py",
    ),
    _m(
        "asgi a cold token is not answered from the caches (one pass)",
        "core.py",
        "                    if checks and refused_get(_digest(value)) is None:",
        "                    if False:",
        "test_asgi.py",
    ),
    _m(
        "asgi a cold token is not answered from the caches (two passes)",
        "core.py",
        "        return self._refused.get(_digest(key)) is not None",
        "        return True",
        "test_asgi.py",
    ),
    _m(
        "R37 asgi catch-all",
        "asgi.py",
        "        except Exception as exc:  # fail closed: request input never makes a 500 (R37)",
        "        except ZeroDivisionError as exc:",
        "test_asgi.py",
    ),
    # --- a missing credential leaves a log line (issue 17)
    _m(
        "wsgi unauthenticated is logged",
        "middleware.py",
        "                self.authenticator.log_unauthenticated(refusal)",
        "                pass",
        "test_logging.py",
    ),
    _m(
        "asgi unauthenticated is logged",
        "asgi.py",
        "                authenticator.log_unauthenticated(refusal)",
        "                pass",
        "test_logging.py",
    ),
]


def _run(mutant: Mutant, tree: Path) -> tuple[str, str]:
    """Apply ``mutant`` in ``tree``, run its tests, undo it; the verdict and the first failure."""
    target = tree / mutant.path
    text = target.read_text()
    if text.count(mutant.control) != 1:
        return "STALE", "(the control is no longer written exactly once that way)"
    target.write_text(text.replace(mutant.control, mutant.removed, 1))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.tests],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        target.write_text(text)
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    if done.returncode in (0, 5):  # 5: no tests collected, nothing could catch it
        return "MISSED", ""
    if not failed:  # an error before any test ran (import, collection) proves nothing
        return "ERROR", done.stdout[-2000:] + done.stderr[-2000:]
    return "CAUGHT", failed[0]


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for mutant in MUTANTS:
            print(f"{mutant.name:40} {mutant.path:26} {' '.join(mutant.tests)}")
        return 0
    words = [word.lower() for word in argv]
    chosen = [m for m in MUTANTS if not words or any(w in m.name.lower() for w in words)]
    if not chosen:
        print(f"no mutant matches {argv}", file=sys.stderr)
        return 2
    todo: queue.Queue[Mutant] = queue.Queue()
    for mutant in chosen:
        todo.put(mutant)
    results: dict[str, str] = {}
    lock = threading.Lock()
    started = time.monotonic()

    def worker(tmp: str, index: int) -> None:
        tree = Path(tmp) / f"tree{index}"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(tree)], check=True)
        while True:
            try:
                mutant = todo.get_nowait()
            except queue.Empty:
                return
            verdict, detail = _run(mutant, tree)
            with lock:
                results[mutant.name] = verdict
                print(f"{mutant.name:40} {verdict:6} {detail}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        threads = [
            threading.Thread(target=worker, args=(tmp, i)) for i in range(min(WORKERS, len(chosen)))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    caught = sum(verdict == "CAUGHT" for verdict in results.values())
    elapsed = time.monotonic() - started
    print(f"mutation score: {caught}/{len(chosen)} caught in {elapsed:.0f} s")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

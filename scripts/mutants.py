"""Break one security requirement at a time and check that the tests notice (issue 5).

Each mutant is a one-line edit that removes a control (the algorithm allow-list, the expiry
check, the trusted-proxy check...). The script copies the committed tree into a temporary
directory, applies one mutant there, runs the given test modules with ``pytest -x`` and reports
``CAUGHT`` (a test failed, naming the first) or ``MISSED``; the working tree is never touched.
It exits 1 when any mutant is missed. Slow (a test run per mutant), so it is not part of CI::

    python scripts/mutants.py                   # the security test modules
    python scripts/mutants.py tests/test_requirements.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: (requirement, file, the control as written, the control removed)
MUTANTS: list[tuple[str, str, str, str]] = [
    ("R1 alg allow-list", "jwt_headers/verify.py", "if alg not in self._algorithms:", "if False:"),
    (
        "R6 exp required",
        "jwt_headers/verify.py",
        '    if exp is None:\n        raise InvalidToken("no_valid_exp", "token has no valid exp")',
        "    if exp is None:\n        return float('inf')",
    ),
    ("R6 expired", "jwt_headers/verify.py", "if exp <= now - leeway:", "if False:"),
    ("R7 nbf", "jwt_headers/verify.py", "if nbf is not None and nbf > now + leeway:", "if False:"),
    (
        "R8 audience",
        "jwt_headers/verify.py",
        "if not any(v in audiences for v in values):",
        "if False:",
    ),
    (
        "R9 issuer",
        "jwt_headers/verify.py",
        "if not isinstance(issuer, str) or issuer not in issuers:",
        "if not isinstance(issuer, str):",
    ),
    ("R12 crit", "jwt_headers/decode.py", 'if "crit" in header:', "if False:"),
    ("R13 size cap", "jwt_headers/decode.py", "if len(value) > limit:", "if False:"),
    (
        "R16 trusted proxies",
        "jwt_headers/sources.py",
        '    if source.self_verifying or trust.is_trusted(environ.get("REMOTE_ADDR")):\n'
        "        return value",
        "    return value",
    ),
    (
        "R18 upstream REMOTE_USER",
        "jwt_headers/middleware.py",
        '        environ.pop("REMOTE_USER", None)\n',
        "",
    ),
    (
        "R25 negative cache bound",
        "jwt_headers/core.py",
        "self._refused = LocalCache(config.negative_cache_size, clock)",
        "self._refused = LocalCache(10**9, clock)",
    ),
    (
        "R34 fingerprint only",
        "jwt_headers/logtools.py",
        'return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]',
        "return value[:40]",
    ),
]

DEFAULT_TESTS = [
    "tests/test_requirements.py",
    "tests/test_validation.py",
    "tests/test_forgery.py",
    "tests/test_keyset.py",
    "tests/test_trust.py",
    "tests/test_outcomes.py",
    "tests/test_logging.py",
]


def main(tests: list[str]) -> int:
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(tree)], check=True)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        for name, path, control, removed in MUTANTS:
            target = tree / path
            text = target.read_text()
            if control not in text:
                print(f"{name:28} STALE  (the control is no longer written that way)")
                missed += 1
                continue
            target.write_text(text.replace(control, removed, 1))
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                    cwd=tree,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
            finally:
                target.write_text(text)
            failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
            verdict = "CAUGHT" if done.returncode else "MISSED"
            missed += not done.returncode
            print(f"{name:28} {verdict} {failed[0] if failed else ''}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or DEFAULT_TESTS))

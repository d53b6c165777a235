"""Memory under floods of tokens (R25, R26), measured in a process of its own.

Each test runs a scenario of ``memory_probe.py`` in a fresh interpreter (a resident-set figure
taken inside pytest would include pytest's, hypothesis' and the other modules' memory) with its
own fake identity provider on 127.0.0.1 and a middleware checking signatures against it, both
caches at their defaults (``token_cache_size`` 10 000, ``negative_cache_size`` 1000). The probe
prints its figures as JSON; the assertions here are on those figures, and ``pytest -s`` prints
them so they can be quoted.

Why it matters: a robot-facing middleware (D2) is handed whatever an anonymous client sends
(A1). Caches make the hot path a dictionary lookup, but a cache that grows with what attackers
send is a memory-exhaustion hole, and one that bad tokens can churn takes the legitimate user's
hot path away (T6).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROBE = Path(__file__).with_name("memory_probe.py")
MIB = 1024 * 1024

#: R25: what 100 000 distinct bogus tokens may add to the resident set.
BOGUS_GROWTH_LIMIT_MIB = 50
#: R26: what one cached token (key, principal, entry and LRU bookkeeping) may cost.
PER_TOKEN_LIMIT = 4096
#: Heap slack for the valid phase: allocator rounding and free lists that stay with the
#: process once the cache turned over (a few MiB measured; twice that allowed).
HEAP_SLACK_MIB = 8
COOLDOWN = 30  # jwks_refresh_cooldown default

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="RSS is read from /proc/self/status (Linux)"
)


def probe(*args: str, timeout: float = 300) -> dict[str, Any]:
    """Run one probe scenario in a new interpreter; its figures, printed for the record."""
    done = subprocess.run(
        [sys.executable, str(PROBE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROBE.parent.parent,
        check=False,
    )
    assert done.returncode == 0, f"probe {args} failed:\n{done.stdout}\n{done.stderr}"
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nmemory_probe {' '.join(args)}:")
    for name, value in sorted(figures.items()):
        print(f"  {name}: {value}")
    assert figures["fake_idp_errors"] == []
    return figures


def test_r25_100k_bogus_then_100k_valid_tokens_keep_memory_bounded_and_the_hot_path_hot():
    """R25: 100 000 distinct bogus tokens (unknown kids, a known kid with a bad signature,
    undecodable segments, HS256 confusion attempts), then 100 000 distinct valid tokens, with
    one steady legitimate token every 100 requests.

    Asserted, with the reasons:

    * bogus phase: every token refused (401), RSS growth < 50 MiB (R25's own bound), the
      negative cache full at exactly ``negative_cache_size`` and never above it, and no
      principal cached for any of them;
    * valid phase: every token accepted as the token's user; the token cache at exactly
      ``token_cache_size`` and never above it; RSS growth below ``token_cache_size`` x 4 KiB
      (R26's per-token budget: the cache holds at most that many entries of about a token's
      size, so this is what a full cache may cost) plus 8 MiB heap slack; and the second half
      of the phase (the cache already full, 50 000 more tokens replacing entries) adding
      < 8 MiB, which is what "bounded" means: no growth with the count of distinct tokens;
    * the steady token: the very same ``Principal`` object every time (a cache hit: a miss
      would verify again and build a new one), so neither flood evicted it;
    * the flood of unknown kids costs the IdP at most one JWKS fetch per cooldown (R29).
    """
    figures = probe("flood")
    cache_size, negative_size = figures["token_cache_size"], figures["negative_cache_size"]
    assert (cache_size, negative_size) == (10_000, 1000), "the defaults are what R25 is about"

    bogus = figures["bogus_outcomes"]
    assert sum(bogus.values()) == figures["bogus_sent"] == 100_000
    assert all(outcome.endswith(":401") for outcome in bogus), bogus
    assert figures["bogus_rss_growth_mib"] < BOGUS_GROWTH_LIMIT_MIB
    assert figures["refused_len_after_bogus"] == negative_size
    assert figures["cache_len_after_bogus"] == 1  # the steady token only

    assert figures["valid_outcomes"] == {"200:named": 100_000}
    assert figures["cache_len_after_valid"] == cache_size
    assert figures["max_cache_len"] == cache_size
    assert figures["max_refused_len"] == negative_size
    assert figures["refused_len_after_valid"] == negative_size  # valid tokens leave it alone
    valid_limit_mib = cache_size * PER_TOKEN_LIMIT / MIB + HEAP_SLACK_MIB
    assert figures["valid_rss_growth_mib"] < valid_limit_mib
    assert figures["valid_second_half_rss_growth_mib"] < HEAP_SLACK_MIB

    assert figures["steady_sent"] == 2000
    assert figures["steady_misses"] == 0

    seconds = figures["bogus_seconds"] + figures["valid_seconds"]
    fetches = figures["jwks_fetches_during_bogus"] + figures["jwks_fetches_during_valid"]
    assert fetches <= math.ceil(seconds / COOLDOWN) + 1


def test_r26_a_cached_keycloak_token_costs_at_most_4_kb():
    """R26: bytes per cached token, by tracemalloc, for 2000 distinct Keycloak-like RS256
    access tokens (~1.75 KB each, as ``Bearer <token>``). The figure includes the header value
    itself, which the cache keeps as its key (and the principal's lazy claims read from it), so
    it is the whole cost of an entry. Each is then checked to be a cache hit: a cache that kept
    nothing would pass the size bound trivially."""
    figures = probe("per-token")
    assert figures["cache_len"] == figures["tokens"] + 1  # the warm-up token too
    assert figures["rechecked_hits"] == figures["rechecked"]
    assert figures["bytes_per_cached_token"] <= PER_TOKEN_LIMIT


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(("--pad-headers", "16", "--pad-bytes", "8000"), id="large-other-headers"),
        pytest.param(("--big-tokens",), id="tokens-of-max-header-bytes"),
    ],
)
def test_r25_negative_cache_is_bounded_in_bytes_not_only_in_entries(scenario):
    """R25 ("bounded in entries and bytes"): 2000 distinct bogus tokens with a known kid and a
    bad signature (each is negatively cached), sent

    * with 16 other request headers of 8000 bytes each (128 KB: gunicorn's and Apache's default
      limits admit 100 fields of 8190 bytes; cookies are the everyday case), or
    * as tokens as long as ``max_header_bytes`` (16 KiB) admits, with a payload of many small
      claims,

    must raise RSS by less than R25's 50 MiB: the negative cache may hold 1000 verdicts, but a
    verdict is a reason code and a fingerprint, a few hundred bytes whatever came with it.

    Keeping the refusal exception itself keeps its ``__traceback__``, and with it every frame
    it passed through, from ``JwtHeadersMiddleware.__call__`` (the whole WSGI environ) down to
    the signature check (the decoded ``Document``: parsed claims, token, signing input): then
    1000 entries hold 1000 requests' worth of headers and parsed payloads.
    """
    figures = probe("padded", *scenario)
    assert figures["statuses"] == {"401": figures["requests"]}
    assert figures["refused_len"] == figures["negative_cache_size"]
    assert figures["rss_growth_mib"] < BOGUS_GROWTH_LIMIT_MIB, (
        f"{figures['rss_growth_mib']} MiB kept by {figures['refused_len']} negative entries"
    )

"""The atheris target (``fuzz/fuzz_middleware.py``) run in CI without atheris (R37).

Long coverage-guided runs happen outside CI (``fuzz/README.rst``); this keeps the target, its
input format and its invariants working between them: every seed of the committed corpus, and
random bytes from hypothesis, must pass the target's own assertions (status 200/401/503, the
app called exactly on 200, the contract's JSON body, no ERROR record, no token text in a body
or log line).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def target():
    module = _load("fuzz_middleware")
    yield module
    module._IDP.stop()
    logger = logging.getLogger("jwt_headers")
    logger.removeHandler(module._LOG)
    logger.propagate = True  # give the jwt_headers logger back to caplog in later modules


def test_corpus_is_what_make_corpus_writes():
    """A change of the input format must come with a regenerated corpus."""
    make_corpus = _load("make_corpus")
    expected = {hashlib.sha256(seed).hexdigest()[:16]: seed for seed in make_corpus.SEEDS}
    committed = {path.name: path.read_bytes() for path in (FUZZ / "corpus").iterdir()}
    assert committed == expected


@pytest.mark.parametrize("seed", sorted(p.name for p in (FUZZ / "corpus").iterdir()))
def test_corpus_seed_keeps_the_invariants(target, seed):
    target.test_one_input((FUZZ / "corpus" / seed).read_bytes())


def test_the_minted_token_is_accepted_and_one_edit_is_not(target):
    """The target can tell good from bad: without this the invariants could hold vacuously
    (every request refused)."""
    target.test_one_input(bytes([4, 0, 2]))
    assert target._APP.called
    target.test_one_input(bytes([4, 0, 2]) + b"\x05\x41\x10\x2e")
    assert not target._APP.called


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(min_size=3, max_size=2048))
def test_random_bytes_keep_the_invariants(target, data):
    target.test_one_input(data)

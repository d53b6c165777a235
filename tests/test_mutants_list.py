"""The mutation check's list stays in step with the code (issue 18: tests that fail for the
right reason).

``scripts/mutants.py`` runs last in CI and takes minutes; a control rewritten without its mutant
(the mutant goes stale and CI fails at the very end) is caught here, in a second, by every
plain test run: each control is written exactly once in its file, each mutant changes it, and
each guarding test module exists.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_mutants():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "scripts" / "mutants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("mutants", module)  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module.MUTANTS


MUTANTS = load_mutants()


def test_there_are_mutants_and_their_names_are_unique():
    names = [mutant.name for mutant in MUTANTS]
    assert len(names) > 50
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda mutant: mutant.name)
def test_each_control_is_written_once_and_its_guards_exist(mutant):
    source = (ROOT / mutant.path).read_text(encoding="utf-8")
    assert source.count(mutant.control) == 1, (
        f"{mutant.path}: the control of {mutant.name!r} is written "
        f"{source.count(mutant.control)} times (stale: update scripts/mutants.py)"
    )
    assert mutant.removed != mutant.control
    assert mutant.tests, mutant.name
    for test in mutant.tests:
        assert (ROOT / test).is_file(), test

"""Every code example of README.rst and samples/README.rst is run by some test (issue 17, item 5).

The claims are the ``example("README.rst", "fragment")`` calls in tests/test_*.py, read from
the source: an example no call claims fails here, so a new example cannot land without a test
that runs it, and a claim whose fragment matches no example, or several, fails too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from docs_examples import DOCUMENTS, examples, matching

TESTS = Path(__file__).resolve().parent


def claims() -> list[tuple[str, str, str]]:
    """``(test file, document, fragment)`` for each ``example(...)`` call with literal args."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if not any(
            isinstance(node, ast.ImportFrom)
            and node.module == "docs_examples"
            and any(alias.name == "example" and alias.asname is None for alias in node.names)
            for node in tree.body
        ):
            continue  # another example() (hypothesis has one)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "example"
            ):
                args = node.args
                assert len(args) == 2 and all(
                    isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args
                ), f"{path.name}:{node.lineno}: example() takes two string literals"
                found.append((path.name, args[0].value, args[1].value))  # type: ignore[attr-defined]
    return found


def test_the_documents_have_examples_and_tests_claim_them():
    """A guard on the guard: the parser finds the blocks and the scan finds the calls."""
    assert len(examples("README.rst")) > 25
    assert len(examples("samples/README.rst")) > 5
    assert len(claims()) > 30


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_example_is_claimed_by_a_test(document):
    claimed = set()
    for _path, claimed_document, fragment in claims():
        if claimed_document == document:
            claimed.update(e.line for e in matching(document, fragment))
    unclaimed = [str(e) for e in examples(document) if e.line not in claimed]
    assert not unclaimed, f"examples no test runs (use example() in a test): {unclaimed}"


def test_every_claim_names_exactly_one_example():
    wrong = [
        f"{path}: example({document!r}, {fragment!r}) matches {len(matching(document, fragment))}"
        for path, document, fragment in claims()
        if document not in DOCUMENTS or len(matching(document, fragment)) != 1
    ]
    assert not wrong, wrong

"""The code examples of README.rst and samples/README.rst, for the tests that run them.

Issue 17: "every code example is executed by the test suite, so an example that no longer works
fails CI". A test gets an example's text with ``example(document, fragment)``, never a copy, so
an edited example is the one that runs. ``tests/test_docs_coverage.py`` reads every test module
and fails when an example of either document is claimed by no test (a new example needs a test),
or a claim matches no example or several.

An example is a docutils literal block (``::`` or ``.. code-block::``). A placeholder in it
(``idp.example``, ``...``, a port) is filled by the test that runs it, with ``fill``, which fails
when the placeholder is no longer there (so a filled example cannot silently drift).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import docutils.core
import docutils.nodes

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.rst", "samples/README.rst")


@dataclass(frozen=True)
class Example:
    document: str
    line: int  # where the block starts, for messages
    text: str

    def __str__(self) -> str:
        first = self.text.splitlines()[0] if self.text else ""
        return f"{self.document}:{self.line} ({first[:60]!r})"


@functools.cache
def examples(document: str) -> tuple[Example, ...]:
    """Every literal block of a document, in order."""
    if document not in DOCUMENTS:
        raise ValueError(f"{document!r} is not one of {DOCUMENTS}")
    tree = docutils.core.publish_doctree(
        (ROOT / document).read_text(encoding="utf-8"),
        settings_overrides={"report_level": 5, "halt_level": 5},
    )
    found = []
    for block in tree.findall(docutils.nodes.literal_block):
        found.append(Example(document=document, line=block.line or 0, text=block.astext() + "\n"))
    return tuple(found)


def matching(document: str, fragment: str) -> list[Example]:
    return [found for found in examples(document) if fragment in found.text]


def example(document: str, fragment: str) -> str:
    """The text of the one example of ``document`` that contains ``fragment``.

    Call it with two string literals: the coverage test finds the claims by reading the source.
    """
    found = matching(document, fragment)
    if len(found) != 1:
        where = ", ".join(str(e) for e in found) or "none"
        raise AssertionError(
            f"{fragment!r} must be in exactly one example of {document}; it is in: {where}"
        )
    return found[0].text


def fill(text: str, placeholder: str, value: str, count: int | None = None) -> str:
    """``text`` with ``placeholder`` replaced; fails when it is absent (or not ``count`` times)."""
    times = text.count(placeholder)
    if times == 0 or (count is not None and times != count):
        raise AssertionError(
            f"placeholder {placeholder!r} found {times} times in the example, "
            f"expected {count if count is not None else 'at least 1'}:\n{text}"
        )
    return text.replace(placeholder, value)

"""The README is part of the product: it renders cleanly and documents every option."""

import re
from pathlib import Path

import docutils.core

from jwt_headers import JwtHeadersConfig

README = Path(__file__).resolve().parent.parent / "README.rst"


def test_readme_renders_without_warnings():
    docutils.core.publish_string(
        README.read_text(encoding="utf-8"),
        writer="null",
        settings_overrides={"report_level": 2, "halt_level": 2},
    )


def test_every_option_is_in_the_readme_options_table():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("\nOptions\n") : text.index("\nHow a header is found\n")]
    documented = set(re.findall(r"\* - ``([a-z_]+)``", table))
    assert documented == set(JwtHeadersConfig.option_names())


def test_ci_runs_the_readme_test_command():
    command = "bash scripts/test.sh"
    assert command in README.read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci

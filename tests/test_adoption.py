"""What an adopter checks before anything runs (issue 17 item 6): the licence, the private route
for a vulnerability report, the requirements SECURITY.rst cites being shipped with it, and the
system prerequisites of the test command written where a contributor reads them.

Each test reads the files a release ships, so a placeholder or a dangling citation put back
fails here instead of in a newcomer's first hour.
"""

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from the tomli dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "docs" / "security-requirements.md"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _section(text: str, title: str) -> str:
    """The body of the README section ``title`` (up to the next title of the same level)."""
    start = text.index(f"\n{title}\n{'-' * len(title)}\n")
    following = re.search(r"\n[^\n]+\n-{3,}\n", text[start + len(title) + 2 :])
    return text[start : start + len(title) + 2 + following.start()] if following else text[start:]


def test_license_file_is_the_licence_pyproject_states():
    """An adopter's legal check: the LICENSE text, pyproject's SPDX ``license`` and the wheel's
    ``license-files`` agree, and no ``License ::`` classifier contradicts them (PEP 639 forbids
    one beside an expression; setuptools >= 77 refuses the build)."""
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence
    assert "Version 2.0, January 2004" in licence
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in licence
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    requires = _pyproject()["build-system"]["requires"]
    assert any(re.fullmatch(r"setuptools>=(7[7-9]|[89]\d|\d{3,}).*", r) for r in requires)


def test_vulnerability_report_route_is_private_advisories_not_a_placeholder():
    """A reporter needs a route that works and stays private: GitHub's private vulnerability
    reporting (Security tab, "Report a vulnerability"), not a made-up address."""
    security = (ROOT / "SECURITY.rst").read_text(encoding="utf-8")
    report = security[security.index("Reporting a vulnerability") : security.index("Threat model")]
    assert "**Security** tab" in report
    assert "**Report a\nvulnerability**" in report or "**Report a vulnerability**" in report
    assert "/security/advisories/new" in report
    assert "Do **not** open a public issue" in report
    assert ".invalid" not in security
    assert "placeholder" not in security.lower()
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", report), "an e-mail address came back"


def test_every_requirement_cited_is_defined_in_the_shipped_requirements():
    """SECURITY.rst and README.rst cite R-numbers; each must be defined (``- **R16 MUST**``) in
    docs/security-requirements.md, which the repository ships, so no citation dangles."""
    defined = set(
        re.findall(r"^- \*\*([RC]\d+) (?:MUST|SHOULD)\*\*", REQUIREMENTS.read_text(), re.M)
    )
    assert {f"R{n}" for n in range(1, 43)} | {"C1", "C2"} <= defined
    for name in ("SECURITY.rst", "README.rst"):
        text = (ROOT / name).read_text(encoding="utf-8")
        cited = set(re.findall(r"\b([RC]\d+)\b", text))
        for first, last in re.findall(r"\bR(\d+)-R(\d+)\b", text):
            cited |= {f"R{n}" for n in range(int(first), int(last) + 1)}
        assert cited, name
        assert cited <= defined, f"{name} cites undefined requirements: {sorted(cited - defined)}"
    assert "docs/security-requirements.md" in (ROOT / "SECURITY.rst").read_text(encoding="utf-8")


def test_sdist_manifest_ships_security_rst_its_requirements_and_the_licence():
    """setuptools puts only packages, README and tests in an sdist by itself: MANIFEST.in must
    add what SECURITY.rst points to, or the released source cites a file it lacks."""
    lines = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    included = {name for line in lines if line.startswith("include ") for name in line.split()[1:]}
    assert {"SECURITY.rst", "docs/security-requirements.md", "LICENSE"} <= included
    for name in included:
        assert (ROOT / name).is_file(), name


def test_development_section_lists_what_the_setup_scripts_install():
    """A contributor reads README "Development", not the scripts: every Debian package the test
    command installs, and Node.js >= 20 with npm, which it needs but does not install, are
    listed there."""
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    development = _section(readme, "Development")
    scripts = (ROOT / ".ci" / "e2e-setup.sh").read_text() + (ROOT / "scripts/test.sh").read_text()
    packages = set(re.findall(r"packages\+=\(([\w.-]+)\)", scripts))
    packages |= set(re.findall(r"apt-get install [^\n]*?([\w.-]+) >/dev/null", scripts))
    packages.discard("${packages[@]}")
    assert {"apache2", "libapache2-mod-auth-openidc", "redis-server"} <= packages, packages
    for package in packages:
        assert f"``{package}``" in development, package
    assert "Node.js >= 20 and npm" in development
    assert "Node.js >= 20" in (ROOT / ".ci" / "e2e-setup.sh").read_text()

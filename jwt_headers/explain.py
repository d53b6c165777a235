"""``jwt-headers explain``: what the middleware would do with these headers, step by step.

It walks the same pieces the middleware uses (header lookup, decode, the verifier's check list,
name and role extraction, the role map) and prints each step with pass/fail and why, then runs
the real pipeline once for the final outcome, so the explanation can never drift from the
behaviour. It prints fingerprints, never a token, a header value or a secret.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

from .config import JwtHeadersConfig, printable
from .core import Authenticator, SourceReader, _fingerprint
from .decode import Document, bearer_token, check_size, decode_json, decode_jwt, value_text
from .errors import ConfigError, Refusal
from .identity import (
    add_format_hint,
    check_user_name,
    name_from_claims,
    roles_from_claims,
    roles_from_header,
)
from .logtools import fingerprint, safe
from .middleware import refusal_response
from .paths import JsonPath
from .providers import ProviderRouter
from .rolemap import convert_roles
from .sources import HeaderSource, PeerTrust
from .verify import TokenVerifier

_DEFAULTS = JwtHeadersConfig.option_defaults()


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="show what the middleware would do with given headers",
        description=(
            "Show, step by step, what jwt-headers would do with a request: which header it "
            "reads, the user name and roles before and after conversion, each validation step, "
            "and the outcome. Tokens and header values are shown only as fingerprints."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE.toml", help="options from a [jwt_headers] table")
    source.add_argument(
        "--env", action="store_true", help="options from JWT_HEADERS_* environment variables"
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option (repeatable; added to --config/--env)",
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'Name: value'",
        help="a request header (repeatable)",
    )
    parser.add_argument(
        "-e",
        "--environ",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a plain environ key as mod_wsgi sets it, e.g. OIDC_id_token_payload={...}",
    )
    parser.add_argument(
        "--stdin",
        action="store_true",
        help="read a request (optional request line, then 'Name: value' lines) from stdin",
    )
    parser.add_argument("--peer", default="127.0.0.1", help="REMOTE_ADDR (default 127.0.0.1)")
    parser.add_argument("--method", default="GET", help="REQUEST_METHOD (default GET)")
    parser.add_argument("--path", default="/", help="PATH_INFO, for the path rules (default /)")
    parser.set_defaults(run=run)


def _pairs(
    items: Sequence[str], sep: str, what: str, *, secret: bool = True
) -> list[tuple[str, str]]:
    """``NAME<sep>VALUE`` items split; a malformed one is a :class:`ConfigError`.

    The error shows a header or environ item only by fingerprint: the usual mistake is a
    forgotten ``Authorization:``, and then the whole item is the credential.
    """
    pairs = []
    for item in items:
        name, found, value = item.partition(sep)
        if not found or not name.strip():
            shown = f"fp={fingerprint(item)}, {len(item)} characters" if secret else repr(item)
            raise ConfigError(f"{what} ({shown}): write it as NAME{sep}VALUE")
        pairs.append((name.strip(), value.strip() if sep == ":" else value))
    return pairs


def build_config(args: argparse.Namespace) -> JwtHeadersConfig:
    """Options from --config or --env, then each --option on top (text, as in a file)."""
    options: dict[str, Any] = {}
    base = None
    if args.config:
        base = JwtHeadersConfig.from_file(args.config)
    elif args.env:
        base = JwtHeadersConfig.from_env()
    if base is not None:
        options = {
            name: getattr(base, name)
            for name in JwtHeadersConfig.option_names()
            if getattr(base, name) != _DEFAULTS.get(name)
        }
    options.update(_pairs(args.option, "=", "--option", secret=False))
    return JwtHeadersConfig.from_mapping(options)


def request_header_lines(text: str) -> list[str]:
    """The ``Name: value`` lines of a raw request: after an optional request line, up to the
    blank line that ends the headers. What follows is the body, which a server never reads as
    headers, so neither may we (a body line ``X-User: x`` must not name a user)."""
    found: list[str] = []
    started = False
    for line in text.splitlines():
        if not line.strip():
            if started:
                break  # end of the headers
            continue  # blank lines before the request
        first_line = not started
        started = True
        if first_line and " HTTP/" in line and ":" not in line.split(" ", 1)[0]:
            continue  # the request line
        if ":" in line:
            found.append(line)
    return found


def underscore_warning(name: str) -> str:
    """The warning for a request header whose name has ``_`` (the facts of ``doctor``'s
    ``underscore_header`` finding): the report below assumes the header arrives, which under
    the common Python servers it does not, and a newcomer must not read a success from it."""
    dashed = name.replace("_", "-")
    return (
        f"header {name!r} has '_': gunicorn >= 22, waitress, werkzeug and Django's runserver "
        "drop such request headers, so there it never arrives and the outcome below does not "
        f"happen. Have the proxy send it as {dashed!r} (Apache: RequestHeader set {dashed} "
        f'"%{{{name}}}e") - jwt-headers matches it, "-" and "_" are alike - or run under '
        f"mod_wsgi, which passes it as a plain environ key (here: -e {name}=VALUE)."
    )


def build_environ(
    args: argparse.Namespace, stdin: TextIO, warnings: list[str] | None = None
) -> dict[str, Any]:
    """The WSGI environ of the request described by ``args``; a warning for each header that
    common servers would drop is appended to ``warnings``."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": getattr(args, "method", "GET"),
        "PATH_INFO": getattr(args, "path", "/"),
        "REMOTE_ADDR": args.peer,
    }
    lines = list(args.header)
    if args.stdin:
        lines.extend(request_header_lines(stdin.read()))
    for name, value in _pairs(lines, ":", "header"):
        if "_" in name and warnings is not None:
            warning = underscore_warning(name)
            if warning not in warnings:
                warnings.append(warning)
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    for key, value in _pairs(args.environ, "=", "--environ"):
        environ[key] = value
    return environ


class _Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, label: str, text: str) -> None:
        self.out.write(f"{label:<12}{text}\n")

    def step(self, name: str, ok: bool, detail: str = "") -> None:
        mark = "pass" if ok else "FAIL"
        self.out.write(f"  {name:<10}{mark}{'  ' + detail if detail else ''}\n")


@contextlib.contextmanager
def _step(report: _Report, name: str, hint: tuple[str, str, str] | None = None) -> Iterator[None]:
    """Report a refusal raised inside as the failed step ``name``, then let it go on: a step
    that raises must show up in the report, not only in the outcome. ``hint`` is the header
    value, its configured format and the option, for the middleware's format hint."""
    try:
        yield
    except Refusal as refusal:
        if hint is not None:
            add_format_hint(refusal, *hint)
        report.step(name, False, f"{refusal.reason}: {refusal.message}")
        raise


def _describe_source(
    source: HeaderSource, environ: Mapping[str, Any], trust: PeerTrust
) -> tuple[str | None, str]:
    if source.plain_key is not None:
        value = environ.get(source.plain_key)
        if isinstance(value, str) and value.strip():
            return value, f"plain environ key {source.plain_key} (set by the server: believed)"
    value = environ.get(source.http_key)
    if not isinstance(value, str) or not value.strip():
        return None, f"absent (looked at {source.plain_key or '-'} and {source.http_key})"
    if source.self_verifying:
        return value, f"request header {source.http_key} (signature-checked JWT: any peer)"
    if trust.is_trusted(environ.get("REMOTE_ADDR")):
        return value, f"request header {source.http_key} (peer is in trusted_proxies)"
    return None, (
        f"request header {source.http_key} IGNORED: peer {safe(environ.get('REMOTE_ADDR'))} is "
        "not in trusted_proxies and the header proves nothing by itself"
    )


def _walk(
    report: _Report, authenticator: SourceReader, label: str, value: str, fmt: str
) -> Document | None:
    """Decode and verify one header value, reporting each step; raises the first refusal."""
    config = authenticator.config
    # The log line's fingerprint (of the token, without "Bearer "), so the fp= printed here
    # finds the refusal in the logs.
    report.line("", f"fp={_fingerprint(value, fmt)}, {len(value)} bytes, format {fmt}")
    hint = (value, fmt, "user_name_format" if label == "user" else "roles_source")
    with _step(report, "size"):
        check_size(value, config.max_header_bytes)
    if fmt == "json":
        with _step(report, "decode", hint):
            document = decode_json(value, config.header_encoding)
        report.step("decode", True, f"JSON object with {len(document.claims)} members")
        return document
    with _step(report, "decode", hint):
        token = bearer_token(value)
    if token is None:
        report.step("scheme", True, "another auth scheme (e.g. Basic): not ours, treated as absent")
        return None
    with _step(report, "decode", hint):
        document = decode_jwt(token)
    assert document.header is not None
    report.step(
        "decode",
        True,
        f"compact JWS, alg={safe(document.header.get('alg'), 16)} "
        f"kid={safe(document.header.get('kid'), 40)}, token fp={fingerprint(token)}",
    )
    verifier = authenticator.verifier
    if verifier is None:
        report.step("validate", True, "validate_token is off: claims are read without checks")
        return document
    now = authenticator.clock()
    if isinstance(verifier, ProviderRouter):
        with _step(report, "provider"):
            verifier = verifier.route(document)
        report.step("provider", True, f"iss routes to the provider {safe(verifier.issuers[0])}")
    checks = (
        verifier.checks
        if isinstance(verifier, TokenVerifier)
        else (("validate", lambda doc, _now: verifier(doc)),)
    )
    for name, check in checks:
        try:
            check(document, now)
        except Refusal as refusal:
            report.step(name, False, f"{refusal.reason}: {refusal.message}")
            raise
        report.step(name, True)
    return document


def explain(
    config: JwtHeadersConfig,
    environ: dict[str, Any],
    out: TextIO,
    warnings: Sequence[str] = (),
) -> int:
    """Print the explanation; return 0 when the app would be called, 1 otherwise."""
    report = _Report(out)
    for warning in warnings:
        report.line("WARNING", warning)
    authenticator = Authenticator(config)
    trust = PeerTrust(config.trusted_networks, config.trust_every_peer)
    changed = [
        f"{name}={printable(name, getattr(config, name))!r}"
        for name in sorted(JwtHeadersConfig.option_names())
        if getattr(config, name) != _DEFAULTS.get(name)
    ]
    report.line("config", changed[0] if changed else "(defaults)")
    for item in changed[1:]:
        report.line("", item)
    report.line("peer", str(environ.get("REMOTE_ADDR")))
    rule = (
        config.path_rules.decide(
            environ.get("REQUEST_METHOD"), environ.get("SCRIPT_NAME"), environ.get("PATH_INFO")
        )
        if config.path_rules is not None
        else None
    )
    if rule is not None and rule.value != "default":
        report.line(
            "path rule",
            f"{rule.value} ({environ.get('REQUEST_METHOD')} {safe(environ.get('PATH_INFO'), 80)})",
        )
    several = len(authenticator.readers) > 1
    for index, reader in enumerate(authenticator.readers):
        source = reader.config
        if several:
            report.line("source", f"{index}: {source.user_name_header} ({source.user_name_format})")
        user_source = HeaderSource(source.user_name_header, source.user_header_self_verifying)
        value, how = _describe_source(user_source, environ, trust)
        report.line("user header", f"{source.user_name_header}: {how}")
        try:
            if value is not None and (rule is None or rule.value != "exempt"):
                _explain_identity(report, reader, value, environ, trust)
        except Refusal:
            pass  # already reported as a failed step; the real outcome follows
    return _outcome(report, authenticator, environ)


def _explain_identity(
    report: _Report,
    authenticator: SourceReader,
    value: str,
    environ: Mapping[str, Any],
    trust: PeerTrust,
) -> None:
    config = authenticator.config
    document = None
    if config.user_name_format == "string":
        with _step(report, "size"):
            check_size(value, config.max_header_bytes)
        with _step(report, "decode"):
            name = value_text(value, config.header_encoding).strip()
        if not name:
            report.line("user name", "(empty after decoding: treated as absent)")
            return
    else:
        document = _walk(report, authenticator, "user", value, config.user_name_format)
        if document is None:
            return
        assert config.user_path is not None
        try:
            name = name_from_claims(document.claims, config.user_path)
        except Refusal as refusal:
            report.step("user name", False, refusal.message)
            raise
    try:
        check_user_name(name, config)
    except Refusal as refusal:
        report.step("user name", False, f"{refusal.reason}: {refusal.message}")
        raise
    report.line("user name", repr(name))
    if config.roles_source is None:
        report.line("roles", "(roles_source not set)")
        return
    external: list[str] = []
    if config.roles_share_user_header:
        if config.roles_source == "header":
            text = value_text(value, config.header_encoding)
            external = list(roles_from_header(text, config.roles_header_delimiter))
        elif document is not None and config.roles_path is not None:
            external = _roles_from_document(report, document, config.roles_path)
    else:
        roles_source = HeaderSource(
            config.roles_header_name or "", config.roles_header_self_verifying
        )
        roles_value, how = _describe_source(roles_source, environ, trust)
        report.line("roles header", f"{config.roles_header_name}: {how}")
        if roles_value is not None:
            if config.roles_source == "header":
                with _step(report, "size"):
                    check_size(roles_value, config.max_header_bytes)
                external = list(
                    roles_from_header(
                        value_text(roles_value, config.header_encoding),
                        config.roles_header_delimiter,
                    )
                )
            else:
                roles_doc = _walk(report, authenticator, "roles", roles_value, config.roles_source)
                if roles_doc is not None and config.roles_path is not None:
                    external = _roles_from_document(report, roles_doc, config.roles_path)
    converted = convert_roles(external, config.role_map, config.only_external_listed_roles)
    report.line("roles (ext)", ", ".join(map(repr, external)) or "(none)")
    report.line("roles", ", ".join(map(repr, converted)) or "(none)")


def _roles_from_document(report: _Report, document: Document, path: JsonPath) -> list[str]:
    """The roles at ``path``, saying so when the path matches nothing: no roles then looks
    exactly like a user without roles, and a mistyped path is the likelier cause."""
    if not path(document.claims):
        report.line("roles path", f"{path.text!r} matches nothing: no roles from it")
    return list(roles_from_claims(document.claims, path))


def _outcome(report: _Report, authenticator: Authenticator, environ: dict[str, Any]) -> int:
    logging.getLogger("jwt_headers").disabled = True  # the report already says it all
    try:
        principal, dropped, decider = authenticator.authenticate_by(dict(environ))
    except Refusal as refusal:
        status, _headers, body = refusal_response(refusal)
        report.line("outcome", f"{status}, app not called: {body.decode()}")
        return 1
    finally:
        logging.getLogger("jwt_headers").disabled = False
    if dropped:
        report.line("removed", ", ".join(dropped) + " (not believed; the app will not see it)")
    if decider is not None and len(authenticator.readers) > 1:
        index = authenticator.readers.index(decider)
        report.line("decided by", f"source {index}: {decider.header}")
    if principal is None:
        report.line("outcome", "app called anonymously (no REMOTE_USER)")
    else:
        report.line(
            "outcome",
            f"app called with REMOTE_USER={principal.name!r}, roles={list(principal.roles)!r}",
        )
    return 0


def run(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None) -> int:
    """``jwt-headers explain``. The streams default to ``sys.stdin``/``sys.stdout`` as they are
    when called, not when this module was imported, so ``contextlib.redirect_stdout`` and test
    captures see the report and ``--stdin`` reads the current stdin."""
    config = build_config(args)
    warnings: list[str] = []
    environ = build_environ(args, stdin if stdin is not None else sys.stdin, warnings)
    return explain(config, environ, out if out is not None else sys.stdout, warnings)

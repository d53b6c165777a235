"""JSON paths, user-name and role extraction, and the role map.

Why this module exists:

* ``jwt_headers.paths`` walks plain dotted paths itself and sends everything else to jsonpath-ng.
  The contract promises that plain dotted paths give the same answers as JSONPath, so the fast
  path is checked against jsonpath-ng itself (never against paths.py's own fallback), by example
  and by hypothesis. Paths are compiled once, when the config is built: a request must never run
  the (slow) jsonpath-ng parser.
* The user-name path must yield exactly one non-empty string; anything else is an unusable
  header (401), never "the first one" or a stringified number.
* Roles: a string is one role, a list gives its string items, everything else gives none; header
  roles are split on the delimiter, trimmed, empties dropped.
* The role map: one external role to several internal ones in the order written, first-seen
  order without duplicates in the result, and malformed entries refused at start-up (GeoServer
  skips them silently, which quietly grants or withholds access).

The rows of headers-examples.md are covered in test_examples.py and are not repeated here.
"""

from __future__ import annotations

import contextlib
import json
import re
from unittest import mock

import jsonpath_ng
import jsonpath_ng.parser
import pytest
from conftest import RecordingApp, assert_invalid_token, call
from hypothesis import given, settings
from hypothesis import strategies as st
from idp import compact_jws
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.paths import compile_path
from jwt_headers.rolemap import convert_roles, parse_role_map

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True)

#: A Keycloak-like claim set (not the documented one: that is test_examples.py's business).
KEYCLOAK = {
    "sub": "98cfe060-f980-4a05-8612-6c609219ffe9",
    "preferred_username": "alice@example.test",
    "email_verified": False,
    "address": {},
    "groups": ["default-roles", "offline_access"],
    "realm_access": {"roles": ["offline_access", "uma_authorization"]},
    "resource_access": {
        "live-key2": {"roles": ["GeonetworkAdministrator", "GeoserverAdministrator"]},
        "account": {"roles": ["manage-account"]},
    },
    "x-claim_2": {"9": {"_": "deep"}},
    "0": "zero",
    "@type": "user",
}


def jsonpath_ng_values(path, document):
    """What jsonpath-ng itself answers, called the way its README shows."""
    return [match.value for match in jsonpath_ng.parse(path).find(document)]


def dot_walk(keys, document):
    """GeoServer's dot walker: descend through objects by key, nothing else."""
    for key in keys:
        if not isinstance(document, dict) or key not in document:
            return []
        document = document[key]
    return [document]


def parser_must_not_run(*args, **kwargs):
    raise AssertionError("the jsonpath-ng parser ran outside compile time")


@contextlib.contextmanager
def broken_parser():
    """Every way into jsonpath-ng's parser raises: proves a code path does not parse."""
    with (
        mock.patch.object(jsonpath_ng.parser, "parse", parser_must_not_run),
        mock.patch.object(jsonpath_ng, "parse", parser_must_not_run),
        mock.patch.object(jsonpath_ng.parser.JsonPathParser, "parse", parser_must_not_run),
    ):
        yield


def assert_same_values(found, expected):
    """Equal, and the very same objects: both sides must hand back the document's values."""
    assert found == expected
    assert len(found) == len(expected)
    assert all(a is b for a, b in zip(found, expected, strict=True))


# =========================================================================== 1. JSON paths
# --------------------------------------------------------------------------- strategies
#: Names that real claim sets use, so generated paths and documents collide often.
KNOWN_KEYS = [
    "preferred_username",
    "resource_access",
    "live-key2",
    "roles",
    "realm_access",
    "groups",
    "sub",
    "a",
    "b",
    "x-1",
    "_",
    "0",
    "1",
    "42",
]
#: A segment jsonpath-ng reads as one identifier (``where``/``wherenot`` are its keywords) ...
ID_SEGMENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,8}", fullmatch=True).filter(
    lambda s: s not in {"where", "wherenot"}
)
#: ... or as one integer written canonically (``01`` is a known disagreement, tested below).
INT_SEGMENT = st.from_regex(r"0|[1-9][0-9]{0,3}", fullmatch=True)
#: ... with a ``-`` inside, as in Keycloak client ids (``live-key2``).
DASH_SEGMENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,3}-[A-Za-z0-9_-]{0,4}", fullmatch=True)
SEGMENT = st.one_of(st.sampled_from(KNOWN_KEYS), ID_SEGMENT, DASH_SEGMENT, INT_SEGMENT)

#: A segment the dotted walker accepts but jsonpath-ng's lexer cannot read.
UNPARSABLE_SEGMENT = st.one_of(
    st.from_regex(r"[0-9]{1,3}[A-Za-z_-][A-Za-z0-9_-]{0,5}", fullmatch=True),
    st.sampled_from(["where", "wherenot"]),
)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)


def json_values(keys):
    """Nested JSON (objects, arrays, scalars) whose object keys are drawn from ``keys``."""
    return st.recursive(
        SCALARS,
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)
        ),
        max_leaves=10,
    )


@st.composite
def path_and_document(draw, segment=SEGMENT):
    """A dotted path of 1-4 segments and a JSON document that often contains it.

    Shapes: the whole path present (most often); the walk stopped part-way by a scalar, an array
    or an object without the next key; the path present but with an array in between (neither
    side may look inside arrays); an array where a numeric segment would index it (a dotted
    ``0`` is a key, never an index); or a random document that merely shares key names.
    """
    keys = draw(st.lists(segment, min_size=1, max_size=4))
    path = draw(st.sampled_from(["", "$."])) + ".".join(keys)
    doc_keys = st.one_of(st.sampled_from(keys), segment, st.text(max_size=4))
    values = json_values(doc_keys)
    shape = draw(
        st.sampled_from(["whole", "whole", "whole", "stopped", "array", "indexed", "random"])
    )
    if shape == "random":
        return path, keys, draw(values)
    if shape == "stopped":
        depth = draw(st.integers(0, len(keys) - 1))
        missing = keys[depth]
        node = draw(
            st.one_of(
                SCALARS,
                st.lists(values, max_size=3),
                st.dictionaries(doc_keys.filter(lambda k: k != missing), values, max_size=3),
            )
        )
    else:
        depth = len(keys)
        node = draw(values)
    wrap_at = draw(st.integers(0, depth - 1)) if shape == "array" and depth else None
    for level in reversed(range(depth)):
        key = keys[level]
        if shape == "indexed" and key.isdigit() and int(key) < 6:
            fillers = draw(st.lists(values, min_size=int(key), max_size=int(key)))
            node = [*fillers, node]
            continue
        siblings = draw(st.dictionaries(doc_keys, values, max_size=3))
        siblings[key] = node
        node = [siblings] if level == wrap_at else siblings
    return path, keys, node


# --------------------------------------------------------------------------- the fast path
@PROPERTY
@given(path_and_document())
def test_dotted_fast_path_gives_jsonpath_ng_answers(case):
    """The contract: plain dotted paths give the same answers as JSONPath. Compiling under a
    broken parser proves the fast path is the one being compared."""
    path, _keys, document = case
    with broken_parser():
        compiled = compile_path("user_name_json_path", path)
    assert_same_values(compiled(document), jsonpath_ng_values(path, document))


@PROPERTY
@given(path_and_document(segment=st.one_of(SEGMENT, UNPARSABLE_SEGMENT)))
def test_dotted_fast_path_walks_like_geoserver(case):
    """GeoServer's paths are a plain dot walker; names jsonpath-ng cannot lex (``2fa``, ``1-x``,
    its keywords ``where``/``wherenot``) still work as dotted paths, with the walker's answers."""
    path, keys, document = case
    with broken_parser():
        compiled = compile_path("roles_json_path", path)
    assert_same_values(compiled(document), dot_walk(keys, document))


@pytest.mark.parametrize(
    "path",
    [
        "preferred_username",
        "$.preferred_username",
        "resource_access.live-key2.roles",
        "$.resource_access.live-key2.roles",
        "resource_access.account.roles",
        "realm_access.roles",
        "x-claim_2.9._",
        "$.x-claim_2.9._",
        "0",
        "@type",
        "address",
        "email_verified",
        "groups",
        "missing",
        "resource_access.missing.roles",
        "groups.0",  # an array is not an object: no index through a dotted path
        "preferred_username.length",
        "  realm_access.roles  ",  # surrounding white space is not part of the path
    ],
)
def test_documented_style_dotted_paths_match_jsonpath_ng(path):
    """The paths users copy from GeoServer's docs, plus digits, ``-``, ``_`` and ``@`` in names,
    give jsonpath-ng's answers without ever running its parser."""
    with broken_parser():
        compiled = compile_path("roles_json_path", path)
        found = compiled(KEYCLOAK)
    assert_same_values(found, jsonpath_ng_values(path.strip(), KEYCLOAK))


@pytest.mark.parametrize(
    "path", ["a.1a", "a.2fa", "a.1-2", "a.1_2", "a.1e1", "where", "a.where", "a.wherenot"]
)
def test_names_jsonpath_ng_cannot_lex_are_walked(path):
    """jsonpath-ng refuses these, but they are valid dotted paths (GeoServer walks them); the
    fast path accepts them rather than failing the configuration."""
    with pytest.raises((JsonPathLexerError, JsonPathParserError)):
        jsonpath_ng.parse(path)
    keys = path.split(".")
    document = "found"
    for key in reversed(keys):
        document = {key: document, "other": 1}
    compiled = compile_path("roles_json_path", path)
    assert compiled(document) == dot_walk(keys, document) == ["found"]


@pytest.mark.parametrize(
    ("path", "document", "expected"),
    [
        ("a.01", {"a": {"01": "zero-one", "1": "one"}}, ["zero-one"]),
        ("$.a.00", {"a": {"00": "zero-zero", "0": "zero"}}, ["zero-zero"]),
        ("007", {"007": "bond", "7": "seven"}, ["bond"]),
    ],
)
def test_leading_zero_segment_is_the_key_as_written(path, document, expected):
    """The one documented difference from jsonpath-ng (see ``paths.py``): its lexer reads
    ``01`` as the number 1 and looks up the key ``"1"``; a dotted path names claim keys, and
    JSON keys are strings, so ``a.01`` is the key ``"01"`` as written (GeoServer's walk)."""
    assert jsonpath_ng_values(path, document) != expected  # the difference is real
    assert compile_path("roles_json_path", path)(document) == expected


# --------------------------------------------------------------------------- real JSONPath
NON_PLAIN = [
    ("$.groups[0]", ["default-roles"]),
    ("$.groups[-1]", ["offline_access"]),
    ("groups[*]", ["default-roles", "offline_access"]),
    (
        "$..roles",
        [
            ["offline_access", "uma_authorization"],
            ["GeonetworkAdministrator", "GeoserverAdministrator"],
            ["manage-account"],
        ],
    ),
    (
        "resource_access.*.roles",
        [["GeonetworkAdministrator", "GeoserverAdministrator"], ["manage-account"]],
    ),
    ("realm_access.*", [["offline_access", "uma_authorization"]]),
    (
        "$['resource_access']['live-key2'].roles",
        [["GeonetworkAdministrator", "GeoserverAdministrator"]],
    ),
    ("resource_access.'live-key2'.roles", [["GeonetworkAdministrator", "GeoserverAdministrator"]]),
    ('$."preferred_username"', ["alice@example.test"]),
    ("$", [KEYCLOAK]),
]


@pytest.mark.parametrize(("path", "expected"), NON_PLAIN)
def test_real_jsonpath_goes_to_jsonpath_ng_and_works(path, expected):
    """Indexes, wildcards, recursive descent and quoted keys are not dotted paths: they must be
    parsed by jsonpath-ng (exactly once) and answer what jsonpath-ng answers."""
    real_parse = jsonpath_ng.parser.parse
    seen = []

    def recording_parse(text):
        seen.append(text)
        return real_parse(text)

    with mock.patch.object(jsonpath_ng.parser, "parse", recording_parse):
        compiled = compile_path("roles_json_path", path)
    assert seen == [path]
    found = compiled(KEYCLOAK)
    expected_by_jsonpath_ng = jsonpath_ng_values(path, KEYCLOAK)
    # $..roles visits in jsonpath-ng's order; compare as a multiset where order is its business.
    assert sorted(map(json.dumps, found)) == sorted(map(json.dumps, expected))
    assert_same_values(found, expected_by_jsonpath_ng)


@pytest.mark.parametrize(("path", "expected"), NON_PLAIN[:6])
def test_compiled_jsonpath_is_reused_not_reparsed(path, expected):
    """Compilation happens once: evaluating a compiled path, many times, never parses again."""
    compiled = compile_path("roles_json_path", path)
    with broken_parser():
        results = [compiled(KEYCLOAK) for _ in range(3)]
    assert results == [results[0]] * 3
    assert sorted(map(json.dumps, results[0])) == sorted(map(json.dumps, expected))


def test_middleware_compiles_paths_when_built_not_per_request():
    """Both paths are parsed when the middleware is built (one parse each); requests then run
    with the parser broken, so no request pays for (or can trigger) a parse."""
    real_parse = jsonpath_ng.parser.parse
    seen = []

    def recording_parse(text):
        seen.append(text)
        return real_parse(text)

    with mock.patch.object(jsonpath_ng.parser, "parse", recording_parse):
        middleware = JwtHeadersMiddleware(
            RecordingApp(),
            user_name_header="X-Id",
            user_name_format="json",
            user_name_json_path="$.names[0]",
            roles_source="json",
            roles_json_path="$..roles",
        )
    assert sorted(seen) == ["$..roles", "$.names[0]"]
    claims = {"names": ["alice"], "a": {"roles": ["r1"]}, "b": {"roles": "r2"}}
    with broken_parser():
        for n in range(3):
            claims["n"] = n  # a fresh header value each time: no cached principal
            answer = call(middleware, {"X-Id": json.dumps(claims)})
            assert answer.status == 200, answer.body
            assert answer.principal.name == "alice"
            assert sorted(answer.principal.roles) == ["r1", "r2"]


def test_middleware_with_dotted_paths_never_imports_the_parser():
    """Plain dotted paths skip jsonpath-ng entirely, at build time and per request."""
    with broken_parser():
        answer = call(
            headers={"X-Id": json.dumps(KEYCLOAK)},
            user_name_header="X-Id",
            user_name_format="json",
            user_name_json_path="$.preferred_username",
            roles_source="json",
            roles_json_path="resource_access.live-key2.roles",
        )
    assert answer.status == 200, answer.body
    assert answer.principal.roles == ("GeonetworkAdministrator", "GeoserverAdministrator")


@pytest.mark.parametrize("path", ["$.[", "a[", "$..", "a.", ".a", "a..", "$a", "a[?(@.x)]", "'a"])
def test_unparsable_path_is_a_config_error_naming_the_option(path):
    """A path that neither the dotted walker nor jsonpath-ng can read fails at start-up."""
    with pytest.raises(ConfigError, match="roles_json_path"):
        compile_path("roles_json_path", path)


@pytest.mark.parametrize("path", ["", "   ", None])
def test_missing_path_is_a_config_error(path):
    """An empty path would match nothing on every request: refuse it at start-up instead."""
    with pytest.raises(ConfigError, match="user_name_json_path"):
        compile_path("user_name_json_path", path)


# =========================================================================== 2. user name
UNSIGNED = {"alg": "RS256", "typ": "JWT"}


def user_request(fmt, claims, path="preferred_username"):
    """One request whose user-name header carries ``claims`` as JSON or as an unchecked JWT."""
    value = json.dumps(claims) if fmt == "json" else compact_jws(UNSIGNED, claims, b"unchecked")
    return call(
        headers={"X-Id": value},
        user_name_header="X-Id",
        user_name_format=fmt,
        user_name_json_path=path,
    )


NOT_A_STRING = "does not lead to a non-empty string"

UNUSABLE_USER = [
    pytest.param({"preferred_username": 42}, "preferred_username", NOT_A_STRING, id="int"),
    pytest.param({"preferred_username": 4.2}, "preferred_username", NOT_A_STRING, id="float"),
    pytest.param({"preferred_username": True}, "preferred_username", NOT_A_STRING, id="bool"),
    pytest.param({"preferred_username": ["alice"]}, "preferred_username", NOT_A_STRING, id="list1"),
    pytest.param({"preferred_username": ["a", "b"]}, "preferred_username", NOT_A_STRING, id="list"),
    pytest.param({"preferred_username": []}, "preferred_username", NOT_A_STRING, id="empty-list"),
    pytest.param({"user": {"name": "alice"}}, "user", NOT_A_STRING, id="object"),
    pytest.param({"preferred_username": None}, "preferred_username", NOT_A_STRING, id="null"),
    pytest.param({"preferred_username": ""}, "preferred_username", NOT_A_STRING, id="empty"),
    pytest.param({"preferred_username": "  "}, "preferred_username", "white space", id="blank"),
    pytest.param(
        {"a": {"name": "alice"}, "b": {"name": "bob"}}, "$..name", "several", id="two-matches"
    ),
    pytest.param(
        {"a": {"name": "alice"}, "b": {"name": "alice"}}, "$..name", "several", id="two-equal"
    ),
    pytest.param({"groups": ["alice", "bob"]}, "groups[*]", "several", id="wildcard"),
    pytest.param({"sub": "x"}, "preferred_username", "matches nothing", id="absent"),
    pytest.param({"a": "alice"}, "a.name", "matches nothing", id="through-a-string"),
    pytest.param({"a": [{"name": "alice"}]}, "a.name", "matches nothing", id="through-an-array"),
    pytest.param({"groups": ["alice"]}, "$.groups[3]", "matches nothing", id="index-too-far"),
    pytest.param({"a": {}}, "$..name", "matches nothing", id="descent-finds-none"),
]


@pytest.mark.parametrize("fmt", ["json", "jwt"])
@pytest.mark.parametrize(("claims", "path", "reason"), UNUSABLE_USER)
def test_user_name_path_without_exactly_one_non_empty_string_is_401(fmt, claims, path, reason):
    """Issue: "The path must yield exactly one non-empty string; anything else is an unusable
    header (401)". Never the first of several, never a stringified number or list."""
    answer = user_request(fmt, claims, path)
    assert_invalid_token(
        answer, "bad_user_name" if reason == "white space" else "no_user_name", reason
    )


@pytest.mark.parametrize("fmt", ["json", "jwt"])
@pytest.mark.parametrize(
    ("claims", "path", "name"),
    [
        pytest.param({"preferred_username": "alice"}, "preferred_username", "alice", id="plain"),
        pytest.param({"preferred_username": "alice"}, "$.preferred_username", "alice", id="$."),
        pytest.param(
            {"resource_access": {"live-key2": {"user": "bob"}}},
            "resource_access.live-key2.user",
            "bob",
            id="dotted-dash",
        ),
        pytest.param({"a": {"name": "carol"}, "b": {}}, "$..name", "carol", id="one-descent"),
        pytest.param({"names": ["dave", "eve"]}, "$.names[1]", "eve", id="index"),
        pytest.param({"0": {"1": "frank"}}, "0.1", "frank", id="digit-keys"),
        pytest.param(
            {"n": "\u00dcn\u00efc\u00f8d\u00e9 \uff35ser"},
            "n",
            "\u00dcn\u00efc\u00f8d\u00e9 \uff35ser",
            id="unicode-kept",
        ),
        pytest.param({"n": "MiXeD"}, "n", "MiXeD", id="case-kept"),
        pytest.param({"n": "x"}, "n", "x", id="one-char"),
    ],
)
def test_single_non_empty_string_is_the_user_name(fmt, claims, path, name):
    """Exactly one non-empty string is the user, as written (case and Unicode kept)."""
    answer = user_request(fmt, claims, path)
    assert answer.status == 200, answer.body
    assert answer.user == name
    assert answer.principal.name == name


# =========================================================================== 3. roles
_ABSENT = object()


def json_roles(value, path="roles", **options):
    """The roles a JSON user-name header with ``roles: value`` gives (roles_source="json")."""
    claims = {"preferred_username": "alice"}
    if value is not _ABSENT:
        claims["roles"] = value
    answer = call(
        headers={"X-Id": json.dumps(claims)},
        user_name_header="X-Id",
        user_name_format="json",
        user_name_json_path="preferred_username",
        roles_source="json",
        roles_json_path=path,
        **options,
    )
    assert answer.status == 200, answer.body
    roles = answer.principal.roles
    assert isinstance(roles, tuple)
    return roles


@pytest.mark.parametrize(
    ("value", "roles"),
    [
        pytest.param("admin", ("admin",), id="string-is-one-role"),
        pytest.param("a,b", ("a,b",), id="string-not-split"),
        pytest.param(["a", "b"], ("a", "b"), id="list"),
        pytest.param(["b", "a"], ("b", "a"), id="list-order-kept"),
        pytest.param(["a", "b", "a"], ("a", "b"), id="list-duplicates-removed"),
        pytest.param(
            ["a", 1, True, None, 1.5, {"r": "x"}, ["c"], "b"], ("a", "b"), id="non-strings-ignored"
        ),
        pytest.param([1, True], (), id="geoserver-would-stringify"),
        pytest.param([], (), id="empty-list"),
        pytest.param(5, (), id="number"),
        pytest.param(True, (), id="bool"),
        pytest.param({"a": "b"}, (), id="object"),
        pytest.param(None, (), id="null"),
        pytest.param("", (), id="empty-string"),
        pytest.param(["", "a"], ("a",), id="empty-item"),
        pytest.param(_ABSENT, (), id="absent"),
    ],
)
def test_roles_from_json_path(value, roles):
    """A string is one role, a list gives its string items, anything else gives no roles (and the
    user is still accepted: roles are not the user name)."""
    assert json_roles(value) == roles


def test_roles_from_several_json_matches_are_merged_in_order():
    """A path with several matches (``$..roles``) contributes each in turn, duplicates removed."""
    claims = {
        "preferred_username": "alice",
        "realm_access": {"roles": ["a", "b"]},
        "resource_access": {"c1": {"roles": ["b", "c"]}, "c2": {"roles": "d"}, "c3": {"roles": 7}},
    }
    answer = call(
        headers={"X-Id": json.dumps(claims)},
        user_name_header="X-Id",
        user_name_format="json",
        user_name_json_path="preferred_username",
        roles_source="json",
        roles_json_path="$..roles",
    )
    expected = []
    for match in jsonpath_ng_values("$..roles", claims):
        for role in [match] if isinstance(match, str) else match if isinstance(match, list) else []:
            if role not in expected:
                expected.append(role)
    assert answer.principal.roles == tuple(expected)
    assert sorted(answer.principal.roles) == ["a", "b", "c", "d"]


def header_roles(value, **options):
    """The roles a plain roles header gives (roles_source="header", from the loopback proxy)."""
    headers = {"X-User": "alice"}
    if value is not None:
        headers["X-Roles"] = value
    answer = call(
        headers=headers,
        user_name_header="X-User",
        roles_source="header",
        roles_header="X-Roles",
        **options,
    )
    assert answer.status == 200, answer.body
    return answer.principal.roles


@pytest.mark.parametrize(
    ("value", "delimiter", "roles"),
    [
        ("a,b", None, ("a", "b")),
        (" a , b ,, c , ", None, ("a", "b", "c")),
        ("a", None, ("a",)),
        ("a;b", None, ("a;b",)),
        ("a,b,a", None, ("a", "b")),
        (",, ,", None, ()),
        ("ROLE X,g1:Editor", None, ("ROLE X", "g1:Editor")),
        ("a; b;;c ;", ";", ("a", "b", "c")),
        ("a,b;c", ";", ("a,b", "c")),
        ("a||b|| ||c", "||", ("a", "b", "c")),
        (None, None, ()),
    ],
)
def test_roles_from_header_split_trimmed_empties_dropped(value, delimiter, roles):
    """mod_auth_openidc joins arrays with ``,`` (the default); GeoServer's header source uses
    ``;``. Items are trimmed, empties dropped, duplicates removed, inner spaces kept."""
    options = {} if delimiter is None else {"roles_header_delimiter": delimiter}
    assert header_roles(value, **options) == roles


# =========================================================================== 4. role map
@pytest.mark.parametrize(
    ("text", "mapping"),
    [
        pytest.param(
            "Ext1=Int1;Ext1=Int2;Ext2=Int3",
            {"Ext1": ("Int1", "Int2"), "Ext2": ("Int3",)},
            id="geoserver-doc-example",
        ),
        pytest.param("Ext1=Int2;Ext1=Int1", {"Ext1": ("Int2", "Int1")}, id="order-as-written"),
        pytest.param(
            "  Ext1 =  Int1 ;\tExt2= Int3  ;Ext1=\tInt2",
            {"Ext1": ("Int1", "Int2"), "Ext2": ("Int3",)},
            id="white-space-trimmed",
        ),
        pytest.param("a=b;;c=d;", {"a": ("b",), "c": ("d",)}, id="geoserver-empty-entries"),
        pytest.param("a=b;", {"a": ("b",)}, id="trailing-semicolon"),
        pytest.param(";a=b", {"a": ("b",)}, id="leading-semicolon"),
        pytest.param("a=b; ;\t;", {"a": ("b",)}, id="blank-entries"),
        pytest.param("", {}, id="empty"),
        pytest.param(" ; ", {}, id="only-separators"),
        pytest.param("A=B;A=B", {"A": ("B",)}, id="repeated-entry-once"),
        pytest.param(
            "g1:Editor=ROLE_EDITOR;ROLE X=Y.Z;é=ü",
            {"g1:Editor": ("ROLE_EDITOR",), "ROLE X": ("Y.Z",), "é": ("ü",)},
            id="other-characters-kept",
        ),
        pytest.param("a=A;A=a", {"a": ("A",), "A": ("a",)}, id="case-sensitive"),
    ],
)
def test_parse_role_map(text, mapping):
    """Split on ``;``, then ``=``; names trimmed and otherwise kept (GeoServer strips ``:``, so
    group-scoped roles could not be mapped); empty entries ignored; order as written."""
    parsed = parse_role_map(text)
    assert dict(parsed) == mapping
    assert list(parsed) == list(mapping)


@pytest.mark.parametrize(
    ("external", "text", "only_listed", "roles"),
    [
        pytest.param(
            ["Ext1"], "Ext1=Int1;Ext1=Int2;Ext2=Int3", False, ("Int1", "Int2"), id="one-to-many"
        ),
        pytest.param(
            ["Ext1", "Ext2"],
            "Ext1=Int1;Ext1=Int2;Ext2=Int3",
            True,
            ("Int1", "Int2", "Int3"),
            id="doc-example",
        ),
        pytest.param(
            ["Ext2", "Ext1"],
            "Ext1=Int1;Ext2=Int3",
            False,
            ("Int3", "Int1"),
            id="external-order-wins",
        ),
        pytest.param(
            ["Ext1", "Other"], "Ext1=Int1", False, ("Int1", "Other"), id="unlisted-passes"
        ),
        pytest.param(["Other", "Ext1"], "Ext1=Int1", True, ("Int1",), id="unlisted-dropped"),
        pytest.param(["Other"], "", False, ("Other",), id="no-map-passes"),
        pytest.param(["Other"], "", True, (), id="no-map-only-listed"),
        pytest.param(["A", "B"], "A=X;B=X", False, ("X",), id="two-externals-one-internal"),
        pytest.param(
            ["A", "B"], "A=X;A=Y;B=Y;B=Z", True, ("X", "Y", "Z"), id="overlapping-targets"
        ),
        pytest.param(["A", "X"], "A=X", False, ("X",), id="unlisted-equal-to-target"),
        pytest.param(["X", "A"], "A=X", False, ("X",), id="target-equal-to-earlier-unlisted"),
        pytest.param(["A", "A"], "A=X", False, ("X",), id="repeated-external"),
        pytest.param(["A"], "A=B;B=C", False, ("B",), id="not-transitive"),
        pytest.param(["ext1"], "Ext1=Int1", False, ("ext1",), id="lookup-case-sensitive"),
        pytest.param(["ext1"], "Ext1=Int1", True, (), id="case-mismatch-only-listed"),
        pytest.param(
            ["g1:Editor"], "g1:Editor=ROLE_EDITOR", True, ("ROLE_EDITOR",), id="group-scoped"
        ),
        pytest.param([], "A=X", False, (), id="no-roles"),
    ],
)
def test_convert_roles(external, text, only_listed, roles):
    """A mapped role is replaced by its targets (not kept), unlisted roles pass unless
    only_external_listed_roles; result in first-seen order without duplicates."""
    assert convert_roles(external, parse_role_map(text), only_listed) == roles


@pytest.mark.parametrize(
    ("header", "converter", "only_listed", "roles"),
    [
        ("Ext1, Other", "Ext1=Int1;Ext1=Int2;Ext2=Int3", False, ("Int1", "Int2", "Other")),
        ("Ext1, Other,Ext2", "Ext1=Int1;Ext1=Int2;Ext2=Int3", True, ("Int1", "Int2", "Int3")),
        ("A,B", " A = X ; B = X ; ", False, ("X",)),
    ],
)
def test_role_converter_applies_to_header_roles(header, converter, only_listed, roles):
    """role_converter applies to roles from every source, not only JSON/JWT as in GeoServer."""
    assert (
        header_roles(header, role_converter=converter, only_external_listed_roles=only_listed)
        == roles
    )


def test_role_converter_applies_to_json_roles_in_order_written():
    """Each external role, in the order the token lists them, expands to its targets in the
    order the map names them; unlisted roles keep their place."""
    assert json_roles(
        ["Ext2", "Other", "Ext1"],
        role_converter="Ext1=Int1;Ext1=Int2;Ext2=Int3",
        only_external_listed_roles=False,
    ) == ("Int3", "Other", "Int1", "Int2")


BAD_ENTRIES = ["A=B=C", "A=", "=B", "A", "=", " = ", "A==B", "a=b=c", "c=", "d", "A = ", " = B"]


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_malformed_role_map_entry_is_a_config_error_naming_it(entry):
    """GeoServer silently skips ``c=``, ``d``, ``a=b=c``; a typo there quietly changes access, so
    we refuse it and name the entry (trimmed) and the option."""
    for text in (entry, f"X=Y;{entry};Z=W", f"{entry};"):
        with pytest.raises(ConfigError) as raised:
            parse_role_map(text)
        message = str(raised.value)
        assert repr(entry.strip()) in message
        assert "role_converter" in message
        assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("entry", ["A=B=C", "A=", "=B", "A"])
def test_malformed_role_map_fails_when_the_config_is_built(entry):
    """The check runs at start-up, through the public config and middleware."""
    with pytest.raises(ConfigError, match=re.escape(repr(entry))):
        JwtHeadersConfig(user_name_header="X-User", role_converter=f"Good=Role;{entry}")
    with pytest.raises(ConfigError, match=re.escape(repr(entry))):
        JwtHeadersMiddleware(RecordingApp(), user_name_header="X-User", role_converter=entry)


# --------------------------------------------------------------------------- property
ROLE_NAMES = st.one_of(
    st.sampled_from(["A", "B", "C", "Ext1", "Int1", "ROLE_ADMIN", "g1:Editor", "x y"]),
    st.text(
        alphabet=st.characters(blacklist_characters=";=", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=6,
    ).filter(lambda s: s.strip() == s and s),
)
PADDING = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def role_map_case(draw):
    """A role map text (random padding, empty entries, trailing ``;``), its pairs, and a list
    of external roles that often names the map's left- and right-hand sides."""
    pairs = draw(st.lists(st.tuples(ROLE_NAMES, ROLE_NAMES), max_size=6))
    entries = [
        f"{draw(PADDING)}{ext}{draw(PADDING)}={draw(PADDING)}{int_}{draw(PADDING)}"
        for ext, int_ in pairs
    ]
    for _ in range(draw(st.integers(0, 2))):
        entries.insert(draw(st.integers(0, len(entries))), draw(PADDING))
    text = ";".join(entries) + draw(st.sampled_from(["", ";"]))
    names = [name for pair in pairs for name in pair]
    pool = st.one_of(st.sampled_from(names), ROLE_NAMES) if names else ROLE_NAMES
    external = draw(st.lists(pool, max_size=8))
    return text, pairs, external


@PROPERTY
@given(role_map_case(), st.booleans())
def test_role_map_property(case, only_listed):
    """Whatever the map and roles: no duplicates; with only_external_listed_roles only targets
    (right-hand sides); otherwise every unlisted role survives; and the order is first-seen."""
    text, pairs, external = case
    role_map = parse_role_map(text)
    targets = {int_ for _, int_ in pairs}
    listed = {ext for ext, _ in pairs}
    assert set(role_map) == listed
    for ext in listed:
        assert list(role_map[ext]) == list(dict.fromkeys(i for e, i in pairs if e == ext))

    roles = convert_roles(external, role_map, only_listed)
    assert isinstance(roles, tuple)
    assert len(roles) == len(set(roles))
    if only_listed:
        assert set(roles) <= targets
    else:
        assert {r for r in external if r not in listed} <= set(roles)
        assert set(roles) <= targets | set(external)
    model = []
    for role in external:
        for out in role_map.get(role, () if only_listed else (role,)):
            if out not in model:
                model.append(out)
    assert roles == tuple(model)

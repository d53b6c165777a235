"""The role converter: ``Ext1=Int1;Ext1=Int2;Ext2=Int3``, parsed once at start-up.

GeoServer silently skips malformed entries and strips characters it does not like; a typo in a
role map then quietly grants or withholds access. We refuse any entry that is not exactly
``name=name`` and keep names as written (only the surrounding white space is trimmed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import ConfigError


def parse_role_map(text: str) -> Mapping[str, tuple[str, ...]]:
    """Map each external role to its internal roles, in the order written."""
    mapping: dict[str, list[str]] = {}
    for raw in text.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split("=")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ConfigError(
                f"role_converter: entry {entry!r} is not 'External=Internal'; write entries as "
                "'Ext1=Int1;Ext1=Int2;Ext2=Int3' (one '=' per entry, names on both sides)"
            )
        external, internal = parts[0].strip(), parts[1].strip()
        targets = mapping.setdefault(external, [])
        if internal not in targets:
            targets.append(internal)
    return {external: tuple(internals) for external, internals in mapping.items()}


def convert_roles(
    external: Iterable[str],
    role_map: Mapping[str, tuple[str, ...]],
    only_listed: bool,
) -> tuple[str, ...]:
    """Apply the role map; first-seen order, no duplicates."""
    seen: dict[str, None] = {}
    for role in external:
        targets = role_map.get(role)
        if targets is not None:
            for target in targets:
                seen[target] = None
        elif not only_listed:
            seen[role] = None
    return tuple(seen)

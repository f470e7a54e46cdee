"""Key prefixes: the rules ``spec.path`` and ``spec.prefixes`` follow, and what they resolve to.

Object keys are built as ``{prefix}/{id}_<file>``. Leading and trailing slashes are
stripped (users write both ``recordings/`` and ``/recordings``), but anything that would
make two spellings land on different keys, or escape the prefix, is refused: ``.`` and
``..`` segments (HTTP clients normalise them away in URL paths), empty segments (``a//b``),
backslashes (Windows-style separators some tools translate) and control characters. The
CRD's CEL rules say the same; the messages match theirs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Protocol

# The one probe object WriteOnly validation writes under each prefix, overwritten each time
# (a new name per validation would pile up, one object per prefix per hour, forever).
PROBE_OBJECT_NAME = ".write_probe_callstorage"


def probe_key(prefix: str) -> str:
    """The key WriteOnly validation writes its probe to under ``prefix`` (the bucket root
    for ""): always the same, so each validation overwrites the last one's probe instead of
    adding one. The one home of this key: validation writes it, the grants name it."""
    prefix = prefix.strip("/")
    return f"{prefix}/{PROBE_OBJECT_NAME}" if prefix else PROBE_OBJECT_NAME

CATEGORIES: tuple[str, ...] = ("audio", "video", "transcript", "metadata")
MAX_PREFIX_LENGTH = 512

DOT_SEGMENT_MESSAGE = "must not contain '.' or '..' segments"
EMPTY_SEGMENT_MESSAGE = "must not contain empty segments (//)"
BACKSLASH_MESSAGE = "must not contain backslashes; separate segments with /"
CONTROL_MESSAGE = "must not contain control characters"


def prefix_problems(value: str) -> list[str]:
    """Every rule ``value`` breaks (the CEL rules on ``path``), in the CRD's order."""
    problems: list[str] = []
    segments = value.strip("/").split("/")
    if any(segment in (".", "..") for segment in segments):
        problems.append(DOT_SEGMENT_MESSAGE)
    # Only inner empty segments count: outer slashes are stripped, and "" is the root.
    if value.strip("/") and "" in segments:
        problems.append(EMPTY_SEGMENT_MESSAGE)
    if "\\" in value:
        problems.append(BACKSLASH_MESSAGE)
    if any(unicodedata.category(char) == "Cc" for char in value):
        problems.append(CONTROL_MESSAGE)
    return problems


def normalize_prefix(value: str) -> str:
    """``value`` without leading/trailing ``/``; ValueError if it breaks a prefix rule."""
    problems = prefix_problems(value)
    if len(value) > MAX_PREFIX_LENGTH:
        problems.append(f"may not be more than {MAX_PREFIX_LENGTH} characters")
    if problems:
        raise ValueError("; ".join(problems))
    return value.strip("/")


class PrefixOverrides(Protocol):
    """``spec.prefixes``: category -> value as written (None when not overridden)."""

    def as_dict(self) -> Mapping[str, str | None]: ...


class PrefixedSpec(Protocol):
    """What prefixes are derived from (an ExternalStorageSpec), without importing it."""

    @property
    def path(self) -> str | None: ...

    @property
    def prefixes(self) -> PrefixOverrides | None: ...


def effective_prefixes(spec: PrefixedSpec) -> dict[str, str]:
    """Category -> normalised prefix: ``prefixes[category]``, else ``path``, else ``""``.

    An explicit empty override means the bucket root even when ``path`` is set.
    """
    base = normalize_prefix(spec.path) if spec.path is not None else ""
    overrides: Mapping[str, str | None] = (
        spec.prefixes.as_dict() if spec.prefixes is not None else {}
    )
    result: dict[str, str] = {}
    for category in CATEGORIES:
        override = overrides.get(category)
        result[category] = normalize_prefix(override) if override is not None else base
    return result


"""Where each file of a call goes inside a storage (docs/api.md "File layout", MeetStream 4).

Objects sit directly in the effective prefix of their category, with the call (bot) id as a
file-name prefix, so many calls share one folder without a bare ``{id}/`` folder:
``{prefix}/{id}_audio.wav``. Multi-file collections (``screenshots/``,
``transcription/<provider>/<id>/``) keep one ``{id}_<collection>/`` folder. On a storage
shared by tenants (the platform storage) the tenant's namespace is a folder of its own:
``{prefix}/{namespace}/{id}_audio.wav``. The functions here are pure: the uploader calls
them once per file and records the key it got, which is what pins a call's media to the
location used at upload time.

Keys are unambiguous: a call id never holds ``_`` (nor ``/``), so the first ``_`` of a
key's last part ends the call id, and two (call, file) pairs never share a key; a
namespace (a DNS label) holds neither, so it cannot pass for a call's file either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

AUDIO: Final = "audio"
VIDEO: Final = "video"
TRANSCRIPT: Final = "transcript"
METADATA: Final = "metadata"

#: Longest file a recording is written as (seed 001: longer recordings are split).
MAX_SEGMENT_SECONDS: Final = 2 * 60 * 60

# Exact file names from the seed's table, then the collections (folders) it names.
_FILES: Final[Mapping[str, str]] = {
    "audio.wav": AUDIO,
    "audio.mp3": AUDIO,
    "meeting_recording.mp4": VIDEO,
    "processed_transcript.json": TRANSCRIPT,
    "raw_transcript.json": TRANSCRIPT,
    "manifest.json": METADATA,
    "participants.json": METADATA,
    "chats.json": METADATA,
}
_COLLECTIONS: Final[Mapping[str, str]] = {
    "transcription": TRANSCRIPT,
    "screenshots": METADATA,
}
# Segments of a split recording are named ``<stem>_part<N><ext>`` (see segment_file_name).
_PART = re.compile(r"^(?P<stem>.+)_part\d{3,}(?P<ext>\.[^./]+)$")
# C0, DEL and C1 controls, and the Unicode bidi marks and overrides (Trojan Source): a key
# holding them reads differently from what it is, in a console, a log or a bucket listing.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: Longest call id (characters; a UUID has 36).
MAX_CALL_ID_LENGTH: Final = 128
# ASCII letters, digits, '-' and '.', starting with a letter or digit. No '_': it separates
# the call id from the file name in keys (``abc_meeting`` + ``recording.mp4`` would be
# ``abc``'s ``meeting_recording.mp4``); no '/': one path segment.
CALL_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
# A tenant folder on a shared storage: a namespace name (RFC 1123 label).
_TENANT = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def category_of(file_name: str) -> str:
    """The artifact category (``audio``, ``video``, ``transcript``, ``metadata``) of a file.

    ``file_name`` is relative to the call, as in the seed's table: ``audio.wav``,
    ``meeting_recording.mp4``, ``transcription/deepgram/x/raw_transcript.json``,
    ``screenshots/9f2b.png``. Segments of a split recording (``audio_part002.wav``) belong
    to the category of the whole. Raises ``ValueError`` for a file the layout does not know.
    """
    parts = _split_relative(file_name, "file name")
    if len(parts) > 1:
        category = _COLLECTIONS.get(parts[0])
        if category is None:
            raise ValueError(
                f"unknown collection {parts[0]!r} in {file_name!r}; "
                f"known: {', '.join(sorted(_COLLECTIONS))}"
            )
        return category
    name = parts[0]
    match = _PART.match(name)
    if match:
        name = match["stem"] + match["ext"]
    category = _FILES.get(name)
    if category is None:
        raise ValueError(
            f"unknown file {file_name!r}; pass its category explicitly "
            f"(known files: {', '.join(sorted(_FILES))})"
        )
    return category


def object_key(
    prefixes: Mapping[str, str], category: str | None, call_id: str, file_name: str,
    tenant: str | None = None,
) -> str:
    """The object key of ``file_name`` of call ``call_id``: ``{prefix}/{call_id}_{file_name}``,
    or ``{prefix}/{tenant}/{call_id}_{file_name}`` with a ``tenant`` (the namespace whose
    call it is, on a storage several tenants share).

    ``prefixes`` maps each category to its effective prefix (``status.effectivePrefixes``
    or ``ResolvedStorage.prefixes``); an empty prefix means the bucket root. ``category``
    None infers it from the file name (``category_of``); give it for files the table does
    not list. A ``file_name`` inside a collection (``screenshots/a.png``) yields
    ``{prefix}/{call_id}_screenshots/a.png``. Raises ``ValueError`` for a call id outside
    ``CALL_ID`` or longer than ``MAX_CALL_ID_LENGTH``.
    """
    check_call_id(call_id)
    if tenant is not None and not _TENANT.fullmatch(tenant):
        raise ValueError(f"invalid tenant folder {tenant!r}: must be a namespace name")
    parts = _split_relative(file_name, "file name")
    if category is None:
        category = category_of(file_name)
    try:
        prefix = prefixes[category]
    except KeyError:
        raise ValueError(
            f"no prefix for category {category!r}; have: {', '.join(sorted(prefixes))}"
        ) from None
    prefix = prefix.strip("/")
    if prefix:
        _split_relative(prefix, "prefix")
    name = f"{call_id}_{'/'.join(parts)}"
    folder = "/".join(p for p in (prefix, tenant) if p)
    return f"{folder}/{name}" if folder else name


def split_recording(
    duration_seconds: float, max_segment_seconds: float = MAX_SEGMENT_SECONDS
) -> list[tuple[float, float]]:
    """Cut a recording into ``(start, end)`` second ranges of at most ``max_segment_seconds``.

    Segments are consecutive, cover ``[0, duration]`` exactly, and only the last may be
    shorter. A recording of exactly the maximum is one file; an empty one is one empty
    segment ``(0, 0)``, because a stopped recording still produces a file.
    """
    if not math.isfinite(duration_seconds) or duration_seconds < 0:
        raise ValueError(f"duration must be a finite number >= 0, got {duration_seconds!r}")
    if not math.isfinite(max_segment_seconds) or max_segment_seconds <= 0:
        raise ValueError(f"segment length must be > 0, got {max_segment_seconds!r}")
    if duration_seconds == 0:
        return [(0, 0)]
    count = max(1, math.ceil(duration_seconds / max_segment_seconds))
    # Division rounds: fix the count so that no segment is longer than the maximum and
    # the last one is not empty.
    while count * max_segment_seconds < duration_seconds:
        count += 1
    while count > 1 and (count - 1) * max_segment_seconds >= duration_seconds:
        count -= 1
    # Multiply rather than accumulate, so float error never adds up over many segments.
    bounds = [min(i * max_segment_seconds, duration_seconds) for i in range(count)]
    return [(start, bounds[i + 1] if i + 1 < count else duration_seconds)
            for i, start in enumerate(bounds)]


def segment_file_name(file_name: str, index: int, count: int) -> str:
    """The name of segment ``index`` (0-based) of ``count``: unchanged when there is one,
    else ``<stem>_part<NNN><ext>`` numbered from 1 (``meeting_recording_part002.mp4``)."""
    if not 0 <= index < count:
        raise ValueError(f"segment index {index} out of range for {count} segments")
    if count == 1:
        return file_name
    head, dot, ext = file_name.rpartition(".")
    if not dot or "/" in ext:
        return f"{file_name}_part{index + 1:03d}"
    return f"{head}_part{index + 1:03d}.{ext}"


def _split_relative(value: str, what: str) -> list[str]:
    """Split a relative key into segments, refusing anything that could escape its prefix."""
    if not value or value.startswith("/") or "\\" in value or _CONTROL.search(value):
        raise ValueError(f"invalid {what} {value!r}: must be a relative path without "
                         "backslashes or control characters")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid {what} {value!r}: empty, '.' or '..' segment")
    return parts


def check_call_id(call_id: str) -> None:
    """Refuse a call id that is empty, longer than ``MAX_CALL_ID_LENGTH`` or not made of
    ASCII letters, digits, ``-`` and ``.`` (starting with a letter or digit)."""
    if len(call_id) > MAX_CALL_ID_LENGTH:
        raise ValueError(f"invalid call id {call_id[:40]!r}...: longer than "
                         f"{MAX_CALL_ID_LENGTH} characters")
    if not CALL_ID.fullmatch(call_id):
        raise ValueError(f"invalid call id {call_id!r}: use 1 to {MAX_CALL_ID_LENGTH} ASCII "
                         "letters, digits, '-' and '.', starting with a letter or digit "
                         "('_' separates the call id from the file name in keys)")

"""File layout: object keys, file categories, recording segments (docs/api.md "File layout")."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from callstorage import layout
from callstorage.api import CATEGORIES

PREFIXES = {"audio": "recordings/audio", "video": "recordings/video",
            "transcript": "transcripts", "metadata": "metadata"}


def test_categories_are_the_apis() -> None:
    assert {layout.AUDIO, layout.VIDEO, layout.TRANSCRIPT, layout.METADATA} == set(CATEGORIES)


@pytest.mark.parametrize(("file_name", "category"), [
    ("audio.wav", "audio"),
    ("audio.mp3", "audio"),
    ("meeting_recording.mp4", "video"),
    ("processed_transcript.json", "transcript"),
    ("transcription/deepgram/x1/raw_transcript.json", "transcript"),
    ("transcription/deepgram/x1/processed_transcript.json", "transcript"),
    ("manifest.json", "metadata"),
    ("participants.json", "metadata"),
    ("chats.json", "metadata"),
    ("screenshots/9f2b.png", "metadata"),
    ("screenshots/9f2b.json", "metadata"),
    ("meeting_recording_part002.mp4", "video"),
    ("audio_part010.wav", "audio"),
])
def test_category_of_known_files(file_name: str, category: str) -> None:
    assert layout.category_of(file_name) == category


@pytest.mark.parametrize("file_name", [
    "notes.txt", "videos/a.mp4", "audio.flac", "", "/audio.wav", "screenshots//a.png",
    "screenshots/../audio.wav", "a\\b.png", "audio.wav\n",
])
def test_category_of_unknown_or_unsafe_files_is_an_error(file_name: str) -> None:
    with pytest.raises(ValueError, match=r"unknown|invalid"):
        layout.category_of(file_name)


@pytest.mark.parametrize(("file_name", "key"), [
    # the seed's example, per-category prefixes
    ("audio.wav", "recordings/audio/abc123_audio.wav"),
    ("meeting_recording.mp4", "recordings/video/abc123_meeting_recording.mp4"),
    ("transcription/deepgram/x1/processed_transcript.json",
     "transcripts/abc123_transcription/deepgram/x1/processed_transcript.json"),
    ("manifest.json", "metadata/abc123_manifest.json"),
    ("screenshots/9f2b.png", "metadata/abc123_screenshots/9f2b.png"),
])
def test_object_key_follows_the_seed_layout(file_name: str, key: str) -> None:
    assert layout.object_key(PREFIXES, None, "abc123", file_name) == key


def test_object_key_with_one_prefix_for_all_categories() -> None:
    prefixes = dict.fromkeys(CATEGORIES, "meetstream")
    assert layout.object_key(prefixes, None, "def456", "audio.wav") == "meetstream/def456_audio.wav"


def test_object_key_at_the_bucket_root_has_no_leading_slash() -> None:
    prefixes = dict.fromkeys(CATEGORIES, "")
    assert layout.object_key(prefixes, None, "abc", "manifest.json") == "abc_manifest.json"


def test_object_key_tolerates_slashes_around_a_prefix() -> None:
    assert layout.object_key({"audio": "/rec/"}, "audio", "a", "audio.wav") == "rec/a_audio.wav"


def test_explicit_category_routes_unknown_files() -> None:
    assert layout.object_key(PREFIXES, "video", "abc", "recording.webm") == \
        "recordings/video/abc_recording.webm"


@pytest.mark.parametrize("call_id", [
    "", "a/b", "..", ".", "a\\b", "a\x00b",
    "a" * 129,  # longer than MAX_CALL_ID_LENGTH
    "abc_meeting",  # '_' ends the call id in a key
    "a\x85b", "a\x9bb",  # C1 controls (NEL, CSI)
    "a\u202eb", "a\u2066b", "a\u200fb", "a\u061cb",  # bidi override, isolate, marks
    "caf\u00e9", "a b", "a:b", "-a", ".a",
])
def test_object_key_refuses_call_ids_outside_the_allowed_set(call_id: str) -> None:
    with pytest.raises(ValueError, match="call id"):
        layout.object_key(PREFIXES, None, call_id, "audio.wav")


@pytest.mark.parametrize("call_id", [
    "a", "0", "a" * 128, "9f2b7c1e-3d4a-4b5c-8d6e-7f8091a2b3c4",
    "Call-2026.01.02", "abc..x",
])
def test_object_key_accepts_call_ids_of_the_allowed_set(call_id: str) -> None:
    assert layout.object_key(PREFIXES, None, call_id, "audio.wav") == \
        f"recordings/audio/{call_id}_audio.wav"


def test_a_call_id_and_an_explicit_category_cannot_make_another_calls_key() -> None:
    """``abc_meeting`` + ``recording.mp4`` (category video) was ``abc``'s
    ``meeting_recording.mp4``."""
    theirs = layout.object_key(PREFIXES, None, "abc", "meeting_recording.mp4")
    assert theirs == "recordings/video/abc_meeting_recording.mp4"
    with pytest.raises(ValueError, match="call id"):
        layout.object_key(PREFIXES, "video", "abc_meeting", "recording.mp4")


def test_a_tenant_folder_goes_between_the_prefix_and_the_call() -> None:
    assert layout.object_key(PREFIXES, None, "abc", "audio.wav", tenant="app-1") == \
        "recordings/audio/app-1/abc_audio.wav"
    assert layout.object_key(dict.fromkeys(CATEGORIES, ""), None, "abc", "audio.wav",
                             tenant="app-1") == "app-1/abc_audio.wav"
    for bad in ("", "App", "a/b", "a_b", "-a"):
        with pytest.raises(ValueError, match="tenant"):
            layout.object_key(PREFIXES, None, "abc", "audio.wav", tenant=bad)


# Call ids as callers write them (old rules: '_' allowed), files of the layout and free
# names given with a category, tenants or none; all with one prefix for every category.
_ANY_CALL_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,8}", fullmatch=True)
_FILE = st.one_of(
    st.sampled_from(["audio.wav", "meeting_recording.mp4", "meeting_recording_part002.mp4",
                     "raw_transcript.json", "processed_transcript.json", "chats.json",
                     "screenshots/a.png", "transcription/d/x/raw_transcript.json"]),
    st.from_regex(r"[A-Za-z0-9_-]{1,8}(\.[a-z0-9]{1,3})?(/[a-z0-9_]{1,4})?", fullmatch=True))
_TENANT = st.one_of(st.none(), st.sampled_from(["app", "app-1", "a"]))
_ONE_PREFIX = dict.fromkeys(CATEGORIES, "calls")


def _key_or_none(call_id: str, file_name: str, tenant: str | None) -> str | None:
    try:
        if tenant is None:
            return layout.object_key(_ONE_PREFIX, "audio", call_id, file_name)
        return layout.object_key(_ONE_PREFIX, "audio", call_id, file_name, tenant=tenant)
    except ValueError:
        return None  # refused: it can collide with nothing


@example(("abc_meeting", "recording.mp4", None), ("abc", "meeting_recording.mp4", None))
@given(st.tuples(_ANY_CALL_ID, _FILE, _TENANT), st.tuples(_ANY_CALL_ID, _FILE, _TENANT))
def test_two_different_calls_or_files_never_share_a_key(
        one: tuple[str, str, str | None], other: tuple[str, str, str | None]) -> None:
    key_one, key_other = _key_or_none(*one), _key_or_none(*other)
    if key_one is not None and key_other is not None and one != other:
        assert key_one != key_other


def test_object_key_needs_a_prefix_for_the_category() -> None:
    with pytest.raises(ValueError, match="no prefix for category 'audio'"):
        layout.object_key({"video": "v"}, None, "abc", "audio.wav")


def test_object_key_refuses_unsafe_prefixes() -> None:
    with pytest.raises(ValueError, match="invalid prefix"):
        layout.object_key({"audio": "a/../b"}, None, "abc", "audio.wav")


@given(call_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,20}", fullmatch=True),
       category=st.sampled_from(CATEGORIES))
def test_keys_always_start_with_their_prefix_and_hold_the_call_id(
        call_id: str, category: str) -> None:
    file_name = {"audio": "audio.wav", "video": "meeting_recording.mp4",
                 "transcript": "processed_transcript.json", "metadata": "chats.json"}[category]
    key = layout.object_key(PREFIXES, None, call_id, file_name)
    assert key.startswith(PREFIXES[category] + "/" + call_id + "_")
    assert ".." not in key.split("/")
    assert "//" not in key


# --- splitting long recordings -------------------------------------------------------------

TWO_HOURS = 7200


@pytest.mark.parametrize(("duration", "segments"), [
    (0, [(0, 0)]),
    (1, [(0, 1)]),
    (TWO_HOURS, [(0, TWO_HOURS)]),
    (TWO_HOURS + 1, [(0, TWO_HOURS), (TWO_HOURS, TWO_HOURS + 1)]),
    (5 * 3600, [(0, 7200), (7200, 14400), (14400, 18000)]),
    (3 * TWO_HOURS, [(0, 7200), (7200, 14400), (14400, 21600)]),
    (7200.5, [(0, 7200), (7200, 7200.5)]),
])
def test_split_recording(duration: float, segments: list[tuple[float, float]]) -> None:
    assert layout.split_recording(duration) == segments


@pytest.mark.parametrize("duration", [-1, math.nan, math.inf])
def test_split_recording_refuses_impossible_durations(duration: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        layout.split_recording(duration)


@given(st.floats(min_value=0, max_value=10 * 24 * 3600, allow_nan=False))
def test_segments_cover_the_recording_and_are_at_most_two_hours(duration: float) -> None:
    segments = layout.split_recording(duration)
    assert segments[0][0] == 0
    assert segments[-1][1] == duration
    for (_, end), (start, _) in itertools.pairwise(segments):
        assert end == start
    assert all(0 <= end - start <= TWO_HOURS for start, end in segments)
    assert all(end - start > 0 for start, end in segments[:-1]) or duration == 0
    assert len(segments) == max(1, math.ceil(duration / TWO_HOURS))


def test_segment_file_names() -> None:
    assert layout.segment_file_name("meeting_recording.mp4", 0, 1) == "meeting_recording.mp4"
    names = [layout.segment_file_name("meeting_recording.mp4", i, 3) for i in range(3)]
    assert names == ["meeting_recording_part001.mp4", "meeting_recording_part002.mp4",
                     "meeting_recording_part003.mp4"]
    assert all(layout.category_of(name) == "video" for name in names)
    with pytest.raises(ValueError, match="out of range"):
        layout.segment_file_name("audio.wav", 3, 3)

"""Prefix rules and normalisation, and the effective prefix of each category."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from callstorage.api import CATEGORIES, effective_prefixes, normalize_prefix
from callstorage.api.prefixes import prefix_problems
from callstorage.storagespec import ExternalStorageSpec


def s3_spec(**fields: object) -> ExternalStorageSpec:
    return ExternalStorageSpec.model_validate(
        {"storageType": "s3", "bucket": "recordings", "s3": {"region": "us-east-1"}, **fields})


@pytest.mark.parametrize(("raw", "normalised"), [
    ("", ""),
    ("/", ""),
    ("///", ""),
    ("recordings", "recordings"),
    ("recordings/", "recordings"),
    ("/recordings/meetstream/", "recordings/meetstream"),
    ("//recordings//", "recordings"),
    ("a/.hidden/b", "a/.hidden/b"),
    ("a/.../b", "a/.../b"),
    ("enregistrements/réunions", "enregistrements/réunions"),
])
def test_normalize_accepts(raw: str, normalised: str) -> None:
    assert normalize_prefix(raw) == normalised


@pytest.mark.parametrize(("raw", "message"), [
    ("..", "'.' or '..' segments"),
    ("a/../b", "'.' or '..' segments"),
    ("/../a", "'.' or '..' segments"),
    ("a/..", "'.' or '..' segments"),
    ("./a", "'.' or '..' segments"),
    ("a/./b", "'.' or '..' segments"),
    ("a//b", "empty segments"),
    ("/a//b/", "empty segments"),
    ("a\\b", "backslashes"),
    ("a\x00b", "control characters"),
    ("a\nb", "control characters"),
    ("a\x7f", "control characters"),
    ("a\x85b", "control characters"),  # C1 controls count too
    ("p" * 513, "512"),
])
def test_normalize_rejects(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_prefix(raw)


def test_every_problem_is_reported() -> None:
    assert prefix_problems("a//../b\\\x01") == [
        "must not contain '.' or '..' segments",
        "must not contain empty segments (//)",
        "must not contain backslashes; separate segments with /",
        "must not contain control characters",
    ]


_SEGMENT_CHARS = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/\\")


@given(st.text(st.sampled_from("ab./\\\x00\x1f\x7f é") | _SEGMENT_CHARS, max_size=40))
@example("..")
@example("/a//b/")
@example("a/./")
def test_normalised_prefixes_are_clean(raw: str) -> None:
    """Whatever comes in, what comes out has no '.'/'..'/empty segment and no outer '/'."""
    try:
        result = normalize_prefix(raw)
    except ValueError:
        return
    assert not result.startswith("/")
    assert not result.endswith("/")
    assert "\\" not in result
    if result:
        segments = result.split("/")
        assert "" not in segments
        assert ".." not in segments
        assert "." not in segments
    assert normalize_prefix(result) == result  # idempotent


@given(
    st.lists(st.text(_SEGMENT_CHARS, min_size=1, max_size=8)
             .filter(lambda s: s not in (".", "..")), max_size=6),
    st.integers(0, 3), st.integers(0, 3),
)
def test_clean_segments_survive_with_outer_slashes_stripped(
    segments: list[str], leading: int, trailing: int
) -> None:
    raw = "/" * leading + "/".join(segments) + "/" * trailing
    assert normalize_prefix(raw) == "/".join(segments)


def test_effective_prefixes_without_path_or_prefixes_is_the_root() -> None:
    assert effective_prefixes(s3_spec()) == dict.fromkeys(CATEGORIES, "")


def test_effective_prefixes_fall_back_to_path() -> None:
    spec = s3_spec(path="/recordings/meetstream/", prefixes={"audio": "recordings/audio/"})
    assert effective_prefixes(spec) == {
        "audio": "recordings/audio",
        "video": "recordings/meetstream",
        "transcript": "recordings/meetstream",
        "metadata": "recordings/meetstream",
    }


def test_effective_prefixes_all_overridden() -> None:
    prefixes = {"audio": "a", "video": "/v/", "transcript": "t/x", "metadata": "m"}
    spec = s3_spec(path="base", prefixes=prefixes)
    assert effective_prefixes(spec) == {
        "audio": "a", "video": "v", "transcript": "t/x", "metadata": "m"}


def test_empty_override_means_bucket_root() -> None:
    spec = s3_spec(path="base", prefixes={"transcript": "", "metadata": "/"})
    prefixes = effective_prefixes(spec)
    assert prefixes["transcript"] == ""
    assert prefixes["metadata"] == ""
    assert prefixes["audio"] == "base"


def test_effective_prefixes_keep_category_order() -> None:
    assert tuple(effective_prefixes(s3_spec(path="x"))) == CATEGORIES

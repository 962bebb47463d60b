"""Names, series keys and series ids (tsdb_lake.model)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.errors import ErrorCode, InvalidNameError
from tsdb_lake.model import (
    MAX_LABEL_VALUE_BYTES,
    MAX_NAME_LENGTH,
    series_id,
    series_key,
    validate_label_value,
    validate_name,
)


@pytest.mark.parametrize(
    "name", ["cpu", "usage_user", "a", "A1", "k8s.pod:cpu-seconds", "x" * MAX_NAME_LENGTH]
)
def test_valid_names_are_returned(name: str) -> None:
    for kind in ("tenant", "metric", "label", "field"):
        assert validate_name(kind, name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "a..b",
        "a/b",
        "/abs",
        "a\x00b",
        "a\nb",
        "a\tb",
        "a\x7f",
        "a b",
        "1abc",
        "_hidden",
        "-x",
        ".x",
        "é",
        "x" * (MAX_NAME_LENGTH + 1),
        "a\\b",
        "a,b",
        "a=b",
    ],
)
def test_invalid_names_raise_invalid_name(name: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name("metric", name)
    assert info.value.code is ErrorCode.INVALID_NAME
    assert info.value.retryable is False


@pytest.mark.parametrize("bad", [None, 3, b"cpu", ["cpu"]])
def test_non_string_names_raise(bad: object) -> None:
    with pytest.raises(InvalidNameError, match="must be a string"):
        validate_name("field", bad)


@pytest.mark.parametrize("reserved", ["time", "tenant", "metric", "tier", "hour", "day", "month", "year"])
def test_reserved_names_rejected_for_labels_and_fields_only(reserved: str) -> None:
    for kind in ("label", "field"):
        with pytest.raises(InvalidNameError, match="reserved"):
            validate_name(kind, reserved)
    assert validate_name("metric", reserved) == reserved


def test_label_values() -> None:
    assert validate_label_value("host", "") == ""
    assert validate_label_value("host", "a b,c=d/é") == "a b,c=d/é"
    with pytest.raises(InvalidNameError, match="NUL"):
        validate_label_value("host", "a\x00")
    with pytest.raises(InvalidNameError, match="longer"):
        validate_label_value("host", "é" * (MAX_LABEL_VALUE_BYTES // 2 + 1))
    assert validate_label_value("host", "x" * MAX_LABEL_VALUE_BYTES)
    with pytest.raises(InvalidNameError):
        validate_label_value("host", 5)


def test_series_key_is_canonical() -> None:
    assert series_key("cpu", {}) == "cpu"
    assert series_key("cpu", {"region": "us", "host": "a"}) == "cpu,host=a,region=us"
    assert series_key("cpu", [("region", "us"), ("host", "a")]) == "cpu,host=a,region=us"
    assert series_key("cpu", {"host": "a", "zone": None}) == "cpu,host=a"


def test_series_key_escapes_separators() -> None:
    assert series_key("m", {"k 1": "v,x=y", "b": "c\\d"}) == "m,b=c\\\\d,k\\ 1=v\\,x\\=y"
    # escaping keeps distinct label sets distinct
    assert series_key("m", {"a": "1,b=2"}) != series_key("m", {"a": "1", "b": "2"})


def _reference_id(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("cpu", 17870684844898284943),
        ("cpu,host=a", 9162965487226840583),
        ("cpu,host=a,region=us-east-1", 851274280618196716),
        ("m,k\\ 1=v\\,x\\=y", 9410382758975470198),
    ],
)
def test_series_id_pinned(key: str, expected: int) -> None:
    assert series_id(key) == expected
    assert _reference_id(key) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), st.text(max_size=12), max_size=5)
)
def test_series_id_matches_documented_algorithm_and_ignores_label_order(labels: dict[str, str]) -> None:
    key = series_key("cpu", labels)
    sid = series_id(key)
    assert 0 <= sid < 2**64
    assert sid == _reference_id(key)
    assert series_key("cpu", list(reversed(list(labels.items())))) == key


def test_double_underscore_is_reserved_for_labels_and_fields_and_newlines_never_pass() -> None:
    from tsdb_lake.errors import InvalidNameError
    from tsdb_lake.model import validate_name

    for kind in ("label", "field"):
        with pytest.raises(InvalidNameError, match="__"):
            validate_name(kind, "usage__sum")
    assert validate_name("metric", "a__b") == "a__b"  # metrics and tenants are path segments, not columns
    for kind in ("tenant", "metric", "label", "field"):
        with pytest.raises(InvalidNameError):
            validate_name(kind, "cpu\n")

"""Object keys and partition math of tsdb_lake.storage.layout."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.errors import InvalidNameError, InvalidTimestampError
from tsdb_lake.storage import layout as L


def ns(text: str) -> int:
    return int(np.datetime64(text, "ns").astype(np.int64))


@pytest.mark.parametrize(
    ("tier", "t", "partition", "start", "end"),
    [
        ("raw", "2024-01-02T03:04:05.123456789", "hour=2024-01-02T03", "2024-01-02T03", "2024-01-02T04"),
        ("1m", "2024-01-02T03:04:05", "day=2024-01-02", "2024-01-02", "2024-01-03"),
        ("1h", "2024-01-02T03:04:05", "month=2024-01", "2024-01-01", "2024-02-01"),
        ("1d", "2024-01-02T03:04:05", "year=2024", "2024-01-01", "2025-01-01"),
        ("1h", "2023-12-31T23:59:59.999999999", "month=2023-12", "2023-12-01", "2024-01-01"),
        ("1m", "2024-02-29T12:00", "day=2024-02-29", "2024-02-29", "2024-03-01"),
        ("raw", "1970-01-01T00:00", "hour=1970-01-01T00", "1970-01-01T00", "1970-01-01T01"),
        ("raw", "1969-12-31T23:59:59.999999999", "hour=1969-12-31T23", "1969-12-31T23", "1970-01-01T00"),
        ("1m", "1969-12-31T00:00:00.000000001", "day=1969-12-31", "1969-12-31", "1970-01-01"),
        ("1h", "1969-07-20T20:17", "month=1969-07", "1969-07-01", "1969-08-01"),
        ("1d", "1900-06-01", "year=1900", "1900-01-01", "1901-01-01"),
        ("1d", "1678-01-01", "year=1678", "1678-01-01", "1679-01-01"),
        ("1d", "2261-12-31T23:59:59.999999999", "year=2261", "2261-01-01", "2262-01-01"),
    ],
)
def test_partition_examples(tier: str, t: str, partition: str, start: str, end: str) -> None:
    assert L.partition_of(tier, ns(t)) == partition
    assert L.partition_bounds(partition) == (ns(start), ns(end))
    assert L.partition_ids(tier, np.array([ns(t)], dtype=np.int64)).tolist() == [ns(start)]


def test_partition_range_limits() -> None:
    for bad in (L.MIN_TIMESTAMP_NS - 1, L.MAX_TIMESTAMP_NS, np.iinfo(np.int64).min, np.iinfo(np.int64).max):
        with pytest.raises(InvalidTimestampError):
            L.partition_of("raw", int(bad))
        with pytest.raises(InvalidTimestampError):
            L.partition_ids("1d", np.array([0, bad], dtype=np.int64))
    with pytest.raises(InvalidTimestampError):
        L.partition_of("raw", 1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidTimestampError):
        L.partition_ids("raw", np.array([1.5]))
    with pytest.raises(InvalidNameError):
        L.partition_of("5m", 0)
    assert L.partition_ids("raw", np.array([], dtype=np.int64)).tolist() == []


@pytest.mark.parametrize(
    "name",
    [
        "hour=2024-01-02",
        "hour=2024-1-02T03",
        "day=2024-02-30",
        "month=2024-13",
        "month=2024-00",
        "year=24",
        "year=2024/",
        "minute=2024-01-01T00:00",
        "",
        "hour=2024-01-02T24",
        "day=2024-01-02 ",
    ],
)
def test_bad_partition_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        L.partition_bounds(name)


timestamps = st.integers(min_value=L.MIN_TIMESTAMP_NS, max_value=L.MAX_TIMESTAMP_NS - 1)
tiers = st.sampled_from(L.TIERS)


@settings(max_examples=300)
@given(tier=tiers, t=timestamps)
def test_partition_of_and_bounds_agree(tier: str, t: int) -> None:
    p = L.partition_of(tier, t)
    start, end = L.partition_bounds(p)
    assert start <= t < end
    assert p.startswith(L.PARTITION_KIND[tier] + "=")
    assert L.partition_of(tier, start) == p
    assert L.partition_of(tier, end - 1) == p
    if start > L.MIN_TIMESTAMP_NS:
        assert L.partition_of(tier, start - 1) != p
    if end < L.MAX_TIMESTAMP_NS:
        assert L.partition_of(tier, end) != p
        assert L.partition_bounds(L.partition_of(tier, end))[0] == end  # partitions tile the time line


@settings(max_examples=100)
@given(tier=tiers, ts=st.lists(timestamps, min_size=1, max_size=50))
def test_partition_ids_match_scalar(tier: str, ts: list[int]) -> None:
    ids = L.partition_ids(tier, np.array(ts, dtype=np.int64))
    assert ids.dtype == np.int64
    assert ids.tolist() == [L.partition_bounds(L.partition_of(tier, t))[0] for t in ts]


names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_:\-]{0,20}\Z")


@settings(max_examples=200)
@given(tenant=names, metric=names, tier=tiers, t=timestamps, file_id=st.uuids().map(lambda u: u.hex))
def test_data_file_key_round_trip(tenant: str, metric: str, tier: str, t: int, file_id: str) -> None:
    partition = L.partition_of(tier, t)
    key = L.data_file_key(tenant, metric, tier, partition, file_id)
    assert key == f"data/tenant={tenant}/metric={metric}/tier={tier}/{partition}/part-{file_id}.parquet"
    assert L.parse_data_file_key(key) == (tenant, metric, tier, partition, file_id)
    assert L.validate_key(key) == key
    assert key.startswith(L.partition_prefix(tenant, metric, tier, partition))
    assert key.startswith(L.tier_prefix(tenant, metric, tier))
    assert L.raw_partition_prefix(tenant, metric) == f"data/tenant={tenant}/metric={metric}/tier=raw/"


def test_data_file_key_rejects() -> None:
    good = "data/tenant=acme/metric=cpu/tier=raw/hour=2024-01-02T03/part-abc.parquet"
    assert L.parse_data_file_key(good) == ("acme", "cpu", "raw", "hour=2024-01-02T03", "abc")
    bad = [
        "data/tenant=acme/metric=cpu/tier=raw/day=2024-01-02/part-abc.parquet",  # wrong kind for tier
        "data/tenant=acme/metric=cpu/tier=5m/hour=2024-01-02T03/part-abc.parquet",
        "data/tenant=../metric=cpu/tier=raw/hour=2024-01-02T03/part-abc.parquet",
        "data/tenant=acme/metric=cpu/tier=raw/hour=2024-01-02T03/x/part-abc.parquet",
        "data/tenant=acme/metric=cpu/tier=raw/hour=2024-01-02T03/abc.parquet",
        "data/tenant=acme/metric=cpu/tier=raw/hour=2024-01-02T03/part-abc.parquet.tmp-" + "a" * 32,
        "data/tenant=acme/metric=cpu/tier=raw/hour=2024-01-02T03/part-a.b.parquet",
        "_catalog/log/00000000000000000001.json",
        "x" + good,
    ]
    for key in bad:
        with pytest.raises(InvalidNameError):
            L.parse_data_file_key(key)
    for args in [
        ("../etc", "cpu", "raw", "hour=2024-01-02T03", "abc"),
        ("acme", "a/b", "raw", "hour=2024-01-02T03", "abc"),
        ("acme", "cpu", "raw", "hour=2024-01-02T03", "../x"),
        ("acme", "cpu", "1h", "hour=2024-01-02T03", "abc"),
        ("acme", "cpu", "raw", "hour=2024-01-02T3", "abc"),
    ]:
        with pytest.raises(InvalidNameError):
            L.data_file_key(*args)


@settings(max_examples=100)
@given(version=st.integers(min_value=0, max_value=10**20 - 1))
def test_catalog_key_round_trip(version: int) -> None:
    log, ckpt = L.catalog_log_key(version), L.catalog_checkpoint_key(version)
    assert log == f"_catalog/log/{version:020d}.json" and ckpt == f"_catalog/checkpoints/{version:020d}.json"
    assert L.parse_catalog_log_key(log) == version
    assert L.parse_catalog_checkpoint_key(ckpt) == version
    assert log.startswith(L.CATALOG_LOG_PREFIX) and ckpt.startswith(L.CATALOG_CHECKPOINT_PREFIX)


def test_catalog_keys_sort_by_version_and_reject_garbage() -> None:
    versions = [0, 1, 9, 10, 11, 100, 12345]
    assert sorted(L.catalog_log_key(v) for v in reversed(versions)) == [
        L.catalog_log_key(v) for v in versions
    ]
    assert L.CATALOG_LAST_CHECKPOINT == "_catalog/_last_checkpoint"
    for v in (-1, 10**20, True, 1.0, "1"):
        with pytest.raises(InvalidNameError):
            L.catalog_log_key(v)  # type: ignore[arg-type]
    for key in [
        "_catalog/log/1.json",
        "_catalog/log/00000000000000000001.jsonx",
        L.catalog_checkpoint_key(1),
        "_catalog/log/-0000000000000000001.json",
    ]:
        with pytest.raises(InvalidNameError):
            L.parse_catalog_log_key(key)
    with pytest.raises(InvalidNameError):
        L.parse_catalog_checkpoint_key(L.catalog_log_key(1))


def test_validate_key_and_temp_names() -> None:
    assert L.validate_key("a/b.c/d-e_f:g=h") == "a/b.c/d-e_f:g=h"
    for bad in ["", "/a", "a/", "a//b", "./a", "a/..", "a\\b", "a\nb", None, 3]:
        with pytest.raises(InvalidNameError):
            L.validate_key(bad)
    tmp = L.temp_name("part-1.parquet")
    assert tmp.startswith(".part-1.parquet.tmp-") and L.is_temp_name(tmp)
    assert not L.is_temp_name("part-1.parquet") and not L.is_temp_name(".hidden")
    with pytest.raises(InvalidNameError):
        L.validate_key("a/" + tmp)
    ids = {L.new_file_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 for i in ids)


def test_non_ascii_digits_are_not_keys() -> None:
    with pytest.raises(InvalidNameError):
        L.parse_catalog_log_key("_catalog/log/" + "０" * 20 + ".json")
    with pytest.raises(InvalidNameError):
        L.partition_bounds("year=２０２４")
    with pytest.raises(InvalidNameError):
        L.parse_catalog_log_key(L.catalog_log_key(1) + "\n")
    with pytest.raises(InvalidNameError):
        L.partition_bounds("year=2024\n")
    for tenant, metric in [("acme\n", "cpu"), ("acme", "cpu\n"), ("acme", "cpu\x00")]:
        with pytest.raises(InvalidNameError):
            L.data_file_key(tenant, metric, "raw", "hour=2024-01-02T03", "abc")

"""Vacuum: the grace period protects readers of older snapshots; orphans go once old; catalog untouched."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tsdb_lake.catalog import SetProperty, SetTiers
from tsdb_lake.compaction import run_compaction
from tsdb_lake.errors import BackendReadError, InvalidQueryError, TsdbLakeError
from tsdb_lake.storage.layout import data_file_key, new_file_id, partition_of

sys.path.insert(0, str(Path(__file__).parent))
from compaction_testlib import (
    BASE_NS,
    EAGER,
    HOUR,
    Oracle,
    batch,
    data_keys,
    expected_rows,
    future,
    live_raw,
    open_lake,
    query_rows,
    write_batches,
)


def test_vacuum_grace_protects_pinned_readers_and_removes_orphans(lake_target, tmp_path: Path) -> None:
    lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle: Oracle = {}
    write_batches(lake, [batch(0, b) for b in range(4)], oracle)
    pinned = lake.snapshot().version
    inputs = {f.path for f in live_raw(lake)}
    report = run_compaction(lake.storage, lake.catalog, EAGER)
    assert report.jobs[0].status == "committed"
    compacted_at_ms = lake.catalog.read_entry(report.jobs[0].version or 0).timestamp_ms
    live = {f.path for f in live_raw(lake)}
    partition = partition_of("raw", BASE_NS)
    orphan = data_file_key("t", "cpu", "raw", partition, new_file_id())
    lake.storage.write_bytes(orphan, b"a crashed writer's file")
    outside = ["_wal/keep-me", "notes/readme.txt"]
    for key in outside:
        lake.storage.write_bytes(key, b"not vacuum's business")
    catalog_before = {o.key for o in lake.storage.list("_catalog/")}
    assert data_keys(lake) == inputs | live | {orphan}

    # default grace (1 h): the lake is younger than that, everything stays
    kept = lake.vacuum()
    assert kept.files == 0 and kept.protected_version == 0 and kept.kept_recent == 1
    # a reader pinned before the compaction, with the compaction inside the grace period: protected
    recent = lake.vacuum(older_than="10s", now_ns=(compacted_at_ms + 5_000) * 1_000_000)
    assert recent.files == 0 and recent.protected_version < report.jobs[0].version  # type: ignore[operator]
    assert len(query_rows(lake, as_of=pinned)) == len(oracle)

    # two hours later: the compacted inputs and the orphan are past the grace period
    dry = lake.vacuum(older_than="1h", dry_run=True, now_ns=future(7200))
    assert {o.key for o in dry.deleted} == inputs | {orphan}
    assert dry.bytes == sum(o.bytes for o in dry.deleted) > 0
    assert data_keys(lake) == inputs | live | {orphan}  # dry run deletes nothing

    done = lake.vacuum(older_than="1h", now_ns=future(7200))
    assert {o.key for o in done.deleted} == inputs | {orphan}
    assert {o.kind for o in done.deleted} == {"unreferenced"}
    assert data_keys(lake) == live
    assert query_rows(lake) == expected_rows(oracle)
    with pytest.raises(TsdbLakeError) as err:  # the pinned snapshot's files are gone now
        query_rows(lake, as_of=pinned)
    assert isinstance(err.value, BackendReadError) or "missing" in str(err.value)
    assert {o.key for o in lake.storage.list("_catalog/")} >= catalog_before
    for key in outside:
        assert lake.storage.exists(key)
    assert lake.vacuum(older_than="1h", now_ns=future(7200)).files == 0


def test_vacuum_removes_expired_files_and_stray_objects(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"), None, tmp_path / "wal")
    write_batches(lake, [batch(h, 0) for h in range(3)], {})
    lake.catalog.commit([SetTiers(None, None, ())], operation="set_tiers")  # no rollup tiers: no guard
    lake.retention.set("raw", "1h")
    expired = lake.retention.apply(dry_run=False, now_ns=BASE_NS + 3 * HOUR)
    assert expired.files == 2
    gone = {p for e in expired.expired for p in e.paths}
    stray = "data/tenant=t/metric=cpu/tier=raw/notes.txt"
    lake.storage.write_bytes(stray, b"not a data file")
    report = lake.vacuum(older_than=0, now_ns=future(5))
    assert {o.key: o.kind for o in report.deleted} == {**dict.fromkeys(gone, "unreferenced"), stray: "stray"}
    assert data_keys(lake) == {f.path for f in live_raw(lake)} and len(live_raw(lake)) == 1
    assert all(lake.storage.exists(o.key) for o in lake.storage.list("_catalog/"))


def test_vacuum_rejects_bad_grace(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"), None, tmp_path / "wal")
    with pytest.raises(InvalidQueryError):
        lake.vacuum(older_than="-1h")
    with pytest.raises(InvalidQueryError):
        lake.vacuum(older_than=-5)


def test_vacuum_expires_the_catalog_log_past_its_retention(lake_target, tmp_path: Path) -> None:
    lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle: Oracle = {}
    lake.catalog.checkpoint_interval = 3
    write_batches(lake, [batch(h, b) for h in range(2) for b in range(4)], oracle)
    head = lake.catalog.refresh().version
    entries_before = len(lake.storage.list("_catalog/log/"))
    assert entries_before == head + 1

    # the default retention (30 days) keeps the whole log two hours from now
    assert lake.vacuum(older_than="1h", now_ns=future(7200)).log.entries == ()  # type: ignore[union-attr]
    # a lake property shortens it; the grace period still bounds it from below
    lake.catalog.commit([SetProperty("catalog.log_retention", "2h")], operation="config")
    report = lake.vacuum(older_than="1h", now_ns=future(3 * 86400))
    assert report.log is not None and report.log.floor > 0
    assert report.to_dict()["log"]["entries"] == len(report.log.entries) > 0  # type: ignore[index]
    assert len(lake.storage.list("_catalog/log/")) == entries_before + 1 - len(report.log.entries)
    assert query_rows(lake) == expected_rows(oracle)
    reopened = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal2")
    assert query_rows(reopened) == expected_rows(oracle)
    with pytest.raises(InvalidQueryError, match="log retention"):
        lake.vacuum(older_than="1h", log_retention="soon")

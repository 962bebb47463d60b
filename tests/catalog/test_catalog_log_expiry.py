"""Catalog log expiry on real storage (local folder and S3 endpoint): what expires, what stays readable,
and that a committer or reader whose snapshot predates the expiry neither loses nor hides a commit."""

from __future__ import annotations

import pytest
from catalog_testlib import HOUR, T0, assert_catalog_valid, make_file

from tsdb_lake.catalog import (
    MIN_LOG_RETENTION_MS,
    AddFile,
    Catalog,
    SetWatermark,
)
from tsdb_lake.errors import CommitConflictError, InvalidQueryError, NotFoundError
from tsdb_lake.storage.base import Storage
from tsdb_lake.storage.layout import CATALOG_LOG_FLOOR, catalog_checkpoint_key, catalog_log_key

DAY_MS = 86_400_000


def _grow(cat: Catalog, commits: int, hour0: int = 0) -> list[str]:
    """Commit one new raw file per version; returns the paths in commit order."""
    paths = []
    for i in range(commits):
        f = make_file(start=T0 + (hour0 + i) * HOUR)
        cat.commit([AddFile(f)], operation="write")
        paths.append(f.path)
    return paths


def _log_versions(storage: Storage) -> list[int]:
    return sorted(int(o.key.rsplit("/", 1)[-1].split(".")[0]) for o in storage.list("_catalog/log/"))


def test_expire_keeps_every_version_after_the_floor(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage, checkpoint_interval=5)
    paths = _grow(cat, 23)
    head = cat.snapshot()
    expected = {v: set(cat.snapshot(v).by_path) for v in range(10, head.version + 1)}
    # Everything is older than "a day from now minus one hour"; the version current then is the head (23),
    # and the newest checkpoint at or before it is 20.
    report = cat.expire_log(MIN_LOG_RETENTION_MS, now_ms=head.timestamp_ms + DAY_MS)
    assert report.floor == 20
    assert report.entries == tuple(range(20)) and report.checkpoints == (5, 10, 15)
    assert _log_versions(storage) == [20, 21, 22, 23]
    assert storage.exists(catalog_checkpoint_key(20)) and not storage.exists(catalog_checkpoint_key(15))
    assert cat.log_floor() == 20
    assert_catalog_valid(storage)

    fresh = Catalog.open(storage)
    assert fresh.snapshot().version == head.version
    assert set(fresh.snapshot().by_path) == set(paths)
    for v in range(20, head.version + 1):
        assert set(fresh.snapshot(v).by_path) == expected[v]
    with pytest.raises(NotFoundError, match="expired by log retention; the oldest readable version is 20"):
        fresh.snapshot(12)
    assert [e.version for e in fresh.history()] == [20, 21, 22, 23]
    assert fresh.version_as_of(head.timestamp_ms) == head.version
    with pytest.raises(NotFoundError):
        fresh.version_as_of(fresh.read_entry(20).timestamp_ms - 1)
    # commits continue normally on top of an expired log
    more = _grow(cat, 2, hour0=100)
    assert set(Catalog.open(storage).snapshot().by_path) == set(paths) | set(more)


def test_expire_respects_retention_and_dry_run(storage: Storage) -> None:
    cat = Catalog.create_or_open(storage, checkpoint_interval=4)
    _grow(cat, 9)
    head = cat.snapshot()
    # nothing is older than the retention: nothing to do
    nothing = cat.expire_log(DAY_MS, now_ms=head.timestamp_ms)
    assert nothing.floor == 0 and nothing.entries == () and nothing.checkpoints == ()
    assert not storage.exists(CATALOG_LOG_FLOOR)
    # the cutoff lands at version 6: the floor is checkpoint 4, entries 0..3 would go
    cutoff_ms = cat.read_entry(6).timestamp_ms
    dry = cat.expire_log(DAY_MS, now_ms=cutoff_ms + DAY_MS, dry_run=True)
    assert dry.dry_run and dry.floor == 4 and dry.entries == (0, 1, 2, 3) and dry.checkpoints == ()
    assert _log_versions(storage) == list(range(head.version + 1)) and not storage.exists(CATALOG_LOG_FLOOR)
    done = cat.expire_log(DAY_MS, now_ms=cutoff_ms + DAY_MS)
    assert done.floor >= 4 and _log_versions(storage)[0] == done.floor
    assert Catalog.open(storage).snapshot(done.floor).version == done.floor
    with pytest.raises(InvalidQueryError, match="at least 60 minutes"):
        cat.expire_log(1000)


def test_stale_committer_landing_on_an_expired_number_loses_nothing(storage: Storage) -> None:
    stale = Catalog.create_or_open(storage, checkpoint_interval=5)
    _grow(stale, 3)  # the stale instance knows version 3
    other = Catalog.open(storage, checkpoint_interval=5)
    paths = _grow(other, 12, hour0=10)
    report = other.expire_log(MIN_LOG_RETENTION_MS, now_ms=other.snapshot().timestamp_ms + DAY_MS)
    assert report.floor == 15 and not storage.exists(catalog_log_key(4))
    # version 4 is free again under PUT-if-absent; the commit must notice the floor and land at the head
    mine = make_file(start=T0 + 500 * HOUR)
    snap = stale.commit([AddFile(mine)], operation="write")
    assert snap.version == 16
    assert not storage.exists(catalog_log_key(4)), "the withdrawn entry below the floor must be deleted"
    reopened = Catalog.open(storage).snapshot()
    assert reopened.version == 16 and mine.path in reopened.by_path
    assert set(paths) <= set(reopened.by_path)
    assert_catalog_valid(storage)


def test_stale_watermark_commit_is_abandoned_not_misapplied(storage: Storage) -> None:
    stale = Catalog.create_or_open(storage, checkpoint_interval=5)
    other = Catalog.open(storage, checkpoint_interval=5)
    _grow(other, 10)
    other.expire_log(MIN_LOG_RETENTION_MS, now_ms=other.snapshot().timestamp_ms + DAY_MS)
    with pytest.raises(CommitConflictError, match="expired by log retention"):
        stale.commit([SetWatermark("acme", "cpu", "1m", T0)], operation="rollup")
    head = Catalog.open(storage).snapshot()
    assert head.version == 10 and head.watermark("acme", "cpu", "1m") is None
    assert _log_versions(storage) == [10]


def test_stale_reader_refresh_finds_the_head_past_the_floor(storage: Storage) -> None:
    reader = Catalog.create_or_open(storage, checkpoint_interval=5)
    other = Catalog.open(storage, checkpoint_interval=5)
    paths = _grow(other, 11)
    other.expire_log(MIN_LOG_RETENTION_MS, now_ms=other.snapshot().timestamp_ms + DAY_MS)
    reader.stale_after_ms = -DAY_MS  # its head (version 0) counts as old enough to check the floor
    snap = reader.refresh()
    assert snap.version == 11 and set(snap.by_path) == set(paths)

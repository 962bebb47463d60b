"""Retention: rules in the catalog, dry run vs apply, whole-partition expiry and the rollup guard."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tsdb_lake.catalog import AddFile, ClearDirty, DataFile, MarkDirty, SetWatermark
from tsdb_lake.compaction import Retention, RetentionRule, plan_retention
from tsdb_lake.errors import InvalidQueryError
from tsdb_lake.lake import Lake
from tsdb_lake.storage.layout import data_file_key, new_file_id, partition_of

sys.path.insert(0, str(Path(__file__).parent))
from compaction_testlib import BASE_NS, HOUR, Oracle, batch, live_raw, open_lake, query_rows, write_batches

DAY = 24 * HOUR
NOW = BASE_NS + 3 * HOUR + HOUR // 2  # 03:30 on the data's day
TIERS = (("1m", "day"), ("1h", "month"), ("1d", "year"))


def _rollup_file(tier: str, start: int, end: int) -> DataFile:
    partition = partition_of(tier, start)
    return DataFile(
        path=data_file_key("t", "cpu", tier, partition, new_file_id()),
        tenant="t",
        metric="cpu",
        tier=tier,
        partition=partition,
        min_time=start,
        max_time=end - 1,
        rows=1,
        points=1,
        series=1,
        bytes=100,
        created_ms=0,
    )


def _build_rollups(lake: Lake, upto: int, tiers: tuple[str, ...] = ("1m", "1h", "1d")) -> None:
    """Stand-in for the rollup pass: rollup files over the day and watermarks up to ``upto``."""
    actions: list[object] = []
    for tier in tiers:
        actions.append(AddFile(_rollup_file(tier, BASE_NS, BASE_NS + DAY)))
        actions.append(SetWatermark("t", "cpu", tier, upto))
    lake.catalog.commit(actions, operation="rollup")  # type: ignore[arg-type]


def _setup(lake: Lake) -> Oracle:
    oracle: Oracle = {}
    write_batches(lake, [batch(h, 0) for h in range(4)], oracle)
    return oracle


def test_retention_guard_dry_run_and_apply(lake_target, tmp_path: Path) -> None:
    lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle = _setup(lake)
    rule = lake.retention.set("raw", "1h", tenant="t")
    assert rule == RetentionRule("t", None, "raw", HOUR)
    assert RetentionRule("t", None, "raw", HOUR) in lake.retention.show()

    # hours 0 and 1 are wholly older than NOW - 1h; hour 2 only partly (kept); nothing rolled up yet
    blocked = lake.retention.apply(dry_run=True, now_ns=NOW)
    assert blocked.expired == [] and [b.partition for b in blocked.blocked] == [
        partition_of("raw", BASE_NS),
        partition_of("raw", BASE_NS + HOUR),
    ]
    assert all("1m" in b.reason and "not built" in b.reason for b in blocked.blocked)
    assert blocked.blocked[0].bytes > 0 and blocked.blocked[0].files == 1

    _build_rollups(lake, BASE_NS + 2 * HOUR, tiers=("1m", "1h"))  # 1d tier still missing
    report = lake.retention.apply(dry_run=True, now_ns=NOW)
    assert report.expired == [] and all("1d" in b.reason for b in report.blocked)

    _build_rollups(lake, BASE_NS + DAY)
    lake.catalog.commit(
        [MarkDirty("t", "cpu", "1h", BASE_NS + HOUR + 60 * 10**9, BASE_NS + 2 * HOUR)], operation="write"
    )
    version = lake.snapshot().version
    dry = lake.retention.apply(dry_run=True, now_ns=NOW)
    assert [p.partition for p in dry.expired] == [partition_of("raw", BASE_NS)]
    assert [b.partition for b in dry.blocked] == [partition_of("raw", BASE_NS + HOUR)]
    assert "dirty" in dry.blocked[0].reason
    hour0 = {f.path: f for f in live_raw(lake) if f.partition == partition_of("raw", BASE_NS)}
    assert dry.files == 1 and dry.bytes == sum(f.bytes for f in hour0.values())
    assert lake.snapshot().version == version and len(live_raw(lake)) == 4  # a dry run changes nothing

    applied = lake.retention.apply(dry_run=False, now_ns=NOW)
    assert applied.version == version + 1 and applied.files == 1
    entry = lake.catalog.read_entry(applied.version)
    assert entry.operation == "retention"
    assert {(a.path, a.reason) for a in entry.actions} == {(p, "retention") for p in hour0}  # type: ignore[union-attr]
    rows = query_rows(lake)
    assert rows and min(r[1] for r in rows) >= BASE_NS + HOUR
    assert len(rows) == len(oracle) - 120
    for path in hour0:  # expiry only edits the catalog; vacuum deletes later
        assert lake.storage.exists(path)

    lake.catalog.commit([ClearDirty("t", "cpu", "1h", BASE_NS, BASE_NS + DAY)], operation="rollup")
    second = lake.retention.apply(dry_run=False, now_ns=NOW)
    assert [p.partition for p in second.expired] == [partition_of("raw", BASE_NS + HOUR)]
    assert second.blocked == []
    assert sorted({f.partition for f in live_raw(lake)}) == [
        partition_of("raw", BASE_NS + 2 * HOUR),
        partition_of("raw", BASE_NS + 3 * HOUR),
    ]


def test_rules_are_scoped_and_changeable(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"), None, tmp_path / "wal")
    _setup(lake)
    _build_rollups(lake, BASE_NS + DAY)
    retention: Retention = lake.retention
    retention.set("raw", "30m")  # lake default
    assert retention.ttl("t", "cpu") == HOUR // 2
    assert len(plan_retention(lake.snapshot(), NOW)[0]) == 3  # hours 0, 1, 2 end before 03:00
    retention.set("raw", None, tenant="t", metric="cpu")  # keep this metric forever
    assert retention.ttl("t", "cpu") is None
    assert retention.apply(now_ns=NOW).expired == []
    retention.remove("raw", tenant="t", metric="cpu")
    assert retention.ttl("t", "cpu") == HOUR // 2
    assert retention.apply(now_ns=NOW, metric="other").expired == []
    assert len(retention.apply(now_ns=NOW, tenant="t").expired) == 3
    with pytest.raises(InvalidQueryError):
        retention.set("raw", "soon")


def test_rollup_tier_expiry_waits_for_coarser_tiers(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"), None, tmp_path / "wal")
    _setup(lake)
    later = BASE_NS + 40 * DAY
    lake.catalog.commit([AddFile(_rollup_file("1m", BASE_NS, BASE_NS + DAY))], operation="rollup")
    lake.retention.set("1m", "7d")
    blocked = lake.retention.apply(now_ns=later)
    assert [b.tier for b in blocked.blocked] == ["1m"] and "1h" in blocked.blocked[0].reason
    # raw is not guarded by tiers whose own retention already dropped the range
    lake.retention.set("raw", "1d")
    raw_blocked = [b for b in lake.retention.apply(now_ns=later).blocked if b.tier == "raw"]
    assert raw_blocked and all("1h" in b.reason for b in raw_blocked)  # 1m has expired itself: not required
    _build_rollups(lake, BASE_NS + DAY, tiers=("1h", "1d"))
    report = lake.retention.apply(dry_run=False, now_ns=later)
    assert {p.tier for p in report.expired} == {"raw", "1m"} and report.blocked == []
    assert live_raw(lake) == [] and lake.snapshot().files("t", "cpu", "1h")

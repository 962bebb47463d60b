"""The pure compaction planner: triggers, settle / quiet skipping, overlap closure, output sizing."""

from __future__ import annotations

import itertools

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.catalog import DataFile
from tsdb_lake.compaction.merge import merge_points
from tsdb_lake.compaction.planner import (
    files_overlap,
    overlap_closure,
    plan_compaction,
    split_points,
)
from tsdb_lake.compaction.settings import CompactionSettings, duration_ns
from tsdb_lake.errors import InvalidQueryError
from tsdb_lake.storage.layout import partition_bounds

HOUR = 3_600_000_000_000
PART = "hour=2024-01-02T03"
P_START, P_END = partition_bounds(PART)
LATER = P_END + 24 * HOUR  # long after the hour: settled and quiet
NOW_MS = P_END // 1_000_000
_ids = itertools.count()


def df(
    lo: int = 0,
    hi: int = HOUR - 1,
    *,
    smin: int | None = 0,
    smax: int | None = 2**64 - 1,
    size: int = 1000,
    points: int = 100,
    partition: str = PART,
    metric: str = "cpu",
    tier: str = "raw",
    created_ms: int = NOW_MS,
) -> DataFile:
    start, _ = partition_bounds(partition)
    n = next(_ids)
    return DataFile(
        path=f"data/tenant=t/metric={metric}/tier={tier}/{partition}/part-{n:032x}.parquet",
        tenant="t",
        metric=metric,
        tier=tier,
        partition=partition,
        min_time=start + lo,
        max_time=start + hi,
        rows=1,
        points=points,
        series=1,
        bytes=size,
        created_ms=created_ms,
        series_min=smin,
        series_max=smax,
    )


LOOSE = CompactionSettings(min_small_files=3, settle_ns=0, quiet_ns=0)


def test_small_files_trigger_at_threshold() -> None:
    disjoint = [df(i * 10, i * 10 + 9) for i in range(3)]
    plan = plan_compaction(disjoint[:2], LOOSE, LATER)
    assert plan.jobs == () and plan.partitions_seen == 1
    plan = plan_compaction(disjoint, LOOSE, LATER)
    assert len(plan.jobs) == 1
    job = plan.jobs[0]
    assert job.reason == "small_files" and set(job.paths) == {f.path for f in disjoint}
    assert job.input_bytes == 3000 and job.input_points == 300


def test_large_disjoint_files_are_left_alone() -> None:
    big = CompactionSettings(min_small_files=2, small_file_bytes=500, settle_ns=0, quiet_ns=0)
    files = [df(0, 9, size=1000), df(10, 19, size=1000), df(20, 29, size=1000)]
    assert plan_compaction(files, big, LATER).jobs == ()


def test_overlapping_files_trigger_even_when_large() -> None:
    big = CompactionSettings(min_small_files=5, small_file_bytes=10, settle_ns=0, quiet_ns=0)
    a, b, c = df(0, 50, size=1000), df(40, 60, size=1000), df(100, 200, size=1000)
    plan = plan_compaction([a, b, c], big, LATER)
    assert len(plan.jobs) == 1
    assert plan.jobs[0].reason == "overlap" and set(plan.jobs[0].paths) == {a.path, b.path}
    no_overlap = CompactionSettings(min_small_files=5, small_file_bytes=10, merge_overlaps=False, settle_ns=0)
    assert plan_compaction([a, b, c], no_overlap, LATER).jobs == ()


def test_series_disjoint_files_do_not_overlap() -> None:
    a = df(0, 100, smin=0, smax=10)
    b = df(0, 100, smin=11, smax=20)
    c = df(0, 100, smin=None, smax=None)  # unknown series bounds: overlaps everything in time
    assert not files_overlap(a, b)
    assert files_overlap(a, c) and files_overlap(b, c)
    assert not files_overlap(a, df(101, 200, smin=0, smax=10))


def test_settling_and_quiet_partitions_are_skipped() -> None:
    s = CompactionSettings(min_small_files=2, settle_ns=duration_ns("10m"), quiet_ns=duration_ns("1m"))
    files = [df(0, 9), df(10, 19)]
    during = plan_compaction(files, s, P_END + duration_ns("5m"))
    assert during.jobs == () and [k.reason for k in during.skipped] == ["settling"]
    # late data written just now into an old partition: wait until it is quiet
    now = P_END + 48 * HOUR
    fresh = [df(0, 9, created_ms=now // 1_000_000), df(10, 19)]
    quiet = plan_compaction(fresh, s, now)
    assert quiet.jobs == () and quiet.skipped[0].reason == "quiet"
    assert len(plan_compaction(fresh, s, now + duration_ns("61s")).jobs) == 1


def test_filters_tiers_tenants_and_metrics() -> None:
    files = [df(i, i) for i in range(3)] + [df(i, i, metric="mem") for i in range(3)]
    files += [df(0, 0, tier="1m", partition="day=2024-01-02") for _ in range(5)]
    plan = plan_compaction(files, LOOSE, LATER)
    assert sorted(j.metric for j in plan.jobs) == ["cpu", "mem"]
    assert [j.metric for j in plan_compaction(files, LOOSE, LATER, metric="mem").jobs] == ["mem"]
    assert plan_compaction(files, LOOSE, LATER, tenant="other").jobs == ()
    assert (
        len(
            plan_compaction(files, CompactionSettings(min_small_files=3, settle_ns=0, max_jobs=1), LATER).jobs
        )
        == 1
    )


def test_closure_pulls_in_large_overlapping_file_but_not_disjoint_one() -> None:
    s = CompactionSettings(min_small_files=2, small_file_bytes=500, settle_ns=0, quiet_ns=0)
    big_overlapping = df(0, 1000, smin=0, smax=100, size=10_000)
    big_elsewhere = df(0, 1000, smin=200, smax=300, size=10_000)
    small = [df(10, 20, smin=5, smax=6, size=100), df(30, 40, smin=50, smax=60, size=100)]
    job = plan_compaction([big_overlapping, big_elsewhere, *small], s, LATER).jobs[0]
    assert set(job.paths) == {big_overlapping.path, *(f.path for f in small)}


def test_input_budget_keeps_closure_property() -> None:
    s = CompactionSettings(
        min_small_files=2, small_file_bytes=500, settle_ns=0, quiet_ns=0, max_input_bytes=350
    )
    a, b = df(0, 10, size=100), df(5, 15, size=100)  # overlap each other
    c, d = df(100, 110, size=100), df(200, 210, size=100)
    job = plan_compaction([a, b, c, d], s, LATER).jobs[0]
    assert job.input_bytes <= 350
    chosen = set(job.paths)
    assert (a.path in chosen) == (b.path in chosen)
    too_big = CompactionSettings(min_small_files=2, small_file_bytes=500, settle_ns=0, max_input_bytes=150)
    plan = plan_compaction([a, b], too_big, LATER)
    assert plan.jobs == () and plan.skipped[0].reason == "too_large"


def test_split_points_targets_file_size() -> None:
    assert split_points(1000, 10_000, 5_000) == (500, 2)
    per_file, n = split_points(1000, 10_000, 1 << 30)
    assert n == 1 and per_file >= 1000
    assert split_points(0, 0, 100) == (1, 1)


def test_settings_validation_and_durations() -> None:
    with pytest.raises(InvalidQueryError):
        CompactionSettings(min_small_files=1)
    with pytest.raises(InvalidQueryError):
        CompactionSettings(target_file_bytes=0)
    assert duration_ns("10m") == 600 * 10**9
    assert duration_ns(1.5) == 1_500_000_000
    with pytest.raises(InvalidQueryError):
        duration_ns("ten minutes")
    with pytest.raises(InvalidQueryError):
        duration_ns(-1)


bounds = st.tuples(st.integers(0, 100), st.integers(0, 20), st.integers(0, 50), st.integers(0, 10))


@settings(max_examples=150, deadline=None)
@given(st.lists(bounds, min_size=1, max_size=12), st.data())
def test_closure_is_closed_under_overlap(specs: list[tuple[int, int, int, int]], data: st.DataObject) -> None:
    files = [df(t, t + dt, smin=s, smax=s + ds) for t, dt, s, ds in specs]
    seeds = data.draw(st.lists(st.sampled_from(files), min_size=1, max_size=3))
    closed = overlap_closure(seeds, files)
    inside = {f.path for f in closed}
    assert {f.path for f in seeds} <= inside
    for f in files:
        if f.path not in inside:
            assert not any(files_overlap(f, g) for g in closed)
    plan = plan_compaction(files, CompactionSettings(min_small_files=2, settle_ns=0, quiet_ns=0), LATER)
    for job in plan.jobs:
        chosen = {f.path for f in job.inputs}
        for f in files:
            if f.path not in chosen:
                assert not any(files_overlap(f, g) for g in job.inputs)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),
            st.integers(0, 4),
            st.one_of(st.none(), st.floats(allow_nan=False, width=32)),
            st.one_of(st.none(), st.integers(-5, 5)),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_merge_points_is_last_write_wins_per_field(
    writes: list[tuple[int, int, float | None, int | None]],
) -> None:
    """Write i lands in file i (seq = i): per (series, time) each field keeps its latest non-null value."""
    frame = pl.DataFrame(
        {
            "_series_id": pl.Series([w[0] for w in writes], dtype=pl.UInt64),
            "time": pl.Series([w[1] for w in writes], dtype=pl.Int64),
            "a": pl.Series([w[2] for w in writes], dtype=pl.Float64),
            "b": pl.Series([w[3] for w in writes], dtype=pl.Int64),
            "_seq": pl.Series(range(len(writes)), dtype=pl.Int64),
        }
    ).reverse()  # arrival order must not matter, only seq
    expected: dict[tuple[int, int], list[float | int | None]] = {}
    for sid, t, a, b in writes:
        point = expected.setdefault((sid, t), [None, None])
        point[0] = a if a is not None else point[0]
        point[1] = b if b is not None else point[1]
    merged = merge_points(frame, ["a", "b"])
    assert "_seq" not in merged.columns
    got = {(r[0], r[1]): [r[2], r[3]] for r in merged.select("_series_id", "time", "a", "b").iter_rows()}
    assert got == expected
    assert merged.height == len(expected)
    assert merged.select("_series_id", "time").rows() == sorted(expected)

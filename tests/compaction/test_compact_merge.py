"""Compaction end to end on local and S3 lakes: many small files → few, identical query results."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import polars as pl
import pytest

from tsdb_lake.compaction import CompactionSettings, run_compaction
from tsdb_lake.storage.layout import partition_of

sys.path.insert(0, str(Path(__file__).parent))
from compaction_testlib import (
    BASE_NS,
    EAGER,
    HOUR,
    Oracle,
    batch,
    data_keys,
    expected_rows,
    live_raw,
    open_lake,
    query_rows,
    write_batches,
)


def test_compaction_merges_small_files_and_keeps_results(lake_target, tmp_path: Path) -> None:
    lake = open_lake(lake_target.uri, lake_target.storage_options, tmp_path / "wal")
    oracle: Oracle = {}
    batches = [batch(h, b) for h in (0, 1) for b in range(4)]
    batches += [batch(0, 7, overwrite=True), batch(1, 8, overwrite=True)]  # duplicates across files
    write_batches(lake, batches, oracle)
    assert len(live_raw(lake)) == 10
    before_version = lake.snapshot().version

    dry = run_compaction(lake.storage, lake.catalog, EAGER, dry_run=True)
    assert dry.dry_run and [j.status for j in dry.jobs] == ["planned", "planned"]
    assert dry.files_removed == 10 and lake.snapshot().version == before_version

    report = run_compaction(lake.storage, lake.catalog, EAGER)
    assert [j.status for j in report.jobs] == ["committed", "committed"], report.to_dict()
    assert report.files_removed == 10 and report.files_added == 2
    # each overwrite batch replaced 120 points of batch 0 of its hour
    assert report.duplicates_merged == 2 * 120
    files = live_raw(lake)
    assert len(files) == 2
    assert {f.partition for f in files} == {partition_of("raw", BASE_NS), partition_of("raw", BASE_NS + HOUR)}
    for f in files:
        assert f.lineage is not None and f.lineage.source_version == before_version
        assert len(f.lineage.paths) == 5 and f.writer == "compactor"
    assert query_rows(lake) == expected_rows(oracle)
    # a reader pinned to the old snapshot still sees the same points (inputs are only removed from the catalog)
    assert query_rows(lake, as_of=before_version) == expected_rows(oracle)
    outputs_seq = {f.seq for f in files}
    assert outputs_seq == {
        max(f.seq or 0 for f in lake.snapshot(before_version).by_path.values() if f.partition == p)
        for p in {f.partition for f in files}
    }
    assert len(data_keys(lake)) == 12

    again = run_compaction(lake.storage, lake.catalog, EAGER)
    assert again.jobs == [] and again.partitions_seen == 2


def test_outputs_are_cut_to_target_size_at_series_boundaries(tmp_path: Path) -> None:
    lake = open_lake(str(tmp_path / "lake"), None, tmp_path / "wal")
    oracle: Oracle = {}
    write_batches(lake, [batch(0, b) for b in range(6)], oracle)
    total = sum(f.bytes for f in live_raw(lake))
    small = CompactionSettings(
        min_small_files=2, settle_ns=0, quiet_ns=0, target_file_bytes=total // 2, max_chunk_points=7
    )
    report = run_compaction(lake.storage, lake.catalog, small)
    assert report.jobs[0].status == "committed"
    files = sorted(live_raw(lake), key=lambda f: f.series_min)
    assert len(files) >= 2
    for a, b in itertools.pairwise(files):  # series ranges are disjoint: no overlap left
        assert a.series_max is not None and b.series_min is not None and a.series_max < b.series_min
    assert all(f.rows >= f.series * (6 * 20 // 7) for f in files)  # chunks re-cut to <= 7 points
    assert query_rows(lake) == expected_rows(oracle)
    assert run_compaction(lake.storage, lake.catalog, small).jobs == []


def test_schema_evolution_across_inputs(tmp_path: Path) -> None:
    """Older files lack a field and a label: compaction writes them with nulls under the newest schema."""
    lake = open_lake(str(tmp_path / "lake"), None, tmp_path / "wal")
    first = batch(0, 0).drop("count")
    second = batch(0, 1).with_columns(dc=pl.col("host").str.replace("h", "dc"))
    with lake.writer("t") as w:
        w.write("cpu", first)
        w.flush()
        w.write("cpu", second)
        w.flush()
    report = run_compaction(lake.storage, lake.catalog, EAGER)
    assert report.jobs[0].status == "committed", report.to_dict()
    after = lake.query("cpu", tenant="t")
    after = after.with_columns(pl.col("time").dt.epoch("ns")).sort("host", "time")
    expected = pl.concat([first, second], how="diagonal_relaxed").select(after.columns).sort("host", "time")
    assert after.equals(expected)
    assert after["count"].null_count() == first.height and after["dc"].null_count() == first.height


@pytest.mark.parametrize("quiet", [True, False])
def test_fresh_partitions_are_not_compacted_by_default(tmp_path: Path, quiet: bool) -> None:
    lake = open_lake(str(tmp_path / "lake"), None, tmp_path / "wal")
    write_batches(lake, [batch(0, b) for b in range(5)], {})
    settings = CompactionSettings(min_small_files=2, settle_ns=0) if quiet else CompactionSettings()
    report = run_compaction(lake.storage, lake.catalog, settings)
    # the files were just written: the default quiet period (and settle time) holds the partition back
    assert report.jobs == [] and [s[3] for s in report.skipped] == ["quiet"]
    assert len(live_raw(lake)) == 5

"""export: plain Parquet per partition, equal to lake.query; incremental by catalog version; the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

import tsdb_lake
from tsdb_lake.export import MANIFEST_NAME, read_manifest

HOUR = 3_600_000_000_000
T0 = 1_699_920_000_000_000_000


def test_raw_export_equals_query(lake_copy: Path, tmp_path: Path) -> None:
    lake = tsdb_lake.connect(lake_copy)
    report = lake.export(tmp_path / "out", tenant="acme", start=T0 + HOUR // 2, end=T0 + 2 * HOUR)
    assert [p.partition for p in report.written] == ["hour=2023-11-14T00", "hour=2023-11-14T01"]
    exported = pl.read_parquet(
        tmp_path / "out" / "tenant=acme" / "metric=cpu" / "tier=raw", hive_partitioning=False
    )
    expected = lake.query("cpu", T0 + HOUR // 2, T0 + 2 * HOUR, tenant="acme")
    key = ["host", "time"]
    assert_frame_equal(exported.sort(key), expected.sort(key), check_column_order=False)
    manifest = read_manifest(tmp_path / "out")
    assert manifest is not None and manifest["version"] == lake.snapshot().version
    assert set(manifest["files"]) == {p.path for p in report.written}


def test_incremental_exports_only_changed_partitions(lake_copy: Path, tmp_path: Path) -> None:
    lake = tsdb_lake.connect(lake_copy)
    dest = tmp_path / "out"
    first = lake.export(dest, tenant="acme", incremental=True)
    assert len(first.written) == 3 and first.since_version is None
    v1 = first.version
    with lake.writer(tenant="acme") as w:  # late data into hour 1 only
        w.write(
            "cpu",
            {
                "time": [T0 + HOUR + 5],
                "host": ["h9"],
                "region": ["eu"],
                "usage_user": [1.0],
                "usage_system": [2.0],
            },
        )
    second = lake.export(dest, tenant="acme", incremental=True)
    assert second.since_version == v1 and second.version > v1
    assert [p.partition for p in second.written] == ["hour=2023-11-14T01"] and second.unchanged == 2
    hour1 = pl.read_parquet(dest / second.written[0].path)
    assert hour1.height == 1080 + 1 and "h9" in hour1["host"].to_list()
    # compaction rewrites files without changing data: nothing to export
    lake.compact(tenant="acme", quiet_ns=0, min_small_files=2)
    third = lake.export(dest, tenant="acme", incremental=True)
    assert third.written == [] and third.unchanged == 3
    # an explicit since-version re-exports what changed after it
    again = lake.export(dest, tenant="acme", since_version=v1)
    assert [p.partition for p in again.written] == ["hour=2023-11-14T01"]
    # retention removes partitions: listed as removed, exported files kept
    lake.rollup()
    lake.retention.set("raw", "1d", tenant="acme")
    lake.retention.apply(dry_run=False)
    fourth = lake.export(dest, tenant="acme", incremental=True)
    assert len(fourth.removed) == 3 and fourth.written == []
    manifest = json.loads((dest / MANIFEST_NAME).read_text())
    assert manifest["version"] == fourth.version and len(manifest["removed"]) == 3
    assert len(list(dest.rglob("data.parquet"))) == 3


def test_rollup_export_has_rollup_columns(small_lake: Path, tmp_path: Path) -> None:
    lake = tsdb_lake.connect(small_lake)
    report = lake.export(tmp_path / "out", tenant="acme", tier="1m", start=T0, end=T0 + HOUR)
    assert len(report.written) == 1 and report.rows == 3 * 60
    frame = pl.read_parquet(tmp_path / "out" / report.written[0].path)
    assert {"time", "host", "usage_user__count", "usage_user__sum", "usage_user__max"} <= set(frame.columns)
    assert frame["time"].dtype == pl.Datetime("ns", "UTC") and frame["usage_user__count"].sum() == 3 * 360
    hourly = lake.query(
        "cpu", T0, T0 + HOUR, tenant="acme", fields=["usage_user"], every="1h", agg="max", by=["host"]
    )
    assert sorted(hourly["usage_user_max"].to_list()) == sorted(
        frame.group_by("host").agg(pl.col("usage_user__max").max())["usage_user__max"].to_list()
    )


def test_export_refuses_a_folder_of_another_export(small_lake: Path, tmp_path: Path) -> None:
    lake = tsdb_lake.connect(small_lake)
    lake.export(tmp_path / "out", tenant="acme", tier="1h")
    try:
        lake.export(tmp_path / "out", tenant="acme", tier="raw")
    except tsdb_lake.InvalidQueryError as exc:
        assert "another folder" in str(exc)
    else:  # pragma: no cover - the assertion below documents the failure
        raise AssertionError("exporting another tier into the same folder must fail")

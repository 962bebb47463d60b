"""Writes through the WAL-backed writer come back exactly, on a local folder and on S3."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import tsdb_lake

sys.path.insert(0, str(Path(__file__).parents[1] / "catalog"))
from catalog_testlib import assert_catalog_valid

from tsdb_lake.errors import InvalidNameError, SchemaConflictError, TsdbLakeError, WriteError

H = 3_600_000_000_000
T0 = 1_700_000_000_000_000_000 // H * H


@pytest.fixture
def lake(lake_target: Any, tmp_path: Path) -> Iterator[tsdb_lake.Lake]:
    lake = tsdb_lake.connect(lake_target.uri, lake_target.storage_options, wal_root=tmp_path / "wal")
    yield lake
    # every catalog object the writer produced validates against catalog/manifest.schema.json
    assert assert_catalog_valid(lake.storage) >= 1


def _frame(n: int = 1000, hosts: int = 3, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "time": T0 + np.arange(n, dtype=np.int64) * 7_000_000_000,
            "host": [f"h{i % hosts}" for i in range(n)],
            "usage": np.round(rng.uniform(0, 100, n), 2),
            "bytes": rng.integers(0, 2**40, n),
        }
    )


def test_flush_makes_points_visible_to_new_readers(
    lake: tsdb_lake.Lake, lake_target: Any, tmp_path: Path
) -> None:
    frame = _frame()
    with lake.writer(tenant="acme") as w:
        assert w.write("cpu", frame) == 1000
        w.flush()
        other = tsdb_lake.connect(lake_target.uri, lake_target.storage_options, wal_root=tmp_path / "w2")
        got = other.query("cpu", T0, T0 + 10 * H, tenant="acme")
    assert got.height == 1000
    expected = frame.sort(["host", "time"])
    got = got.sort(["host", "time"])
    assert got["time"].dt.epoch("ns").to_list() == expected["time"].to_list()
    assert got["usage"].to_list() == expected["usage"].to_list()
    assert got["bytes"].to_list() == expected["bytes"].to_list()
    assert got.schema["bytes"] == pl.Int64
    # one file per hour partition touched
    files = lake.snapshot().files("acme", "cpu", "raw")
    assert len(files) == len({int(t) // H for t in frame["time"].to_list()})


def test_batch_durability_syncs_the_wal_before_write_returns(lake: tsdb_lake.Lake) -> None:
    with lake.writer(tenant="acme", durability="batch") as w:
        wal = w._wal
        for i in range(3):
            before = wal.fsync_count
            w.write("cpu", _frame(100, seed=i))
            assert wal.fsync_count == before + 1  # the record is on stable storage once write returns
    with lake.writer(tenant="acme", durability="none") as w:
        before = w._wal.fsync_count
        w.write("cpu", _frame(100, seed=9))
        assert w._wal.fsync_count == before


def test_read_your_writes_before_flush(lake: tsdb_lake.Lake) -> None:
    with lake.writer(tenant="acme") as w:
        w.write("cpu", _frame(50))
        got = lake.query("cpu", T0, T0 + H, tenant="acme", where={"host": "h1"})
        assert got.height == len([i for i in range(50) if i % 3 == 1])
        assert lake.snapshot().files("acme", "cpu", "raw") == []


def test_late_and_duplicate_data_resolve_last_write_wins(lake: tsdb_lake.Lake) -> None:
    with lake.writer(tenant="t") as w:
        w.write(
            "m", {"time": np.array([T0, T0 + 1]), "host": np.array(["a", "a"]), "v": np.array([1.0, 2.0])}
        )
        w.flush()
        w.write("m", {"time": np.array([T0]), "host": np.array(["a"]), "v": np.array([9.0])})
        w.flush()
    got = lake.query("m", T0, T0 + H, tenant="t")
    assert got["v"].to_list() == [9.0, 2.0]
    assert len(lake.snapshot().files("t", "m", "raw")) == 2


def test_all_input_kinds_and_line_protocol(lake: tsdb_lake.Lake) -> None:
    times = pd.date_range("2024-01-01", periods=3, freq="s", tz="Europe/Paris")
    with lake.writer(tenant="k") as w:
        w.write("m", pd.DataFrame({"time": times, "host": ["a"] * 3, "v": [1.0, 2.0, 3.0]}))
        w.write(
            "m",
            pa.table(
                {
                    "time": pa.array([dt.datetime(2024, 1, 1, 1)], pa.timestamp("us")),
                    "host": ["b"],
                    "v": [4.0],
                }
            ),
        )
        w.write_lines(b"m,host=c v=5 1704070800000000000\nm,host=c v=6 1704070801000000000\n")
    got = lake.query("m", "2023-12-31", "2024-01-02", tenant="k")
    assert sorted(got["host"].to_list()) == ["a", "a", "a", "b", "c", "c"]


def test_bad_batches_are_rejected_whole_and_leave_nothing(lake: tsdb_lake.Lake) -> None:
    with lake.writer(tenant="acme") as w:
        w.write("cpu", _frame(10))
        with pytest.raises(WriteError):
            w.write(
                "cpu",
                {
                    "time": np.array([T0, np.iinfo(np.int64).min]).astype("datetime64[ns]"),
                    "host": np.array(["a", "b"]),
                    "usage": np.array([1.0, 2.0]),
                },
            )
        with pytest.raises(InvalidNameError):
            w.write("../etc", _frame(10))
        with pytest.raises(TsdbLakeError):
            w.write("cpu", {"time": np.array([T0]), "usage": np.array(["text"])})
        with pytest.raises(SchemaConflictError):
            w.write("cpu", {"time": np.array([T0]), "usage": np.array([1], dtype=np.int64)})
        with pytest.raises(TsdbLakeError):
            w.write_lines(b"cpu,host=a usage=1 1\ncpu,host=a usage=\xff 2\n")
    got = lake.query("cpu", T0, T0 + 10 * H, tenant="acme")
    assert got.height == 10


def test_invalid_tenant_is_rejected(lake: tsdb_lake.Lake) -> None:
    for bad in ["../x", "a/b", "", "x\x00", ".hidden"]:
        with pytest.raises(InvalidNameError):
            lake.writer(tenant=bad)


def test_tenants_are_isolated(lake: tsdb_lake.Lake) -> None:
    with lake.writer(tenant="a") as w:
        w.write("cpu", _frame(5))
    with lake.writer(tenant="b") as w:
        w.write("mem", _frame(7))
    assert lake.query("cpu", T0, T0 + H, tenant="a").height == 5
    with pytest.raises(TsdbLakeError, match="no metric 'cpu'"):
        lake.query("cpu", T0, T0 + H, tenant="b")


def test_time_travel_as_of(lake: tsdb_lake.Lake) -> None:
    with lake.writer(tenant="t") as w:
        w.write("m", _frame(10))
        w.flush()
        v1 = lake.snapshot().version
        w.write("m", _frame(20, seed=1).with_columns(pl.col("time") + 3 * H))
    assert lake.query("m", T0, T0 + 10 * H, tenant="t", as_of=v1).height == 10
    assert lake.query("m", T0, T0 + 10 * H, tenant="t").height == 30


def test_backpressure_error_mode_is_retryable(lake: tsdb_lake.Lake) -> None:
    from tsdb_lake.errors import RateLimitedError

    with lake.writer(tenant="t", memtable_budget_bytes=1, flush_bytes=1 << 40, backpressure="error") as w:
        w.write("m", _frame(10))
        with pytest.raises(RateLimitedError) as err:
            for _ in range(50):
                w.write("m", _frame(10))
        assert err.value.retryable


def test_sparse_fields_round_trip_with_nulls(lake: tsdb_lake.Lake) -> None:
    n = 300
    b = [float(i) if i % 3 else None for i in range(n)]
    c = [i if i % 7 == 0 else None for i in range(n)]
    frame = pl.DataFrame(
        {
            "time": T0 + np.arange(n) * 1_000_000_000,
            "host": ["x"] * n,
            "a": np.arange(n) * 0.5,
            "b": b,
            "c": c,
        },
        schema_overrides={"c": pl.Int64},
    )
    with lake.writer(tenant="s") as w:
        w.write("m", frame)
        w.write_lines(f"m,host=y a=1 {T0}\n".encode())
    got = lake.query("m", T0, T0 + H, tenant="s").sort(["host", "time"])
    x = got.filter(pl.col("host") == "x")
    assert x["b"].to_list() == b
    assert x["c"].to_list() == c
    y = got.filter(pl.col("host") == "y")
    assert y["a"].to_list() == [1.0] and y["b"].to_list() == [None] and y["c"].to_list() == [None]


def test_a_dead_writers_wal_slot_is_recovered_by_the_next_writer(lake: tsdb_lake.Lake) -> None:
    live = lake.writer(tenant="r")  # holds slot 0
    dead = lake.writer(tenant="r")  # takes slot 1
    dead.write("m", {"time": np.array([T0]), "host": np.array(["d"]), "v": np.array([1.0])})
    dead._stop.set()
    dead._wal.close()  # the process "dies": WAL on disk, nothing flushed, lock released
    live.close()
    assert lake.snapshot().schema("r", "m") is None
    with lake.writer(tenant="r"):  # takes slot 0 again and adopts slot 1
        pass
    got = lake.query("m", T0, T0 + H, tenant="r")
    assert got["host"].to_list() == ["d"]

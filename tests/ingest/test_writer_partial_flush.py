"""Completed hours flush in the background; carry records keep replay exactly-once at every crash point."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import tsdb_lake
from tsdb_lake.catalog import WriterProgress
from tsdb_lake.grouping import GroupedBatch
from tsdb_lake.ingest.records import (
    decode_carry,
    encode_carry,
    encode_carry_v1,
    encode_record,
    encode_record_v1,
    is_carry,
)
from tsdb_lake.ingest.writer import BACKGROUND_NICE
from tsdb_lake.schema import normalize_frame
from tsdb_lake.wal import WAL, wal_writer_id

H = 3_600_000_000_000
T0 = 1_700_000_000_000_000_000 // H * H
STEP = 60_000_000_000  # one point per host per minute


def _batch(i: int, minutes: int = 45, hosts: int = 3) -> pl.DataFrame:
    """Batch ``i``: ``minutes`` consecutive minutes for every host (batches straddle hour boundaries)."""
    t = T0 + (i * minutes + np.repeat(np.arange(minutes), hosts)) * STEP
    host = np.tile([f"h{k}" for k in range(hosts)], minutes)
    return pl.DataFrame(
        {
            "time": t,
            "host": host,
            "v": (t // STEP).astype(np.float64) + np.tile(np.arange(hosts), minutes) / 10,
        }
    )


def _wait_for_files(lake: tsdb_lake.Lake, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(list(lake.snapshot().files("t", "m", "raw"))) < n:
        assert time.monotonic() < deadline, "background flush of completed hours did not happen"
        time.sleep(0.02)


def _stored(lake: tsdb_lake.Lake) -> pl.DataFrame:
    return lake.query("m", T0, T0 + 100 * H, tenant="t").select("time", "host", "v").sort("time", "host")


def _warm(lake: tsdb_lake.Lake) -> None:
    """One flush in another tenant: JIT compilation then does not count against the waits below."""
    with lake.writer(tenant="warm") as w:
        w.write("m", _batch(0))


def _background_flush_nices() -> set[int]:
    """Nice values of the live background flush threads (the writer's own and its partition workers)."""
    names = ("tsdb-lake-flush-bg", "tsdb-lake-flush-t")
    threads = [t for t in threading.enumerate() if t.name.startswith(names) and t.native_id is not None]
    return {os.getpriority(os.PRIO_PROCESS, t.native_id) for t in threads if t.native_id is not None}


@pytest.mark.parametrize("priority", ["low", "normal"])
def test_completed_hours_flush_while_writing_one_file_per_hour(tmp_path: Path, priority: str) -> None:
    lake = tsdb_lake.connect(tmp_path / "lake", wal_root=tmp_path / "wal")
    _warm(lake)
    batches = [_batch(i) for i in range(8)]  # 6 hours
    with lake.writer(tenant="t", flush_completed_bytes=1, background_priority=priority) as w:
        for b in batches[:3]:  # reaches hour 2: hours 0 and 1 are complete
            w.write("m", b)
        _wait_for_files(lake, 2)
        if sys.platform.startswith("linux"):
            base = os.getpriority(
                os.PRIO_PROCESS, threading.get_native_id()
            )  # the writing thread's: unchanged
            low = max(base, BACKGROUND_NICE)
            writer_thread = w._thread.native_id
            assert writer_thread is not None
            # "low": the writer's flush thread and the partition workers it used run below normal priority
            assert os.getpriority(os.PRIO_PROCESS, writer_thread) == (low if priority == "low" else base)
            if priority == "low":
                assert _background_flush_nices() == {low}
        for b in batches[3:]:
            w.write("m", b)
    files = list(lake.snapshot().files("t", "m", "raw"))
    partitions = [f.partition for f in files]
    assert len(files) == 6 and len(set(partitions)) == 6, partitions  # each hour whole in one file
    expected = pl.concat(batches).sort("time", "host")
    assert _stored(lake).equals(expected)
    assert sum(f.points for f in files) == expected.height  # nothing stored twice


def test_partial_flush_writes_a_carry_for_the_straddling_batch(tmp_path: Path) -> None:
    lake = tsdb_lake.connect(tmp_path / "lake", wal_root=tmp_path / "wal")
    _warm(lake)
    w = lake.writer(tenant="t", wal_dir=tmp_path / "w", flush_completed_bytes=1)
    w.write("m", _batch(0))  # minutes 0..44 (hour 0)
    w.write("m", _batch(1))  # minutes 45..89: hour 0 and hour 1
    _wait_for_files(lake, 1)
    progress = lake.snapshot().progress(w.writer_id)
    carries = [r for r in WAL.replay(w._wal) if is_carry(r.payload)]
    w.close()
    assert progress == 2  # the partial flush covered both write records ...
    assert len(carries) == 1  # ... and re-logged the hour-1 rows of record 2
    covers, tables = decode_carry(carries[0].payload)
    assert covers == 2 and [m for m, _ in tables] == ["m"]
    assert tables[0][1].series.num_rows == 3  # labels re-logged once per series, not per point
    carried = pl.from_arrow(tables[0][1].expand())
    assert isinstance(carried, pl.DataFrame)
    assert (carried["time"] >= T0 + H).all() and carried.height == 30 * 3
    assert carried.columns == ["time", "host", "v"]
    assert _stored(lake).equals(pl.concat([_batch(0), _batch(1)]).sort("time", "host"))


def _crafted_wal(directory: Path, version: int = 2) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A WAL as a partial flush leaves it: write records 1-2, then carry 3 covering 2 (hour-1 rows); records
    in format ``version`` (1: full tables, as older writers logged them; 2: series-grouped batches)."""
    first, second = _batch(0), _batch(1)
    n1 = normalize_frame(first, metric="m")
    n2 = normalize_frame(second, metric="m")
    t2 = n2.table
    hour1 = t2.filter(pa.compute.greater_equal(t2.column("time"), T0 + H))
    with WAL(directory) as wal:
        if version == 1:
            wal.append_many([encode_record_v1("m", n1.table), encode_record_v1("m", t2)])
            wal.append(encode_carry_v1(2, [("m", hour1)]))
        else:
            wal.append_many([encode_record("m", n1.batch), encode_record("m", n2.batch)])
            wal.append(encode_carry(2, [("m", GroupedBatch.from_table(hour1))]))
    return pl.concat([first, second]).sort("time", "host"), second.filter(pl.col("time") >= T0 + H)


@pytest.mark.parametrize("version", [1, 2])
def test_replay_ignores_a_carry_whose_commit_never_happened(tmp_path: Path, version: int) -> None:
    everything, _ = _crafted_wal(tmp_path / "w", version)
    lake = tsdb_lake.connect(tmp_path / "lake", wal_root=tmp_path / "wal")
    with lake.writer(tenant="t", wal_dir=tmp_path / "w") as w:  # nothing committed: records 1-2 replay
        assert w.stats["replayed"] == 2
    assert _stored(lake).equals(everything)
    assert lake.snapshot().progress(wal_writer_id(tmp_path / "w")) == 3  # the carry is covered too


@pytest.mark.parametrize("version", [1, 2])
def test_replay_uses_the_carry_once_its_commit_happened(tmp_path: Path, version: int) -> None:
    _, hour1 = _crafted_wal(tmp_path / "w", version)
    lake = tsdb_lake.connect(tmp_path / "lake", wal_root=tmp_path / "wal")
    wid = wal_writer_id(tmp_path / "w")
    # The partial flush committed progress 2 (its hour-0 file is not needed to show what replay adds).
    lake.catalog.commit([WriterProgress(wid, 2)], operation="write", writer=wid)
    with lake.writer(tenant="t", wal_dir=tmp_path / "w") as w:
        assert w.stats["replayed"] == 1  # only the carried table
    assert _stored(lake).equals(hour1.sort("time", "host"))
    with lake.writer(tenant="t", wal_dir=tmp_path / "w") as w:  # and never again
        assert w.stats["replayed"] == 0
    assert _stored(lake).equals(hour1.sort("time", "host"))

"""The memtable groups batches per (metric, hour) and seals them sorted with duplicates merged per field."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.memtable import HOUR_NS, Memtable, PartitionKey
from tsdb_lake.model import series_id, series_key
from tsdb_lake.points import SeriesIdCache


def _batch(
    times: list[int], hosts: list[str | None], a: list[float | None], b: list[float | None] | None = None
) -> pa.Table:
    cols = {
        "time": pa.array(times, pa.int64()),
        "host": pa.array(hosts, pa.string()),
        "a": pa.array(a, pa.float64()),
    }
    if b is not None:
        cols["b"] = pa.array(b, pa.float64())
    return pa.table(cols)


def test_batches_split_by_hour_including_negative_times() -> None:
    mt = Memtable()
    mt.add("cpu", _batch([-1, 0, HOUR_NS, HOUR_NS + 5], ["x"] * 4, [1.0, 2.0, 3.0, 4.0]), lsn=7)
    assert mt.partitions() == [
        PartitionKey("cpu", -HOUR_NS),
        PartitionKey("cpu", 0),
        PartitionKey("cpu", HOUR_NS),
    ]
    assert mt.rows == 4 and mt.max_lsn == 7


def test_seal_assigns_series_ids_sorts_and_merges_fields_last_write_wins() -> None:
    mt = Memtable()
    mt.add("cpu", _batch([20, 10, 10], ["b", "a", "a"], [1.0, 2.0, 3.0], [None, 9.0, None]), lsn=1)
    mt.add("cpu", _batch([10], ["a"], [None], [8.0]), lsn=2)
    frame = mt.seal(PartitionKey("cpu", 0), ["host"], ["a", "b"], SeriesIdCache())
    ida, idb = series_id(series_key("cpu", {"host": "a"})), series_id(series_key("cpu", {"host": "b"}))
    rows = {(r["_series_id"], r["time"]): (r["a"], r["b"]) for r in frame.iter_rows(named=True)}
    # host=a at t=10 written three times: a's latest non-null is 3.0, b's latest non-null is 8.0
    assert rows[(ida, 10)] == (3.0, 8.0)
    assert rows[(idb, 20)] == (1.0, None)
    assert frame.height == 2
    assert frame.get_column("_series_id").to_list() == sorted(frame.get_column("_series_id").to_list())


def test_null_label_is_a_distinct_series_from_present_label() -> None:
    mt = Memtable()
    mt.add("cpu", _batch([1, 1], [None, "x"], [1.0, 2.0]), lsn=0)
    frame = mt.seal(PartitionKey("cpu", 0), ["host"], ["a"], SeriesIdCache())
    assert frame.height == 2
    assert set(frame.get_column("_series_id").to_list()) == {
        series_id(series_key("cpu", {})),
        series_id(series_key("cpu", {"host": "x"})),
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from(["a", "b"]), st.floats(allow_nan=False)),
        min_size=1,
        max_size=60,
    )
)
def test_seal_matches_a_dictionary_model(points: list[tuple[int, str, float]]) -> None:
    mt = Memtable()
    for i in range(0, len(points), 7):
        part = points[i : i + 7]
        mt.add("m", _batch([p[0] for p in part], [p[1] for p in part], [p[2] for p in part]), lsn=i)
    model: dict[tuple[str, int], float] = {}
    for t, h, v in points:
        model[(h, t)] = v
    frame = mt.seal(PartitionKey("m", 0), ["host"], ["a"], SeriesIdCache())
    got = {(r["host"], r["time"]): r["a"] for r in frame.iter_rows(named=True)}
    assert got == model
    assert frame.select(pl.struct("_series_id", "time").is_duplicated().any()).item() is False

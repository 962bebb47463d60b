"""``seal_points``' fast paths (counting sort, numba scatter of null-free fields, Arrow gather of fields with
nulls) give what the general path (:meth:`Memtable.seal`: expand, polars sort, merge) gives."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.memtable import HOUR_NS, Memtable, PartitionKey
from tsdb_lake.memtable.memtable import _inverse, _series_permutation
from tsdb_lake.points import SERIES_ID, SeriesIdCache, sort_order

LABELS = ["dc", "host"]
FIELDS = ["a", "b", "c"]


@st.composite
def _batches(draw: st.DrawFn) -> list[pa.Table]:
    """Batches with out-of-order and duplicate times, null labels and fields, fields missing in some batches,
    int64 and float64 fields (NaN included), some spanning two hours."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    nbatches = draw(st.integers(1, 6))
    hosts = draw(st.integers(1, 12))
    shape = draw(st.sampled_from(["in order", "interleaved", "random", "duplicates"]))
    out = []
    t0 = 0
    for b in range(nbatches):
        n = int(rng.integers(1, 80))
        host = rng.integers(0, hosts, n)
        if shape == "in order":  # each series in time order, series interleaved: the counting sort
            times = t0 + np.arange(n, dtype=np.int64) // hosts
        elif shape == "interleaved":
            times = t0 + np.arange(n, dtype=np.int64)
            host = np.arange(n) % hosts
        elif shape == "random":
            times = rng.integers(0, 2 * HOUR_NS // 10**9, n).astype(np.int64) * 10**9
        else:
            times = rng.integers(0, 5, n).astype(np.int64)
        t0 = int(times.max()) + 1
        cols: dict[str, pa.Array] = {
            "time": pa.array(times, pa.int64()),
            "dc": pa.array([None if h % 5 == 4 else f"dc{h % 2}" for h in host], pa.string()),
            "host": pa.array([f"h{h}" for h in host], pa.string()),
        }
        a = rng.normal(size=n).round(1)
        a[rng.random(n) < 0.1] = np.nan
        a_nulls = draw(st.booleans())
        cols["a"] = pa.array(a, pa.float64(), mask=(rng.random(n) < 0.3) if a_nulls else None)
        if b % 2 == 0 or draw(st.booleans()):
            ints = rng.integers(-3, 3, n)
            cols["b"] = pa.array(
                ints, pa.int64(), mask=(rng.random(n) < 0.3) if draw(st.booleans()) else None
            )
        if b % 3 == 1:
            cols["c"] = pa.array(rng.normal(size=n), pa.float64())
        out.append(pa.table(cols))
    return out


def _fill(mt: Memtable, batches: list[pa.Table]) -> None:
    for i, batch in enumerate(batches):
        mt.add("m", batch, lsn=i)


@settings(max_examples=150, deadline=None)
@given(_batches())
def test_seal_points_equals_the_general_seal(batches: list[pa.Table]) -> None:
    mt = Memtable()
    _fill(mt, batches)
    for key in mt.partitions():
        # the fields some batch holding points of this hour has (a field absent from the hour is left out)
        fields = [f for f in FIELDS if any(f in b.points.column_names for b in mt._parts[key].tables)]
        sealed = mt.seal(key, LABELS, fields, SeriesIdCache())
        points, series = mt.seal_points(key, LABELS, FIELDS, SeriesIdCache())
        assert series.get_column(SERIES_ID).is_unique().all()
        assert points.columns == [SERIES_ID, "time", *fields]
        for f in fields:
            assert points.schema[f] == sealed.schema[f], f
        joined = points.join(series, on=SERIES_ID, how="left").select(sealed.columns)
        # NaN != NaN in equals(): compare bit patterns of floats through a null-aware string form
        assert joined.height == sealed.height
        for name in sealed.columns:
            a, b = joined.get_column(name), sealed.get_column(name)
            assert a.null_count() == b.null_count(), name
            if a.dtype == pl.Float64:
                va, vb = a.fill_null(0.0).to_numpy(), b.fill_null(0.0).to_numpy()
                assert np.array_equal(va.view(np.uint64), vb.view(np.uint64)), name
            else:
                assert a.equals(b), name


def test_seal_points_keeps_the_last_write_of_each_field() -> None:
    mt = Memtable()
    mt.add("m", pa.table({"time": [5, 3, 5], "host": ["x", "x", "x"], "a": [1.0, 2.0, 3.0]}), lsn=0)
    mt.add(
        "m",
        pa.table({"time": pa.array([5], pa.int64()), "host": ["x"], "b": pa.array([7], pa.int64())}),
        lsn=1,
    )
    points, _ = mt.seal_points(PartitionKey("m", 0), ["host"], ["a", "b"], SeriesIdCache())
    assert points.select("time", "a", "b").rows() == [(3, 2.0, None), (5, 3.0, 7)]


@st.composite
def _ordering_case(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = draw(st.integers(1, 30))
    n = draw(st.integers(0, 200))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ids = rng.integers(0, 2**64 - 1, g, dtype=np.uint64)
    if g > 1 and draw(st.booleans()):
        ids[-1] = ids[0]
    groups = rng.integers(0, g, n)
    kind = draw(st.sampled_from(["per-series ordered", "sorted", "random"]))
    if kind == "per-series ordered":
        times = np.arange(n, dtype=np.int64) // 3
    elif kind == "sorted":
        groups = np.sort(groups)
        times = np.sort(rng.integers(0, 20, n))
    else:
        times = rng.integers(0, 20, n)
    return groups, ids, times


@settings(max_examples=300, deadline=None)
@given(_ordering_case())
def test_series_permutation_matches_sort_order(case: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    groups, ids, times = case
    sids = ids[groups]
    perm = sort_order(sids, times)
    dest, sorted_sids, sorted_times = _series_permutation(groups, ids, times)
    if perm is None:
        assert dest is None
        assert np.array_equal(sorted_sids, sids) and np.array_equal(sorted_times, times)
    else:
        assert dest is not None
        assert np.array_equal(_inverse(dest), perm)
        assert np.array_equal(sorted_sids, sids[perm]) and np.array_equal(sorted_times, times[perm])

"""Exact row grouping over Arrow string buffers, and ``seal_points`` against ``seal``."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.grouping import group_rows
from tsdb_lake.memtable import HOUR_NS, Memtable, PartitionKey
from tsdb_lake.points import SeriesIdCache

# Values that stress the hash and the byte comparison: empty vs null, shared prefixes, > 8 bytes, non-ASCII.
VALUES = st.sampled_from(
    [
        None,
        "",
        "a",
        "ab",
        "abcdefgh",
        "abcdefghi",
        "abcdefgh\x01",
        "ü",
        "host-000000000001",
        "host-000000000002",
    ]
)


def _reference(rows: list[tuple[str | None, ...]]) -> tuple[list[int], list[int]]:
    first: dict[tuple[str | None, ...], int] = {}
    groups = []
    for i, row in enumerate(rows):
        groups.append(list(first).index(row) if row in first else len(first))
        first.setdefault(row, i)
    return groups, list(first.values())


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 3).flatmap(lambda k: st.lists(st.tuples(*[VALUES] * k), min_size=0, max_size=80)),
    st.booleans(),
)
def test_group_rows_is_exact(rows: list[tuple[str | None, ...]], large: bool) -> None:
    ncols = len(rows[0]) if rows else 2
    kind = pa.large_string() if large else pa.string()
    # Columns are built with a 3-row prefix then sliced off, so offsets do not start at zero.
    padded = [[f"junk{i}" for i in range(3)] + [r[c] for r in rows] for c in range(ncols)]
    columns = [pa.array(col, kind).slice(3) for col in padded]
    groups, firsts = group_rows(columns, len(rows))
    want_groups, want_firsts = _reference(rows)
    assert groups.tolist() == want_groups
    assert firsts.tolist() == want_firsts


def test_group_rows_many_groups_and_chunked_input() -> None:
    n = 5000
    hosts = [f"h{i % 1500}" for i in range(n)]
    dcs = [None if i % 7 == 0 else f"dc{i % 3}" for i in range(n)]
    col_a = pa.chunked_array([pa.array(hosts[:1234]), pa.array(hosts[1234:])])
    col_b = pa.chunked_array([pa.array(dcs[:10]), pa.array(dcs[10:])])
    groups, firsts = group_rows([col_a, col_b], n)
    want_groups, want_firsts = _reference(list(zip(hosts, dcs, strict=True)))
    assert groups.tolist() == want_groups and firsts.tolist() == want_firsts


def test_group_rows_without_columns_is_one_group() -> None:
    groups, firsts = group_rows([], 4)
    assert groups.tolist() == [0, 0, 0, 0] and firsts.tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),
            st.sampled_from(["a", "b", None]),
            st.sampled_from(["x", None]),
            st.one_of(st.none(), st.floats(allow_nan=False)),
            st.one_of(st.none(), st.integers(-5, 5)),
        ),
        min_size=1,
        max_size=60,
    )
)
def test_seal_points_matches_seal(
    points: list[tuple[int, str | None, str | None, float | None, int | None]],
) -> None:
    mt = Memtable()
    for i in range(0, len(points), 9):
        part = [p for p in points[i : i + 9] if p[3] is not None or p[4] is not None]
        if not part:
            continue
        table = pa.table(
            {
                "time": pa.array([p[0] for p in part], pa.int64()),
                "dc": pa.array([p[2] for p in part], pa.string()),
                "host": pa.array([p[1] for p in part], pa.string()),
                "a": pa.array([p[3] for p in part], pa.float64()),
                "b": pa.array([p[4] for p in part], pa.int64()),
            }
        )
        mt.add("m", table, lsn=i)
    if mt.is_empty:
        return
    key = PartitionKey("m", 0)
    sealed = mt.seal(key, ["dc", "host"], ["a", "b"], SeriesIdCache())
    points_frame, series = mt.seal_points(key, ["dc", "host"], ["a", "b"], SeriesIdCache())
    assert series.get_column("_series_id").is_unique().all()
    joined = points_frame.join(series, on="_series_id", how="left").select(sealed.columns)
    assert joined.equals(sealed)


def test_completed_split_carry_and_retag() -> None:
    mt = Memtable()
    t = pa.table({"time": pa.array([0, HOUR_NS + 1], pa.int64()), "v": pa.array([1.0, 2.0])})
    mt.add("m", t, lsn=5)  # straddles hours 0 and 1
    mt.add("n", t.slice(0, 1), lsn=6)  # metric n has only hour 0: not completed
    keys, nbytes = mt.completed()
    assert keys == [PartitionKey("m", 0)] and nbytes > 0
    assert mt.lsn_of(keys) == 5
    carried = mt.carry(5, skip=keys)
    assert [(m, tb.num_rows) for m, tb in carried] == [("m", 1)]
    frozen = mt.split(keys)
    assert frozen.partitions() == keys and frozen.max_lsn == 5 and frozen.rows == 1
    assert mt.partitions() == [PartitionKey("m", HOUR_NS), PartitionKey("n", 0)] and mt.rows == 2
    mt.retag(5, 9)
    assert mt.carry(8) == [("n", mt.carry(8)[0][1])]  # the retagged table is now held by record 9
    assert mt.lsn_of([PartitionKey("m", HOUR_NS)]) == 9 and mt.max_lsn == 9
    sealed = frozen.seal(keys[0], [], ["v"], SeriesIdCache())
    assert sealed.get_column("v").to_list() == [1.0]
    assert isinstance(sealed, pl.DataFrame) and np.array_equal(sealed.get_column("time").to_numpy(), [0])

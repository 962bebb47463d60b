"""The memtable: series-grouped Arrow batches per (metric, hour) until a flush seals them.

It never touches the WAL, the catalog or object storage: the writer feeds it accepted batches
(:class:`~tsdb_lake.grouping.GroupedBatch`, labels stored once per series) and asks it for sealed,
sorted, duplicate-free point frames. Not thread-safe; the writer serialises access.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
from numba import njit

from tsdb_lake.grouping import GROUP_COLUMN, GroupedBatch, group_rows, rows_table
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import (
    SERIES_ID,
    SeriesIdCache,
    assign_series_ids,
    merge_duplicates,
    sort_order,
    sort_points,
)

__all__ = ["HOUR_NS", "Memtable", "PartitionKey"]

HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True, order=True)
class PartitionKey:
    """A raw partition: the metric and the start of its UTC hour in ns."""

    metric: str
    hour_ns: int


@dataclass
class _Partition:
    tables: list[GroupedBatch] = field(default_factory=list)
    #: The WAL LSN holding each batch (parallel to ``tables``): its write record, or the carry record that
    #: re-logged it (see :meth:`Memtable.carry`).
    lsns: list[int] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0
    min_time: int = np.iinfo(np.int64).max
    max_time: int = np.iinfo(np.int64).min


class Memtable:
    """Accepted batches waiting for a flush; ``max_lsn`` is the newest WAL record they include."""

    def __init__(self) -> None:
        self._parts: dict[PartitionKey, _Partition] = {}
        self.nbytes = 0
        self.rows = 0
        self.max_lsn = -1
        self.created = time.monotonic()
        self.first_write: float | None = None

    def __len__(self) -> int:
        return self.rows

    @property
    def is_empty(self) -> bool:
        """Whether nothing has been added."""
        return self.rows == 0

    def age(self) -> float:
        """Seconds since the oldest write still buffered (0 when empty)."""
        return 0.0 if self.first_write is None else time.monotonic() - self.first_write

    def add(self, metric: str, batch: GroupedBatch | pa.Table, lsn: int) -> None:
        """Buffer an accepted batch that the WAL logged as record ``lsn`` (a normal-form table is grouped)."""
        if isinstance(batch, pa.Table):
            batch = GroupedBatch.from_table(batch)
        if batch.num_rows == 0:
            return
        times = batch.points.column(TIME_COLUMN).to_numpy()
        hours = np.floor_divide(times, HOUR_NS)
        # Bytes per point (slices would recompute their buffer ranges); each slice also counts the shared
        # series table once (it is small next to the points).
        per_row = batch.points.nbytes / batch.num_rows
        series_bytes = batch.series.nbytes
        lo, hi = int(hours.min()), int(hours.max())
        if lo == hi:
            self._add_part(PartitionKey(metric, lo * HOUR_NS), batch, times, lsn, batch.nbytes)
        elif bool((hours[1:] >= hours[:-1]).all()):  # time-ordered batch: zero-copy slices per hour
            edges = [0, *(np.flatnonzero(np.diff(hours)) + 1).tolist(), len(hours)]
            for s, e in itertools.pairwise(edges):
                key = PartitionKey(metric, int(hours[s]) * HOUR_NS)
                nbytes = int(per_row * (e - s)) + series_bytes
                self._add_part(key, batch.slice(s, e - s), times[s:e], lsn, nbytes)
        else:
            order = np.argsort(hours, kind="stable")
            sorted_hours = hours[order]
            bounds = np.flatnonzero(np.diff(sorted_hours)) + 1
            for idx in np.split(order, bounds):
                part = batch.take(idx)
                key = PartitionKey(metric, int(hours[idx[0]]) * HOUR_NS)
                self._add_part(key, part, times[idx], lsn, int(per_row * len(idx)) + series_bytes)
        self.max_lsn = max(self.max_lsn, lsn)
        if self.first_write is None:
            self.first_write = time.monotonic()

    def _add_part(
        self, key: PartitionKey, batch: GroupedBatch, times: np.ndarray, lsn: int, nbytes: int
    ) -> None:
        part = self._parts.setdefault(key, _Partition())
        part.tables.append(batch)
        part.lsns.append(lsn)
        part.rows += batch.num_rows
        part.nbytes += nbytes
        part.min_time = min(part.min_time, int(times.min()))
        part.max_time = max(part.max_time, int(times.max()))
        self.rows += batch.num_rows
        self.nbytes += nbytes

    def completed(self) -> tuple[list[PartitionKey], int]:
        """Partitions older than their metric's newest hour here (in time order, writing has moved past
        them), and their buffered bytes."""
        newest: dict[str, int] = {}
        for key in self._parts:
            newest[key.metric] = max(newest.get(key.metric, key.hour_ns), key.hour_ns)
        keys = sorted(key for key in self._parts if key.hour_ns < newest[key.metric])
        return keys, sum(self._parts[key].nbytes for key in keys)

    def lsn_of(self, keys: Sequence[PartitionKey]) -> int:
        """The largest LSN holding data of these partitions (-1 when none)."""
        return max((max(self._parts[key].lsns) for key in keys if key in self._parts), default=-1)

    def split(self, keys: Sequence[PartitionKey]) -> Memtable:
        """Move the partitions ``keys`` into a new memtable (whose ``max_lsn`` is their largest LSN)."""
        out = Memtable()
        out.created = self.created
        out.first_write = self.first_write
        for key in keys:
            part = self._parts.pop(key)
            out._parts[key] = part
            out.rows += part.rows
            out.nbytes += part.nbytes
            self.rows -= part.rows
            self.nbytes -= part.nbytes
        out.max_lsn = out.lsn_of(keys)
        if self.is_empty:
            self.first_write = None
        return out

    def carry(self, upto: int, skip: Sequence[PartitionKey] = ()) -> list[tuple[str, GroupedBatch]]:
        """The batches held by WAL records with LSN <= ``upto`` outside the partitions ``skip``, as
        ``(metric, batch)`` in arrival order per partition (partitions in key order)."""
        out = []
        skipped = set(skip)
        for key in sorted(self._parts):
            if key in skipped:
                continue
            part = self._parts[key]
            out += [(key.metric, t) for t, lsn in zip(part.tables, part.lsns, strict=True) if lsn <= upto]
        return out

    def retag(self, upto: int, lsn: int) -> None:
        """Record that the tables held by records <= ``upto`` are now held by record ``lsn`` (a carry)."""
        for part in self._parts.values():
            part.lsns = [lsn if old <= upto else old for old in part.lsns]
        self.max_lsn = max(self.max_lsn, lsn)

    def partitions(self) -> list[PartitionKey]:
        """The buffered partitions, sorted by metric then hour."""
        return sorted(self._parts)

    def metrics(self) -> set[str]:
        """Metrics with buffered data."""
        return {key.metric for key in self._parts}

    def seal(
        self, key: PartitionKey, labels: Sequence[str], fields: Sequence[str], cache: SeriesIdCache
    ) -> pl.DataFrame:
        """The partition as one point frame with ``_series_id``, sorted by (series, time), duplicates merged."""
        tables = [batch.expand() for batch in self._parts[key].tables]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frame = assign_series_ids(frame, key.metric, labels, cache)
        return merge_duplicates(sort_points(frame), fields)

    def seal_points(
        self, key: PartitionKey, labels: Sequence[str], fields: Sequence[str], cache: SeriesIdCache
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The partition as ``(points, series)`` without gathering labels per point.

        ``points`` holds ``_series_id``, ``time`` and the fields, sorted by (series, time) with duplicates
        merged as :meth:`seal` does; ``series`` holds one row per series that has points here: ``_series_id``
        and its labels. Only the batches' (small) series tables are grouped, not the points.
        """
        batches = self._parts[key].tables
        series_tables = [b.series for b in batches]
        bases = np.cumsum([0, *(t.num_rows for t in series_tables)])
        all_series = _concat(series_tables)
        present = [label for label in labels if label in all_series.column_names]
        columns = [all_series.column(label) for label in present]
        groups, firsts = group_rows(columns, all_series.num_rows)
        # Each point's group: its batch's series row, shifted into the concatenated series table.
        point_groups = np.concatenate(
            [
                groups[b.points.column(GROUP_COLUMN).to_numpy() + base]
                for b, base in zip(batches, bases, strict=False)
            ]
        )
        # Series of a batch may have no point in this hour (the batch was split): keep only those used.
        used = np.zeros(len(firsts), np.bool_)
        used[point_groups] = True
        if not used.all():
            kept = np.flatnonzero(used)
            renumber = np.cumsum(used) - 1
            point_groups = renumber[point_groups]
            firsts = firsts[kept]
        index = pa.array(firsts)
        values = [col.take(index) for col in columns]
        rows: list[tuple[str | None, ...]] = (
            list(zip(*(v.to_pylist() for v in values), strict=True)) if present else [()] * len(firsts)
        )
        ids = np.array(cache.ids_for(key.metric, present, rows), np.uint64)
        series = pl.DataFrame(
            [
                pl.Series(SERIES_ID, ids, pl.UInt64),
                *(pl.Series(label, v) for label, v in zip(present, values, strict=True)),
            ]
        )
        times = _numpy_column([b.points.column(TIME_COLUMN) for b in batches], np.int64)
        dest, sids, times = _series_permutation(point_groups, ids, times)
        columns_out = [pl.Series(SERIES_ID, sids, pl.UInt64), pl.Series(TIME_COLUMN, times, pl.Int64)]
        lengths = [b.num_rows for b in batches]
        for name in fields:
            pieces = [
                None if (i := b.points.schema.get_field_index(name)) < 0 else b.points.column(i)
                for b in batches
            ]
            if any(p is not None for p in pieces):
                columns_out.append(_gather_field(name, pieces, lengths, dest))
        return merge_duplicates(pl.DataFrame(columns_out), fields), series

    def scan(self, metric: str, start: int | None = None, end: int | None = None) -> Iterator[pa.Table]:
        """Buffered batches of ``metric`` in full normal form whose partitions overlap ``[start, end)``
        (unsorted, unmerged)."""
        for key, part in self._parts.items():
            if key.metric != metric:
                continue
            if start is not None and part.max_time < start:
                continue
            if end is not None and part.min_time >= end:
                continue
            for batch in part.tables:
                yield batch.expand()


def _series_order(groups: np.ndarray, ids: np.ndarray, times: np.ndarray) -> np.ndarray | None:
    """:func:`sort_order` of points whose series id is ``ids[groups]``, usually without a general sort."""
    dest = _series_permutation(groups, ids, times)[0]
    return None if dest is None else _inverse(dest)


def _series_permutation(
    groups: np.ndarray, ids: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Order points whose series id is ``ids[groups]`` by (series, time), ties in arrival order (as
    :func:`sort_order`): ``(dest, sorted series ids, sorted times)`` where point ``i`` goes to ``dest[i]``
    (None when the points already are in that order).

    Points of one series usually arrive in time order: then a stable counting sort by the rank of each point's
    series id is that order (one numba pass checks the times and counts, a second one places the points).
    Falls back to :func:`sort_order` otherwise.
    """
    g = len(ids)
    if len(groups) >= 2:
        by_id = np.argsort(ids, kind="stable")
        if g < 2 or bool((ids[by_id][1:] != ids[by_id][:-1]).all()):  # else two groups share a series id
            rank = np.empty(g, np.int64)
            rank[by_id] = np.arange(g, dtype=np.int64)
            groups = np.ascontiguousarray(groups, np.int64)
            status, dest, sorted_sids, sorted_times = _counting_order(rank, groups, times, ids)
            if status == _SORTED:
                return None, ids[groups], times
            if status == _PERMUTED:
                return dest, sorted_sids, sorted_times
    sids = ids[groups]
    perm = sort_order(sids, times)
    if perm is None:
        return None, sids, times
    return _inverse(perm), sids[perm], times[perm]


def _inverse(perm: np.ndarray) -> np.ndarray:
    """The inverse of a permutation."""
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm), dtype=perm.dtype)
    return inv


_UNORDERED, _SORTED, _PERMUTED = 0, 1, 2


@njit(cache=True)
def _counting_order(
    rank: np.ndarray, groups: np.ndarray, times: np.ndarray, ids: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Stable counting sort of points by ``rank[groups]`` when each rank's points arrive in time order.

    Returns ``(_PERMUTED, dest, ids[groups] sorted, times sorted)`` when the counting sort orders the points,
    ``(_SORTED, ...)`` (empty arrays) when they already are in (rank, time) order and ``(_UNORDERED, ...)``
    when some rank's times go backwards.
    """
    n = groups.shape[0]
    g = rank.shape[0]
    counts = np.zeros(g + 1, np.int64)
    last = np.zeros(g, np.int64)
    seen = np.zeros(g, np.bool_)
    grouped = True
    prev = -1
    for i in range(n):
        k = rank[groups[i]]
        t = times[i]
        if seen[k] and t < last[k]:
            return _UNORDERED, np.zeros(0, np.int64), np.zeros(0, ids.dtype), np.zeros(0, np.int64)
        seen[k] = True
        last[k] = t
        counts[k + 1] += 1
        if k < prev:
            grouped = False
        prev = k
    if grouped:
        return _SORTED, np.zeros(0, np.int64), np.zeros(0, ids.dtype), np.zeros(0, np.int64)
    for k in range(g):
        counts[k + 1] += counts[k]
    dest = np.empty(n, np.int64)
    out_sids = np.empty(n, ids.dtype)
    out_times = np.empty(n, np.int64)
    for i in range(n):
        grp = groups[i]
        k = rank[grp]
        p = counts[k]
        counts[k] = p + 1
        dest[i] = p
        out_sids[p] = ids[grp]
        out_times[p] = times[i]
    return _PERMUTED, dest, out_sids, out_times


@njit(cache=True)
def _scatter(out: np.ndarray, values: np.ndarray, dest: np.ndarray, start: int) -> None:
    """``out[dest[start + i]] = values[i]`` for every ``i``."""
    for i in range(values.shape[0]):
        out[dest[start + i]] = values[i]


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Concatenate tables whose column sets may differ (missing columns become null)."""
    if len(tables) == 1:
        return tables[0]
    if all(t.num_columns == 0 for t in tables):
        return rows_table(sum(t.num_rows for t in tables))
    return pa.concat_tables(tables, promote_options="default")


def _numpy_column(pieces: Sequence[pa.ChunkedArray], dtype: type[np.generic]) -> np.ndarray:
    """The concatenated values of null-free numeric columns (zero-copy views, at most one copy)."""
    arrays = [np.asarray(chunk) for piece in pieces for chunk in piece.chunks if len(chunk)]
    if not arrays:
        return np.zeros(0, dtype)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _gather_field(
    name: str, pieces: Sequence[pa.ChunkedArray | None], lengths: Sequence[int], dest: np.ndarray | None
) -> pl.Series:
    """A field's values over every batch (``None``: the batch lacks it, nulls), point ``i`` moved to ``dest[i]``
    (None: no reordering).

    Null-free int64 / float64 columns are scattered by numba straight from the batches; columns with nulls (or
    of other types) go through Arrow.
    """
    types = {p.type for p in pieces if p is not None}
    if len(types) > 1:
        raise pa.ArrowTypeError(
            f"field {name!r} has different types across batches: {sorted(map(str, types))}"
        )
    arrow_type = types.pop()
    if arrow_type in (pa.int64(), pa.float64()) and all(p is not None and p.null_count == 0 for p in pieces):
        dtype = np.int64 if arrow_type == pa.int64() else np.float64
        if dest is None:
            return pl.Series(name, _numpy_column([p for p in pieces if p is not None], dtype))
        out = np.empty(len(dest), dtype)
        pos = 0
        for piece in pieces:
            assert piece is not None
            for chunk in piece.chunks:
                _scatter(out, np.asarray(chunk), dest, pos)
                pos += len(chunk)
        return pl.Series(name, out)
    arrays = [
        chunk
        for p, n in zip(pieces, lengths, strict=True)
        for chunk in (p.chunks if p is not None else [pa.nulls(n, arrow_type)])
    ]
    column = pa.concat_arrays(arrays) if arrays else pa.array([], arrow_type)
    if dest is not None:
        column = column.take(pa.array(_inverse(dest)))
    return pl.Series(name, column)

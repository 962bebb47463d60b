"""The memtable: Arrow batches grouped per (metric, hour) until a flush seals them.

It never touches the WAL, the catalog or object storage: the writer feeds it accepted batches and asks it
for sealed, sorted, duplicate-free point frames. Not thread-safe; the writer serialises access.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SeriesIdCache, assign_series_ids, merge_duplicates, sort_points

__all__ = ["HOUR_NS", "Memtable", "PartitionKey"]

HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True, order=True)
class PartitionKey:
    """A raw partition: the metric and the start of its UTC hour in ns."""

    metric: str
    hour_ns: int


@dataclass
class _Partition:
    tables: list[pa.Table] = field(default_factory=list)
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

    def add(self, metric: str, table: pa.Table, lsn: int) -> None:
        """Buffer a normalised batch (``time`` int64 ns first) that the WAL logged as record ``lsn``."""
        if table.num_rows == 0:
            return
        times = table.column(TIME_COLUMN).to_numpy()
        hours = np.floor_divide(times, HOUR_NS)
        lo, hi = int(hours.min()), int(hours.max())
        if lo == hi:
            self._add_part(PartitionKey(metric, lo * HOUR_NS), table, times)
        else:
            order = np.argsort(hours, kind="stable")
            sorted_hours = hours[order]
            bounds = np.flatnonzero(np.diff(sorted_hours)) + 1
            for idx in np.split(order, bounds):
                part = table.take(pa.array(idx))
                self._add_part(PartitionKey(metric, int(hours[idx[0]]) * HOUR_NS), part, times[idx])
        self.max_lsn = max(self.max_lsn, lsn)
        if self.first_write is None:
            self.first_write = time.monotonic()

    def _add_part(self, key: PartitionKey, table: pa.Table, times: np.ndarray) -> None:
        part = self._parts.setdefault(key, _Partition())
        part.tables.append(table)
        part.rows += table.num_rows
        part.nbytes += table.nbytes
        part.min_time = min(part.min_time, int(times.min()))
        part.max_time = max(part.max_time, int(times.max()))
        self.rows += table.num_rows
        self.nbytes += table.nbytes

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
        tables = self._parts[key].tables
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        frame = assign_series_ids(frame, key.metric, labels, cache)
        return merge_duplicates(sort_points(frame), fields)

    def scan(self, metric: str, start: int | None = None, end: int | None = None) -> Iterator[pa.Table]:
        """Buffered batches of ``metric`` whose partitions overlap ``[start, end)`` (unsorted, unmerged)."""
        for key, part in self._parts.items():
            if key.metric != metric:
                continue
            if start is not None and part.max_time < start:
                continue
            if end is not None and part.min_time >= end:
                continue
            yield from part.tables

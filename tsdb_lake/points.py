"""Operations on point frames shared by the memtable, the query engine and the compactor.

A *point frame* is a polars DataFrame with ``time`` (int64 ns), label columns (strings, null = absent),
field columns (float64 / int64, null = absent) and, once assigned, ``_series_id`` (uint64). Duplicate points
(same series and time) resolve the way InfluxDB does: the field sets merge and the latest write wins per field.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from tsdb_lake.model import TIME_COLUMN, series_id, series_key

__all__ = ["SERIES_ID", "SeriesIdCache", "assign_series_ids", "merge_duplicates", "sort_points"]

SERIES_ID = "_series_id"
_SEQ = "_seq"


class SeriesIdCache:
    """Memoises series ids by (metric, label values) so repeated batches hash each series once."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, tuple[str, ...], tuple[str | None, ...]], int] = {}

    def ids_for(self, metric: str, labels: Sequence[str], rows: list[tuple[str | None, ...]]) -> list[int]:
        """The series id of each row of label values (ordered as ``labels``)."""
        out = []
        label_tuple = tuple(labels)
        for values in rows:
            cache_key = (metric, label_tuple, values)
            sid = self._ids.get(cache_key)
            if sid is None:
                sid = series_id(series_key(metric, zip(label_tuple, values, strict=True)))
                self._ids[cache_key] = sid
            out.append(sid)
        return out


def assign_series_ids(
    frame: pl.DataFrame, metric: str, labels: Sequence[str], cache: SeriesIdCache | None = None
) -> pl.DataFrame:
    """``frame`` with a ``_series_id`` column computed from its label columns (hashing each series once)."""
    cache = cache or SeriesIdCache()
    labels = [label for label in labels if label in frame.columns]
    if not labels:
        sid = series_id(series_key(metric, ()))
        return frame.with_columns(pl.lit(sid, dtype=pl.UInt64).alias(SERIES_ID))
    unique = frame.select(labels).unique(maintain_order=True)
    ids = cache.ids_for(metric, labels, unique.rows())
    unique = unique.with_columns(pl.Series(SERIES_ID, ids, dtype=pl.UInt64))
    return frame.join(unique, on=labels, how="left", nulls_equal=True, maintain_order="left")


def sort_points(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort by series then time, keeping arrival order among equal keys (a stable sort)."""
    return frame.sort([SERIES_ID, TIME_COLUMN], maintain_order=True)


def merge_duplicates(frame: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    """Resolve duplicate (series, time) points of a frame sorted by :func:`sort_points`, arrival order last.

    Each field takes its last non-null value among the duplicates (last write wins per field, like InfluxDB);
    the result stays sorted by (series, time).
    """
    if frame.height < 2:
        return frame
    keys = [SERIES_ID, TIME_COLUMN]
    sids = frame.get_column(SERIES_ID).to_numpy()
    times = frame.get_column(TIME_COLUMN).to_numpy()
    same = (sids[1:] == sids[:-1]) & (times[1:] == times[:-1])  # sorted: duplicates are neighbours
    if not same.any():
        return frame
    marks = np.zeros(frame.height, dtype=bool)
    marks[1:] |= same
    marks[:-1] |= same
    dup = pl.Series(marks)
    unique_rows = frame.filter(~dup)
    others = [c for c in frame.columns if c not in keys]
    field_set = set(fields)
    merged = (
        frame.filter(dup)
        .group_by(keys, maintain_order=True)
        .agg([pl.col(c).drop_nulls().last() if c in field_set else pl.col(c).last() for c in others])
        .select(frame.columns)
    )
    return pl.concat([unique_rows, merged]).sort(keys)

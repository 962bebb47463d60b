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

__all__ = [
    "SERIES_ID",
    "SeriesIdCache",
    "assign_series_ids",
    "merge_duplicates",
    "series_id_column",
    "series_ids",
    "sort_order",
    "sort_points",
]

SERIES_ID = "_series_id"
_SEQ = "_seq"
#: Fixed seed of the row hash used to map rows to their (exactly found) distinct label combinations.
_ROW_HASH_SEED = 0x5EED


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
    return frame.with_columns(series_id_column(frame, metric, labels, cache))


def series_id_column(
    frame: pl.DataFrame, metric: str, labels: Sequence[str], cache: SeriesIdCache | None = None
) -> pl.Series:
    """The ``_series_id`` of every row of ``frame`` (uint64), from its label columns."""
    ids, _ = series_ids(frame, metric, labels, cache)
    return pl.Series(SERIES_ID, ids, pl.UInt64)


def series_ids(
    frame: pl.DataFrame, metric: str, labels: Sequence[str], cache: SeriesIdCache | None = None
) -> tuple[np.ndarray, pl.DataFrame]:
    """``(series id of every row, one row per distinct series: _series_id + its label columns)``.

    The distinct label combinations are found exactly (``unique``); rows are then mapped to their
    combination through a row hash, which is exact whenever the distinct combinations hash apart (checked;
    otherwise a join does the mapping). Labels not in ``frame`` are left out of the series frame.
    """
    cache = cache or SeriesIdCache()
    labels = [label for label in labels if label in frame.columns]
    if not labels:
        sid = series_id(series_key(metric, ()))
        return np.full(frame.height, sid, np.uint64), pl.DataFrame(
            {SERIES_ID: pl.Series([sid], dtype=pl.UInt64)}
        )
    label_frame = frame.select(labels)
    unique = label_frame.unique(maintain_order=True)
    ids = np.array(cache.ids_for(metric, labels, unique.rows()), np.uint64)
    series = unique.select(pl.Series(SERIES_ID, ids, pl.UInt64), *labels)
    if unique.height == 1:
        return np.full(frame.height, ids[0], np.uint64), series
    unique_hashes = unique.hash_rows(_ROW_HASH_SEED).to_numpy()
    order = np.argsort(unique_hashes)
    sorted_hashes = unique_hashes[order]
    if bool((sorted_hashes[1:] != sorted_hashes[:-1]).all()):
        # Every row equals exactly one distinct combination, and those hash apart: the hash identifies it.
        pos = np.searchsorted(sorted_hashes, label_frame.hash_rows(_ROW_HASH_SEED).to_numpy())
        return ids[order][pos], series
    joined = label_frame.join(series, on=labels, how="left", nulls_equal=True, maintain_order="left")
    return joined.get_column(SERIES_ID).to_numpy(), series


def sort_order(sids: np.ndarray, times: np.ndarray) -> np.ndarray | None:
    """The stable permutation sorting points by (series id, time), or None when they already are sorted."""
    if len(sids) < 2:
        return None
    same = sids[1:] == sids[:-1]
    if bool((sids[1:] >= sids[:-1]).all()) and bool((~same | (times[1:] >= times[:-1])).all()):
        return None
    by_time = np.argsort(times, kind="stable")
    return by_time[np.argsort(sids[by_time], kind="stable")]


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

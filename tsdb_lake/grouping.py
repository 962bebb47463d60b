"""Exact grouping of rows by their label values, straight over Arrow string buffers (numba, no copies to polars),
and :class:`GroupedBatch`, the series-grouped form in which accepted batches travel through the WAL and memtable.

Rows are hashed over their label bytes into an open-addressing table whose entries are compared word by word,
so equal rows always share a group and distinct rows never do (a hash collision only costs a comparison).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from numba import njit
from numpy.lib.stride_tricks import as_strided

__all__ = ["GROUP_COLUMN", "GroupedBatch", "group_rows"]

#: The column of a grouped batch's points table naming the row of its series table (int32).
GROUP_COLUMN = "_group"
_TIME = "time"

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_S29 = np.uint64(29)
_S31 = np.uint64(31)
_ONE = np.uint64(1)
_TOP = np.uint64(1) << np.uint64(63)


@njit(cache=True, inline="always")
def _fmix(x: np.uint64) -> np.uint64:
    x = (x ^ (x >> _S31)) * _K2
    return x ^ (x >> _S29)


@njit(cache=True, inline="always")
def _word(words: np.ndarray, j: int, nbytes: int) -> np.uint64:
    """Bytes ``j .. j + nbytes - 1`` (0 <= nbytes <= 8) of the data, zero-extended; ``words[k, q]`` is the
    (unaligned) little-endian word starting at byte ``8 q + k``."""
    w = words[j & 7, j >> 3]
    if nbytes >= 8:
        return w  # type: ignore[no-any-return]
    if nbytes <= 0:
        return np.uint64(0)
    shift = np.uint64(8 * (8 - nbytes))
    return (w << shift) >> shift  # type: ignore[no-any-return]


@njit(cache=True, nogil=True)
def _value_keys(words: np.ndarray, offs: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """Three words per (key, column, row) that are equal for equal values: bytes 0-7 and 8-15 (zero-extended),
    and ``length + 1`` for values of at most 16 bytes (0 = null) -- exact -- or, with the top bit set, a hash
    of the length and the remaining bytes (rows are then compared byte for byte too)."""
    ncols = offs.shape[0]
    keys = np.empty((3, ncols, n), np.uint64)
    for c in range(ncols):
        o = offs[c]
        v = valid[c]
        a0 = keys[0, c]
        a1 = keys[1, c]
        a2 = keys[2, c]
        for i in range(n):
            s = o[i]
            m = o[i + 1] - s
            if not v[i]:
                a0[i] = 0
                a1[i] = 0
                a2[i] = 0
                continue
            a0[i] = _word(words, s, m)
            if m <= 8:
                a1[i] = 0
                a2[i] = np.uint64(m + 1)
                continue
            a1[i] = _word(words, s + 8, m - 8)
            if m <= 16:
                a2[i] = np.uint64(m + 1)
                continue
            h = np.uint64(m) * _K1
            j = s + 16
            e = s + m
            while j < e:
                h = _fmix(h ^ _word(words, j, e - j))
                j += 8
            a2[i] = h | _TOP
    return keys


@njit(cache=True, inline="always")
def _rows_equal(words: np.ndarray, offs: np.ndarray, keys: np.ndarray, a: int, b: int) -> bool:
    """Whether rows ``a`` and ``b`` hold the same values (keys first, then the tails of long values)."""
    d = np.uint64(0)
    long = np.uint64(0)
    for c in range(keys.shape[1]):
        d |= (
            (keys[0, c, a] ^ keys[0, c, b])
            | (keys[1, c, a] ^ keys[1, c, b])
            | (keys[2, c, a] ^ keys[2, c, b])
        )
        long |= keys[2, c, a]
    if d != 0:
        return False
    if long & _TOP:
        for c in range(keys.shape[1]):
            if keys[2, c, a] & _TOP:  # a value longer than 16 bytes: compare the rest exactly
                sa = offs[c, a] + 16
                sb = offs[c, b] + 16
                m = offs[c, a + 1] - sa
                k = 0
                while k < m:
                    if _word(words, sa + k, m - k) != _word(words, sb + k, m - k):
                        return False
                    k += 8
    return True


@njit(cache=True, nogil=True)
def _group(words: np.ndarray, offs: np.ndarray, valid: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(group of each row, first row of each group)``; groups are numbered in order of first appearance.

    ``words``: the concatenated string bytes, zero-padded by at least 8, as unaligned words (see
    :func:`_word`); ``offs`` (columns x rows + 1) and ``valid`` (columns x rows) per column.
    """
    keys = _value_keys(words, offs, valid, n)
    ncols = keys.shape[1]
    cap = 1024
    table = np.full(cap, -1, np.int64)
    groups = np.empty(n, np.int64)
    reps = np.empty(max(n, 1), np.int64)
    hashes = np.empty(max(n, 1), np.uint64)
    ng = 0
    for i in range(n):
        h = np.uint64(0)
        p = np.uint64(0)
        for c in range(ncols):
            p += _K1
            h += _fmix((keys[0, c, i] ^ p) * _K2 + (keys[1, c, i] ^ (keys[2, c, i] * _K1)))
        h = _fmix(h)
        mask = np.uint64(cap - 1)
        slot = h & mask
        while True:
            g = table[slot]
            if g < 0:
                table[slot] = ng
                reps[ng] = i
                hashes[ng] = h
                groups[i] = ng
                ng += 1
                break
            if hashes[g] == h and _rows_equal(words, offs, keys, reps[g], i):
                groups[i] = g
                break
            slot = (slot + _ONE) & mask
        if 2 * ng > cap:  # grow: re-insert every group by its stored hash
            cap *= 4
            table = np.full(cap, -1, np.int64)
            mask = np.uint64(cap - 1)
            for g in range(ng):
                slot = hashes[g] & mask
                while table[slot] >= 0:
                    slot = (slot + _ONE) & mask
                table[slot] = g
    return groups, reps[:ng].copy()


def _string_parts(col: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(offsets (n + 1), uint8 data, uint8 validity or None when no nulls)`` of a string column."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    if n == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.uint8), None
    _, off_buf, data_buf = arr.buffers()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(off_buf, width)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    valid = np.asarray(arr.is_valid(), dtype=np.uint8) if arr.null_count else None
    return offsets, data, valid


def group_rows(columns: Sequence[Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group ``n`` rows by the values of string ``columns`` (Arrow arrays, null = its own value).

    Returns ``(group id of each row, index of the first row of each group)``, groups numbered in order of
    first appearance. Exact: rows share a group if and only if all their values are equal.
    """
    if not columns:
        return np.zeros(n, np.int64), np.zeros(1 if n else 0, np.int64)
    offs = np.empty((len(columns), n + 1), np.int64)
    valid = np.ones((len(columns), n), np.uint8)
    datas = []
    base = 0
    for c, col in enumerate(columns):
        o, d, v = _string_parts(col, n)
        lo, hi = int(o[0]), int(o[-1])
        np.add(o, base - lo, out=offs[c], casting="unsafe")
        if v is not None:
            valid[c] = v
        datas.append(d[lo:hi])
        base += hi - lo
    padded = np.zeros((base + 16 + 7) // 8 * 8, np.uint8)
    if base:
        np.concatenate(datas, out=padded[:base])
    # words[k, q] is the 8 bytes starting at byte 8 q + k (unaligned loads; the zero padding covers the tail).
    words = as_strided(
        padded.view(np.uint64), shape=(8, len(padded) // 8 - 1), strides=(1, 8), writeable=False
    )
    return _group(words, offs, valid, n)  # type: ignore[no-any-return]


def rows_table(n: int) -> pa.Table:
    """A table of ``n`` rows and no columns (the series table of a batch without labels)."""
    return pa.Table.from_batches([pa.RecordBatch.from_struct_array(pa.array([{}] * n, pa.struct([])))])


@dataclass(frozen=True)
class GroupedBatch:
    """A batch in normal form stored once per series.

    ``series``: one row per distinct label combination (label columns sorted by name, ``string``, null =
    label absent; no columns at all when the batch has no labels). ``points``: ``time`` (int64 ns),
    ``_group`` (int32, the row of ``series`` holding the point's labels), then the field columns sorted by name.
    """

    series: pa.Table
    points: pa.Table

    @property
    def num_rows(self) -> int:
        """Number of points."""
        return int(self.points.num_rows)

    @property
    def nbytes(self) -> int:
        """Bytes held (points plus series table)."""
        return int(self.points.nbytes + self.series.nbytes)

    @property
    def labels(self) -> tuple[str, ...]:
        """The label names."""
        return tuple(self.series.column_names)

    @property
    def fields(self) -> dict[str, Literal["float64", "int64"]]:
        """Field name -> dtype, in column order."""
        return {
            f.name: "int64" if pa.types.is_integer(f.type) else "float64"
            for f in self.points.schema
            if f.name not in (_TIME, GROUP_COLUMN)
        }

    def slice(self, offset: int, length: int) -> GroupedBatch:
        """Points ``offset .. offset + length - 1`` (zero-copy), sharing the series table."""
        return GroupedBatch(self.series, self.points.slice(offset, length))

    def take(self, indices: np.ndarray) -> GroupedBatch:
        """The points at ``indices``, sharing the series table."""
        return GroupedBatch(self.series, self.points.take(pa.array(indices)))

    def expand(self) -> pa.Table:
        """The batch in full normal form: ``time``, the label columns, the field columns (one row per point)."""
        groups = self.points.column(GROUP_COLUMN)
        labels = [self.series.column(name).take(groups) for name in self.series.column_names]
        fields = [name for name in self.points.column_names if name not in (_TIME, GROUP_COLUMN)]
        return pa.Table.from_arrays(
            [self.points.column(_TIME), *labels, *(self.points.column(f) for f in fields)],
            schema=pa.schema(
                [
                    self.points.schema.field(_TIME),
                    *self.series.schema,
                    *(self.points.schema.field(f) for f in fields),
                ]
            ),
        )

    @classmethod
    def build(
        cls, time: Any, labels: Sequence[tuple[str, Any]], fields: Sequence[tuple[str, Any]]
    ) -> GroupedBatch:
        """Group the rows of normal-form columns (labels and fields in the order given) by their labels."""
        groups, firsts = group_rows([col for _, col in labels], len(time))
        index = pa.array(firsts)
        return cls.from_groups(
            time, [(name, col.take(index)) for name, col in labels], fields, groups, len(firsts)
        )

    @classmethod
    def from_groups(
        cls,
        time: Any,
        distinct: Sequence[tuple[str, Any]],
        fields: Sequence[tuple[str, Any]],
        groups: np.ndarray,
        num_series: int,
    ) -> GroupedBatch:
        """The batch whose point ``i`` has labels ``distinct[groups[i]]`` (``num_series`` distinct rows)."""
        series = pa.table(dict(distinct)) if distinct else rows_table(num_series)
        schema = pa.schema(
            [
                pa.field(_TIME, pa.int64(), nullable=False),
                pa.field(GROUP_COLUMN, pa.int32(), nullable=False),
                *(pa.field(name, col.type) for name, col in fields),
            ]
        )
        arrays = [time, pa.array(groups.astype(np.int32)), *(col for _, col in fields)]
        return cls(series, pa.Table.from_arrays(arrays, schema=schema))

    @classmethod
    def from_table(cls, table: pa.Table) -> GroupedBatch:
        """Group a table in normal form (``time``, string label columns, numeric field columns)."""
        labels = [
            (n, table.column(n)) for n in table.column_names if n != _TIME and _is_label(table.column(n))
        ]
        names = {n for n, _ in labels}
        fields = [(n, table.column(n)) for n in table.column_names if n != _TIME and n not in names]
        return cls.build(table.column(_TIME), labels, fields)


def _is_label(col: Any) -> bool:
    return bool(pa.types.is_string(col.type) or pa.types.is_large_string(col.type))

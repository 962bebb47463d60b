"""The lake inside a user's own DuckDB connection: tenant tables and UDFs that read the lake's files directly.

``register(con, lake, tenant=...)`` registers each metric of the tenant as a table (a polars LazyFrame backed
by :func:`tsdb_lake.query.polars_io.scan_metric`, so DuckDB's filters and projections reach the lake's
pruning) and the scalar UDFs below.

Refresh semantics: every query that touches a registered table re-reads the lake (the latest catalog
snapshot plus this process's unflushed writes). The set of tables and their columns are fixed when
``register`` runs; call it again to pick up new metrics or fields (it replaces earlier registrations).

Column types: ``time`` TIMESTAMPTZ (microseconds — DuckDB pushes filters on TIMESTAMPTZ into the scan but
not on nanosecond timestamps; sub-microsecond digits are truncated, use ``lake.query`` / ``lake.scan`` for
them; results show the session's ``TimeZone``, which ``lake.sql`` sets to UTC), labels VARCHAR, float fields
DOUBLE, integer fields BIGINT. Fetching TIMESTAMPTZ values as Python objects (``fetchall``) needs ``pytz``;
``.pl()``, ``.df()`` and ``.arrow()`` do not.

UDFs (vectorised Arrow UDFs) for reading raw files with ``read_parquet`` and ``unnest``::

    SELECT unnest(tsdb_decode_times(_time)) AS t, unnest(tsdb_decode_values(usage_user)) AS v
    FROM read_parquet('<lake>/data/tenant=acme/metric=cpu/tier=raw/**/*.parquet', hive_partitioning=true)

- ``tsdb_decode_times(blob BLOB) -> BIGINT[]``: a ``_time`` chunk as ns since the epoch
  (``make_timestamp_ns`` turns one into a TIMESTAMP_NS).
- ``tsdb_decode_values(blob BLOB) -> DOUBLE[]``: a field chunk's values. When a chunk has nulls (its
  ``_valid__<f>`` bitmap is not NULL) the blob holds only the non-null values, so the list is shorter than
  ``_count``; use ``tsdb_decode_values_valid`` to line values up with times.
- ``tsdb_decode_ints(blob BLOB) -> BIGINT[]``: an integer field chunk's values, exactly.
- ``tsdb_decode_values_valid(blob BLOB, valid BLOB, count INTEGER) -> DOUBLE[]``: ``count`` entries with
  NULL where the validity bitmap (LSB first; NULL = all valid) says so; a NULL blob is all NULL.
- ``tsdb_kll_quantile(sketches BLOB[], q DOUBLE) -> DOUBLE``: merges Apache DataSketches
  ``kll_doubles_sketch`` serialisations (rollup ``<field>__sketch`` columns) and returns the ``q`` quantile;
  aggregate with ``list()``: ``tsdb_kll_quantile(list(usage_user__sketch), 0.99)``. NULL for no data.
NULL blobs give NULL lists. Corrupt blobs raise an error naming the row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import duckdb
import numpy as np
import pyarrow as pa
from duckdb.func import FunctionNullHandling, PythonUDFType

from tsdb_lake import codecs
from tsdb_lake.errors import CorruptBlockError
from tsdb_lake.model import validate_name

if TYPE_CHECKING:
    from tsdb_lake.lake import Lake
    from tsdb_lake.query.polars_io import ScanRecord

__all__ = [
    "UDF_NAMES",
    "decode_ints_arrow",
    "decode_times_arrow",
    "decode_values_arrow",
    "decode_values_valid_arrow",
    "kll_quantile_arrow",
    "register",
    "register_tables",
    "register_udfs",
]

ArrowLike: TypeAlias = "pa.Array[Any] | pa.ChunkedArray[Any]"


def _combined(arr: ArrowLike) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _blob_list(arr: ArrowLike) -> list[bytes | None]:
    return _combined(arr).cast(pa.binary()).to_pylist()  # type: ignore[no-any-return]


def _list_array(parts: list[np.ndarray | None], value_type: pa.DataType) -> pa.Array:
    """A list array with one entry per part (None -> NULL list)."""
    present = [p for p in parts if p is not None]
    values = np.concatenate(present) if present else np.zeros(0)
    lengths = np.array([-1 if p is None else len(p) for p in parts], dtype=np.int64)
    return _assemble(lengths, pa.array(values, value_type), value_type)


def _assemble(lengths: np.ndarray, flat: pa.Array, value_type: pa.DataType) -> pa.Array:
    """A list<value_type> array from per-row lengths (-1 = NULL row) and the concatenated values."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(np.maximum(lengths, 0), out=offsets[1:])
    mask = pa.array(lengths < 0, pa.bool_())
    listed = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), flat, mask=mask)
    return listed.cast(pa.list_(value_type))


def _decode_each(arr: ArrowLike, decode: Callable[[bytes], np.ndarray], what: str) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for row, blob in enumerate(_blob_list(arr)):
        if blob is None:
            out.append(None)
            continue
        try:
            out.append(decode(blob))
        except CorruptBlockError as exc:
            raise CorruptBlockError(f"{what}: row {row} of the batch: {exc.message}") from exc
    return out


def _decode_batch(
    arr: ArrowLike, many: Callable[..., tuple[np.ndarray, np.ndarray]], value_type: pa.DataType, what: str
) -> pa.Array:
    """Decode the non-null blobs in one numba call; NULL blobs become NULL lists."""
    blobs = _combined(arr).cast(pa.binary())
    valid = np.asarray(blobs.is_valid(), dtype=bool)
    present = blobs.filter(pa.array(valid)) if not valid.all() else blobs
    try:
        values, counts = many(present) if len(present) else (np.zeros(0), np.zeros(0, np.int64))
    except CorruptBlockError as exc:
        raise CorruptBlockError(f"{what}: {exc.message}") from exc
    lengths = np.full(len(blobs), -1, dtype=np.int64)
    lengths[valid] = counts
    return _assemble(lengths, pa.array(values, value_type), value_type)


def decode_times_arrow(blobs: ArrowLike) -> pa.Array:
    """``tsdb_decode_times``: timestamp chunk blobs -> list<int64> (ns)."""
    return _decode_batch(blobs, codecs.decode_timestamps_many, pa.int64(), "tsdb_decode_times")


def decode_values_arrow(blobs: ArrowLike) -> pa.Array:
    """``tsdb_decode_values``: field chunk blobs (any codec) -> list<double> of the non-null values."""
    ids = {b[0] for b in _blob_list(blobs) if b}
    if ids <= {int(c) for c in codecs.FLOAT_CODECS}:
        return _decode_batch(blobs, codecs.decode_floats_many, pa.float64(), "tsdb_decode_values")

    def as_double(blob: bytes) -> np.ndarray:
        return np.asarray(codecs.decode_values(blob), dtype=np.float64)

    return _list_array(_decode_each(blobs, as_double, "tsdb_decode_values"), pa.float64())


def decode_ints_arrow(blobs: ArrowLike) -> pa.Array:
    """``tsdb_decode_ints``: integer field chunk blobs -> list<int64>, exactly."""
    return _list_array(_decode_each(blobs, codecs.decode_ints, "tsdb_decode_ints"), pa.int64())


def decode_values_valid_arrow(blobs: ArrowLike, valid: ArrowLike, counts: ArrowLike) -> pa.Array:
    """``tsdb_decode_values_valid``: values lined up with the chunk's ``count`` points, NULL where not valid."""
    blob_list = _blob_list(blobs)
    bitmaps = _blob_list(valid)
    ns = _combined(counts).to_pylist()
    lists: list[pa.Array | None] = []
    for row, (blob, bitmap, n) in enumerate(zip(blob_list, bitmaps, ns, strict=True)):
        if n is None:
            lists.append(None)
            continue
        if n < 0:
            raise CorruptBlockError(f"tsdb_decode_values_valid: row {row}: negative count {n}")
        if blob is None:
            lists.append(pa.nulls(n, pa.float64()))
            continue
        try:
            vals = np.asarray(codecs.decode_values(blob), dtype=np.float64)
        except CorruptBlockError as exc:
            raise CorruptBlockError(f"tsdb_decode_values_valid: row {row}: {exc.message}") from exc
        if bitmap is None:
            if len(vals) != n:
                raise CorruptBlockError(
                    f"tsdb_decode_values_valid: row {row}: {len(vals)} values for {n} points"
                )
            lists.append(pa.array(vals, pa.float64()))
            continue
        if len(bitmap) * 8 < n:
            raise CorruptBlockError(f"tsdb_decode_values_valid: row {row}: validity bitmap too short")
        mask = np.unpackbits(np.frombuffer(bitmap, np.uint8), count=n, bitorder="little").astype(bool)
        if int(mask.sum()) != len(vals):
            raise CorruptBlockError(f"tsdb_decode_values_valid: row {row}: bitmap and values disagree")
        full = np.zeros(n, np.float64)
        full[mask] = vals
        lists.append(pa.array(full, pa.float64(), mask=~mask))
    return _lists_of_arrays(lists, pa.float64())


def _lists_of_arrays(lists: list[pa.Array | None], value_type: pa.DataType) -> pa.Array:
    present = [a for a in lists if a is not None]
    flat = pa.concat_arrays(present) if present else pa.array([], value_type)
    lengths = np.array([-1 if a is None else len(a) for a in lists], dtype=np.int64)
    return _assemble(lengths, flat, value_type)


def kll_quantile_arrow(sketches: ArrowLike, q: ArrowLike) -> pa.Array:
    """``tsdb_kll_quantile``: merge each row's KLL doubles sketches and return the ``q`` quantile."""
    from datasketches import kll_doubles_sketch

    rows = _combined(sketches).to_pylist()
    qs = _combined(q).to_pylist()
    out: list[float | None] = []
    for row, (items, rank) in enumerate(zip(rows, qs, strict=True)):
        if items is None or rank is None:
            out.append(None)
            continue
        if not 0.0 <= float(rank) <= 1.0:
            raise ValueError(f"tsdb_kll_quantile: q must be within [0, 1], got {rank}")
        merged: Any = None
        for blob in items:
            if blob is None:
                continue
            try:
                sketch = kll_doubles_sketch.deserialize(bytes(blob))
            except Exception as exc:
                raise CorruptBlockError(
                    f"tsdb_kll_quantile: row {row}: not a kll_doubles_sketch: {exc}"
                ) from exc
            if merged is None:
                merged = sketch
            else:
                merged.merge(sketch)
        if merged is None or merged.is_empty():
            out.append(None)
        else:
            out.append(float(merged.get_quantile(float(rank))))
    return pa.array(out, pa.float64())


UDF_NAMES = (
    "tsdb_decode_times",
    "tsdb_decode_values",
    "tsdb_decode_ints",
    "tsdb_decode_values_valid",
    "tsdb_kll_quantile",
)


def register_udfs(con: duckdb.DuckDBPyConnection) -> None:
    """Create (or replace) the ``tsdb_*`` UDFs and ``rollup_quantile`` (quantiles over rollup rows) on ``con``.

    ``tsdb_kll_quantile`` merges sketches only; rollup rows that keep exact values instead (small buckets) need
    ``rollup_quantile(list(f__sketch), list(f__values), list(f__weights), q)``, which handles both.
    """
    from tsdb_lake.compaction.sketches import register_duckdb_udfs

    with contextlib.suppress(duckdb.Error):
        con.remove_function("rollup_quantile")
    register_duckdb_udfs(con)
    blob, bigint, double, integer = duckdb.sqltype("BLOB"), "BIGINT", "DOUBLE", "INTEGER"
    specs: list[tuple[str, Callable[..., pa.Array], list[Any], Any, bool]] = [
        ("tsdb_decode_times", decode_times_arrow, [blob], con.list_type(bigint), False),
        ("tsdb_decode_values", decode_values_arrow, [blob], con.list_type(double), False),
        ("tsdb_decode_ints", decode_ints_arrow, [blob], con.list_type(bigint), False),
        (
            "tsdb_decode_values_valid",
            decode_values_valid_arrow,
            [blob, blob, duckdb.sqltype(integer)],
            con.list_type(double),
            True,
        ),
        (
            "tsdb_kll_quantile",
            kll_quantile_arrow,
            [con.list_type(blob), duckdb.sqltype(double)],
            double,
            True,
        ),
    ]
    for name, fn, params, ret, special in specs:
        with contextlib.suppress(duckdb.Error):
            con.remove_function(name)
        con.create_function(
            name,
            fn,
            params,
            ret,
            type=PythonUDFType.ARROW,
            null_handling=FunctionNullHandling.SPECIAL if special else FunctionNullHandling.DEFAULT,
        )


def register_tables(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    tenant: str,
    prefix: str = "",
    on_explain: Callable[[ScanRecord], None] | None = None,
) -> list[str]:
    """Register every metric of ``tenant`` (as of the latest catalog version) as table ``<prefix><metric>``."""
    from tsdb_lake.query.polars_io import scan_metric

    validate_name("tenant", tenant)
    snapshot = lake.snapshot()
    names: list[str] = []
    for metric in sorted(snapshot.metrics(tenant)):
        schema = snapshot.schema(tenant, metric)
        if schema is None:
            continue
        frame = scan_metric(lake, metric, tenant=tenant, schema=schema, time_unit="us", on_explain=on_explain)
        name = f"{prefix}{metric}"
        con.register(name, frame)
        names.append(name)
    return names


def register(
    con: duckdb.DuckDBPyConnection,
    lake: Lake,
    *,
    tenant: str,
    prefix: str = "",
    udfs: bool = True,
) -> list[str]:
    """Attach ``tenant``'s metrics as tables ``<prefix><metric>`` (and the ``tsdb_*`` UDFs) to ``con``.

    Returns the table names. Only this tenant's metrics are registered; see the module docstring for
    refresh semantics and column types.
    """
    names = register_tables(con, lake, tenant=tenant, prefix=prefix)
    if udfs:
        register_udfs(con)
    return names

"""Quantile state of rollup buckets: exact value lists for small buckets, KLL sketches for large ones.

A bucket's quantile state is either ``values`` (every non-null value, NaN included, order irrelevant) or a
serialised Apache DataSketches ``kll_doubles_sketch`` of its non-NaN values (the sketch ignores NaN; the
bucket's NaN count is ``count - sketch.n``). Values are kept while ``count <= VALUES_MAX``: up to that size an
exact value list costs about what an exact-mode sketch costs, and it gives bit-exact interpolated quantiles
(measurements in ``catalog/ROLLUPS.md``). The quantile of a merged state follows ``query/aggregate.py``:
``quantile_cont`` (linear interpolation) with NaN ordered after every number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from datasketches import kll_doubles_sketch

__all__ = [
    "SKETCH_K",
    "VALUES_MAX",
    "build_sketch",
    "merge_state",
    "quantile_from_sketch",
    "rank_error",
    "register_duckdb_udfs",
    "sketch_n",
]

#: KLL ``k`` of every sketch the lake writes (recorded in each rollup file's footer as ``tsdb_lake.sketch_k``).
SKETCH_K = 200
#: Buckets with at most this many values keep them exactly (``f__values``); larger ones keep a sketch.
VALUES_MAX = 200


def rank_error(k: int = SKETCH_K) -> float:
    """KLL's stated normalised rank error of single quantile queries (99% confidence) for ``k``."""
    return float(kll_doubles_sketch.get_normalized_rank_error(k, False))


def build_sketch(
    values: npt.NDArray[np.float64] | None, sketches: Sequence[bytes] = (), k: int = SKETCH_K
) -> kll_doubles_sketch:
    """A sketch of ``values`` (NaN ignored) merged with the serialised ``sketches``."""
    sk = kll_doubles_sketch(k)
    if values is not None and len(values):
        sk.update(np.require(values, np.float64, ["C", "W"]))
    for blob in sketches:
        sk.merge(kll_doubles_sketch.deserialize(bytes(blob)))
    return sk


def sketch_n(blob: bytes) -> int:
    """How many (non-NaN) values a serialised sketch summarises."""
    return int(kll_doubles_sketch.deserialize(bytes(blob)).n)


def merge_state(
    values: npt.NDArray[np.float64], sketches: Sequence[bytes], *, keep_values: bool, k: int = SKETCH_K
) -> tuple[npt.NDArray[np.float64] | None, bytes | None]:
    """The quantile state of a merged bucket: ``(values, None)`` or ``(None, sketch bytes)``.

    Values stay exact when there is no sketch among the inputs and ``keep_values`` holds (the caller decides
    from the count and the tier's ``sketches`` flag); otherwise everything is folded into one sketch.
    """
    if not sketches and keep_values:
        return values, None
    return None, build_sketch(values, sketches, k).serialize()


def quantile_from_sketch(sk: kll_doubles_sketch, q: float, count: int) -> float:
    """Approximate ``quantile_cont(q)`` of a bucket of ``count`` values whose non-NaN part is ``sk``.

    NaN sorts after every number (as in polars): if the interpolation needs a NaN position the answer is NaN.
    """
    m = int(sk.n)
    if count <= 0:
        return math.nan
    pos = q * (count - 1)
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if hi >= m or lo >= m:
        return math.nan
    if m == 1:
        return float(sk.get_min_value())
    rank = min(1.0, max(0.0, pos / (m - 1)))
    if rank <= 0.0:
        return float(sk.get_min_value())
    if rank >= 1.0:
        return float(sk.get_max_value())
    return float(sk.get_quantile(rank, True))


def register_duckdb_udfs(con: object) -> None:
    """Register ``rollup_quantile(sketches BLOB[], values DOUBLE[][], q DOUBLE) -> DOUBLE`` on a DuckDB connection.

    Pass the ``f__sketch`` and ``f__values`` columns of the rollup rows to combine, aggregated with ``list()``:
    ``SELECT rollup_quantile(list(usage_user__sketch), list(usage_user__values), 0.99) FROM read_parquet(...)``.
    Exact (interpolated) when no row holds a sketch, otherwise KLL-approximate. NaN values are ignored.
    """
    import duckdb

    def rollup_quantile(
        sketches: list[bytes | None] | None, values: list[list[float] | None] | None, q: float
    ) -> float | None:
        blobs = [b for b in (sketches or []) if b is not None]
        flat = np.asarray([v for vs in (values or []) if vs for v in vs], dtype=np.float64)
        flat = flat[~np.isnan(flat)]
        if not blobs:
            return None if flat.size == 0 else float(np.quantile(flat, q))
        sk = build_sketch(flat, blobs)
        return None if sk.is_empty() else quantile_from_sketch(sk, q, int(sk.n))

    assert isinstance(con, duckdb.DuckDBPyConnection)
    con.create_function(  # type: ignore[call-overload]
        "rollup_quantile",
        rollup_quantile,
        [duckdb.list_type(duckdb.sqltype("BLOB")), duckdb.list_type(duckdb.list_type("DOUBLE")), "DOUBLE"],
        "DOUBLE",
        null_handling="special",
    )

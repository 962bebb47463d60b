"""The batched write side of raw files (format.raw.encode_chunks) against a per-chunk reference encoder."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from tsdb_lake import codecs
from tsdb_lake.format import decode_chunks, encode_chunks
from tsdb_lake.format.raw import _chunk_bounds, _codec_counts
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID

FIELDS = {"f": "float64", "g": "float64", "i": "int64", "absent": "float64"}
LABELS = ["host", "missing"]


def reference_chunk_columns(
    frame: pl.DataFrame, starts: list[int], ends: list[int]
) -> dict[str, list[object]]:
    """What one chunk at a time with the single-blob encoders gives (the pre-batch implementation)."""
    times = frame.get_column(TIME_COLUMN).to_numpy()
    out: dict[str, list[object]] = {
        "_time": [codecs.encode_timestamps(times[s:e]) for s, e in zip(starts, ends, strict=True)]
    }
    for name, dtype in FIELDS.items():
        if name not in frame.columns:
            continue
        col = frame.get_column(name)
        vals = col.fill_null(0).to_numpy()
        valid = ~col.is_null().to_numpy()
        blobs, maps, ns, lo, hi = [], [], [], [], []
        for s, e in zip(starts, ends, strict=True):
            m = valid[s:e]
            v = vals[s:e][m]
            maps.append(np.packbits(m, bitorder="little").tobytes() if (not m.all() and len(v)) else None)
            ns.append(len(v))
            if len(v) == 0:
                blobs.append(None), lo.append(None), hi.append(None)
                continue
            blobs.append(codecs.encode_ints(v) if dtype == "int64" else codecs.encode_floats(v))
            finite = v if dtype == "int64" else v[~np.isnan(v)]
            lo.append(finite.min().item() if len(finite) else None)
            hi.append(finite.max().item() if len(finite) else None)
        out.update(
            {
                name: blobs,
                f"_valid__{name}": maps,
                f"_n__{name}": ns,
                f"_min__{name}": lo,
                f"_max__{name}": hi,
            }
        )
    return out


def make_frame(rng: np.random.Generator, sizes: list[int]) -> pl.DataFrame:
    parts = []
    for k, n in enumerate(sizes):
        f = np.round(rng.normal(50, 10, n), 1)
        f[rng.random(n) < 0.05] = np.nan
        g = np.cumsum(rng.normal(0, 1, n))
        parts.append(
            pl.DataFrame(
                {
                    SERIES_ID: pl.Series(np.full(n, 1000 + k, np.uint64)),
                    TIME_COLUMN: pl.Series(1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 10**10),
                    "host": [f"h{k}"] * n,
                    "f": pl.Series(f).set(pl.Series(rng.random(n) < 0.1), None) if k % 2 else pl.Series(f),
                    "g": pl.Series(g).set(pl.Series(np.arange(n) < n // 2), None) if k == 2 else pl.Series(g),
                    "i": pl.Series(rng.integers(-5, 5, n)).set(pl.Series(rng.random(n) < 0.2), None),
                }
            )
        )
    return pl.concat(parts)


@pytest.mark.parametrize("max_points", [7, 64, 4096])
def test_encode_chunks_matches_per_chunk_reference(max_points: int) -> None:
    rng = np.random.default_rng(max_points)
    frame = make_frame(rng, [1, 50, 130, 3, 200])
    # an all-NaN stretch and an all-null stretch
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()).is_between(60, 80))
        .then(float("nan"))
        .otherwise(pl.col("f"))
        .alias("f"),
        pl.when(pl.int_range(pl.len()).is_between(300, 320)).then(None).otherwise(pl.col("i")).alias("i"),
    )
    table = encode_chunks(frame, LABELS, FIELDS, max_chunk_points=max_points)
    sids = frame.get_column(SERIES_ID).to_numpy()
    starts = _chunk_bounds(sids, max_points).tolist()
    ends = [*starts[1:], frame.height]
    assert table.column("_count").to_pylist() == [e - s for s, e in zip(starts, ends, strict=True)]
    assert all(e - s <= max_points for s, e in zip(starts, ends, strict=True))
    assert table.column("missing").null_count == table.num_rows
    assert table.column("absent").null_count == table.num_rows
    ref = reference_chunk_columns(frame, starts, ends)
    for name, expected in ref.items():
        got = table.column(name).to_pylist()
        assert len(got) == len(expected), name
        for a, b in zip(got, expected, strict=True):
            assert (a is None and b is None) or a == b or (isinstance(a, float) and a != a and b != b), name
    back = decode_chunks(table, LABELS, FIELDS)
    for name in ("f", "g", "i"):
        assert back.get_column(name).null_count() == frame.get_column(name).null_count()
        a, b = back.get_column(name).fill_null(-1).to_numpy(), frame.get_column(name).fill_null(-1).to_numpy()
        assert np.array_equal(
            a.view(np.uint64 if a.dtype == np.float64 else np.int64),
            b.view(np.uint64 if b.dtype == np.float64 else np.int64),
        )


def test_chunk_bounds_vectorised() -> None:
    series = np.repeat(np.array([5, 6, 7, 8], np.uint64), [10, 1, 25, 3])
    assert _chunk_bounds(series, 10).tolist() == [0, 10, 11, 21, 31, 36]
    assert _chunk_bounds(series, 100).tolist() == [0, 10, 11, 36]
    assert _chunk_bounds(series[:0], 10).tolist() == []


def test_codec_counts_from_buffers() -> None:
    blobs = [
        codecs.encode_floats(np.full(500, 1.5)),
        None,
        codecs.encode_gorilla(np.arange(3.0)),
        codecs.encode_floats(np.full(900, 2.5)),
    ]
    arr = pa.array(blobs, pa.binary())
    assert _codec_counts(pa.chunked_array([arr[:2], arr[2:]])) == {"gorilla": 1, "rle": 2}
    assert _codec_counts(pa.nulls(3, pa.binary())) == {}

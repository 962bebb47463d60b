"""The write side of raw files: its numba helpers and shortcuts against plain numpy / Arrow references."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.format import chunkstats, encode_chunks, write_raw_file
from tsdb_lake.format.raw import _chunk_bounds, _codec_counts, _string_array, decode_chunks, read_chunks
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID
from tsdb_lake.storage import open_storage

FIELDS = {"f": "float64", "i": "int64", "absent": "float64"}
LABELS = ["host", "dc", "missing"]


def _reference_chunk_bounds(series: np.ndarray, max_points: int) -> np.ndarray:
    """Chunk starts: a new chunk at each series change and every ``max_points`` within a series."""
    starts: list[int] = []
    for i in range(len(series)):
        if i == 0 or series[i] != series[i - 1] or i - starts[-1] == max_points:
            starts.append(i)
    return np.asarray(starts, np.int64)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=200), st.integers(1, 9))
def test_chunk_bounds_match_the_reference(values: list[int], max_points: int) -> None:
    series = np.sort(np.asarray(values, np.uint64))
    assert np.array_equal(_chunk_bounds(series, max_points), _reference_chunk_bounds(series, max_points))


@st.composite
def _masked_chunks(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sizes = draw(st.lists(st.integers(0, 20), min_size=1, max_size=12))
    offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    n = int(offsets[-1])
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    valid = rng.random(n) < draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    return rng.normal(size=n), valid, offsets


@settings(max_examples=200, deadline=None)
@given(_masked_chunks())
def test_compact_valid_and_bitmaps_match_numpy(case: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    values, valid, offsets = case
    compacted, voff = chunkstats.compact_valid(values, valid, offsets)
    assert np.array_equal(compacted, values[valid])
    assert np.array_equal(np.diff(voff), [int(valid[s:e].sum()) for s, e in itertools.pairwise(offsets)])
    partial = (np.diff(voff) > 0) & (np.diff(voff) < np.diff(offsets))
    data, boff = chunkstats.validity_bitmaps(valid, offsets, partial)
    for i, (s, e) in enumerate(itertools.pairwise(offsets)):
        blob = data[boff[i] : boff[i + 1]].tobytes()
        expected = np.packbits(valid[s:e], bitorder="little").tobytes() if partial[i] else b""
        assert blob == expected


def test_string_array_converts_large_strings_with_nulls_and_offsets() -> None:
    big = pa.array(["a", None, "ccc", "", "dd"], pa.large_string())
    for arr in (big, big.slice(1, 3), pa.chunked_array([big[:2], big[2:]]), big.cast(pa.string())):
        out = _string_array(arr)
        assert out.type == pa.string()
        assert out.to_pylist() == arr.to_pylist()


def _frame(rng: np.random.Generator, sizes: list[int], *, nulls: bool) -> pl.DataFrame:
    parts = []
    for k, n in enumerate(sizes):
        f = rng.normal(size=n).round(2)
        f[rng.random(n) < 0.1] = np.nan
        i = rng.integers(-9, 9, n)
        parts.append(
            pl.DataFrame(
                {
                    SERIES_ID: pl.Series(np.full(n, 500 - 7 * k, np.uint64)),
                    TIME_COLUMN: pl.Series(np.arange(n, dtype=np.int64) * 10),
                    "host": [f"h{k}"] * n,
                    "dc": pl.Series([None if k % 3 == 0 else f"dc{k % 2}"] * n, dtype=pl.String),
                    "f": pl.Series(f).set(pl.Series(rng.random(n) < 0.2), None) if nulls else pl.Series(f),
                    "i": pl.Series(i).set(pl.Series(rng.random(n) < 0.2), None) if nulls else pl.Series(i),
                }
            )
        )
    return pl.concat(parts).sort(SERIES_ID, TIME_COLUMN, maintain_order=True)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=6),
    st.integers(1, 50),
    st.booleans(),
    st.sampled_from(["sorted", "reversed", "shuffled"]),
    st.integers(0, 2**32 - 1),
)
def test_encode_chunks_with_a_series_frame_equals_labels_in_the_frame(
    sizes: list[int], max_points: int, nulls: bool, series_order: str, seed: int
) -> None:
    """Label values gathered from the series frame (no gather when it holds one row per chunk in chunk order)
    equal those taken from the points themselves."""
    rng = np.random.default_rng(seed)
    frame = _frame(rng, sizes, nulls=nulls)
    series = frame.select(SERIES_ID, "host", "dc").unique(maintain_order=True)
    if series_order == "reversed":
        series = series.reverse()
    elif series_order == "shuffled":
        series = series.sample(fraction=1.0, shuffle=True, seed=seed)
    general = encode_chunks(frame, LABELS, FIELDS, max_chunk_points=max_points)
    fast = encode_chunks(
        frame.select(SERIES_ID, TIME_COLUMN, "f", "i"),
        LABELS,
        FIELDS,
        max_chunk_points=max_points,
        series=series,
    )
    assert fast.schema == general.schema
    assert fast.equals(general)
    assert fast.column("host").type == pa.string()


def test_encode_chunks_of_an_empty_frame() -> None:
    frame = _frame(np.random.default_rng(0), [3], nulls=False).clear()
    table = encode_chunks(frame, LABELS, FIELDS, series=frame.select(SERIES_ID, "host", "dc"))
    assert table.num_rows == 0
    assert table.schema == encode_chunks(frame, LABELS, FIELDS).schema


def _reference_info(chunks: pa.Table, labels: list[str], fields: dict[str, str]) -> dict[str, object]:
    """File statistics through Arrow compute (the plain implementation)."""
    stats = {}
    for f, dtype in fields.items():
        lo, hi = pc.min(chunks.column(f"_min__{f}")).as_py(), pc.max(chunks.column(f"_max__{f}")).as_py()
        cast = int if dtype == "int64" else float
        stats[f] = {
            "count": int(pc.sum(chunks.column(f"_n__{f}")).as_py() or 0),
            "min": None if lo is None else cast(lo),
            "max": None if hi is None else cast(hi),
        }
    return {
        "rows": chunks.num_rows,
        "points": int(pc.sum(chunks.column("_count")).as_py()),
        "series": len(pc.unique(chunks.column(SERIES_ID))),
        "min_time": pc.min(chunks.column("_t_min")).as_py(),
        "max_time": pc.max(chunks.column("_t_max")).as_py(),
        "series_min": pc.min(chunks.column(SERIES_ID)).as_py(),
        "series_max": pc.max(chunks.column(SERIES_ID)).as_py(),
        "field_stats": stats,
        "label_values": {
            label: sorted(pc.unique(chunks.column(label).drop_null()).to_pylist()) for label in labels
        },
    }


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=5), st.booleans(), st.integers(0, 2**32 - 1))
def test_written_file_statistics_and_content(sizes: list[int], nulls: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frame = _frame(rng, sizes, nulls=nulls)
    if nulls and len(sizes) > 1:  # a field that is null throughout one series
        frame = frame.with_columns(
            pl.when(pl.col("host") == "h1").then(None).otherwise(pl.col("i")).alias("i")
        )
    chunks = encode_chunks(frame, LABELS, FIELDS, max_chunk_points=7)
    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(str(Path(tmp)))
        info = write_raw_file(storage, "f.parquet", chunks, LABELS, FIELDS)
        back = read_chunks(storage, "f.parquet", chunks.column_names)
    expected = _reference_info(chunks, LABELS, FIELDS)
    got = {k: getattr(info, k) for k in expected}
    assert got == expected
    assert info.codecs["absent"] == {}
    assert info.codecs["f"] == _codec_counts(chunks.column("f")) and sum(info.codecs["f"].values()) == int(
        pc.sum(pc.greater(chunks.column("_n__f"), 0)).as_py()
    )
    assert back.select(chunks.column_names).equals(chunks)
    decoded = decode_chunks(back, LABELS, FIELDS)
    for name in ("f", "i"):
        a, b = decoded.get_column(name), frame.get_column(name)
        assert a.null_count() == b.null_count()
        va, vb = a.fill_null(0).to_numpy(), b.fill_null(0).to_numpy()
        assert np.array_equal(va.view(np.int64), vb.view(np.int64))

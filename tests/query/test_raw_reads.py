"""Raw-file reads that take small columns from memory and blobs from the file match a plain read; chunk label
masks match per-row matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

import tsdb_lake
from tsdb_lake.format import raw
from tsdb_lake.format.raw import encode_chunks, read_chunks, write_raw_file
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID
from tsdb_lake.query.matchers import eq, ne, not_regex, regex
from tsdb_lake.query.reader import _label_mask
from tsdb_lake.storage.local import LocalStorage

FIELDS = {"f": "float64", "i": "int64"}


def _write(tmp_path: Path, n: int) -> tuple[LocalStorage, pa.Table]:
    """A raw file of ``n`` one-point series (series i at time i, so row groups split by time); ``f`` has nulls."""
    rng = np.random.default_rng(5)
    f = rng.normal(size=n)
    frame = pl.DataFrame(
        {
            SERIES_ID: pl.Series(np.arange(n, dtype=np.uint64)),
            TIME_COLUMN: pl.Series(np.arange(n, dtype=np.int64)),
            "host": [f"h{i % 7}" for i in range(n)],
            "f": pl.Series(f).set(pl.Series(np.arange(n) % 5 == 0), None),
            "i": pl.Series(rng.integers(-50, 50, n)),
        }
    )
    chunks = encode_chunks(frame, ["host"], FIELDS)
    storage = LocalStorage(tmp_path)
    write_raw_file(storage, "part.parquet", chunks, ["host"], FIELDS)
    return storage, chunks


def test_blob_read_with_cached_small_columns_matches_plain_read(tmp_path: Path) -> None:
    n = 70_000  # more than one row group (64 Ki chunks each)
    storage, chunks = _write(tmp_path, n)
    small = [SERIES_ID, "host", "_t_min", "_t_max", "_count", "_n__f", "_min__f", "_max__f", "_n__i"]
    blobs = ["_time", "f", "_valid__f", "i"]
    wanted = [
        SERIES_ID,
        "host",
        "_t_min",
        "_t_max",
        "_count",
        "_time",
        "f",
        "_valid__f",
        "_n__f",
        "i",
        "_n__i",
    ]
    for start, end in [(None, None), (66_000, 66_100), (10, 20), (0, n)]:
        raw._SMALL.clear()
        raw._SMALL_BYTES[0] = 0
        plain = read_chunks(storage, "part.parquet", wanted, start=start, end=end)
        raw._SMALL.clear()
        raw._SMALL_BYTES[0] = 0
        read_chunks(storage, "part.parquet", small)  # caches the small columns of the whole file
        assembled = read_chunks(storage, "part.parquet", wanted, start=start, end=end)
        assert assembled.column_names == wanted
        assert assembled.equals(plain)
        lo = 0 if start is None else start
        hi = n if end is None else end
        assert assembled.num_rows == hi - lo
        expect = chunks.select(blobs).slice(lo, hi - lo)
        assert assembled.select(blobs).equals(expect.cast(assembled.select(blobs).schema))


def test_query_reads_bitmaps_only_of_fields_with_nulls(tmp_path: Path) -> None:
    """A field with nulls in part of a chunk keeps them through the query path; one without nulls in a file
    (the catalog's count equals the points) reads no bitmaps and loses nothing."""
    s = 1_000_000_000
    t0 = 1_700_000_000 * s // (3600 * s) * (3600 * s)
    rows = []
    for h, host in enumerate(["a", "b", "c"]):
        for k in range(300):
            gap = (host == "b" and k % 7 == 3) or (host == "c" and 100 <= k < 160)
            rows.append(
                {"time": t0 + k * 10 * s, "host": host, "v": None if gap else float(h * 1000 + k), "w": k}
            )
    frame = pl.DataFrame(rows, schema={"time": pl.Int64, "host": pl.String, "v": pl.Float64, "w": pl.Int64})
    lake = tsdb_lake.connect(str(tmp_path / "lake"))
    w = lake.writer(max_chunk_points=60)
    w.write("m", frame.filter(pl.col("time") < t0 + 1500 * s))
    w.flush()
    w.write("m", frame.filter(pl.col("time") >= t0 + 1500 * s).with_columns(pl.col("v").fill_null(-1.0)))
    w.flush()
    w.close()
    expect = pl.concat(
        [
            frame.filter(pl.col("time") < t0 + 1500 * s),
            frame.filter(pl.col("time") >= t0 + 1500 * s).with_columns(pl.col("v").fill_null(-1.0)),
        ]
    ).sort("host", "time")
    for _ in range(2):  # the second pass reads small columns from memory
        got = lake.query("m", t0, t0 + 3000 * s).select(expect.columns).sort("host", "time")
        assert got.equals(expect)
        inside = lake.query("m", t0 + 5 * s, t0 + 2995 * s).select(expect.columns).sort("host", "time")
        assert inside.equals(expect.filter((pl.col("time") >= t0 + 5 * s) & (pl.col("time") < t0 + 2995 * s)))


@pytest.mark.parametrize("distinct", [7, 5000])
def test_label_mask_agrees_with_per_row_matching(distinct: int) -> None:
    """Chunk label masks (regexes matched once per distinct value) equal per-row matching; nulls and labels
    missing from the files match as the empty string."""
    rng = np.random.default_rng(distinct)
    n = 12_000
    hosts = [None if k % 11 == 0 else f"web-{k % distinct}" for k in rng.integers(0, 10 * distinct, n)]
    zones = [None if k == 0 else ["eu", "us", ""][k % 3] for k in rng.integers(0, 9, n)]
    chunks = pa.table({"host": pa.array(hosts, pa.string()), "zone": pa.array(zones, pa.string())})
    cases = [
        [regex("host", "web-1|web-3|web-(4|5)")],
        [not_regex("host", "web-[0-2].*"), regex("zone", "eu|")],
        [regex("host", ".*"), ne("zone", "us")],
        [regex("zone", ""), not_regex("host", "web-6")],
        [regex("dc", "|eu"), ne("host", "web-2")],  # "dc" is not a column of these chunks: it matches as ""
        [eq("dc", "eu")],
    ]
    for matchers in cases:
        expect = np.array(
            [all(m.matches(row.get(m.label)) for m in matchers) for row in chunks.to_pylist()], bool
        )
        assert np.array_equal(_label_mask(chunks, matchers), expect)

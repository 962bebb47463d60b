"""Ingest files (CSV, Parquet, Influx line protocol) or stdin through a writer, in bounded batches."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import polars as pl

from tsdb_lake.errors import InvalidFrameError
from tsdb_lake.ingest.writer import Writer
from tsdb_lake.model import TIME_COLUMN

__all__ = ["detect_format", "ingest_path"]

_BATCH_ROWS = 100_000
_LP_BATCH_BYTES = 8 << 20


def detect_format(path: str) -> str:
    """``csv``, ``parquet`` or ``lp`` from a file name (``-`` = line protocol on stdin)."""
    if path == "-":
        return "lp"
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".lp", ".line", ".txt", ".influx"):
        return "lp"
    raise InvalidFrameError(f"cannot tell the format of {path!r}; pass --format csv|parquet|lp")


def _lp_chunks(stream: BinaryIO) -> Iterator[bytes]:
    pending = b""
    while True:
        block = stream.read(_LP_BATCH_BYTES)
        if not block:
            if pending:
                yield pending
            return
        block = pending + block
        cut = block.rfind(b"\n")
        if cut < 0:
            pending = block
            continue
        yield block[: cut + 1]
        pending = block[cut + 1 :]


def ingest_path(
    writer: Writer,
    path: str,
    *,
    metric: str | None = None,
    fmt: str = "auto",
    time_column: str = TIME_COLUMN,
    columns: Mapping[str, str] | None = None,
    precision: str = "ns",
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the file's points through ``writer``; returns the number of points written.

    CSV and Parquet need ``metric``; ``columns`` renames columns (old → new) and ``time_column`` names the
    timestamp column. Line protocol is read in ~8 MiB batches, each accepted or rejected whole.
    """
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "lp":
        total = 0
        if path == "-":
            for chunk in _lp_chunks(sys.stdin.buffer):
                total += writer.write_lines(chunk, precision=precision)
            return total
        size = Path(path).stat().st_size
        done = 0
        with open(path, "rb") as fh:
            for chunk in _lp_chunks(fh):
                total += writer.write_lines(chunk, precision=precision)
                done += len(chunk)
                if progress:
                    progress(done, size)
        return total
    if metric is None:
        raise InvalidFrameError(f"{kind} ingest needs a metric name (--metric)")
    if kind == "csv":
        frame = pl.read_csv(path, try_parse_dates=True, separator="\t" if path.endswith(".tsv") else ",")
    elif kind == "parquet":
        frame = pl.read_parquet(path)
    else:
        raise InvalidFrameError(f"unknown format {kind!r}; use csv, parquet or lp")
    if columns:
        frame = frame.rename(dict(columns))
    if time_column != TIME_COLUMN:
        if time_column not in frame.columns:
            raise InvalidFrameError(f"time column {time_column!r} not found; columns are {frame.columns}")
        frame = frame.rename({time_column: TIME_COLUMN})
    total = 0
    for offset in range(0, frame.height, _BATCH_ROWS):
        batch = frame.slice(offset, _BATCH_ROWS)
        total += writer.write(metric, batch)
        if progress:
            progress(min(offset + _BATCH_ROWS, frame.height), frame.height)
    return total

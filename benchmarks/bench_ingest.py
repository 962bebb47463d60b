"""Ingest benchmark: TSBS cpu-only through the WAL-backed writer vs pyarrow writing one zstd Parquet file.

Run: ``.venv/bin/python -m benchmarks.bench_ingest [--hosts 100 --hours 24]``. Writes
``benchmarks/results/ingest.json``; ``markdown(results)`` renders the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import tsdb_lake
from benchmarks._common import machine_info, write_results
from tsdb_lake.datagen import iter_cpu_only

HOUR = 3_600_000_000_000
START = 1_700_000_000_000_000_000 // HOUR * HOUR
TARGETS = {"values_per_s": 5e6, "ratio_vs_parquet": 0.5, "bytes_per_value": 0.35}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _warm_up(root: Path) -> None:
    """Load numba caches and imports once so the timed run measures steady-state ingest."""
    batches = list(iter_cpu_only(2, START, START + HOUR, batch_rows=1000, seed=0))
    lake = tsdb_lake.connect(root / "warm")
    with lake.writer(tenant="warm") as w:
        for b in batches:
            w.write("cpu", b)
    lake.query("cpu", START, START + HOUR, tenant="warm")


def run(hosts: int = 100, hours: int = 24, batch_rows: int = 10_000) -> dict[str, Any]:
    """Measure one ingest run; returns the results dict."""
    batches = list(iter_cpu_only(hosts, START, START + hours * HOUR, batch_rows=batch_rows, seed=7))
    table = pa.concat_tables(batches)
    fields = [c for c in table.column_names if c.startswith("usage_")]
    values = table.num_rows * len(fields)
    root = Path(tempfile.mkdtemp(prefix="tsdb-bench-ingest-"))
    try:
        _warm_up(root)
        lake = tsdb_lake.connect(root / "lake")
        t0 = time.perf_counter()
        with lake.writer(tenant="bench", durability="batch") as writer:
            for b in batches:
                writer.write("cpu", b)
            writer.flush()
        lake_seconds = time.perf_counter() - t0
        data_bytes = _dir_bytes(root / "lake" / "data")
        all_bytes = _dir_bytes(root / "lake")
        pq_path = root / "plain.parquet"
        t0 = time.perf_counter()
        pq.write_table(table, pq_path, compression="zstd")
        pq_seconds = time.perf_counter() - t0
        pq_bytes = pq_path.stat().st_size
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rate = values / lake_seconds
    pq_rate = values / pq_seconds
    return {
        "machine": machine_info(),
        "dataset": {
            "hosts": hosts,
            "hours": hours,
            "rows": table.num_rows,
            "field_values": values,
            "batch_rows": batch_rows,
            "durability": "batch",
        },
        "lake": {
            "seconds": lake_seconds,
            "values_per_s": rate,
            "data_bytes": data_bytes,
            "all_bytes": all_bytes,
            "bytes_per_value": all_bytes / values,
        },
        "parquet_zstd": {
            "seconds": pq_seconds,
            "values_per_s": pq_rate,
            "bytes": pq_bytes,
            "bytes_per_value": pq_bytes / values,
        },
        "ratio_vs_parquet": rate / pq_rate,
        "targets": TARGETS,
    }


def markdown(results: dict[str, Any]) -> str:
    """The RESULTS.md section for this benchmark."""
    lk, pqr, ds = results["lake"], results["parquet_zstd"], results["dataset"]
    met = {
        "rate": lk["values_per_s"] >= TARGETS["values_per_s"],
        "ratio": results["ratio_vs_parquet"] >= TARGETS["ratio_vs_parquet"],
        "size": lk["bytes_per_value"] <= TARGETS["bytes_per_value"],
    }
    yes = {True: "met", False: "**not met**"}
    return "\n".join(
        [
            "## Ingest (`benchmarks/bench_ingest.py`)",
            "",
            f"TSBS cpu-only, {ds['hosts']} hosts x {ds['hours']} h = {ds['field_values']:,} field values, "
            f'batches of {ds["batch_rows"]:,} rows, `durability="batch"` (fsync per batch), then flush.',
            "",
            "| measure | tsdb-lake | baseline: pyarrow, one zstd Parquet file | target | |",
            "|---|---|---|---|---|",
            f"| field values / s end to end | {lk['values_per_s'] / 1e6:.2f} M | {pqr['values_per_s'] / 1e6:.2f} M | "
            f">= 5 M | {yes[met['rate']]} |",
            f"| rate vs baseline | {results['ratio_vs_parquet']:.2f}x | 1.00x | >= 0.5x | {yes[met['ratio']]} |",
            f"| bytes / field value on disk (all files) | {lk['bytes_per_value']:.3f} | {pqr['bytes_per_value']:.3f} | "
            f"<= 0.35 | {yes[met['size']]} |",
        ]
    )


def main() -> dict[str, Any]:
    """CLI entry: run, write results JSON, print the markdown section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--hours", type=int, default=24)
    args = parser.parse_args()
    results = run(args.hosts, args.hours)
    write_results("ingest", results)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()

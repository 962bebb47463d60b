"""Codec benchmark: bytes/value and encode/decode throughput of the tsdb-lake codecs against Parquet.

Per dataset (every NAB series, TSBS cpu-only fields, synthetic shapes) it measures our timestamp codec,
Gorilla, the adaptive float codec, and, in the same run, pyarrow Parquet PLAIN+zstd and
BYTE_STREAM_SPLIT+zstd (size = compressed column-chunk size from the metadata / value count). Series are
split into chunks of ``CHUNK`` points as the store does; decoders run over all chunks of a dataset in one
batch call (single thread unless the column says ``par``). Writes ``benchmarks/results/codecs.json``.

``tsbs/cpu-only@360`` repeats TSBS in hourly chunks of 360 points, as hourly raw partitions store it.

Run: ``.venv/bin/python benchmarks/bench_codecs.py``.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_time, machine_info, markdown_table, mvals_per_s, write_results  # type: ignore[import-not-found]

from tsdb_lake import codecs

__all__ = ["CHUNK", "datasets", "main", "markdown"]

CHUNK = 4096  # the store's DEFAULT_CHUNK_POINTS (tsdb_lake.format.raw)
HOURLY = 360  # points per series per hour at 10 s: the chunk size of hourly raw partitions
NAB_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nab"
SYNTH_N = 100_000
TARGETS = {
    "gorilla_decode_mps": 80.0,
    "adaptive_decode_mps": 200.0,
    "timestamp_decode_mps": 200.0,
    "regular_ts_bytes_per_point": 0.02,
    "adaptive_vs_gorilla_mean_ratio": 0.5,
}


def _load_nab(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ts = np.array([r["timestamp"].replace(" ", "T") for r in rows], dtype="datetime64[ns]").view(np.int64)
    vals = np.array([float(r["value"]) for r in rows], dtype=np.float64)
    return ts, vals


def _walk(rng: np.random.Generator, n: int) -> np.ndarray:
    """TSBS-style clamped random walk truncated to integers (fallback when the datagen is missing)."""
    out = np.empty(n)
    x = rng.uniform(0, 100)
    steps = rng.normal(0, 1, n)
    for i in range(n):
        x = min(100.0, max(0.0, x + steps[i]))
        out[i] = x
    return np.trunc(out)


def _tsbs() -> tuple[np.ndarray, np.ndarray, str]:
    """Ten cpu-only fields of one host over one day (8640 points each), concatenated field after field."""
    start = np.datetime64("2024-01-01T00:00:00", "ns").view(np.int64)
    n = 8640
    try:
        from tsdb_lake.datagen import generate_cpu_only

        table = generate_cpu_only(1, "2024-01-01", "2024-01-02", seed=7)
        cols = [c for c in table.column_names if c.startswith("usage_")]
        ts = np.asarray(table.column("time"), dtype=np.int64)
        vals = np.concatenate([np.asarray(table.column(c), dtype=np.float64) for c in cols])
        return ts, vals, "tsdb_lake.datagen.generate_cpu_only"
    except ImportError:
        rng = np.random.default_rng(7)
        vals = np.concatenate([_walk(rng, n) for _ in range(10)])
        return start + np.arange(n, dtype=np.int64) * 10_000_000_000, vals, "fallback random walk"


def datasets() -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """``{name: (timestamps, values)}`` and a note per dataset on where it comes from."""
    rng = np.random.default_rng(42)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    notes: dict[str, str] = {}
    for path in sorted(NAB_DIR.glob("*.csv")):
        out[f"nab/{path.stem}"] = _load_nab(path)
        notes[f"nab/{path.stem}"] = "NAB real series"
    ts, vals, src = _tsbs()
    out["tsbs/cpu-only"] = (ts, vals)
    notes["tsbs/cpu-only"] = f"10 usage_* fields, 1 host, 1 day at 10 s ({src})"
    out["tsbs/cpu-only@360"] = (ts, vals)
    notes["tsbs/cpu-only@360"] = f"as tsbs/cpu-only, in chunks of {HOURLY} points (hourly partitions)"
    t0 = np.datetime64("2024-01-01T00:00:00", "ns").view(np.int64)
    n = SYNTH_N
    regular10 = t0 + np.arange(n, dtype=np.int64) * 10_000_000_000
    regular1 = t0 + np.arange(n, dtype=np.int64) * 1_000_000_000
    jitter = regular10 + rng.integers(-50_000_000, 50_000_000, n)
    poisson = t0 + np.cumsum(rng.exponential(2e9, n)).astype(np.int64)
    out["synthetic/constant"] = (regular10, np.full(n, 42.5))
    notes["synthetic/constant"] = "42.5 everywhere; regular 10 s timestamps"
    out["synthetic/counter"] = (regular1, np.cumsum(rng.poisson(1000, n)).astype(np.float64))
    notes["synthetic/counter"] = "monotonic byte counter (Poisson increments); regular 1 s"
    walk = 20.0 + np.cumsum(rng.normal(0, 0.05, n))
    out["synthetic/gauge-2dec"] = (jitter, np.round(walk, 2))
    notes["synthetic/gauge-2dec"] = "random walk rounded to 2 decimals; 10 s +/- 50 ms jitter"
    out["synthetic/random-doubles"] = (poisson, rng.normal(50.0, 10.0, n))
    notes["synthetic/random-doubles"] = "N(50,10) full precision; Poisson arrivals at ns precision"
    return out, notes


def _chunk_size(name: str) -> int:
    return HOURLY if name.endswith(f"@{HOURLY}") else CHUNK


def _chunks(a: np.ndarray, chunk: int = CHUNK) -> list[np.ndarray]:
    return [a[i : i + chunk] for i in range(0, len(a), chunk)]


def _layout(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return np.frombuffer(b"".join(blobs), np.uint8), offsets


def _ours(kind: str, series: np.ndarray, chunk: int = CHUNK) -> dict[str, Any]:
    parts = _chunks(series, chunk)
    n = len(series)
    view: type[np.generic]
    if kind == "timestamp":

        def enc(p: np.ndarray) -> bytes:
            return codecs.encode_timestamps(p)

        def dec(layout: Any, par: bool) -> Any:
            return codecs.decode_timestamps_many(layout, parallel=par)

        view = np.int64
    else:
        choice = codecs.CodecId.GORILLA if kind == "gorilla" else None

        def enc(p: np.ndarray) -> bytes:
            return codecs.encode_floats(p, choice)

        def dec(layout: Any, par: bool) -> Any:
            return codecs.decode_floats_many(layout, parallel=par)

        view = np.uint64
    blobs = [enc(p) for p in parts]
    t_enc = best_time(lambda: [enc(p) for p in parts], min_total=0.1, max_runs=20, clock=time.thread_time)
    layout = _layout(blobs)
    offsets = np.append(np.arange(0, n, chunk), n).astype(np.int64)
    if kind == "timestamp":

        def enc_many() -> tuple[np.ndarray, np.ndarray]:
            return codecs.encode_timestamps_many(series, offsets, parallel=False)
    else:

        def enc_many() -> tuple[np.ndarray, np.ndarray]:
            return codecs.encode_floats_many(series, offsets, choice, parallel=False)

    batch = enc_many()
    if not (np.array_equal(batch[0], layout[0]) and np.array_equal(batch[1], layout[1])):
        raise AssertionError(f"{kind} batch encoder differs from the single-blob encoder")
    t_enc_many = best_time(enc_many, min_total=0.1, max_runs=20, clock=time.thread_time)
    got, _ = dec(layout, False)
    if not np.array_equal(got.view(view), series.view(view)):
        raise AssertionError(f"{kind} round trip failed")
    t_dec = best_time(lambda: dec(layout, False), clock=time.thread_time)
    t_wall = best_time(lambda: dec(layout, False))
    t_par = best_time(lambda: dec(layout, True))
    size = sum(len(b) for b in blobs)
    res: dict[str, Any] = {
        "bytes_per_value": size / n,
        "encode_mps": mvals_per_s(n, t_enc),
        "encode_batch_mps": mvals_per_s(n, t_enc_many),
        "decode_mps": mvals_per_s(n, t_dec),
        "decode_wall_mps": mvals_per_s(n, t_wall),
        "decode_par_mps": mvals_per_s(n, t_par),
    }
    if kind == "adaptive":
        res["codecs"] = dict(Counter(codecs.codec_id(b).name for b in blobs))
    return res


def _parquet(values: np.ndarray, encoding: str, tmp: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"v": pa.array(values)})
    path = str(tmp / f"bench-{encoding}.parquet")
    kw: dict[str, Any] = {"compression": "zstd", "use_dictionary": False, "column_encoding": {"v": encoding}}

    def write() -> None:
        pq.write_table(table, path, **kw)

    t_enc = best_time(write, min_total=0.1, max_runs=20, clock=time.thread_time)
    meta = pq.ParquetFile(path).metadata
    size = sum(meta.row_group(i).column(0).total_compressed_size for i in range(meta.num_row_groups))
    back = pq.read_table(path).column("v").to_numpy()
    if not np.array_equal(back.view(np.uint64), values.view(np.uint64)):
        raise AssertionError("parquet round trip failed")
    t_dec = best_time(lambda: pq.read_table(path, use_threads=False), clock=time.thread_time)
    n = len(values)
    return {
        "bytes_per_value": size / n,
        "encode_mps": mvals_per_s(n, t_enc),
        "decode_mps": mvals_per_s(n, t_dec),
    }


def _warm_up() -> None:
    rng = np.random.default_rng(0)
    v = np.round(rng.normal(0, 1, 3000), 3)
    t = np.arange(3000, dtype=np.int64)
    for kind in ("timestamp", "gorilla", "adaptive"):
        _ours(kind, t if kind == "timestamp" else v)


def main() -> dict[str, Any]:
    """Run every measurement, write ``benchmarks/results/codecs.json``, print the table; return the results."""
    t_start = time.perf_counter()
    _warm_up()
    data, notes = datasets()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for name, (ts, vals) in data.items():
            rows[name] = {
                "n": len(vals),
                "n_timestamps": len(ts),
                "note": notes[name],
                "chunk_points": _chunk_size(name),
                "timestamp": _ours("timestamp", ts, _chunk_size(name)),
                "gorilla": _ours("gorilla", vals, _chunk_size(name)),
                "adaptive": _ours("adaptive", vals, _chunk_size(name)),
                "parquet_plain_zstd": _parquet(vals, "PLAIN", tmp),
                "parquet_bss_zstd": _parquet(vals, "BYTE_STREAM_SPLIT", tmp),
            }
            print(f"  {name}: done", file=sys.stderr)
    results = {
        "benchmark": "codecs",
        "chunk_points": CHUNK,
        "machine": machine_info(),
        "datasets": rows,
        "summary": _summary(rows),
        "targets": TARGETS,
        "seconds": time.perf_counter() - t_start,
    }
    write_results("codecs", results)
    print(markdown(results))
    return results


def _agg_mps(rows: dict[str, Any], method: str, key: str = "decode_mps") -> float:
    total_n = sum(r["n_timestamps" if method == "timestamp" else "n"] for r in rows.values())
    total_t = sum(
        r["n_timestamps" if method == "timestamp" else "n"] / (r[method][key] * 1e6) for r in rows.values()
    )
    return total_n / total_t / 1e6


def _summary(rows: dict[str, Any]) -> dict[str, Any]:
    beats = {}
    ratios = []
    for name, r in rows.items():
        base = min(r["parquet_plain_zstd"]["bytes_per_value"], r["parquet_bss_zstd"]["bytes_per_value"])
        beats[name] = r["adaptive"]["bytes_per_value"] <= base
        ratios.append(r["adaptive"]["bytes_per_value"] / r["gorilla"]["bytes_per_value"])
    regular = {
        k: r["timestamp"]["bytes_per_value"]
        for k, r in rows.items()
        # the target is per point of full-size chunks; hourly 360-point chunks carry a fixed header per chunk
        if r["chunk_points"] == CHUNK
        and (k.startswith("tsbs") or k in ("synthetic/constant", "synthetic/counter"))
    }
    s = {
        "adaptive_le_parquet_min": beats,
        "adaptive_le_parquet_min_all": all(beats.values()),
        "adaptive_vs_gorilla_mean_ratio": float(np.mean(ratios)),
        "adaptive_vs_gorilla_total_ratio": sum(
            r["adaptive"]["bytes_per_value"] * r["n"] for r in rows.values()
        )
        / sum(r["gorilla"]["bytes_per_value"] * r["n"] for r in rows.values()),
        "gorilla_decode_mps": _agg_mps(rows, "gorilla"),
        "adaptive_decode_mps": _agg_mps(rows, "adaptive"),
        "timestamp_decode_mps": _agg_mps(rows, "timestamp"),
        "gorilla_decode_mps_min": min(r["gorilla"]["decode_mps"] for r in rows.values()),
        "adaptive_decode_mps_min": min(r["adaptive"]["decode_mps"] for r in rows.values()),
        "timestamp_decode_mps_min": min(r["timestamp"]["decode_mps"] for r in rows.values()),
        "regular_ts_bytes_per_point": regular,
    }
    s["met"] = {
        "adaptive_le_parquet_every_dataset": s["adaptive_le_parquet_min_all"],
        "adaptive_le_half_gorilla": s["adaptive_vs_gorilla_mean_ratio"]
        <= TARGETS["adaptive_vs_gorilla_mean_ratio"],
        "gorilla_decode": s["gorilla_decode_mps"] >= TARGETS["gorilla_decode_mps"],
        "adaptive_decode": s["adaptive_decode_mps"] >= TARGETS["adaptive_decode_mps"],
        "timestamp_decode": s["timestamp_decode_mps"] >= TARGETS["timestamp_decode_mps"],
        "regular_timestamps": all(v <= TARGETS["regular_ts_bytes_per_point"] for v in regular.values()),
    }
    return s


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown: one size/speed table plus the targets, for ``benchmarks/RESULTS.md``."""
    rows = []
    for name, r in results["datasets"].items():
        rows.append(
            [
                name,
                r["n"],
                r["timestamp"]["bytes_per_value"],
                r["gorilla"]["bytes_per_value"],
                r["adaptive"]["bytes_per_value"],
                r["parquet_plain_zstd"]["bytes_per_value"],
                r["parquet_bss_zstd"]["bytes_per_value"],
                r["timestamp"]["decode_mps"],
                r["gorilla"]["decode_mps"],
                r["adaptive"]["decode_mps"],
                r["adaptive"]["decode_par_mps"],
                r["parquet_bss_zstd"]["decode_mps"],
                r["adaptive"]["encode_mps"],
                r["adaptive"]["encode_batch_mps"],
                r["timestamp"]["encode_batch_mps"],
                ", ".join(f"{k}:{v}" for k, v in sorted(r["adaptive"]["codecs"].items())),
            ]
        )
    head = [
        "dataset",
        "values",
        "ts B/pt",
        "gorilla B/v",
        "adaptive B/v",
        "pq plain+zstd B/v",
        "pq bss+zstd B/v",
        "ts dec M/s",
        "gorilla dec M/s",
        "adaptive dec M/s",
        "adaptive dec par M/s",
        "pq bss dec M/s",
        "adaptive enc M/s",
        "adaptive enc batch M/s",
        "ts enc batch M/s",
        "adaptive chunk codecs",
    ]
    s = results["summary"]
    t = results["targets"]
    met = s["met"]
    lines = [
        f"### Codecs (chunks of {results['chunk_points']} points; decode = one batch call over all chunks; "
        "M/s = millions of values per second of the calling thread's CPU time, single thread; 'par' = wall "
        "time with the codec thread pool on all cores; load average at start "
        f"{results['machine'].get('load_average_1m')})",
        "",
        markdown_table(head, rows),
        "",
        "| target | goal | measured | met |",
        "|---|---|---|---|",
        f"| adaptive B/v <= min(Parquet) on every dataset | all | "
        f"{sum(s['adaptive_le_parquet_min'].values())}/{len(s['adaptive_le_parquet_min'])} | "
        f"{met['adaptive_le_parquet_every_dataset']} |",
        f"| adaptive / Gorilla bytes, mean over datasets | <= {t['adaptive_vs_gorilla_mean_ratio']} | "
        f"{s['adaptive_vs_gorilla_mean_ratio']:.3f} | {met['adaptive_le_half_gorilla']} |",
        f"| Gorilla decode M/s (all datasets) | >= {t['gorilla_decode_mps']} | {s['gorilla_decode_mps']:.0f} "
        f"(min {s['gorilla_decode_mps_min']:.0f}) | {met['gorilla_decode']} |",
        f"| adaptive decode M/s (all datasets) | >= {t['adaptive_decode_mps']} | "
        f"{s['adaptive_decode_mps']:.0f} (min {s['adaptive_decode_mps_min']:.0f}) | {met['adaptive_decode']} |",
        f"| timestamp decode M/s (all datasets) | >= {t['timestamp_decode_mps']} | "
        f"{s['timestamp_decode_mps']:.0f} (min {s['timestamp_decode_mps_min']:.0f}) | {met['timestamp_decode']} |",
        f"| regular timestamps B/point | <= {t['regular_ts_bytes_per_point']} | "
        f"{max(s['regular_ts_bytes_per_point'].values()):.4f} (worst) | {met['regular_timestamps']} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Rollup benchmark: TSBS cpu-only through the rollup pass, tier sizes, a long-range query, quantile error.

1. Pass throughput: ``HOSTS`` hosts × ``DAYS`` days of cpu-only (10 s interval, 10 fields) are written to a
   local lake, then one ``lake.rollup()`` builds 1m, 1h and 1d; reported as raw values rolled per second.
2. Bytes per tier and as a fraction of raw (the catalog's file sizes).
3. A ``LONG_DAYS``-day daily avg / max / p99 query (``LONG_HOSTS`` hosts) answered by the 1d tier vs the same
   query with ``resolution="raw"``, in the same run (best of several runs, warm).
4. Quantile rank error of the p99 / p50 answers from sketches vs the exact values of each host-day.

Run: ``.venv/bin/python benchmarks/bench_rollup.py [HOSTS DAYS LONG_HOSTS LONG_DAYS]``
(defaults 100 7 5 90). Writes ``benchmarks/results/rollup.json``; ``markdown(results)`` renders it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_time, machine_info, markdown_table, mvals_per_s, write_results  # type: ignore[import-not-found]

import tsdb_lake.lake as lake_mod
from tsdb_lake.compaction.sketches import SKETCH_K, rank_error
from tsdb_lake.datagen import CPU_FIELDS, iter_cpu_only

DAY = 86_400_000_000_000
START = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z


def _write(lake: Any, hosts: int, days: int, seed: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    points = 0
    with lake.writer(tenant="bench", flush_bytes=256 << 20, memtable_budget_bytes=1 << 30) as w:
        for batch in iter_cpu_only(hosts, START, START + days * DAY, batch_rows=200_000, seed=seed):
            points += w.write("cpu", batch)
        w.flush()
    return points, time.perf_counter() - t0


def _tier_bytes(lake: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in lake.snapshot().by_path.values():
        out[f.tier] = out.get(f.tier, 0) + f.bytes
    return out


def _state_kinds(lake: Any) -> dict[str, dict[str, float]]:
    """Per tier: share of (bucket, field) states kept as exact histograms vs KLL sketches."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, float]] = {}
    for f in lake.snapshot().by_path.values():
        if f.tier == "raw":
            continue
        t = pq.read_table(lake.storage.arrow_path(f.path), filesystem=lake.storage.arrow_fs())
        sk = sum(t.column(c).null_count for c in t.column_names if c.endswith("__sketch"))
        total = sum(len(t.column(c)) for c in t.column_names if c.endswith("__sketch"))
        cur = out.setdefault(f.tier, {"states": 0, "sketches": 0})
        cur["states"] += total
        cur["sketches"] += total - sk
    return out


def bench_pass(hosts: int, days: int) -> dict[str, Any]:
    """Write, then time one rollup pass over everything."""
    with tempfile.TemporaryDirectory() as tmp:
        lake = lake_mod.connect(Path(tmp) / "lake")
        points, write_s = _write(lake, hosts, days, seed=1)
        # warm the JIT on a small lake first so the pass measures work, not compilation
        warm = lake_mod.connect(Path(tmp) / "warm")
        _write(warm, 2, 1, seed=3)
        warm.rollup(now_ns=START + 2 * DAY)
        warm.query("cpu", START, START + DAY, tenant="bench")
        report = lake.rollup(now_ns=START + (days + 1) * DAY)
        sizes = _tier_bytes(lake)
        t0 = time.perf_counter()  # the raw read / decode baseline: every point of the range, LWW-merged
        lake.query("cpu", START, START + days * DAY, tenant="bench")
        raw_read_s = time.perf_counter() - t0
        states = _state_kinds(lake)
    raw_values = report.raw_values_rolled
    return {
        "hosts": hosts,
        "days": days,
        "points": points,
        "raw_values": raw_values,
        "write_seconds": write_s,
        "rollup_seconds": report.seconds,
        "rollup_mvalues_per_s": mvals_per_s(raw_values, report.seconds),
        "raw_read_seconds": raw_read_s,
        "raw_read_mvalues_per_s": mvals_per_s(raw_values, raw_read_s),
        "pass_over_raw_read": report.seconds / raw_read_s,
        "quantile_state": states,
        "tier_seconds": {p.tier: p.seconds for p in report.passes},
        "tier_rows": {p.tier: p.rows for p in report.passes},
        "bytes": sizes,
        "fraction_of_raw": {t: b / sizes["raw"] for t, b in sizes.items()},
        "raw_bytes_per_value": sizes["raw"] / max(raw_values, 1),
    }


def _rank_interval(sorted_vals: np.ndarray, x: float) -> tuple[float, float]:
    n = len(sorted_vals)
    return (
        float(np.searchsorted(sorted_vals, x, side="left")) / n,
        float(np.searchsorted(sorted_vals, x, side="right")) / n,
    )


def bench_long_query(hosts: int, days: int) -> dict[str, Any]:
    """Daily avg / max / p99 over ``days`` days from the 1d tier vs from raw; rank error of the quantiles."""
    with tempfile.TemporaryDirectory() as tmp:
        lake = lake_mod.connect(Path(tmp) / "lake")
        points, write_s = _write(lake, hosts, days, seed=2)
        report = lake.rollup(now_ns=START + (days + 1) * DAY)
        end = START + days * DAY
        q = {"tenant": "bench", "every": "1d", "fields": ["usage_user"], "agg": ["avg", "max", "p99", "p50"]}
        auto, explain = lake.query("cpu", START, end, explain=True, **q)
        raw = lake.query("cpu", START, end, resolution="raw", **q)
        t_rollup = best_time(lambda: lake.query("cpu", START, end, **q), min_runs=5, min_total=1.0)
        t_raw = best_time(
            lambda: lake.query("cpu", START, end, resolution="raw", **q), min_runs=2, min_total=0.0
        )
        same = {
            agg: bool(
                np.allclose(
                    auto.get_column(f"usage_user_{agg}").to_numpy(),
                    raw.get_column(f"usage_user_{agg}").to_numpy(),
                    rtol=1e-9,
                )
            )
            for agg in ("avg", "max")
        }
        # Rank error of the sketch quantiles against the exact values of each host-day.
        points_frame = lake.query("cpu", START, end, tenant="bench", fields=["usage_user"])
        points_frame = points_frame.with_columns(pl.col("time").dt.truncate("1d").alias("day"))
        exact: dict[tuple[str, Any], np.ndarray] = {}
        for row in points_frame.group_by(["hostname", "day"]).agg(pl.col("usage_user")).iter_rows(named=True):
            exact[(row["hostname"], row["day"])] = np.sort(np.asarray(row["usage_user"], dtype=float))
        errors: dict[str, list[float]] = {"p99": [], "p50": []}
        for row in auto.iter_rows(named=True):
            vals = exact[(row["hostname"], row["time"])]
            for name, qv in (("p99", 0.99), ("p50", 0.5)):
                lo, hi = _rank_interval(vals, row[f"usage_user_{name}"])
                errors[name].append(0.0 if lo <= qv <= hi else min(abs(qv - lo), abs(qv - hi)))
    return {
        "hosts": hosts,
        "days": days,
        "points": points,
        "write_seconds": write_s,
        "rollup_seconds": report.seconds,
        "tiers_used": explain["tiers"],
        "approximate": explain["approximate"],
        "query_rollup_s": t_rollup,
        "query_raw_s": t_raw,
        "speedup": t_raw / t_rollup,
        "avg_max_equal_to_raw": same,
        "rank_error": {
            k: {"max": float(np.max(v)), "mean": float(np.mean(v)), "n": len(v)} for k, v in errors.items()
        },
        "kll_stated_rank_error": rank_error(SKETCH_K),
    }


def markdown(results: dict[str, Any]) -> str:
    """The results as markdown for ``benchmarks/RESULTS.md``."""
    p, q = results["pass"], results["long_query"]
    one_day = p["fraction_of_raw"].get("1d", 1.0)
    met = {True: "met", False: "**not met**"}
    lines = [
        f"### Rollups (`bench_rollup.py`, {results['machine']['processor']}, "
        f"{results['machine']['cpu_count']} cores, load {results['machine']['load_average_1m']:.1f})",
        "",
        f"Pass over TSBS cpu-only, {p['hosts']} hosts × {p['days']} days ({p['raw_values']:,} raw values): "
        f"**{p['rollup_mvalues_per_s']:.2f} M values/s** ({p['rollup_seconds']:.1f} s; target ≥ 5); reading and "
        f"decoding the same raw range takes {p['raw_read_seconds']:.1f} s ({p['raw_read_mvalues_per_s']:.1f} M "
        f"values/s): the pass costs {p['pass_over_raw_read']:.1f}× a raw read.",
        "",
        markdown_table(
            ["tier", "bytes", "fraction of raw", "rows", "seconds"],
            [
                [
                    t,
                    p["bytes"].get(t, 0),
                    p["fraction_of_raw"].get(t, 0.0),
                    p["tier_rows"].get(t, "-"),
                    p["tier_seconds"].get(t, "-"),
                ]
                for t in ("raw", "1m", "1h", "1d")
            ],
        ),
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| rollup pass >= 5 M raw values/s | {p['rollup_mvalues_per_s']:.2f} M/s | "
        f"{met[p['rollup_mvalues_per_s'] >= 5]} |",
        f"| 1d tier <= 5 % of raw | {one_day * 100:.1f} % | {met[one_day <= 0.05]} |",
        f"| 90-day query from rollups >= 50x faster than raw | {q['speedup']:.0f}x | {met[q['speedup'] >= 50]} |",
        "",
        f"{q['days']}-day daily avg / max / p99 / p50 of usage_user, {q['hosts']} hosts: rollups "
        f"{q['query_rollup_s'] * 1e3:.1f} ms vs raw {q['query_raw_s'] * 1e3:.0f} ms in the same run: "
        f"**{q['speedup']:.0f}×** (target ≥ 50×); avg / max equal to raw: {q['avg_max_equal_to_raw']}.",
        "",
        f"Quantile rank error vs exact per host-day (k = {SKETCH_K}, stated "
        f"{q['kll_stated_rank_error']:.4f}): p99 max {q['rank_error']['p99']['max']:.4f} / mean "
        f"{q['rank_error']['p99']['mean']:.5f}; p50 max {q['rank_error']['p50']['max']:.4f} / mean "
        f"{q['rank_error']['p50']['mean']:.5f}.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> dict[str, Any]:
    hosts, days, long_hosts, long_days = (int(a) for a in (argv + ["100", "7", "5", "90"][len(argv) :]))
    results = {
        "machine": machine_info(),
        "fields": len(CPU_FIELDS),
        "pass": bench_pass(hosts, days),
        "long_query": bench_long_query(long_hosts, long_days),
    }
    write_results("rollup", results)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])

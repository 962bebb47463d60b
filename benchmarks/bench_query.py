"""Query benchmark: the TSBS devops query set through ``lake.query`` vs DuckDB over hive-partitioned Parquet.

Dataset: TSBS cpu-only (10 tags, 10 ``usage_*`` fields, one point per host every 10 s), ``--hosts`` x
``--days``, written through the lake's writer (``durability="none"``, then flush) and, as the baseline, the
same points as plain zstd Parquet (time as µs TIMESTAMPTZ, lossless here) partitioned by hour (``hour=YYYY-MM-DDTHH/data.parquet``) read by DuckDB
with ``read_parquet(..., hive_partitioning=true)``; every baseline query carries its time predicate on the
``hour`` partition column too, so DuckDB prunes files.

Queries follow TSBS ``cmd/tsbs_generate_queries/uses/devops`` (SQL as its TimescaleDB generator writes them):

* ``single-groupby-M-H-T``: max of M metrics per minute over H random hosts, random T-hour window;
* ``cpu-max-all-8``: max of all 10 metrics per hour, 8 random hosts, random 8-hour window;
* ``double-groupby-1`` / ``-all``: mean of 1 / 10 metrics per (hour, host), all hosts, random 24-hour window;
* ``high-cpu-1`` / ``-all``: every row with ``usage_user > 90`` in a random 24-hour window, 1 host / all hosts;
* ``lastpoint``: the newest row of every host;
* ``groupby-orderby-limit``: max ``usage_user`` per minute of the 5 newest minutes before a random end;
* ``recent-1h`` (the issue's recent-data query): 1 random host, the newest hour, mean of 10 metrics per minute.

Each query runs ``--runs`` times with seeded random parameters (the same for both systems, interleaved), and
its result is checked against DuckDB's once before timing (max / min exact, means within 1e-9 relative).
``lake.query`` has no ``LIMIT`` or "last row" form, so ``lastpoint`` and ``groupby-orderby-limit`` read the
newest hour(s) and widen the window until the answer is provably complete (see :func:`_lake_lastpoint`).

Run: ``.venv/bin/python -m benchmarks.bench_query [--hosts 100 --days 3 --runs 20]``. Writes
``benchmarks/results/query.json``; ``markdown(results)`` renders the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from polars.testing import assert_frame_equal

import tsdb_lake
from benchmarks._common import machine_info, write_results
from tsdb_lake.datagen import CPU_FIELDS, iter_cpu_only

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 3600 * SECOND
DAY = 24 * HOUR
START = 1_700_000_000_000_000_000 // DAY * DAY  # 2023-11-14T00:00Z
TENANT = "bench"
TARGETS = {"median_ratio": 1.0, "recent_p95_ms": 20.0}

Params = dict[str, Any]


@dataclass(frozen=True)
class Dataset:
    """Where the two copies of the data live and what they hold."""

    root: Path
    hosts: int
    days: int

    @property
    def start(self) -> int:
        return START

    @property
    def end(self) -> int:
        return START + self.days * DAY

    @property
    def lake_dir(self) -> Path:
        return self.root / "lake"

    @property
    def parquet_dir(self) -> Path:
        return self.root / "parquet"


# ---------------------------------------------------------------------------------------------- data setup
def _hour_label(ns: int) -> str:
    return datetime.fromtimestamp(ns // SECOND, UTC).strftime("%Y-%m-%dT%H")


def build_dataset(root: Path, hosts: int, days: int, *, seed: int = 7) -> tuple[Dataset, dict[str, float]]:
    """Write the lake and the baseline Parquet copy under ``root`` (reused when already complete)."""
    ds = Dataset(root, hosts, days)
    marker = root / "dataset.json"
    want = {"hosts": hosts, "days": days, "seed": seed, "start": START}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return ds, {}
    shutil.rmtree(ds.lake_dir, ignore_errors=True)
    shutil.rmtree(ds.parquet_dir, ignore_errors=True)
    timings: dict[str, float] = {}
    batches = iter_cpu_only(hosts, ds.start, ds.end, batch_rows=100_000, seed=seed)
    lake = tsdb_lake.connect(ds.lake_dir)
    by_hour: dict[int, list[pa.Table]] = {}
    t_lake = 0.0
    with lake.writer(tenant=TENANT, durability="none") as writer:
        for batch in batches:
            t0 = time.perf_counter()
            writer.write("cpu", batch)
            t_lake += time.perf_counter() - t0
            hours = (np.asarray(batch.column("time")) // HOUR).astype(np.int64)
            for h in np.unique(hours).tolist():
                by_hour.setdefault(h, []).append(batch.filter(pa.array(hours == h)))
        t0 = time.perf_counter()
        writer.flush()
        t_lake += time.perf_counter() - t0
    timings["lake_write_s"] = t_lake
    t0 = time.perf_counter()
    for h, parts in sorted(by_hour.items()):
        table = pa.concat_tables(parts)
        i = table.schema.get_field_index("time")
        table = table.set_column(
            i,
            "time",
            table.column("time").cast(pa.timestamp("ns", tz="UTC")).cast(pa.timestamp("us", tz="UTC")),
        )
        folder = ds.parquet_dir / f"hour={_hour_label(h * HOUR)}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "data.parquet", compression="zstd")
    timings["parquet_write_s"] = time.perf_counter() - t0
    marker.write_text(json.dumps(want))
    return ds, timings


def open_duckdb(ds: Dataset) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the view ``cpu`` over the hive-partitioned baseline files."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    glob = str(ds.parquet_dir / "*" / "*.parquet")
    con.execute(
        "CREATE VIEW cpu AS SELECT * FROM read_parquet("
        f"'{glob}', hive_partitioning = true, hive_types = {{'hour': VARCHAR}})"
    )
    return con


# ---------------------------------------------------------------------------------------------- the queries
def _ts(ns: int) -> str:
    return f"TIMESTAMPTZ '{datetime.fromtimestamp(ns / SECOND, UTC).isoformat()}'"


def _time_where(start: int | None, end: int) -> str:
    """Time predicate on ``time`` and, for pruning, on the ``hour`` partition column."""
    parts = [f"time < {_ts(end)}", f"hour <= '{_hour_label(end - 1)}'"]
    if start is not None:
        parts += [f"time >= {_ts(start)}", f"hour >= '{_hour_label(start)}'"]
    return " AND ".join(parts)


def _host_where(hosts: list[str] | None) -> str:
    if not hosts:
        return "TRUE"
    return "hostname IN (" + ", ".join(f"'{h}'" for h in hosts) + ")"


def _where_hosts(hosts: list[str] | None) -> dict[str, Any] | None:
    if not hosts:
        return None
    return {"hostname": hosts[0] if len(hosts) == 1 else hosts}


def _epoch(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("time").dt.epoch("ns").alias("time"))


@dataclass(frozen=True)
class Query:
    """One benchmark query: random parameters, the lake call and the baseline SQL, both canonicalised."""

    name: str
    params: Callable[[np.random.Generator, Dataset], Params]
    lake: Callable[[Any, Dataset, Params], pl.DataFrame]
    sql: Callable[[Dataset, Params], str]
    sort: tuple[str, ...]


def _rand_window(rng: np.random.Generator, ds: Dataset, width: int) -> tuple[int, int]:
    """TSBS ``RandWindow``: a window of ``width`` starting uniformly at random (whole seconds) in the data."""
    start = ds.start + int(rng.integers(0, max(1, (ds.end - width - ds.start) // SECOND))) * SECOND
    return start, start + width


def _rand_hosts(rng: np.random.Generator, ds: Dataset, n: int) -> list[str]:
    return [f"host_{i}" for i in rng.permutation(ds.hosts)[:n].tolist()]


def single_groupby(metrics: int, hosts: int, hours: int) -> Query:
    fields = list(CPU_FIELDS[:metrics])

    def params(rng: np.random.Generator, ds: Dataset) -> Params:
        s, e = _rand_window(rng, ds, hours * HOUR)
        return {"start": s, "end": e, "hosts": _rand_hosts(rng, ds, hosts)}

    def lake_q(lake: Any, ds: Dataset, p: Params) -> pl.DataFrame:
        out = lake.query(
            "cpu",
            p["start"],
            p["end"],
            tenant=TENANT,
            where=_where_hosts(p["hosts"]),
            fields=fields,
            every="1m",
            agg="max",
            by=[],
        )
        return _epoch(out.rename({f"{f}_max": f"max_{f}" for f in fields}))

    def sql(ds: Dataset, p: Params) -> str:
        cols = ", ".join(f"max({f}) AS max_{f}" for f in fields)
        return (
            f"SELECT date_trunc('minute', time) AS time, {cols} FROM cpu WHERE {_host_where(p['hosts'])} "
            f"AND {_time_where(p['start'], p['end'])} GROUP BY 1 ORDER BY 1"
        )

    return Query(f"single-groupby-{metrics}-{hosts}-{hours}", params, lake_q, sql, ("time",))


def cpu_max_all(hosts: int) -> Query:
    fields = list(CPU_FIELDS)

    def params(rng: np.random.Generator, ds: Dataset) -> Params:
        s, e = _rand_window(rng, ds, 8 * HOUR)
        return {"start": s, "end": e, "hosts": _rand_hosts(rng, ds, hosts)}

    def lake_q(lake: Any, ds: Dataset, p: Params) -> pl.DataFrame:
        out = lake.query(
            "cpu",
            p["start"],
            p["end"],
            tenant=TENANT,
            where=_where_hosts(p["hosts"]),
            fields=fields,
            every="1h",
            agg="max",
            by=[],
        )
        return _epoch(out.rename({f"{f}_max": f"max_{f}" for f in fields}))

    def sql(ds: Dataset, p: Params) -> str:
        cols = ", ".join(f"max({f}) AS max_{f}" for f in fields)
        return (
            f"SELECT date_trunc('hour', time) AS time, {cols} FROM cpu WHERE {_host_where(p['hosts'])} "
            f"AND {_time_where(p['start'], p['end'])} GROUP BY 1 ORDER BY 1"
        )

    return Query(f"cpu-max-all-{hosts}", params, lake_q, sql, ("time",))


def double_groupby(metrics: int, label: str) -> Query:
    fields = list(CPU_FIELDS[:metrics])

    def params(rng: np.random.Generator, ds: Dataset) -> Params:
        s, e = _rand_window(rng, ds, 24 * HOUR)
        return {"start": s, "end": e}

    def lake_q(lake: Any, ds: Dataset, p: Params) -> pl.DataFrame:
        out = lake.query(
            "cpu", p["start"], p["end"], tenant=TENANT, fields=fields, every="1h", agg="avg", by=["hostname"]
        )
        out = out.rename({f"{f}_avg": f"mean_{f}" for f in fields})
        return _epoch(out.select(["time", "hostname", *[f"mean_{f}" for f in fields]]))

    def sql(ds: Dataset, p: Params) -> str:
        cols = ", ".join(f"avg({f}) AS mean_{f}" for f in fields)
        return (
            f"SELECT date_trunc('hour', time) AS time, hostname, {cols} FROM cpu "
            f"WHERE {_time_where(p['start'], p['end'])} GROUP BY 1, 2 ORDER BY 1, 2"
        )

    return Query(f"double-groupby-{label}", params, lake_q, sql, ("time", "hostname"))


def _row_columns() -> list[str]:
    return ["hostname", "time", *CPU_FIELDS]


def high_cpu(hosts: int, label: str) -> Query:
    def params(rng: np.random.Generator, ds: Dataset) -> Params:
        s, e = _rand_window(rng, ds, 24 * HOUR)
        return {"start": s, "end": e, "hosts": _rand_hosts(rng, ds, hosts) if hosts else None}

    def lake_q(lake: Any, ds: Dataset, p: Params) -> pl.DataFrame:
        out = lake.query(
            "cpu",
            p["start"],
            p["end"],
            tenant=TENANT,
            where=_where_hosts(p["hosts"]),
            filter="usage_user > 90",
        )
        return _epoch(out)

    def sql(ds: Dataset, p: Params) -> str:
        return (
            f"SELECT * EXCLUDE (hour) FROM cpu WHERE usage_user > 90.0 AND {_time_where(p['start'], p['end'])} "
            f"AND {_host_where(p['hosts'])}"
        )

    return Query(f"high-cpu-{label}", params, lake_q, sql, ("hostname", "time"))


def _newest(lake: Any) -> tuple[int, int, set[str] | None]:
    """The catalog's time bounds of ``cpu`` and every hostname in it (None when a file does not track them)."""
    files = lake.snapshot().files(TENANT, "cpu", "raw")
    hosts: set[str] | None = set()
    for f in files:
        values = f.label_values.get("hostname")
        if values is None or hosts is None:
            hosts = None
        else:
            hosts.update(values)
    return min(f.min_time for f in files), max(f.max_time for f in files) + 1, hosts


def _lake_lastpoint(lake: Any, ds: Dataset, p: Params) -> pl.DataFrame:
    """Newest row per host: read the newest hour, widen backwards until every host of the catalog is found."""
    lo, end, hosts = _newest(lake)
    width = HOUR
    while True:
        start = max(lo, (end - 1) // HOUR * HOUR - (width - HOUR))
        rows = lake.query("cpu", start, end, tenant=TENANT)
        found = rows.group_by("hostname").agg(pl.all().sort_by("time").last())
        if start <= lo or (hosts is not None and set(found.get_column("hostname").to_list()) >= hosts):
            return _epoch(found)
        width *= 4


def lastpoint() -> Query:
    def sql(ds: Dataset, p: Params) -> str:
        return "SELECT DISTINCT ON (hostname) * EXCLUDE (hour) FROM cpu ORDER BY hostname, time DESC"

    return Query("lastpoint", lambda rng, ds: {}, _lake_lastpoint, sql, ("hostname",))


def groupby_orderby_limit() -> Query:
    def params(rng: np.random.Generator, ds: Dataset) -> Params:
        return {"end": _rand_window(rng, ds, HOUR)[1]}

    def lake_q(lake: Any, ds: Dataset, p: Params) -> pl.DataFrame:
        # The 5 newest non-empty minutes before `end`: read back from `end` in minute-aligned windows (so
        # no bucket is cut) until 5 buckets are found or the data begins.
        lo, _, _ = _newest(lake)
        width = HOUR
        while True:
            start = max((p["end"] - width) // MINUTE * MINUTE, lo // MINUTE * MINUTE)
            out = lake.query(
                "cpu", start, p["end"], tenant=TENANT, fields=["usage_user"], every="1m", agg="max", by=[]
            )
            if out.height >= 5 or start <= lo:
                out = out.rename({"usage_user_max": "max_usage_user"})
                return _epoch(out.sort("time", descending=True).head(5))
            width *= 4

    def sql(ds: Dataset, p: Params) -> str:
        return (
            f"SELECT date_trunc('minute', time) AS time, max(usage_user) AS max_usage_user FROM cpu "
            f"WHERE {_time_where(None, p['end'])} GROUP BY 1 ORDER BY 1 DESC LIMIT 5"
        )

    return Query("groupby-orderby-limit", params, lake_q, sql, ("time",))


def recent() -> Query:
    fields = list(CPU_FIELDS)

    def params(rng: np.random.Generator, ds: Dataset) -> Params:
        return {"start": ds.end - HOUR, "end": ds.end, "hosts": _rand_hosts(rng, ds, 1)}

    def lake_q(lake: Any, ds: Dataset, p: Params) -> pl.DataFrame:
        out = lake.query(
            "cpu",
            p["start"],
            p["end"],
            tenant=TENANT,
            where=_where_hosts(p["hosts"]),
            fields=fields,
            every="1m",
            agg="avg",
        )
        out = out.rename({f"{f}_avg": f"mean_{f}" for f in fields})
        return _epoch(out.select(["time", *[f"mean_{f}" for f in fields]]))

    def sql(ds: Dataset, p: Params) -> str:
        cols = ", ".join(f"avg({f}) AS mean_{f}" for f in fields)
        return (
            f"SELECT date_trunc('minute', time) AS time, {cols} FROM cpu WHERE {_host_where(p['hosts'])} "
            f"AND {_time_where(p['start'], p['end'])} GROUP BY 1 ORDER BY 1"
        )

    return Query("recent-1h", params, lake_q, sql, ("time",))


def all_queries() -> list[Query]:
    """The TSBS devops set plus the recent-data query, in report order."""
    return [
        single_groupby(1, 1, 1),
        single_groupby(1, 8, 1),
        single_groupby(5, 1, 12),
        cpu_max_all(8),
        double_groupby(1, "1"),
        double_groupby(len(CPU_FIELDS), "all"),
        high_cpu(1, "1"),
        high_cpu(0, "all"),
        lastpoint(),
        groupby_orderby_limit(),
        recent(),
    ]


# ---------------------------------------------------------------------------------------------- running
def _canonical(frame: pl.DataFrame, sort: tuple[str, ...]) -> pl.DataFrame:
    if frame.schema.get("time") not in (pl.Int64, None):
        frame = _epoch(frame)
    return frame.select(sorted(frame.columns)).sort(list(sort))


def check_equal(lake_frame: pl.DataFrame, duck_frame: pl.DataFrame, sort: tuple[str, ...], name: str) -> None:
    """Raise AssertionError unless both results hold the same rows (means within 1e-9 relative)."""
    a, b = _canonical(lake_frame, sort), _canonical(duck_frame, sort)
    if a.height == 0:
        raise AssertionError(f"{name}: empty result; the benchmark parameters select nothing")
    assert_frame_equal(a, b, check_dtypes=False, check_exact=False, rel_tol=1e-9, abs_tol=0.0)


def _duck(con: duckdb.DuckDBPyConnection, text: str) -> pl.DataFrame:
    return con.sql(text).pl()


def _stats(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1e3 for t in times)
    p95 = ms[min(len(ms) - 1, int(np.ceil(0.95 * len(ms))) - 1)]
    return {"median_ms": statistics.median(ms), "p95_ms": p95, "min_ms": ms[0], "runs": len(ms)}


def run_query(
    lake: Any, con: duckdb.DuckDBPyConnection, ds: Dataset, q: Query, runs: int, seed: int
) -> dict[str, Any]:
    """Verify once, then time ``runs`` interleaved executions of both systems with the same parameters."""
    rng = np.random.default_rng([seed, sum(q.name.encode())])
    plist = [q.params(rng, ds) for _ in range(runs)]
    check_equal(q.lake(lake, ds, plist[0]), _duck(con, q.sql(ds, plist[0])), q.sort, q.name)
    lake_t: list[float] = []
    duck_t: list[float] = []
    for i, p in enumerate(plist):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            t0 = time.perf_counter()
            if which == 0:
                q.lake(lake, ds, p)
                lake_t.append(time.perf_counter() - t0)
            else:
                _duck(con, q.sql(ds, p))
                duck_t.append(time.perf_counter() - t0)
    lk, dk = _stats(lake_t), _stats(duck_t)
    return {
        "lake": lk,
        "duckdb": dk,
        "median_ratio": lk["median_ms"] / dk["median_ms"],
        "p95_ratio": lk["p95_ms"] / dk["p95_ms"],
        "verified": True,
    }


def run(
    hosts: int = 100,
    days: int = 3,
    runs: int = 20,
    *,
    seed: int = 11,
    data_dir: Path | None = None,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the dataset, then verify and time every query; returns the results dict."""
    root = data_dir or Path(tempfile.mkdtemp(prefix="tsdb-bench-query-"))
    try:
        ds, setup = build_dataset(root, hosts, days)
        lake = tsdb_lake.connect(ds.lake_dir)
        con = open_duckdb(ds)
        out: dict[str, Any] = {}
        for q in all_queries():
            if only and q.name not in only:
                continue
            out[q.name] = run_query(lake, con, ds, q, runs, seed)
            r = out[q.name]
            print(
                f"{q.name:24s} lake {r['lake']['median_ms']:8.1f} / {r['lake']['p95_ms']:8.1f} ms   "
                f"duckdb {r['duckdb']['median_ms']:8.1f} / {r['duckdb']['p95_ms']:8.1f} ms   "
                f"ratio {r['median_ratio']:.2f}",
                flush=True,
            )
        con.close()
    finally:
        if data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "machine": machine_info(),
        "dataset": {
            "hosts": hosts,
            "days": days,
            "rows": hosts * days * 8640,
            "field_values": hosts * days * 8640 * len(CPU_FIELDS),
            "setup_s": setup,
        },
        "runs": runs,
        "seed": seed,
        "queries": out,
        "targets": TARGETS,
    }


def markdown(results: dict[str, Any]) -> str:
    """The RESULTS.md section for this benchmark."""
    ds = results["dataset"]
    lines = [
        "## Query (`benchmarks/bench_query.py`)",
        "",
        f"TSBS cpu-only, {ds['hosts']} hosts x {ds['days']} days ({ds['rows']:,} rows, {ds['field_values']:,} "
        f"field values). `lake.query` vs DuckDB over the same points as hive-partitioned (hour) zstd Parquet, "
        f"{results['runs']} runs per query with seeded random parameters, interleaved, warm; each result "
        "verified equal to DuckDB's before timing. Latencies in ms.",
        "",
        "| query | lake median | lake p95 | DuckDB median | DuckDB p95 | ratio (median) | target | |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["queries"].items():
        if name == "recent-1h":
            target, met = "p95 <= 20 ms", r["lake"]["p95_ms"] <= TARGETS["recent_p95_ms"]
        else:
            target, met = "ratio <= 1.0", r["median_ratio"] <= TARGETS["median_ratio"]
        lines.append(
            f"| {name} | {r['lake']['median_ms']:.1f} | {r['lake']['p95_ms']:.1f} | "
            f"{r['duckdb']['median_ms']:.1f} | {r['duckdb']['p95_ms']:.1f} | {r['median_ratio']:.2f} | "
            f"{target} | {'met' if met else '**not met**'} |"
        )
    return "\n".join(lines)


def main() -> dict[str, Any]:
    """CLI entry: run, write results JSON, print the markdown section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep / reuse the generated lake and Parquet copy here (default: a temp dir)",
    )
    parser.add_argument("--only", nargs="*", default=None, help="run only these queries")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/query.json")
    args = parser.parse_args()
    results = run(args.hosts, args.days, args.runs, seed=args.seed, data_dir=args.data_dir, only=args.only)
    if not args.no_write:
        write_results("query", results)
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()

"""The main job: generate TSBS cpu-only data, ingest, flush, compact, roll up, query, and report what the lake did.

``run_demo(lake)`` returns a :class:`DemoReport` (``text()`` for a terminal, ``to_json()`` for scripts) and
writes a PNG plot of one series — raw points against the 1-hour rollup with its p1..p99 band.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from tsdb_lake.lake import Lake

__all__ = ["DemoReport", "report_json", "run_demo"]

DAY_NS = 86_400_000_000_000
HOUR_NS = 3_600_000_000_000
TENANT = "demo"
METRIC = "cpu"


@dataclass
class DemoQuery:
    """One timed query: median latency of warm runs, rows returned and the tiers that answered it."""

    name: str
    ms: float
    rows: int
    tiers: list[str]


@dataclass
class DemoReport:
    """What the demo measured; ``text()`` renders it for a terminal, ``to_json()`` for scripts."""

    lake: str
    hosts: int
    hours: int
    points: int = 0
    field_values: int = 0
    ingest_seconds: float = 0.0
    raw_bytes: int = 0
    raw_files: int = 0
    parquet_bytes: int = 0
    tier_bytes: dict[str, int] = field(default_factory=dict)
    maintenance: dict[str, str] = field(default_factory=dict)
    queries: list[DemoQuery] = field(default_factory=list)
    plot: str | None = None
    catalog_version: int = -1

    def to_json(self) -> dict[str, Any]:
        """The report as plain data."""
        out = dict(self.__dict__)
        out["queries"] = [q.__dict__ for q in self.queries]
        return out

    def text(self) -> str:
        """A short human-readable report."""
        rate = self.field_values / self.ingest_seconds if self.ingest_seconds else 0.0
        per_value = self.raw_bytes / max(self.field_values, 1)
        pq_value = self.parquet_bytes / max(self.field_values, 1)
        lines = [
            f"tsdb-lake demo — lake at {self.lake} (catalog version {self.catalog_version})",
            f"  data        TSBS cpu-only: {self.hosts} hosts x {self.hours} h at 10 s = {self.points:,} points "
            f"x 10 fields = {self.field_values:,} values",
            f"  ingest      {self.ingest_seconds:.1f} s through the WAL-backed writer = {rate / 1e6:.2f} M values/s "
            f"({self.points / max(self.ingest_seconds, 1e-9):,.0f} points/s)",
            f"  on disk     raw tier {self.raw_bytes:,} B in {self.raw_files} files = {per_value:.3f} B/value; "
            f"plain zstd Parquet of the same rows: {self.parquet_bytes:,} B = {pq_value:.3f} B/value "
            f"({self.parquet_bytes / max(self.raw_bytes, 1):.1f}x larger)",
        ]
        if self.tier_bytes:
            tiers = ", ".join(f"{t} {b:,} B" for t, b in self.tier_bytes.items())
            lines.append(f"  rollups     {tiers}")
        for name, info in self.maintenance.items():
            lines.append(f"  {name:<11} {info}")
        lines.append("  queries     median of 5 warm runs; [tiers that answered]")
        for q in self.queries:
            lines.append(f"    {q.ms:8.1f} ms  {q.name}  ({q.rows:,} rows) [{', '.join(q.tiers) or '-'}]")
        if self.plot:
            lines.append(f"  plot        {self.plot}")
        lines.append(
            f"  next        tsdb-lake status --lake {self._lake_arg()}   |   "
            f"tsdb-lake query cpu --tenant demo --lake {self._lake_arg()} --every 1h --agg avg,p99 --limit 5"
        )
        return "\n".join(lines)

    def _lake_arg(self) -> str:
        return self.lake.removeprefix("file://")


def _timed(fn: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    """Median wall time (ms) of ``runs`` warm calls and the last result (after one warm-up call)."""
    import statistics

    result = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), result


def _parquet_size(batches: list[pa.Table]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.concat_tables(batches), sink, compression="zstd")
    return int(sink.getvalue().size)


def run_demo(
    lake: Lake,
    *,
    hosts: int = 50,
    hours: int = 24,
    start_ns: int = 1_700_000_000_000_000_000 // DAY_NS * DAY_NS,
    plot_path: Path | None = None,
    maintenance: bool = True,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoReport:
    """Run the demo workload against ``lake`` (tenant ``demo``, metric ``cpu``) and return its report."""
    from tsdb_lake.datagen import iter_cpu_only

    say = log or (lambda _msg: None)
    end_ns = start_ns + hours * HOUR_NS
    report = DemoReport(lake=lake.uri, hosts=hosts, hours=hours)
    say(f"generating {hosts} hosts x {hours} h of TSBS cpu-only data ...")
    batches = list(iter_cpu_only(hosts, start_ns, end_ns, batch_rows=10_000, seed=42))
    total_rows = sum(b.num_rows for b in batches)
    say(f"ingesting {total_rows:,} points ...")
    t0 = time.perf_counter()
    with lake.writer(tenant=TENANT) as writer:
        done = 0
        for batch in batches:
            writer.write(METRIC, batch)
            done += batch.num_rows
            if progress is not None:
                progress(done, total_rows)
        writer.flush()
    report.ingest_seconds = time.perf_counter() - t0
    report.points = total_rows
    report.field_values = total_rows * sum(1 for n in batches[0].column_names if n.startswith("usage_"))
    report.parquet_bytes = _parquet_size(batches)
    del batches

    if maintenance:
        say("compacting and rolling up ...")
        _maintain(lake, report)
    snap = lake.snapshot()
    report.catalog_version = snap.version
    raw = snap.files(TENANT, METRIC, "raw")
    report.raw_bytes, report.raw_files = sum(f.bytes for f in raw), len(raw)
    for spec in snap.tiers_for(TENANT, METRIC):
        files = snap.files(TENANT, METRIC, spec.name)
        if files:
            report.tier_bytes[spec.name] = sum(f.bytes for f in files)

    say("timing queries ...")
    _queries(lake, report, start_ns, end_ns)
    if plot_path is not None:
        say("plotting ...")
        report.plot = str(plot_series(lake, start_ns, end_ns, plot_path))
    return report


def _maintain(lake: Lake, report: DemoReport) -> None:
    """Compact (hours are settled: the data is in the past) and build every rollup tier, if available."""
    if hasattr(lake, "compact"):
        t0 = time.perf_counter()
        comp = lake.compact(tenant=TENANT, quiet_ns=0)
        report.maintenance["compaction"] = (
            f"{time.perf_counter() - t0:.1f} s: {comp.partitions_seen} partitions, merged {comp.files_removed} "
            f"files into {comp.files_added}"
        )
    if hasattr(lake, "rollup"):
        t0 = time.perf_counter()
        roll = lake.rollup(tenant=TENANT)
        seconds = time.perf_counter() - t0
        built = ", ".join(f"{p.tier} ({p.rows:,} rows)" for p in roll.passes if not p.error) or "nothing"
        report.maintenance["rollup"] = (
            f"{seconds:.1f} s = {roll.raw_values_rolled / max(seconds, 1e-9) / 1e6:.2f} M raw values/s; built {built}"
        )


def _queries(lake: Lake, report: DemoReport, start_ns: int, end_ns: int) -> None:
    last_hour = (end_ns - HOUR_NS, end_ns)
    hosts8 = [f"host_{i}" for i in range(min(8, report.hosts))]
    cases: list[tuple[str, Callable[[], Any]]] = [
        (
            "1 host, last hour, 1-min avg+max of usage_user",
            lambda: lake.query(
                METRIC,
                *last_hour,
                tenant=TENANT,
                where={"hostname": "host_1"},
                fields=["usage_user"],
                every="1m",
                agg=["avg", "max"],
                explain=True,
            ),
        ),
        (
            "raw points, 1 host, 1 hour, all fields",
            lambda: lake.query(METRIC, *last_hour, tenant=TENANT, where={"hostname": "host_2"}, explain=True),
        ),
        (
            f"{len(hosts8)} hosts, 12 h, hourly p99 of usage_system (rollup sketches)",
            lambda: lake.query(
                METRIC,
                max(start_ns, end_ns - 12 * HOUR_NS),
                end_ns,
                tenant=TENANT,
                where={"hostname": hosts8},
                fields=["usage_system"],
                every="1h",
                agg="p99",
                explain=True,
            ),
        ),
        (
            "all hosts, whole range, hourly max of usage_user by region (rollups)",
            lambda: lake.query(
                METRIC,
                start_ns,
                end_ns,
                tenant=TENANT,
                fields=["usage_user"],
                every="1h",
                agg="max",
                by=["region"],
                explain=True,
            ),
        ),
        (
            "the same, forced to raw (resolution='raw')",
            lambda: lake.query(
                METRIC,
                start_ns,
                end_ns,
                tenant=TENANT,
                fields=["usage_user"],
                every="1h",
                agg="max",
                by=["region"],
                resolution="raw",
                explain=True,
            ),
        ),
    ]
    for name, fn in cases:
        ms, (frame, explain) = _timed(fn)
        tiers = sorted({t["tier"] for t in explain.get("tiers", [])}) or ["raw"]
        report.queries.append(DemoQuery(name, ms, frame.height, tiers))
    if hasattr(lake, "sql"):
        import datetime as dt

        since = dt.datetime.fromtimestamp((end_ns - HOUR_NS) / 1e9, tz=dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S+00"
        )
        sql = (
            "SELECT hostname, round(avg(usage_user), 2) AS avg_user FROM cpu "
            f"WHERE time >= TIMESTAMPTZ '{since}' GROUP BY hostname ORDER BY 2 DESC LIMIT 3"
        )
        ms, frame = _timed(lambda: lake.sql(sql, tenant=TENANT).pl())
        report.queries.append(
            DemoQuery("DuckDB SQL: top 3 hosts by avg usage_user, last hour", ms, frame.height, ["raw"])
        )


def plot_series(lake: Lake, start_ns: int, end_ns: int, path: Path, host: str = "host_0") -> Path:
    """PNG of one series: raw 10 s points against the 1-hour rollup (avg line, p1..p99 band)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    where = {"hostname": host}
    raw = lake.query(METRIC, start_ns, end_ns, tenant=TENANT, where=where, fields=["usage_user"])
    agg, explain = lake.query(
        METRIC,
        start_ns,
        end_ns,
        tenant=TENANT,
        where=where,
        fields=["usage_user"],
        every="1h",
        agg=["avg", "p1", "p99"],
        explain=True,
    )
    tiers = sorted({t["tier"] for t in explain.get("tiers", [])}) or ["raw"]
    source = "1h rollup" if tiers != ["raw"] else "1h buckets of raw"
    fig, ax = plt.subplots(figsize=(11, 4.4))
    ax.plot(
        raw["time"].to_list(), raw["usage_user"].to_list(), lw=0.5, color="#9a9a9a", label="raw, every 10 s"
    )
    t = (
        [*agg["time"].to_list(), agg["time"][-1] + (agg["time"][-1] - agg["time"][-2])]
        if agg.height > 1
        else []
    )
    if t:
        lo = agg["usage_user_p1"].to_list()
        hi = agg["usage_user_p99"].to_list()
        avg = agg["usage_user_avg"].to_list()
        ax.stairs(hi, t, baseline=lo, fill=True, alpha=0.25, color="#1f77b4", label=f"{source}: p1..p99 band")
        ax.stairs(hi, t, baseline=None, color="#1f77b4", lw=0.8, alpha=0.7)
        ax.stairs(avg, t, baseline=None, color="#d62728", lw=1.8, label=f"{source}: avg")
    ax.set_title(f"tenant demo, cpu usage_user of {host}: raw points vs hourly rollup ({', '.join(tiers)})")
    ax.set_ylabel("usage_user (%)")
    ax.set_xlabel("time (UTC)", fontsize=8)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_json(report: DemoReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_json(), indent=2, default=str)

"""The main job: generate TSBS cpu-only data, ingest, flush, query, and report what the lake did."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tsdb_lake.datagen import iter_cpu_only
from tsdb_lake.lake import Lake

__all__ = ["DemoReport", "run_demo"]

DAY_NS = 86_400_000_000_000
HOUR_NS = 3_600_000_000_000


@dataclass
class DemoReport:
    """What the demo measured; ``text()`` renders it for a terminal, ``to_json()`` for scripts."""

    lake: str
    hosts: int
    hours: int
    points: int = 0
    field_values: int = 0
    ingest_seconds: float = 0.0
    lake_bytes: int = 0
    parquet_bytes: int = 0
    files: int = 0
    queries: dict[str, float] = field(default_factory=dict)
    maintenance: dict[str, Any] = field(default_factory=dict)
    plot: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as plain data."""
        return self.__dict__.copy()

    def text(self) -> str:
        """A short human-readable report."""
        rate = self.field_values / self.ingest_seconds if self.ingest_seconds else 0.0
        lines = [
            f"tsdb-lake demo — lake at {self.lake}",
            f"  data        TSBS cpu-only, {self.hosts} hosts x {self.hours} h at 10 s "
            f"({self.points:,} points, {self.field_values:,} field values)",
            f"  ingest      {self.ingest_seconds:.2f} s through the WAL-backed writer "
            f"= {rate / 1e6:.2f} M field values/s (durability=batch)",
            f"  on disk     {self.lake_bytes:,} bytes in {self.files} files "
            f"= {self.lake_bytes / max(self.field_values, 1):.3f} B/value "
            f"(plain zstd Parquet: {self.parquet_bytes / max(self.field_values, 1):.3f} B/value, "
            f"{self.parquet_bytes / max(self.lake_bytes, 1):.1f}x larger)",
        ]
        for name, info in self.maintenance.items():
            lines.append(f"  {name:<11} {info}")
        lines.append("  queries     (median of 5 warm runs)")
        for name, ms in self.queries.items():
            lines.append(f"    {ms:8.1f} ms  {name}")
        if self.plot:
            lines.append(f"  plot        {self.plot}")
        return "\n".join(lines)


def _median_ms(fn: Callable[[], object], runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def _lake_bytes(lake: Lake) -> tuple[int, int]:
    snap = lake.snapshot()
    files = list(snap.by_path.values())
    return sum(f.bytes for f in files), len(files)


def run_demo(
    lake: Lake,
    *,
    hosts: int = 50,
    hours: int = 24,
    start_ns: int = 1_700_000_000_000_000_000 // HOUR_NS * HOUR_NS,
    plot_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DemoReport:
    """Run the demo workload against ``lake`` and return its report."""
    end_ns = start_ns + hours * HOUR_NS
    report = DemoReport(lake=lake.uri, hosts=hosts, hours=hours)
    batches = list(iter_cpu_only(hosts, start_ns, end_ns, batch_rows=10_000, seed=42))
    total_rows = sum(b.num_rows for b in batches)
    t0 = time.perf_counter()
    with lake.writer(tenant="demo") as writer:
        done = 0
        for batch in batches:
            writer.write("cpu", batch)
            done += batch.num_rows
            if progress is not None:
                progress(done, total_rows)
        writer.flush()
    report.ingest_seconds = time.perf_counter() - t0
    report.points = total_rows
    nfields = sum(1 for name in batches[0].column_names if name.startswith("usage_"))
    report.field_values = total_rows * nfields
    report.lake_bytes, report.files = _lake_bytes(lake)
    buf = io.BytesIO()
    pq.write_table(pa.concat_tables(batches), buf, compression="zstd")
    report.parquet_bytes = buf.tell()

    last_hour = (end_ns - HOUR_NS, end_ns)
    report.queries["1 host, last hour, 1-minute avg+max of usage_user"] = _median_ms(
        lambda: lake.query("cpu", *last_hour, tenant="demo", where={"hostname": "host_1"},
                           fields=["usage_user"], every="1m", agg=["avg", "max"])
    )
    report.queries["all hosts, whole range, hourly max of usage_user by region"] = _median_ms(
        lambda: lake.query("cpu", start_ns, end_ns, tenant="demo", fields=["usage_user"], every="1h",
                           agg="max", by=["region"])
    )
    report.queries["8 hosts, 12 h, 1-hour p99 of usage_system"] = _median_ms(
        lambda: lake.query("cpu", end_ns - 12 * HOUR_NS, end_ns, tenant="demo",
                           where={"hostname": [f"host_{i}" for i in range(8)]},
                           fields=["usage_system"], every="1h", agg="p99")
    )
    report.queries["raw points, 1 host, 1 hour"] = _median_ms(
        lambda: lake.query("cpu", *last_hour, tenant="demo", where={"hostname": "host_2"})
    )
    if plot_path is not None:
        report.plot = str(_plot(lake, start_ns, end_ns, plot_path))
    return report


def _plot(lake: Lake, start_ns: int, end_ns: int, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = (max(start_ns, end_ns - 6 * HOUR_NS), end_ns)
    raw = lake.query("cpu", *window, tenant="demo", where={"hostname": "host_0"}, fields=["usage_user"])
    agg = lake.query("cpu", *window, tenant="demo", where={"hostname": "host_0"}, fields=["usage_user"],
                     every="10m", agg=["avg", "p99", "min"])
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(raw["time"].to_list(), raw["usage_user"].to_list(), lw=0.6, color="#999", label="raw (10 s)")
    t = agg["time"].to_list()
    ax.fill_between(t, agg["usage_user_min"].to_list(), agg["usage_user_p99"].to_list(), step="post",
                    alpha=0.25, color="#1f77b4", label="10-min min..p99 band")
    ax.step(t, agg["usage_user_avg"].to_list(), where="post", color="#1f77b4", lw=1.6, label="10-min avg")
    ax.set_title("host_0 usage_user: raw vs bucketed")
    ax.set_ylabel("usage_user (%)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_json(report: DemoReport) -> str:
    """The report as indented JSON."""
    return json.dumps(report.to_json(), indent=2, default=str)


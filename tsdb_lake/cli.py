"""The ``tsdb-lake`` command: thin argument parsing over the library; no logic the library lacks."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tsdb_lake.errors import TsdbLakeError

__all__ = ["main"]

_DEFAULT_LAKE = "./lake"


class _Progress:
    """A one-line progress bar on a terminal; silent when stderr is not a TTY."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        pct = int(100 * done / total)
        if pct == self._last:
            return
        self._last = pct
        bar = "#" * (pct // 4)
        sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}%")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    raw = getattr(args, "storage_options", None)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"error: --storage-options must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise SystemExit("error: --storage-options must be a JSON object")
    return value


def _connect(args: argparse.Namespace) -> Any:
    from tsdb_lake.lake import connect

    return connect(args.lake, _storage_options(args))


def _cmd_demo(args: argparse.Namespace) -> int:
    from tsdb_lake.demo import report_json, run_demo

    lake = _connect(args)
    plot = Path(args.plot) if args.plot else Path(args.lake) / "demo.png"
    report = run_demo(lake, hosts=args.hosts, hours=args.hours, plot_path=plot, progress=_Progress("ingest"))
    print(report_json(report) if args.json else report.text())
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    lake = _connect(args)
    where = json.loads(args.where) if args.where and args.where.lstrip().startswith("{\"") else args.where
    frame = lake.query(
        args.metric,
        args.start,
        args.end,
        tenant=args.tenant,
        where=where,
        fields=args.fields.split(",") if args.fields else None,
        every=args.every,
        agg=args.agg.split(",") if args.agg else None,
        by=args.by.split(",") if args.by else None,
        fill=args.fill,
    )
    _emit(frame, args.format, args.output)
    return 0


def _emit(frame: Any, fmt: str, output: str | None) -> None:
    if fmt == "parquet":
        if not output:
            raise SystemExit("error: --format parquet needs --output FILE")
        frame.write_parquet(output)
        return
    if fmt == "csv":
        text = frame.write_csv()
    elif fmt == "json":
        text = frame.with_columns(
            [frame[c].cast(str) for c in frame.columns if str(frame[c].dtype).startswith("Datetime")]
        ).write_json()
    else:
        import polars as pl

        with pl.Config(tbl_rows=50, tbl_cols=20, tbl_width_chars=200):
            text = str(frame)
    if output:
        Path(output).write_text(text)
    else:
        print(text)


def _cmd_ingest(args: argparse.Namespace) -> int:
    from tsdb_lake.ingest.files import ingest_path

    lake = _connect(args)
    with lake.writer(tenant=args.tenant) as writer:
        points = ingest_path(
            writer,
            args.path,
            metric=args.metric,
            fmt=args.format,
            time_column=args.time_column,
            columns=dict(c.split("=", 1) for c in args.rename) if args.rename else None,
            precision=args.precision,
            progress=_Progress("ingest"),
        )
    print(f"ingested {points:,} points into {lake.uri} (tenant {args.tenant})")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from tsdb_lake.status import lake_status, render_status

    lake = _connect(args)
    status = lake_status(lake)
    print(json.dumps(status, indent=2, default=str) if args.json else render_status(status))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=_DEFAULT_LAKE, help="lake URI: a folder or s3://bucket/prefix (default ./lake)")
    p.add_argument("--storage-options", help="JSON object of storage options (endpoint_url, key, secret, region)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsdb-lake",
        description="A time-series store whose home is a lake of Parquet files.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=textwrap.dedent(
            """\
            examples:
              tsdb-lake demo                                  # generate, ingest, query, report
              tsdb-lake ingest metrics.lp --tenant acme       # line protocol, CSV or Parquet
              tsdb-lake query cpu --tenant demo --start now-1h --every 1m --agg avg,p99
              tsdb-lake status
            """
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Callable[[argparse.Namespace], int], help_text: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=f"{help_text}\n\nexample:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p)
        p.set_defaults(func=fn)
        return p

    p = add("demo", _cmd_demo, "generate TSBS cpu-only data, ingest, query and print a report",
            "tsdb-lake demo --hosts 20 --hours 12 --lake ./demo-lake")
    p.add_argument("--hosts", type=int, default=50, help="simulated hosts (default 50)")
    p.add_argument("--hours", type=int, default=24, help="hours of 10-second data (default 24)")
    p.add_argument("--plot", help="where to write the PNG plot (default <lake>/demo.png)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add("query", _cmd_query, "query points or time buckets of a metric",
            "tsdb-lake query cpu --tenant demo --where '{\"hostname\": \"host_1\"}' --every 1m --agg avg,max")
    p.add_argument("metric")
    p.add_argument("--tenant", default="default")
    p.add_argument("--start", help="ISO time, int ns or now-1h (default: beginning)")
    p.add_argument("--end", help="ISO time, int ns or now (default: end of data)")
    p.add_argument("--where", help='JSON object {"label": "value"} or a selector \'host=~"web-.*"\'')
    p.add_argument("--fields", help="comma-separated fields (default: all)")
    p.add_argument("--every", help="bucket width, e.g. 1m, 1h")
    p.add_argument("--agg", help="comma-separated aggregates: avg,min,max,sum,count,first,last,stddev,p99,rate")
    p.add_argument("--by", help="comma-separated labels to group by across series")
    p.add_argument("--fill", choices=["none", "null", "previous", "linear"])
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p.add_argument("--output", help="write to this file instead of stdout")

    p = add("ingest", _cmd_ingest, "ingest a CSV, Parquet or line-protocol file (or - for stdin)",
            "tsdb-lake ingest data.csv --metric temperature --tenant acme --time-column ts")
    p.add_argument("path", help="file path, or - for line protocol on stdin")
    p.add_argument("--tenant", default="default")
    p.add_argument("--metric", help="metric name (required for CSV / Parquet)")
    p.add_argument("--format", choices=["auto", "csv", "parquet", "lp"], default="auto")
    p.add_argument("--time-column", default="time", help="name of the time column in CSV / Parquet")
    p.add_argument("--rename", nargs="*", help="column mapping old=new, e.g. ts=time host_name=host")
    p.add_argument("--precision", choices=["ns", "us", "ms", "s"], default="ns", help="line-protocol precision")

    p = add("status", _cmd_status, "per tenant and metric: files, bytes, points, time range, tiers",
            "tsdb-lake status --json")
    p.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tsdb-lake`` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except TsdbLakeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

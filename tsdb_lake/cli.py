"""The ``tsdb-lake`` command: thin argument parsing over the library; no logic the library lacks.

Every command is one call into :mod:`tsdb_lake` (``lake.query``, ``lake.compact``, ``verify.verify_lake`` ...)
plus printing. Mistakes end as one ``error: ...`` line on stderr and a non-zero exit code, never a
traceback (set ``TSDB_LAKE_DEBUG=1`` to see one). Heavy imports happen inside the commands.

Exit codes: 0 success, 1 ``verify`` found problems, 2 a user mistake or a library error, 3 an unexpected
internal error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tsdb_lake.errors import TsdbLakeError

__all__ = ["main"]

_DEFAULT_LAKE = "./lake"
_DEMO_MARKER = ".tsdb-lake-demo"


class _UserError(Exception):
    """A mistake in the command line or its inputs, reported as one line."""


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
            sys.stderr.write("\r" + " " * (len(self.label) + 34) + "\r")
        sys.stderr.flush()


# ------------------------------------------------------------------------------------------------ helpers


def _json_object(text: str | None, what: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _UserError(f"{what} must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise _UserError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    text = getattr(args, "storage_options", None) or os.environ.get("TSDB_LAKE_STORAGE_OPTIONS")
    return _json_object(text, "--storage-options / TSDB_LAKE_STORAGE_OPTIONS")


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    return None if "://" in uri else Path(uri)


def _connect(args: argparse.Namespace, *, create: bool = False) -> Any:
    """Open the lake of ``--lake``; unless ``create``, a local folder without a catalog is an error."""
    local = _local_path(args.lake)
    if not create and local is not None and not (local / "_catalog").is_dir():
        raise _UserError(
            f"no lake at {args.lake} (no _catalog/ folder); pass --lake, or create one with "
            "`tsdb-lake ingest` or `tsdb-lake demo`"
        )
    from tsdb_lake.lake import connect

    return connect(args.lake, _storage_options(args))


def _split(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _where(text: str | None) -> Any:
    """``--where``: a JSON object (``{"host": "a"}``) or a PromQL-style selector (``host=~"web-.*"``)."""
    if not text:
        return None
    stripped = text.strip()
    if stripped.startswith("{") and stripped[1:].lstrip().startswith(('"', "}")):
        return _json_object(stripped, "--where")
    return stripped


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _emit(frame: Any, fmt: str, output: str | None) -> None:
    """Write a polars frame as a table, CSV, JSON (records) or Parquet to ``output`` or stdout."""
    import polars as pl

    if fmt == "parquet":
        if not output:
            raise _UserError("--format parquet needs --output FILE")
        frame.write_parquet(output)
        print(f"wrote {frame.height:,} rows to {output}", file=sys.stderr)
        return
    if fmt == "csv":
        text = frame.write_csv()
    elif fmt == "json":
        temporal = [c for c, t in frame.schema.items() if t.is_temporal()]
        text = frame.with_columns([pl.col(c).cast(pl.String) for c in temporal]).write_json()
    else:
        with pl.Config(tbl_rows=40, tbl_cols=16, tbl_width_chars=160, fmt_str_lengths=40):
            text = str(frame)
    if output:
        Path(output).write_text(text if text.endswith("\n") else text + "\n")
        print(f"wrote {frame.height:,} rows to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _duration(text: str, what: str) -> int:
    from tsdb_lake.compaction.settings import duration_ns

    return duration_ns(text, what=what)


# ------------------------------------------------------------------------------------------------ commands


def _cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    from tsdb_lake.demo import report_json, run_demo

    local = _local_path(args.lake)
    if local is not None and (local / _DEMO_MARKER).exists():
        shutil.rmtree(local)  # a lake this command created earlier: start afresh
    lake = _connect(args, create=True)
    if lake.snapshot().files("demo", "cpu"):
        raise _UserError(
            f"{args.lake} already holds tenant 'demo' data that the demo did not create; use another --lake"
        )
    if local is not None:
        (local / _DEMO_MARKER).write_text(
            "created by `tsdb-lake demo`; the next demo run deletes this lake\n"
        )
    if args.plot:
        plot: Path | None = Path(args.plot)
    else:
        plot = (local / "demo.png") if local is not None else Path("demo.png")
    report = run_demo(
        lake,
        hosts=args.hosts,
        hours=args.hours,
        plot_path=None if args.no_plot else plot,
        maintenance=not args.no_maintenance,
        progress=_Progress("demo"),
        log=(lambda msg: print(msg, file=sys.stderr)) if sys.stderr.isatty() else None,
    )
    print(report_json(report) if args.json else report.text())
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from tsdb_lake.ingest.files import ingest_path

    if args.path != "-" and not Path(args.path).is_file():
        raise _UserError(f"no such file: {args.path}")
    columns = None
    if args.rename:
        bad = [c for c in args.rename if "=" not in c]
        if bad:
            raise _UserError(f"--rename takes old=new pairs, got {bad[0]!r}")
        columns = dict(c.split("=", 1) for c in args.rename)
    lake = _connect(args, create=True)
    with lake.writer(tenant=args.tenant) as writer:
        points = ingest_path(
            writer,
            args.path,
            metric=args.metric,
            fmt=args.format,
            time_column=args.time_column,
            columns=columns,
            precision=args.precision,
            progress=_Progress("ingest"),
        )
    print(f"ingested {points:,} points into {lake.uri} (tenant {args.tenant})")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    lake = _connect(args)
    result = lake.query(
        args.metric,
        args.start,
        args.end,
        tenant=args.tenant,
        where=_where(args.where),
        fields=_split(args.fields),
        every=args.every,
        agg=_split(args.agg),
        by=_split(args.by),
        fill=args.fill,
        as_of=args.as_of,
        resolution=args.resolution,
        explain=args.explain,
    )
    frame, explain = result if args.explain else (result, None)
    return _emit_result(frame, explain, args)


def _emit_result(frame: Any, explain: Any, args: argparse.Namespace) -> int:
    """Print a query result (cut to ``--limit``) in the asked format, and the explain report on stderr."""
    if args.limit is not None:
        frame = frame.head(args.limit)
    _emit(frame, args.format, args.output)
    if explain is not None:
        print(json.dumps(explain, default=str), file=sys.stderr)
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    query = sys.stdin.read() if args.query == "-" else args.query
    if not query.strip():
        raise _UserError("empty SQL query")
    lake = _connect(args)
    result = lake.sql(query, tenant=args.tenant, explain=args.explain)
    relation, explain = result if args.explain else (result, None)
    frame = relation.pl()
    return _emit_result(frame, explain, args)


def _cmd_compact(args: argparse.Namespace) -> int:
    lake = _connect(args)
    settings: dict[str, Any] = {}
    if args.settle is not None:
        settings["settle_ns"] = _duration(args.settle, "--settle")
    if args.quiet is not None:
        settings["quiet_ns"] = _duration(args.quiet, "--quiet")
    if args.min_small_files is not None:
        settings["min_small_files"] = args.min_small_files
    report = lake.compact(tenant=args.tenant, metric=args.metric, dry_run=args.dry_run, **settings)
    if args.json:
        _print_json(report.to_dict())
        return 0
    done = (
        f"would merge {report.files_removed} file(s)"
        if args.dry_run
        else f"merged {report.files_removed} file(s) into {report.files_added}"
    )
    failed = [j for j in report.jobs if j.status in ("failed", "abandoned")]
    print(
        f"compaction of {lake.uri} at version {report.base_version}: {report.partitions_seen} partition(s) seen, "
        f"{len(report.jobs)} job(s); {done} in {report.seconds:.1f} s; {len(report.skipped)} partition(s) "
        "skipped (still settling, or too large)"
    )
    for j in failed:
        print(f"  {j.status}: {j.tenant}/{j.metric} {j.partition}: {j.reason} {j.detail}".rstrip())
    return 0


def _cmd_rollup(args: argparse.Namespace) -> int:
    from tsdb_lake.status import _iso

    lake = _connect(args)
    options: dict[str, Any] = {}
    if args.settle is not None:
        options["settle_ns"] = _duration(args.settle, "--settle")
    report = lake.rollup(tenant=args.tenant, metric=args.metric, dry_run=args.dry_run, **options)
    if args.json:
        _print_json(report.to_dict())
        return 0
    verb = "would build" if args.dry_run else "built"
    print(
        f"rollup of {lake.uri}: {len(report.passes)} tier pass(es), {report.raw_values_rolled:,} raw values "
        f"rolled in {report.seconds:.1f} s"
    )
    for p in report.passes:
        state = f"error: {p.error}" if p.error else f"{verb} {len(p.files_added)} file(s), {p.rows:,} rows"
        print(
            f"  {p.tenant}/{p.metric} {p.tier:<3} from {p.source:<3}: {state}; watermark "
            f"{_iso(p.watermark_before) or '-'} -> {_iso(p.watermark_after) or '-'}"
        )
    return 0


def _cmd_retention(args: argparse.Namespace) -> int:
    lake = _connect(args)
    retention = lake.retention
    if args.action == "show":
        rules = retention.show()
        if args.json:
            _print_json([r.to_dict() for r in rules])
        elif not rules:
            print("no retention rules: every tier keeps its data forever")
        else:
            from tsdb_lake.status import _duration as fmt

            for r in rules:
                print(
                    f"tenant={r.tenant or '*'} metric={r.metric or '*'} tier={r.tier}: keep {fmt(r.ttl_ns)}"
                )
        return 0
    if args.action == "set":
        ttl = None if args.ttl.lower() in ("forever", "none", "inf") else args.ttl
        rule = retention.set(args.tier, ttl, tenant=args.tenant, metric=args.metric)
        print(
            f"set: tenant={rule.tenant or '*'} metric={rule.metric or '*'} tier={rule.tier} keep {args.ttl}"
        )
        return 0
    if args.action == "remove":
        retention.remove(args.tier, tenant=args.tenant, metric=args.metric)
        print(f"removed the rule tenant={args.tenant or '*'} metric={args.metric or '*'} tier={args.tier}")
        return 0
    report = retention.apply(dry_run=args.dry_run, tenant=args.tenant, metric=args.metric)
    if args.json:
        _print_json(report.to_dict())
        return 0
    verb = "would expire" if args.dry_run else "expired"
    print(
        f"retention: {verb} {len(report.expired)} partition(s), {report.files} file(s), {report.bytes:,} bytes"
        + ("" if args.dry_run or report.version is None else f" (catalog version {report.version})")
        + f"; {len(report.blocked)} kept by the rollup guard"
    )
    for b in report.blocked[:20]:
        print(f"  kept {b.tenant}/{b.metric} {b.tier} {b.partition}: {b.reason}")
    return 0


def _cmd_vacuum(args: argparse.Namespace) -> int:
    lake = _connect(args)
    report = lake.vacuum(older_than=args.older_than, dry_run=args.dry_run, log_retention=args.log_retention)
    if args.json:
        _print_json(report.to_dict())
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"vacuum of {lake.uri}: {verb} {report.files} object(s), {report.bytes:,} bytes; kept "
        f"{report.kept_referenced} referenced and {report.kept_recent} younger than {args.older_than}; "
        f"catalog log: {verb} {len(report.log.entries)} entries and {len(report.log.checkpoints)} "
        f"checkpoints before version {report.log.floor}"
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from tsdb_lake.status import lake_status, render_status

    status = lake_status(_connect(args))
    if args.json:
        _print_json(status)
    else:
        print(render_status(status))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from tsdb_lake.verify import verify_lake

    try:
        lake = _connect(args)
    except TsdbLakeError as exc:  # a catalog too broken to open is a verification failure
        return _fail(f"the catalog cannot be opened: {exc}", 1)
    report = verify_lake(lake, deep=args.deep, strict=args.strict, progress=_Progress("verify"))
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.text())
    return 0 if report.ok else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from tsdb_lake.export import export_lake

    metrics: list[str] = []
    for m in args.metric or []:
        metrics += _split(m) or []
    report = export_lake(
        _connect(args),
        args.dest,
        tenant=args.tenant,
        metrics=metrics or None,
        tier=args.tier,
        start=args.start,
        end=args.end,
        since_version=args.since_version,
        incremental=args.incremental,
        progress=_Progress("export"),
    )
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.text())
    return 0


# ------------------------------------------------------------------------------------------------ parser


def _common(p: argparse.ArgumentParser, default_lake: str = _DEFAULT_LAKE) -> None:
    p.add_argument(
        "--lake",
        default=None,
        help=f"lake URI: a folder or s3://bucket/prefix (default $TSDB_LAKE_URI or {default_lake})",
    )
    p.add_argument(
        "--storage-options",
        metavar="JSON",
        help='object-store options, e.g. \'{"endpoint_url": "http://127.0.0.1:9000", "key": "...", '
        '"secret": "..."}\' (default $TSDB_LAKE_STORAGE_OPTIONS)',
    )


def _scope(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--tenant", help=f"only this tenant (default: every tenant) for {what}")
    p.add_argument("--metric", help="only this metric (default: every metric)")


_EPILOG = """\
examples:
  tsdb-lake demo                                    # generate, ingest, compact, roll up, query, report
  tsdb-lake ingest metrics.lp --tenant acme         # line protocol, CSV or Parquet
  tsdb-lake query cpu --tenant demo --start now-1h --every 1m --agg avg,p99
  tsdb-lake sql "SELECT hostname, avg(usage_user) FROM cpu GROUP BY 1" --tenant demo
  tsdb-lake status
  tsdb-lake compact && tsdb-lake rollup && tsdb-lake retention apply && tsdb-lake vacuum

The lake is ./lake unless --lake or $TSDB_LAKE_URI says otherwise. `tsdb-lake COMMAND --help` explains each.
"""


def _subcommand(
    sub: Any,
    name: str,
    help_text: str,
    example: str,
    *,
    description: str | None = None,
    common: bool = True,
    default_lake: str = _DEFAULT_LAKE,
) -> argparse.ArgumentParser:
    """A sub-command parser whose --help shows its description and an example; with the common options."""
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=f"{description or help_text}\n\nexample:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if common:  # nested sub-commands (retention) take --lake after the action instead
        _common(p, default_lake)
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsdb-lake",
        description="A time-series store whose home is a lake of Parquet files (a folder or object storage).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    from tsdb_lake import __version__

    parser.add_argument("--version", action="version", version=f"tsdb-lake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str,
        fn: Callable[[argparse.Namespace], int],
        help_text: str,
        example: str,
        common: bool = True,
        default_lake: str = _DEFAULT_LAKE,
    ) -> argparse.ArgumentParser:
        p = _subcommand(sub, name, help_text, example, common=common, default_lake=default_lake)
        p.set_defaults(default_lake=default_lake)
        p.set_defaults(func=fn)
        return p

    p = add(
        "demo",
        _cmd_demo,
        "the main job: generate TSBS cpu-only data, ingest, compact, roll up, query and print a report "
        "(writes a PNG plot)",
        "tsdb-lake demo --hosts 20 --hours 12 --lake ./demo-lake",
        default_lake="./demo-lake",
    )
    p.add_argument("--hosts", type=int, default=50, help="simulated hosts (default 50)")
    p.add_argument("--hours", type=int, default=24, help="hours of 10-second data (default 24)")
    p.add_argument("--plot", help="where to write the PNG plot (default <lake>/demo.png)")
    p.add_argument("--no-plot", action="store_true", help="skip the plot")
    p.add_argument("--no-maintenance", action="store_true", help="skip compaction and rollups")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add(
        "ingest",
        _cmd_ingest,
        "ingest a CSV, Parquet or line-protocol file (or - for line protocol on stdin)",
        "tsdb-lake ingest data.csv --metric temperature --tenant acme --time-column ts",
    )
    p.add_argument("path", help="file path, or - for line protocol on stdin")
    p.add_argument("--tenant", default="default", help="tenant to write to (default 'default')")
    p.add_argument("--metric", help="metric name (required for CSV / Parquet; line protocol names its own)")
    p.add_argument(
        "--format", choices=["auto", "csv", "parquet", "lp"], default="auto", help="default: from the suffix"
    )
    p.add_argument(
        "--time-column", default="time", help="name of the time column in CSV / Parquet (default time)"
    )
    p.add_argument(
        "--rename", nargs="*", metavar="OLD=NEW", help="column mapping, e.g. ts=time host_name=host"
    )
    p.add_argument(
        "--precision", choices=["ns", "us", "ms", "s"], default="ns", help="line-protocol time unit"
    )

    p = add(
        "query",
        _cmd_query,
        "query points or time buckets of a metric (output: table, CSV, JSON or Parquet)",
        'tsdb-lake query cpu --tenant demo --where \'{"hostname": "host_1"}\' --every 1m --agg avg,max',
    )
    p.add_argument("metric")
    p.add_argument("--tenant", default="default", help="tenant (default 'default')")
    p.add_argument("--start", help="ISO time, int ns or now-1h (default: beginning of the data)")
    p.add_argument(
        "--end", help="ISO time, int ns or now (default: end of the data); the range is [start, end)"
    )
    p.add_argument("--where", help='label filter: JSON {"label": "value"} or a selector \'host=~"web-.*"\'')
    p.add_argument("--fields", help="comma-separated fields (default: all)")
    p.add_argument("--every", help="bucket width, e.g. 1m, 1h (default: raw points)")
    p.add_argument(
        "--agg", help="comma-separated aggregates: avg,min,max,sum,count,first,last,stddev,p99,rate"
    )
    p.add_argument("--by", help="comma-separated labels to group by across series")
    p.add_argument("--fill", choices=["none", "null", "previous", "linear"], help="empty-bucket filling")
    p.add_argument("--resolution", help="auto (default: rollups where built), raw, or a tier: 1m, 1h, 1d")
    p.add_argument("--as-of", type=int, metavar="VERSION", help="read this catalog version (time travel)")
    p.add_argument("--limit", type=int, help="print at most this many rows")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p.add_argument("--output", help="write to this file instead of stdout (required for parquet)")
    p.add_argument("--explain", action="store_true", help="print what was read and pruned (JSON, stderr)")

    p = add(
        "sql",
        _cmd_sql,
        "DuckDB SQL over a tenant's metrics (one table per metric; time and label filters are pruned)",
        'tsdb-lake sql "SELECT hostname, max(usage_user) FROM cpu WHERE time >= now() - INTERVAL 1 HOUR '
        'GROUP BY hostname" --tenant demo',
    )
    p.add_argument("query", help="a SELECT / WITH query, or - to read it from stdin")
    p.add_argument(
        "--tenant", default="default", help="tenant whose metrics are the tables (default 'default')"
    )
    p.add_argument("--limit", type=int, help="print at most this many rows")
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"], default="table")
    p.add_argument("--output", help="write to this file instead of stdout (required for parquet)")
    p.add_argument("--explain", action="store_true", help="print what was read and pruned (JSON, stderr)")

    p = add(
        "compact",
        _cmd_compact,
        "merge small / overlapping raw files of settled hours (one catalog commit per partition)",
        "tsdb-lake compact --tenant acme --dry-run",
    )
    _scope(p, "compaction")
    p.add_argument("--dry-run", action="store_true", help="only show the plan")
    p.add_argument("--settle", metavar="DURATION", help="hours must have ended this long ago (default 10m)")
    p.add_argument(
        "--quiet", metavar="DURATION", help="a partition's newest file must be this old (default 1m)"
    )
    p.add_argument(
        "--min-small-files", type=int, help="merge a partition with at least this many small files"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add(
        "rollup",
        _cmd_rollup,
        "build / repair the rollup tiers (1m, 1h, 1d) up to the last closed hour, rebuilding late-data ranges",
        "tsdb-lake rollup --tenant acme",
    )
    _scope(p, "rollups")
    p.add_argument("--dry-run", action="store_true", help="only show what would be built")
    p.add_argument("--settle", metavar="DURATION", help="roll raw up to floor(now - settle, 1h) (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add(
        "retention",
        _cmd_retention,
        "show, set, remove or apply per tenant x metric x tier retention rules (TTL)",
        "tsdb-lake retention set raw 30d --tenant acme && tsdb-lake retention apply --dry-run",
        common=False,
    )
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = _subcommand(rsub, "show", "list the stored rules", "tsdb-lake retention show --json")
    r.add_argument("--json", action="store_true", help="print the rules as JSON")
    r = _subcommand(
        rsub,
        "set",
        "keep TIER data for TTL (e.g. 30d; 'forever' = no expiry)",
        "tsdb-lake retention set raw 7d --tenant acme --metric cpu",
        description="keep TIER data of the scope for TTL; the most specific scope wins",
    )
    r.add_argument("tier", help="raw, 1m, 1h or 1d")
    r.add_argument("ttl", help="a duration: 90m, 36h, 30d, 52w, or 'forever'")
    _scope(r, "the rule")
    r = _subcommand(
        rsub,
        "remove",
        "delete the rule with exactly this scope",
        "tsdb-lake retention remove raw --tenant acme",
        description="delete the rule with exactly this scope (a less specific one applies)",
    )
    r.add_argument("tier", help="raw, 1m, 1h or 1d")
    _scope(r, "the rule")
    r = _subcommand(
        rsub,
        "apply",
        "expire partitions past their TTL (behind the rollup guard)",
        "tsdb-lake retention apply --dry-run",
        description="expire whole partitions past their TTL in one commit; a partition is kept "
        "until every coarser rollup tier covers it. Vacuum deletes the files later.",
    )
    _scope(r, "expiry")
    r.add_argument("--dry-run", action="store_true", help="only report what would expire")
    r.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add(
        "vacuum",
        _cmd_vacuum,
        "delete data files no catalog snapshot younger than the grace period references (and old orphans)",
        "tsdb-lake vacuum --older-than 1h --dry-run",
    )
    p.add_argument(
        "--older-than", default="1h", metavar="DURATION", help="grace period for readers (default 1h)"
    )
    p.add_argument(
        "--log-retention",
        default=None,
        metavar="DURATION",
        help="keep catalog log entries this long (default: the lake's catalog.log_retention, else 30d)",
    )
    p.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add(
        "status",
        _cmd_status,
        "per tenant and metric: tiers, files, partitions, points, bytes, range, watermarks, retention",
        "tsdb-lake status --json",
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON (for scripts)")

    p = add(
        "verify",
        _cmd_verify,
        "check the catalog against storage (missing files, orphans, footers, manifest schema); "
        "changes nothing, exits 1 on problems",
        "tsdb-lake verify --deep",
    )
    p.add_argument("--deep", action="store_true", help="also read every page of every data file")
    p.add_argument("--strict", action="store_true", help="count warnings (orphans, strays) as problems")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = add(
        "export",
        _cmd_export,
        "export a time range of one tier to plain Parquet for batch jobs, incrementally by catalog version",
        "tsdb-lake export ./out --tenant demo --tier 1h --incremental",
    )
    p.add_argument(
        "dest", help="output folder (or a URI pyarrow opens); it holds a manifest for the next run"
    )
    p.add_argument("--tenant", default="default", help="tenant (default 'default')")
    p.add_argument("--metric", action="append", help="metric(s), comma-separated or repeated (default: all)")
    p.add_argument("--tier", default="raw", help="raw (points), or a rollup tier: 1m, 1h, 1d (default raw)")
    p.add_argument("--start", help="ISO time, int ns or now-30d (default: beginning)")
    p.add_argument("--end", help="ISO time, int ns or now (default: end)")
    p.add_argument(
        "--since-version", type=int, metavar="N", help="only partitions changed after catalog version N"
    )
    p.add_argument("--incremental", action="store_true", help="continue from the version in DEST's manifest")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _fail(message: str, code: int = 2) -> int:
    one_line = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"error: {one_line}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tsdb-lake`` console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    if getattr(args, "lake", "") is None:  # resolved now, so $TSDB_LAKE_URI set after import counts
        args.lake = os.environ.get("TSDB_LAKE_URI") or getattr(args, "default_lake", _DEFAULT_LAKE)
    try:
        return int(args.func(args))
    except TsdbLakeError as exc:
        return _fail(str(exc))
    except _UserError as exc:
        return _fail(str(exc))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        return _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the reader went away (e.g. `| head`): stop quietly
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("TSDB_LAKE_DEBUG"):
            raise
        origin = type(exc).__module__.split(".")[0]
        if origin in ("polars", "pyarrow", "duckdb"):  # input the engines could not read
            return _fail(f"{type(exc).__name__}: {textwrap.shorten(str(exc), 400)}")
        return _fail(
            f"unexpected {type(exc).__name__}: {textwrap.shorten(str(exc), 400)} "
            "(a bug: set TSDB_LAKE_DEBUG=1 for the traceback and report it)",
            3,
        )


if __name__ == "__main__":
    sys.exit(main())

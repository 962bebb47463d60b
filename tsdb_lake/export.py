"""``lake.export()``: a time range of one tier to plain Parquet for batch jobs, incrementally by catalog version.

Output layout under ``dest`` (a local folder or any URI :func:`pyarrow.fs.FileSystem.from_uri` opens), one
file per lake partition, mirroring the lake's hive-style layout so engines can read it with
``hive_partitioning``::

    <dest>/tenant=T/metric=M/tier=X/<hour|day|month|year>=P/data.parquet
    <dest>/_tsdb_lake_export.json      the export manifest

* raw tier: the points of the partition (``time`` as ``timestamp[ns, UTC]``, one string column per label,
  one column per field), exactly what ``lake.query`` returns — duplicates resolved, codecs decoded;
* rollup tiers: the rollup rows (``_series_id``, labels, ``time`` and the ``<field>__<part>`` columns of
  ``catalog/FORMAT.md``), times as ``timestamp[ns, UTC]``; sketches stay serialised KLL bytes.

Incremental: with ``since_version=N`` only partitions whose data changed after catalog version ``N`` are
written — a partition changed when one of its live files has a data sequence number (``DataFile.seq``, the
version that first made its data live; compaction keeps it) above ``N``. Partitions that had files at ``N``
and have none now (retention) are listed under ``removed`` in the manifest; their exported files are kept.
The manifest records the version exported up to; ``incremental=True`` reads it and continues from there.
Every run reads one pinned catalog version, so an export is a consistent snapshot.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from tsdb_lake.catalog import DataFile, Snapshot
from tsdb_lake.errors import BackendWriteError, InvalidQueryError, NotFoundError
from tsdb_lake.model import validate_name
from tsdb_lake.storage.layout import DATA_PREFIX, PARTITION_KIND, partition_bounds, partition_prefix

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

    from tsdb_lake.lake import Lake
    from tsdb_lake.query.timeutil import TimeLike

__all__ = ["MANIFEST_NAME", "ExportReport", "ExportedPartition", "export_lake", "read_manifest"]

MANIFEST_NAME = "_tsdb_lake_export.json"
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ExportedPartition:
    """One partition written by an export run."""

    path: str
    metric: str
    partition: str
    rows: int
    bytes: int


@dataclass
class ExportReport:
    """What one export run did: the version exported up to, the partitions written, skipped and removed."""

    dest: str
    tenant: str
    tier: str
    version: int
    since_version: int | None
    written: list[ExportedPartition] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Rows written by this run."""
        return sum(p.rows for p in self.written)

    @property
    def bytes(self) -> int:
        """Bytes written by this run."""
        return sum(p.bytes for p in self.written)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "dest": self.dest,
            "tenant": self.tenant,
            "tier": self.tier,
            "version": self.version,
            "since_version": self.since_version,
            "partitions_written": len(self.written),
            "partitions_unchanged": self.unchanged,
            "rows": self.rows,
            "bytes": self.bytes,
            "written": [p.path for p in self.written],
            "removed": self.removed,
            "seconds": round(self.seconds, 3),
        }

    def text(self) -> str:
        """A short summary for a terminal."""
        since = "everything" if self.since_version is None else f"changes after version {self.since_version}"
        return (
            f"exported {self.tier} of tenant {self.tenant} up to catalog version {self.version} ({since}): "
            f"{len(self.written)} partition file(s), {self.rows:,} rows, {self.bytes:,} bytes to {self.dest}; "
            f"{self.unchanged} unchanged, {len(self.removed)} removed since"
        )


def _open_dest(dest: str | os.PathLike[str]) -> tuple[pafs.FileSystem, str]:
    import pyarrow.fs as pafs

    text = os.fspath(dest)
    if "://" in text:
        fs, root = pafs.FileSystem.from_uri(text)
    else:
        fs, root = pafs.LocalFileSystem(), os.path.abspath(text)
    fs.create_dir(root, recursive=True)
    return fs, root.rstrip("/")


def read_manifest(dest: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The export manifest in ``dest``, or None if there is none."""
    fs, root = _open_dest(dest)
    return _read_manifest(fs, root)


def _read_manifest(fs: pafs.FileSystem, root: str) -> dict[str, Any] | None:
    import pyarrow.fs as pafs

    path = f"{root}/{MANIFEST_NAME}"
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as src:
        try:
            doc = json.loads(src.read())
        except ValueError as exc:
            raise InvalidQueryError(f"export manifest {path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise InvalidQueryError(f"{path} is not a tsdb-lake export manifest (format {_FORMAT})")
    return doc


def _write_atomic(fs: pafs.FileSystem, path: str, write: Callable[[Any], None]) -> int:
    """Write ``path`` through a temp name and a rename (atomic on a local folder); returns its size."""
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with fs.open_output_stream(tmp) as sink:
            write(sink)
        fs.move(tmp, path)
    except OSError as exc:
        raise BackendWriteError(f"cannot write export file {path}: {exc}") from exc
    return int(fs.get_file_info(path).size or 0)


def _raw_table(lake: Lake, tenant: str, metric: str, version: int, start: int, end: int) -> pa.Table:
    return lake.query(metric, start, end, tenant=tenant, as_of=version, output="arrow")


def _rollup_table(lake: Lake, snap: Snapshot, files: Sequence[DataFile], start: int, end: int) -> pa.Table:
    import polars as pl

    from tsdb_lake.compaction.rollup import field_infos
    from tsdb_lake.format.rollup import read_rollup

    schema = snap.schema(files[0].tenant, files[0].metric)
    if schema is None:  # pragma: no cover - a live file always has a schema
        raise NotFoundError(f"no schema for {files[0].tenant}/{files[0].metric}")
    infos = field_infos(schema)
    frames = [
        read_rollup(lake.storage, f.path, labels=list(schema.labels), fields=infos, start=start, end=end)
        for f in files
    ]
    frame = pl.concat(frames, how="vertical_relaxed").sort(["_series_id", "time"])
    times = [c for c in frame.columns if c == "time" or c.endswith(("__first_time", "__last_time"))]
    frame = frame.with_columns([pl.col(c).cast(pl.Datetime("ns", "UTC")) for c in times])
    return frame.to_arrow()


def _changed(files: Sequence[DataFile], since: int | None) -> bool:
    return since is None or any(f.seq is None or f.seq > since for f in files)


def _group(
    snap: Snapshot, tenant: str, metric: str, tier: str, start: int | None, end: int | None
) -> dict[str, list[DataFile]]:
    out: dict[str, list[DataFile]] = {}
    for f in snap.files(tenant, metric, tier, start=start, end=end):
        out.setdefault(f.partition, []).append(f)
    return out


def export_lake(
    lake: Lake,
    dest: str | os.PathLike[str],
    *,
    tenant: str = "default",
    metrics: Sequence[str] | None = None,
    tier: str = "raw",
    start: TimeLike = None,
    end: TimeLike = None,
    since_version: int | None = None,
    incremental: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Export ``tier`` of ``tenant``'s ``metrics`` (default: all) in ``[start, end)`` to Parquet under ``dest``.

    ``since_version``: only partitions changed after that catalog version; ``incremental``: take it from
    the manifest a previous run left in ``dest`` (a full export if there is none). Returns an
    :class:`ExportReport`; the manifest in ``dest`` is updated last, so a failed run is simply repeated.
    """
    from tsdb_lake.query.timeutil import to_ns

    started = time.perf_counter()
    validate_name("tenant", tenant)
    if tier not in PARTITION_KIND:
        raise InvalidQueryError(f"unknown tier {tier!r}; use one of {', '.join(PARTITION_KIND)}")
    lo = None if start is None else to_ns(start, name="start")
    hi = None if end is None else to_ns(end, name="end")
    if lo is not None and hi is not None and lo >= hi:
        raise InvalidQueryError(f"empty time range: start {start!r} is not before end {end!r}")
    fs, root = _open_dest(dest)
    manifest = _read_manifest(fs, root)
    if manifest is not None and (manifest.get("lake"), manifest.get("tenant"), manifest.get("tier")) != (
        lake.uri,
        tenant,
        tier,
    ):
        raise InvalidQueryError(
            f"{root} holds an export of {manifest.get('lake')} tenant {manifest.get('tenant')} tier "
            f"{manifest.get('tier')}; export {tier} of tenant {tenant} to another folder"
        )
    if incremental and since_version is None and manifest is not None:
        since_version = int(manifest["version"])
    head = lake.snapshot()
    if since_version is not None and not -1 <= since_version <= head.version:
        raise NotFoundError(f"catalog version {since_version} does not exist (latest is {head.version})")
    base = lake.snapshot(since_version) if since_version is not None and since_version >= 0 else None
    names = list(metrics) if metrics else head.metrics(tenant)
    for m in names:
        validate_name("metric", m)
        if head.schema(tenant, m) is None:
            raise NotFoundError(
                f"tenant {tenant!r} has no metric {m!r}; known metrics: {head.metrics(tenant)}"
            )
    report = ExportReport(str(dest), tenant, tier, head.version, since_version)
    work: list[tuple[str, str, list[DataFile]]] = []
    for m in names:
        now_parts = _group(head, tenant, m, tier, lo, hi)
        for partition, files in sorted(now_parts.items()):
            if _changed(files, since_version):
                work.append((m, partition, files))
            else:
                report.unchanged += 1
        if base is not None:
            gone = set(_group(base, tenant, m, tier, lo, hi)) - set(now_parts)
            report.removed += [
                partition_prefix(tenant, m, tier, p).removeprefix(DATA_PREFIX) for p in sorted(gone)
            ]
    for i, (m, partition, files) in enumerate(work, 1):
        p_lo, p_hi = partition_bounds(partition)
        s = p_lo if lo is None else max(lo, p_lo)
        e = p_hi if hi is None else min(hi, p_hi)
        if tier == "raw":
            table = _raw_table(lake, tenant, m, head.version, s, e)
        else:
            table = _rollup_table(lake, head, files, s, e)
        rel = partition_prefix(tenant, m, tier, partition).removeprefix(DATA_PREFIX) + "data.parquet"
        if table.num_rows:
            size = _write_atomic(fs, f"{root}/{rel}", partial(_write_parquet, table))
            report.written.append(ExportedPartition(rel, m, partition, table.num_rows, size))
        if progress is not None:
            progress(i, len(work))
    report.seconds = time.perf_counter() - started
    _update_manifest(fs, root, manifest, lake.uri, report, lo, hi)
    return report


def _write_parquet(table: pa.Table, sink: Any) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, sink, compression="zstd")


def _update_manifest(
    fs: pafs.FileSystem,
    root: str,
    old: dict[str, Any] | None,
    uri: str,
    report: ExportReport,
    lo: int | None,
    hi: int | None,
) -> None:
    files: dict[str, Any] = dict(old["files"]) if old else {}
    for p in report.written:
        files[p.path] = {
            "metric": p.metric,
            "partition": p.partition,
            "rows": p.rows,
            "bytes": p.bytes,
            "version": report.version,
        }
    removed = sorted(set(old.get("removed", []) if old else []) | set(report.removed))
    doc = {
        "format": _FORMAT,
        "lake": uri,
        "tenant": report.tenant,
        "tier": report.tier,
        "version": report.version,
        "previous_version": report.since_version,
        "start_ns": lo,
        "end_ns": hi,
        "updated_ms": time.time_ns() // 1_000_000,
        "files": dict(sorted(files.items())),
        "removed": removed,
    }
    data = (json.dumps(doc, indent=2) + "\n").encode()
    _write_atomic(fs, f"{root}/{MANIFEST_NAME}", lambda sink: sink.write(data))

"""Running compaction: read a job's inputs, merge duplicates by data sequence, re-cut, write, commit once.

A job (from :mod:`tsdb_lake.compaction.planner`) is executed by :func:`merge_job`:

1. read every chunk of every input (through ``pyarrow.fs``) and decode it to points;
2. order the inputs by data sequence (``seq``: the catalog version that first committed their data), sort
   the points by (series, time, seq) and resolve duplicates last-write-wins per field
   (:func:`tsdb_lake.points.merge_duplicates`);
3. cut the points at series boundaries into files of about the target size, chunks re-cut to
   ``max_chunk_points``, and write them;
4. commit ONE catalog entry removing the inputs and adding the outputs (lineage: base version and input
   paths). The outputs carry ``seq = max(seq of inputs)``, so a file committed concurrently (after the base
   snapshot, hence with a larger ``seq``) still wins over them: concurrent writers never conflict with
   compaction, their adds simply rebase. The inputs are closed under overlap (see the planner), so no file
   left out shares a point with them and the outputs' ``seq`` cannot reorder anything else.

A lost race (another compaction or retention removed an input) raises CommitConflictError inside the
commit; the job is then abandoned: nothing was applied, and its outputs are deleted best-effort (leftovers
are orphans that vacuum removes). Readers are never disturbed: input files stay on storage until vacuum.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from tsdb_lake.catalog import (
    Action,
    AddFile,
    Catalog,
    DataFile,
    FieldStats,
    Lineage,
    RemoveFile,
    Snapshot,
)
from tsdb_lake.compaction.planner import CompactionPlan, PartitionJob, plan_compaction
from tsdb_lake.compaction.settings import CompactionSettings
from tsdb_lake.errors import CommitConflictError, NotFoundError, TsdbLakeError
from tsdb_lake.format import FORMAT_VERSION, decode_chunks, encode_chunks, read_chunks, write_raw_file
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.points import SERIES_ID, merge_duplicates
from tsdb_lake.storage import layout
from tsdb_lake.storage.base import Storage

__all__ = [
    "COMPACTOR_WRITER",
    "CompactionReport",
    "JobResult",
    "data_seqs",
    "merge_job",
    "merge_points",
    "read_job_points",
    "run_compaction",
]

log = logging.getLogger(__name__)

#: The ``writer`` recorded on compaction outputs and in their Parquet footer.
COMPACTOR_WRITER = "compactor"
_SEQ = "_seq"


@dataclass(frozen=True, slots=True)
class JobResult:
    """What happened to one partition job: ``status`` is committed / abandoned / failed / planned."""

    tenant: str
    metric: str
    partition: str
    status: str
    reason: str
    inputs: int
    outputs: int
    input_bytes: int
    output_bytes: int
    input_points: int
    output_points: int
    version: int | None = None
    detail: str = ""


@dataclass
class CompactionReport:
    """The outcome of one compaction pass (``dry_run``: the plan only, nothing written)."""

    dry_run: bool
    base_version: int
    jobs: list[JobResult] = field(default_factory=list)
    skipped: list[tuple[str, str, str, str]] = field(default_factory=list)
    partitions_seen: int = 0
    seconds: float = 0.0

    @property
    def committed(self) -> list[JobResult]:
        """The jobs whose commit landed."""
        return [j for j in self.jobs if j.status == "committed"]

    @property
    def files_removed(self) -> int:
        """Input files removed from the catalog (or that would be, in a dry run)."""
        return sum(j.inputs for j in self.jobs if j.status in ("committed", "planned"))

    @property
    def files_added(self) -> int:
        """Output files added to the catalog."""
        return sum(j.outputs for j in self.committed)

    @property
    def duplicates_merged(self) -> int:
        """Points that disappeared because a later write of the same (series, time) replaced them."""
        return sum(j.input_points - j.output_points for j in self.committed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (for the CLI and notebooks)."""
        return {
            "dry_run": self.dry_run,
            "base_version": self.base_version,
            "partitions_seen": self.partitions_seen,
            "jobs": [dataclasses.asdict(j) for j in self.jobs],
            "skipped": [
                {"tenant": t, "metric": m, "partition": p, "reason": r} for t, m, p, r in self.skipped
            ],
            "files_removed": self.files_removed,
            "files_added": self.files_added,
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------------------------------- data sequence


def data_seqs(catalog: Catalog, base: Snapshot, files: Sequence[DataFile]) -> dict[str, int]:
    """The data sequence number of each file: its ``seq`` (set by the catalog when the file is added).

    Defensive fallback for a record without one: the version that added it, found by reading the log
    backwards from ``base.version``; -1 (oldest) if that entry cannot be read.
    """
    out: dict[str, int] = {}
    missing: set[str] = set()
    for f in files:
        if f.seq is None:
            missing.add(f.path)
        else:
            out[f.path] = f.seq
    version = base.version
    while missing and version >= 0:
        try:
            entry = catalog.read_entry(version)
        except NotFoundError:
            break
        for a in entry.actions:
            if isinstance(a, AddFile) and a.file.path in missing:
                out[a.file.path] = version
                missing.discard(a.file.path)
        version -= 1
    for path in missing:
        out[path] = -1
    return out


# ------------------------------------------------------------------------------------------------ merge


def _file_columns(storage: Storage, key: str) -> list[str]:
    try:
        schema = pq.read_schema(storage.arrow_path(key), filesystem=storage.arrow_fs())
    except OSError:
        return []  # read_chunks below raises the proper typed error
    return list(schema.names)


def read_job_points(
    storage: Storage,
    files: Sequence[DataFile],
    seqs: Mapping[str, int],
    labels: Sequence[str],
    fields: Mapping[str, str],
) -> pl.DataFrame:
    """Every point of ``files`` with a ``_seq`` column: the rank of its file in data-sequence order.

    Files written under an older schema simply lack some labels / fields (decoded as nulls).
    """
    order = sorted(files, key=lambda f: (seqs[f.path], f.created_ms, f.path))
    frames: list[pl.DataFrame] = []
    for rank, f in enumerate(order):
        chunks = read_chunks(storage, f.path, _file_columns(storage, f.path) or [SERIES_ID])
        frame = decode_chunks(chunks, labels, fields, key=f.path)
        frames.append(frame.with_columns(pl.lit(rank, pl.Int64).alias(_SEQ)))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="vertical_relaxed")


def merge_points(points: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    """Sort by (series, time, seq) and resolve duplicates last-write-wins per field; drops ``_seq``."""
    if points.height == 0:
        return points.drop(_SEQ) if _SEQ in points.columns else points
    ordered = points.sort([SERIES_ID, TIME_COLUMN, _SEQ], maintain_order=True)
    sid = ordered.get_column(SERIES_ID).to_numpy()
    t = ordered.get_column(TIME_COLUMN).to_numpy()
    if not bool(np.any((sid[1:] == sid[:-1]) & (t[1:] == t[:-1]))):  # sorted: duplicates are adjacent
        return ordered.drop(_SEQ)
    return merge_duplicates(ordered, list(fields)).drop(_SEQ)


def _cuts(series: pl.Series, per_file: int) -> list[tuple[int, int]]:
    """Row ranges of output files: about ``per_file`` points each, cut only where the series changes."""
    n = series.len()
    if n <= per_file:
        return [(0, n)]
    ids = series.to_numpy()
    changes = np.flatnonzero(ids[1:] != ids[:-1]) + 1  # first row of every series but the first
    out: list[tuple[int, int]] = []
    start = 0
    while start < n:
        # the first series boundary at or after start + per_file: a series never spans two outputs
        i = int(np.searchsorted(changes, start + per_file))
        stop = int(changes[i]) if i < len(changes) else n
        out.append((start, stop))
        start = stop
    return out


def _data_file(info: Any, job: PartitionJob, base_version: int, seq: int | None) -> DataFile:
    return DataFile(
        path=info.key,
        tenant=job.tenant,
        metric=job.metric,
        tier="raw",
        partition=job.partition,
        min_time=info.min_time,
        max_time=info.max_time,
        rows=info.rows,
        points=info.points,
        series=info.series,
        bytes=info.bytes,
        format_version=FORMAT_VERSION,
        created_ms=time.time_ns() // 1_000_000,
        writer=COMPACTOR_WRITER,
        field_stats={
            name: FieldStats(min=st["min"], max=st["max"], count=int(st["count"] or 0))
            for name, st in info.field_stats.items()
        },
        label_values={k: tuple(v) for k, v in info.label_values.items()},
        series_min=info.series_min,
        series_max=info.series_max,
        lineage=Lineage(base_version, job.paths),
        codecs=info.codecs,
        seq=seq,
    )


def merge_job(
    storage: Storage,
    catalog: Catalog,
    base: Snapshot,
    job: PartitionJob,
    settings: CompactionSettings,
) -> JobResult:
    """Execute one job against ``base`` and commit it; returns its result (never half-applied).

    CommitConflictError from the commit (lost race) → status ``abandoned``; other lake errors → ``failed``
    (e.g. an unreadable input). In both cases outputs already written are deleted best-effort.
    """
    schema = base.schema(job.tenant, job.metric)
    written: list[str] = []
    try:
        if schema is None:
            raise TsdbLakeError(f"metric {job.tenant}/{job.metric} has files but no schema in the catalog")
        labels = list(schema.labels)
        fields = {name: spec.dtype for name, spec in schema.fields.items()}
        seqs = data_seqs(catalog, base, job.inputs)
        merged = merge_points(read_job_points(storage, job.inputs, seqs, labels, fields), list(fields))
        outputs: list[DataFile] = []
        max_seq = max(seqs.values()) if seqs else None
        cuts = _cuts(merged.get_column(SERIES_ID), job.target_points) if merged.height else []
        for lo, hi in cuts:
            part = merged.slice(lo, hi - lo)
            chunks = encode_chunks(part, labels, fields, max_chunk_points=settings.max_chunk_points)
            key = layout.data_file_key(job.tenant, job.metric, "raw", job.partition, layout.new_file_id())
            written.append(key)
            info = write_raw_file(
                storage, key, chunks, labels, fields, {"tsdb_lake.writer": COMPACTOR_WRITER}
            )
            outputs.append(_data_file(info, job, base.version, max_seq))
        actions: list[Action] = [RemoveFile(p, reason="compact") for p in job.paths]
        actions += [AddFile(o) for o in outputs]
        snap = catalog.commit(
            actions,
            operation="compact",
            base=base,
            writer=COMPACTOR_WRITER,
            reads=job.paths,
        )
    except CommitConflictError as exc:
        _discard(storage, written)
        return _result(job, "abandoned", detail=str(exc))
    except TsdbLakeError as exc:
        _discard(storage, written)
        log.warning("compaction of %s/%s %s failed: %s", job.tenant, job.metric, job.partition, exc)
        return _result(job, "failed", detail=f"{type(exc).__name__}: {exc}")
    except BaseException:
        _discard(storage, written)
        raise
    return _result(job, "committed", outputs, version=snap.version)


def _result(
    job: PartitionJob,
    status: str,
    outputs: Sequence[DataFile] = (),
    *,
    version: int | None = None,
    detail: str = "",
    estimated_outputs: int | None = None,
) -> JobResult:
    return JobResult(
        tenant=job.tenant,
        metric=job.metric,
        partition=job.partition,
        status=status,
        reason=job.reason,
        inputs=len(job.inputs),
        outputs=len(outputs) if estimated_outputs is None else estimated_outputs,
        input_bytes=job.input_bytes,
        output_bytes=sum(o.bytes for o in outputs),
        input_points=job.input_points,
        output_points=sum(o.points for o in outputs),
        version=version,
        detail=detail,
    )


def _discard(storage: Storage, keys: Sequence[str]) -> None:
    if keys:
        with contextlib.suppress(Exception):  # leftovers are orphans; vacuum removes them later
            storage.delete(keys)


def run_compaction(
    storage: Storage,
    catalog: Catalog,
    settings: CompactionSettings | None = None,
    *,
    tenant: str | None = None,
    metric: str | None = None,
    dry_run: bool = False,
    now_ns: int | None = None,
) -> CompactionReport:
    """One compaction pass over the latest snapshot: plan, then run each job with its own commit.

    Every job uses the same base snapshot; commits rebase over concurrent writers' adds. With ``dry_run``
    the plan is reported (status ``planned``) and nothing is written.
    """
    started = time.monotonic()
    settings = settings or CompactionSettings()
    base = catalog.refresh()
    now = time.time_ns() if now_ns is None else now_ns
    plan: CompactionPlan = plan_compaction(base.by_path.values(), settings, now, tenant=tenant, metric=metric)
    report = CompactionReport(
        dry_run=dry_run, base_version=base.version, partitions_seen=plan.partitions_seen
    )
    report.skipped = [(s.tenant, s.metric, s.partition, s.reason) for s in plan.skipped]
    for job in plan.jobs:
        if dry_run:
            report.jobs.append(_result(job, "planned", estimated_outputs=job.estimated_outputs))
            continue
        report.jobs.append(merge_job(storage, catalog, base, job, settings))
    report.seconds = time.monotonic() - started
    return report

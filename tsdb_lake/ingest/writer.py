"""The writer: validate → WAL → memtable → flush (files) → catalog commit → WAL truncate.

Durability contract: once ``write`` returns (``durability="batch"``) the batch is in the WAL and survives a
crash; once ``flush`` returns it is in the lake and every new reader sees it. Each flush commits, in the same
catalog entry as its files, the highest WAL LSN it covers (``WriterProgress``); replay skips records at or below
it, so a crash between commit and WAL truncation duplicates nothing.

Partitions that writing has moved past are flushed in the background while writes go on. Such a partial
flush commits progress ``L`` = the newest record holding its data (and at least the last carry record); the
rows of records <= ``L`` that stay buffered are first re-logged in one *carry record* (see
:mod:`tsdb_lake.ingest.records`), which replay uses exactly when the commit of ``L`` happened. So every
acknowledged row is, at any crash point, either in the lake or replayed, never both.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from tsdb_lake.catalog import (
    AddFile,
    Catalog,
    DataFile,
    FieldSpec,
    FieldStats,
    MetricSchema,
    SetSchema,
    WriterProgress,
    evolve,
)
from tsdb_lake.compaction.rollup import late_data_actions
from tsdb_lake.errors import BackendWriteError, CardinalityLimitedError, RateLimitedError, TsdbLakeError
from tsdb_lake.format import FORMAT_VERSION, RawFileInfo, encode_chunks, write_raw_file
from tsdb_lake.grouping import GroupedBatch
from tsdb_lake.ingest.lineprotocol import parse_lines
from tsdb_lake.ingest.options import WriterOptions
from tsdb_lake.ingest.records import decode_carry, decode_record, encode_carry, encode_record, is_carry
from tsdb_lake.memtable import Memtable, PartitionKey
from tsdb_lake.model import FieldKind, validate_name
from tsdb_lake.points import SeriesIdCache, assign_series_ids
from tsdb_lake.schema import NormalizedFrame, normalize_frame
from tsdb_lake.storage import layout
from tsdb_lake.storage.base import Storage
from tsdb_lake.wal import WAL, wal_writer_id

__all__ = ["Writer", "open_wal_slot", "recover_orphan_slots"]

_MAX_SLOTS = 256
#: Nice value of background flush threads under ``background_priority="low"`` (Linux only).
BACKGROUND_NICE = 10


def _lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority to :data:`BACKGROUND_NICE` (Linux: the thread only; elsewhere a
    no-op, since there ``setpriority`` would apply to the whole process)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            if current < BACKGROUND_NICE:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


#: Partition workers of flushes a caller waits for (normal priority; the codec pool helps them).
_FLUSH_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tsdb-lake-flush-io")
#: Partition workers of low-priority background flushes (each encodes on its own thread).
_BACKGROUND_POOL = ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="tsdb-lake-flush-bg", initializer=_lower_thread_priority
)


def _open_wal(directory: Path, options: WriterOptions) -> WAL:
    return WAL(
        directory,
        segment_bytes=options.wal_segment_bytes,
        durability=options.durability,
        sync_interval_s=options.sync_interval_s,
    )


def open_wal_slot(root: Path, options: WriterOptions) -> WAL:
    """Open the first WAL slot under ``root`` that no live writer holds (``root/0``, ``root/1``, ...)."""
    for slot in range(_MAX_SLOTS):
        try:
            return _open_wal(root / str(slot), options)
        except BackendWriteError:
            continue
    raise BackendWriteError(f"all {_MAX_SLOTS} WAL slots under {root} are in use", retryable=True)


def recover_orphan_slots(
    storage: Storage, catalog: Catalog, tenant: str, root: Path, options: WriterOptions, *, skip: Path
) -> int:
    """Replay and flush WAL slots under ``root`` left by writers that died; returns the slots recovered.

    A slot is an orphan when no live process holds its lock and it still has records; slots in use are
    skipped. Recovery is what a writer opening that slot would do: replay, flush, commit, truncate.
    """
    recovered = 0
    if not root.is_dir():
        return 0
    for slot in sorted(p for p in root.iterdir() if p.is_dir() and p.resolve() != skip.resolve()):
        if not any(slot.glob("*.wal")):
            continue
        try:
            wal = _open_wal(slot, options)
        except BackendWriteError:
            continue  # a live writer holds it
        Writer(storage, catalog, tenant, wal, options).close()
        recovered += 1
    return recovered


class Writer:
    """A WAL-backed writer for one tenant. Use as a context manager; ``close`` flushes.

    Thread-safe: several threads may call ``write`` on one writer. Several writers (threads or processes)
    may write to one lake, each with its own WAL directory.
    """

    def __init__(
        self,
        storage: Storage,
        catalog: Catalog,
        tenant: str,
        wal: WAL,
        options: WriterOptions,
        *,
        on_close: Any = None,
    ) -> None:
        self.tenant = validate_name("tenant", tenant)
        self.options = options
        self._storage = storage
        self._catalog = catalog
        self._wal = wal
        self.writer_id = wal_writer_id(wal.directory)
        self._lock = threading.RLock()
        self._space = threading.Condition(self._lock)
        self._flush_lock = threading.Lock()
        self._active = Memtable()
        self._frozen: Memtable | None = None
        self._frozen_full = False
        #: LSN of the newest carry record written (-1: none); every commit covers at least it.
        self._carry_lsn = -1
        self._schemas: dict[str, MetricSchema] = {}
        self._series_counts: dict[str, set[int]] = {}
        self._ids = SeriesIdCache()
        self._closed = False
        self._on_close = on_close
        self._flush_error: BaseException | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.stats = {"batches": 0, "points": 0, "flushes": 0, "files": 0, "replayed": 0}
        self._replay()
        self._thread = threading.Thread(
            target=self._background, name=f"tsdb-lake-flush-{tenant}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ public API
    def write(self, metric: str, frame: object, *, counters: tuple[str, ...] | list[str] = ()) -> int:
        """Validate and log one batch of points for ``metric``; returns the number of points accepted.

        The batch is rejected whole (typed error, nothing logged) if any row, name or type is invalid or
        conflicts with the metric's schema. ``counters`` declares fields as counters (reset-aware rollups).
        """
        normalized = normalize_frame(frame, metric=validate_name("metric", metric))
        return self._accept({metric: normalized}, counters=tuple(counters))

    def write_lines(self, data: bytes | str, *, precision: str = "ns") -> int:
        """Parse Influx line protocol and write every metric it names, as one all-or-nothing batch."""
        frames = parse_lines(data, precision=precision)  # type: ignore[arg-type]
        return self._accept(frames, counters=())

    def flush(self) -> None:
        """Make everything written so far durable in the lake and visible to new readers."""
        self._check_open()
        with self._flush_lock:
            self._flush_frozen()  # a pending (partial) flush first
            with self._lock:
                if not self._active.is_empty:
                    self._freeze()
            self._flush_frozen()

    def close(self) -> None:
        """Flush, stop the background flusher and release the WAL."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._stop.set()
            self._wake.set()
            self._thread.join(timeout=30)
            self._wal.close()
            if self._on_close is not None:
                self._on_close(self)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def buffered(self, metric: str, start: int | None, end: int | None) -> Iterator[pa.Table]:
        """Unflushed batches of ``metric`` overlapping ``[start, end)``, oldest first (read-your-writes)."""
        with self._lock:
            tables: list[pa.Table] = []
            for mt in (self._frozen, self._active):
                if mt is not None:
                    tables.extend(mt.scan(metric, start, end))
        return iter(tables)

    def schema(self, metric: str) -> MetricSchema | None:
        """The metric's schema as this writer knows it (catalog plus unflushed evolution)."""
        with self._lock:
            return self._schema_of(metric)

    # ------------------------------------------------------------------ accept path
    def _check_open(self) -> None:
        if self._closed:
            raise TsdbLakeError("writer is closed")
        if self._flush_error is not None:
            err, self._flush_error = self._flush_error, None
            raise err

    def _schema_of(self, metric: str) -> MetricSchema | None:
        if metric not in self._schemas:
            existing = self._catalog.snapshot().schema(self.tenant, metric)
            if existing is not None:
                self._schemas[metric] = existing
        return self._schemas.get(metric)

    def _evolved(
        self, metric: str, frame: NormalizedFrame | GroupedBatch, counters: tuple[str, ...]
    ) -> MetricSchema | None:
        current = self._schema_of(metric)
        fields = {
            name: FieldSpec(dtype=dtype, kind=FieldKind.COUNTER if name in counters else FieldKind.GAUGE)
            for name, dtype in frame.fields.items()
        }
        return evolve(current, frame.labels, fields)

    def _accept(self, frames: Mapping[str, NormalizedFrame], *, counters: tuple[str, ...]) -> int:
        self._check_open()
        self._wait_for_space()
        with self._lock:
            evolved = {metric: self._evolved(metric, nf, counters) for metric, nf in frames.items()}
            self._check_cardinality(frames)
            payloads = [encode_record(metric, nf.batch) for metric, nf in frames.items()]
            # Logged in LSN order under the lock; the fsync follows outside it (below), so flushes and other
            # writers are not held up by it. A flush syncs the WAL itself before it commits.
            lsns = self._wal.append_many(payloads, defer_sync=True)
            points = 0
            for (metric, nf), lsn in zip(frames.items(), lsns, strict=True):
                self._active.add(metric, nf.batch, lsn)
                if evolved[metric] is not None:
                    self._schemas[metric] = evolved[metric]  # type: ignore[assignment]
                points += nf.table.num_rows
            self.stats["batches"] += 1
            self.stats["points"] += points
            if self._active.nbytes >= self.options.flush_bytes or self._completed_due():
                self._wake.set()
        if self._wal.durability == "batch":
            self._wal.sync()  # acknowledged only once on stable storage
        return points

    def _check_cardinality(self, frames: Mapping[str, NormalizedFrame]) -> None:
        limit = self.options.max_series_per_metric
        if limit is None:
            return
        for metric, nf in frames.items():
            frame = pl.from_arrow(nf.batch.series)  # one row per distinct label combination
            assert isinstance(frame, pl.DataFrame)
            ids = set(
                assign_series_ids(frame, metric, nf.labels, self._ids).get_column("_series_id").to_list()
            )
            known = self._series_counts.setdefault(metric, set())
            if len(known | ids) > limit:
                raise CardinalityLimitedError(
                    f"metric {metric!r} would exceed {limit} series for this writer; "
                    "raise WriterOptions.max_series_per_metric or reduce label cardinality"
                )
            known |= ids

    def _wait_for_space(self) -> None:
        deadline = time.monotonic() + self.options.block_timeout_s
        with self._space:
            while self._buffered_bytes() >= self.options.memtable_budget_bytes:
                self._wake.set()
                if self.options.backpressure == "error":
                    raise RateLimitedError(
                        f"writer holds {self._buffered_bytes()} unflushed bytes (budget "
                        f"{self.options.memtable_budget_bytes}); flushing cannot keep up, retry shortly"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RateLimitedError("timed out waiting for the memtable to flush; retry shortly")
                self._space.wait(timeout=min(remaining, 0.5))

    def _buffered_bytes(self) -> int:
        return self._active.nbytes + (self._frozen.nbytes if self._frozen is not None else 0)

    # ------------------------------------------------------------------ flush path
    def _freeze(self) -> None:
        """Swap the active memtable for an empty one (caller holds ``_lock`` and ``_flush_lock``)."""
        frozen = self._active
        frozen.max_lsn = max(frozen.max_lsn, self._carry_lsn)
        self._frozen, self._frozen_full = frozen, True
        self._active = Memtable()

    def _completed_due(self) -> bool:
        """Whether partitions writing has moved past hold enough to flush them in the background."""
        threshold = self.options.flush_completed_bytes
        if threshold <= 0 or self._frozen is not None:
            return False
        keys, nbytes = self._active.completed()
        return bool(keys) and nbytes >= threshold

    def _freeze_completed(self) -> None:
        """Move the completed partitions to the frozen memtable, re-logging in a carry record what stays
        buffered from the records the flush will cover (caller holds ``_lock`` and ``_flush_lock``)."""
        keys, _ = self._active.completed()
        if not keys:
            return
        covers = max(self._active.lsn_of(keys), self._carry_lsn)
        carried = self._active.carry(covers, skip=keys)
        if carried:  # logged before anything moves, so a failed append leaves the memtable as it was
            (lsn,) = self._wal.append_many([encode_carry(covers, carried)])
            self._carry_lsn = lsn
        frozen = self._active.split(keys)
        if carried:
            self._active.retag(covers, self._carry_lsn)
        frozen.max_lsn = covers
        self._frozen, self._frozen_full = frozen, False

    def _flush_frozen(self, *, background: bool = False) -> None:
        """Write the frozen memtable as files, commit them with the WAL progress, truncate the WAL.

        ``background``: a flush nobody waits for; under ``background_priority="low"`` it runs on low-priority
        threads only (see :class:`WriterOptions`).
        """
        frozen = self._frozen
        if frozen is None:
            return
        low = background and self.options.background_priority == "low"
        # Partitions encode and upload in parallel (numba kernels, polars and Parquet I/O release the GIL).
        pool = _BACKGROUND_POOL if low else _FLUSH_POOL
        actions: list[Any] = list(
            pool.map(lambda key: self._write_partition(frozen, key, parallel=not low), frozen.partitions())
        )
        snapshot = self._catalog.snapshot()
        for added in [a for a in actions if isinstance(a, AddFile)]:
            f = added.file
            actions.extend(late_data_actions(snapshot, self.tenant, f.metric, f.min_time, f.max_time))
        for metric in sorted(frozen.metrics()):
            schema = self._schemas[metric]
            if snapshot.schema(self.tenant, metric) != schema:
                actions.append(SetSchema(self.tenant, metric, schema))
        actions.append(WriterProgress(self.writer_id, frozen.max_lsn))
        # The WAL must hold these LSNs durably before the catalog says they are committed, or an OS crash
        # could hand the same LSNs to new records that replay would then skip.
        self._wal.sync()
        self._catalog.commit(actions, operation="write", writer=self.writer_id)
        if self._frozen_full:  # a partial flush leaves the open segment for later records to fill
            self._wal.rotate()
        self._wal.truncate(frozen.max_lsn)
        with self._space:
            self._frozen = None
            self._space.notify_all()
        self.stats["flushes"] += 1
        self.stats["files"] += sum(isinstance(a, AddFile) for a in actions)

    def _write_partition(self, frozen: Memtable, key: PartitionKey, *, parallel: bool) -> AddFile:
        """Seal, encode and write one (metric, hour) partition as a raw file; the AddFile to commit
        (``parallel``: whether encoding may use the codec thread pool)."""
        schema = self._schemas[key.metric]
        fields = {name: spec.dtype for name, spec in schema.fields.items()}
        points, series = frozen.seal_points(key, schema.labels, list(fields), self._ids)
        chunks = encode_chunks(
            points,
            schema.labels,
            fields,
            max_chunk_points=self.options.max_chunk_points,
            series=series,
            parallel=parallel,
        )
        partition = layout.partition_of("raw", key.hour_ns)
        file_key = layout.data_file_key(self.tenant, key.metric, "raw", partition, uuid.uuid4().hex)
        info = write_raw_file(
            self._storage, file_key, chunks, schema.labels, fields, {"tsdb_lake.writer": self.writer_id}
        )
        return AddFile(self._data_file(info, key.metric, partition))

    def _data_file(self, info: RawFileInfo, metric: str, partition: str) -> DataFile:
        return DataFile(
            path=info.key,
            tenant=self.tenant,
            metric=metric,
            tier="raw",
            partition=partition,
            min_time=info.min_time,
            max_time=info.max_time,
            rows=info.rows,
            points=info.points,
            series=info.series,
            bytes=info.bytes,
            format_version=FORMAT_VERSION,
            created_ms=int(time.time() * 1000),
            writer=self.writer_id,
            field_stats={
                name: FieldStats(min=st["min"], max=st["max"], count=int(st["count"] or 0))
                for name, st in info.field_stats.items()
            },
            label_values={k: tuple(v) for k, v in info.label_values.items()},
            series_min=info.series_min,
            series_max=info.series_max,
            codecs=info.codecs,
        )

    def _background(self) -> None:
        """Flush when the memtable is large or old; record failures for the next caller to see."""
        if self.options.background_priority == "low":
            _lower_thread_priority()  # freezing and committing run at low priority too
        while not self._stop.is_set():
            self._wake.wait(timeout=min(1.0, self.options.flush_interval_s))
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                due = not self._active.is_empty and (
                    self._active.nbytes >= self.options.flush_bytes
                    or self._active.age() >= self.options.flush_interval_s
                    or self._buffered_bytes() >= self.options.memtable_budget_bytes
                )
                partial = not due and self._completed_due()
            if not (due or partial):
                continue
            try:
                with self._flush_lock:
                    with self._lock:
                        if self._frozen is None and not self._active.is_empty:
                            if due:
                                self._freeze()
                            elif self._completed_due():
                                self._freeze_completed()
                    self._flush_frozen(background=True)
            except Exception as exc:  # surfaced to the writer's next call
                self._flush_error = exc
                with self._space:
                    self._space.notify_all()

    # ------------------------------------------------------------------ recovery
    def _replay(self) -> None:
        """Rebuild the memtable from WAL records not yet in the lake, then flush them."""
        progress = self._catalog.refresh().progress(self.writer_id)
        committed = -1 if progress is None else progress
        carried: list[tuple[str, GroupedBatch, int]] = []
        writes: list[tuple[str, GroupedBatch, int]] = []
        for record in self._wal.replay():
            if is_carry(record.payload):
                # At most one carry is in effect: the one whose covering commit happened; its rows came
                # from records <= committed, so they go before every replayed write.
                self._carry_lsn = max(self._carry_lsn, record.lsn)
                if record.lsn > committed:
                    covers, batches = decode_carry(record.payload)
                    if covers <= committed:
                        carried = [(metric, batch, record.lsn) for metric, batch in batches]
                continue
            if record.lsn <= committed:
                continue
            metric, batch = decode_record(record.payload)
            writes.append((metric, batch, record.lsn))
        for metric, batch, lsn in carried + writes:
            evolved = self._evolved(validate_name("metric", metric), batch, ())
            if evolved is not None:
                self._schemas[metric] = evolved
            self._active.add(metric, batch, lsn)
            self.stats["replayed"] += 1
        if not self._active.is_empty:
            with self._flush_lock, self._lock:
                self._freeze()
            self._flush_frozen()
        else:
            self._wal.truncate(self._wal.last_lsn)

"""The write-ahead log: opaque byte records in CRC-framed, size-rotated segment files on a local directory.

One :class:`WAL` owns one directory (an exclusive ``flock`` on ``LOCK`` keeps a second writer out). Records
get strictly increasing LSNs that survive restarts: the sequence is persisted by the records and the segment
headers themselves, and the newest segment is never deleted, so an emptied WAL still knows its next LSN.
Replay validates every record; only a torn tail of the newest segment is repaired (truncated), anything else
raises :class:`CorruptBlockError`. The byte format is in ``catalog/WAL.md`` and :mod:`tsdb_lake.wal.format`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import weakref
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, get_args

from tsdb_lake.errors import (
    BackendReadError,
    BackendWriteError,
    CorruptBlockError,
    InvalidFrameError,
    TsdbLakeError,
)
from tsdb_lake.wal.format import (
    HEADER_SIZE,
    MAX_RECORD_BYTES,
    RECORD_HEADER_SIZE,
    encode_header,
    frame_records,
    parse_segment_name,
    scan_segment,
    segment_name,
)
from tsdb_lake.wal.fsutil import create_file_atomically, fdatasync, fsync_dir, wal_writer_id

__all__ = ["LOCK_FILE", "WAL", "Durability", "ReplayReport", "SegmentInfo", "WalRecord"]

Durability = Literal["batch", "interval", "none"]
LOCK_FILE = "LOCK"
_MIN_SEGMENT_BYTES = HEADER_SIZE + RECORD_HEADER_SIZE
_STALE_TMP_RE = re.compile(r"^\.\d{20}\.wal\.[0-9a-f]{32}\.tmp$")


class WalRecord(NamedTuple):
    """One replayed record: its LSN and its payload bytes."""

    lsn: int
    payload: bytes


@dataclass(frozen=True)
class SegmentInfo:
    """A segment file: ``last_lsn`` is ``first_lsn - 1`` while the segment holds no record."""

    path: str
    first_lsn: int
    last_lsn: int
    bytes: int


@dataclass(frozen=True)
class ReplayReport:
    """What recovery found: records and segments read, and the torn tail it cut off (if any)."""

    records: int
    segments: int
    truncated_bytes: int
    truncated_segment: str | None
    last_lsn: int


@dataclass
class _Segment:
    path: Path
    first_lsn: int
    last_lsn: int
    size: int

    def info(self) -> SegmentInfo:
        return SegmentInfo(str(self.path), self.first_lsn, self.last_lsn, self.size)

    @property
    def has_records(self) -> bool:
        return self.last_lsn >= self.first_lsn


def _as_view(payload: bytes | bytearray | memoryview) -> memoryview:
    try:
        mv = memoryview(payload)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")
    except TypeError as exc:
        raise InvalidFrameError(
            f"WAL payload must be a contiguous bytes-like object, not {type(payload).__name__}"
        ) from exc
    if len(mv) > MAX_RECORD_BYTES:
        raise InvalidFrameError(f"WAL record of {len(mv)} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")
    return mv


_IOV_MAX = 512


def _write_all(fd: int, parts: list[bytes | bytearray | memoryview]) -> None:
    """Write the concatenation of ``parts`` with ``writev`` (no copy), resuming after partial writes."""
    views = [memoryview(p) for p in parts if len(p)]
    i = 0
    while i < len(views):
        written = os.writev(fd, views[i : i + _IOV_MAX])
        if written <= 0:
            raise OSError(f"writev wrote {written} bytes")
        while written > 0 and i < len(views):
            n = len(views[i])
            if written >= n:
                written -= n
                i += 1
            else:
                views[i] = views[i][written:]
                written = 0


def _acquire_dir_lock(directory: Path) -> int:
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise BackendWriteError(
            f"WAL directory {directory} is in use by another writer (pid {holder})", retryable=False
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        os.close(fd)
        raise
    return fd


def _interval_sync_loop(ref: weakref.ref[WAL], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        wal = ref()
        if wal is None:
            return
        wal._background_sync()
        del wal


class WAL:
    """An append-only, crash-safe log of opaque byte records with LSNs, in a local directory.

    Durability: ``"batch"`` fsyncs before ``append``/``append_many`` return; ``"interval"`` lets a
    background thread fsync every ``sync_interval_s``; ``"none"`` never fsyncs records (sealing a segment
    and creating or removing segment files are always made durable). Appends are thread-safe;
    :meth:`replay` should run before the WAL is shared between threads. Every public operation other than
    :meth:`replay` recovers the log first (a full validating scan) if replay has not yet been run to the end.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        segment_bytes: int = 64 << 20,
        durability: Durability = "batch",
        sync_interval_s: float = 1.0,
    ) -> None:
        if durability not in get_args(Durability):
            raise TsdbLakeError(f"WAL durability must be one of {get_args(Durability)}, not {durability!r}")
        if segment_bytes < _MIN_SEGMENT_BYTES:
            raise TsdbLakeError(
                f"WAL segment_bytes must be at least {_MIN_SEGMENT_BYTES}, not {segment_bytes}"
            )
        if not sync_interval_s > 0:
            raise TsdbLakeError(f"WAL sync_interval_s must be positive, not {sync_interval_s}")
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._durability: Durability = durability
        self._sync_interval_s = sync_interval_s
        self._lock = threading.Lock()
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._next_lsn = 1
        self._recovered = False
        self._closed = True
        self._failed: str | None = None
        self._dirty = False
        self._fsyncs = 0
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Set once recovery has run: what replay found and repaired.
        self.last_replay: ReplayReport | None = None
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _acquire_dir_lock(self._dir)
            for entry in os.listdir(self._dir):
                if _STALE_TMP_RE.match(entry):
                    os.unlink(self._dir / entry)
        except OSError as exc:
            self._release_dir_lock()
            raise BackendWriteError(f"cannot open WAL directory {self._dir}: {exc}", retryable=False) from exc
        self._closed = False
        if durability == "interval":
            self._thread = threading.Thread(
                target=_interval_sync_loop,
                args=(weakref.ref(self), self._stop, sync_interval_s),
                name=f"wal-sync:{self._dir.name}",
                daemon=True,
            )
            self._thread.start()

    # ----------------------------------------------------------------- properties
    @property
    def directory(self) -> Path:
        """The WAL's local directory."""
        return self._dir

    @property
    def durability(self) -> Durability:
        """The durability mode the WAL was opened with."""
        return self._durability

    @property
    def last_lsn(self) -> int:
        """The LSN of the newest record ever appended (0 for a brand-new WAL)."""
        with self._lock:
            self._ready_locked()
            return self._next_lsn - 1

    @property
    def writer_id(self) -> str:
        """The directory's stable writer identity (see :func:`wal_writer_id`)."""
        return wal_writer_id(self._dir)

    @property
    def fsync_count(self) -> int:
        """How many record fsyncs this instance has issued (for tests and benchmarks)."""
        return self._fsyncs

    def segments(self) -> list[SegmentInfo]:
        """The segment files, oldest first; the last one is open for appends."""
        with self._lock:
            self._ready_locked()
            return [s.info() for s in self._segments]

    # ----------------------------------------------------------------- replay / recovery
    def replay(self) -> Iterator[WalRecord]:
        """Yield every record in LSN order, validating each CRC; the first full run also recovers the log.

        A torn or corrupt tail of the newest segment (nothing valid after it) is cut off and reported in
        :attr:`last_replay`; corruption anywhere else raises :class:`CorruptBlockError` naming the segment
        file and byte offset. Called again after recovery, it re-reads the files without repairing.
        """
        if self._closed:
            raise BackendWriteError(f"WAL {self._dir} is closed", retryable=False)
        if self._recovered:
            yield from self._scan(repair=False, yield_records=True)
            return
        yield from self._recover(yield_records=True)

    def _list_segment_files(self) -> list[tuple[int, Path]]:
        found = []
        for entry in os.listdir(self._dir):
            first = parse_segment_name(entry)
            if first is not None:
                found.append((first, self._dir / entry))
        found.sort()
        return found

    def _scan(
        self, *, repair: bool, yield_records: bool
    ) -> Generator[WalRecord, None, tuple[list[_Segment], ReplayReport]]:
        """Validate all segments in order (yielding records if asked); with ``repair``, fix a torn tail."""
        files = self._list_segment_files()
        segments: list[_Segment] = []
        expected: int | None = None
        records = truncated_bytes = 0
        truncated_segment: str | None = None
        for i, (first, path) in enumerate(files):
            if expected is not None and first != expected:
                raise CorruptBlockError(
                    f"WAL segment starts at lsn {first} but the previous segment ends at lsn {expected - 1} "
                    f"(a segment is missing) at offset 0",
                    path=str(path),
                )
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise BackendReadError(f"cannot read WAL segment {path}: {exc}", retryable=False) from exc
            result = scan_segment(data, str(path), first, is_last=i == len(files) - 1)
            if yield_records:
                view = memoryview(data)
                for lsn, start, end in result.records:
                    yield WalRecord(lsn, bytes(view[start:end]))
            records += len(result.records)
            size = len(data)
            if result.torn:
                if not repair:
                    raise CorruptBlockError(
                        f"WAL segment has a torn tail at offset {result.good_end}", path=str(path)
                    )
                self._repair_tail(path, first, result.good_end, result.torn_header)
                truncated_bytes = size - result.good_end if not result.torn_header else size
                truncated_segment = str(path)
                size = HEADER_SIZE if result.torn_header else result.good_end
            last = result.records[-1][0] if result.records else first - 1
            segments.append(_Segment(path, first, last, size))
            expected = last + 1
        report = ReplayReport(
            records=records,
            segments=len(segments),
            truncated_bytes=truncated_bytes,
            truncated_segment=truncated_segment,
            last_lsn=(expected - 1) if expected is not None else 0,
        )
        return segments, report

    def _repair_tail(self, path: Path, first_lsn: int, good_end: int, torn_header: bool) -> None:
        try:
            if torn_header:
                create_file_atomically(path, encode_header(first_lsn), overwrite=True)
                return
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, good_end)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise BackendWriteError(f"cannot repair the torn tail of WAL segment {path}: {exc}") from exc

    def _recover(self, *, yield_records: bool) -> Iterator[WalRecord]:
        segments, report = yield from self._scan(repair=True, yield_records=yield_records)
        if yield_records:  # called by replay(), without the lock
            with self._lock:
                self._install_locked(segments, report)
        else:  # called by _ready_locked(), which holds the lock
            self._install_locked(segments, report)

    def _install_locked(self, segments: list[_Segment], report: ReplayReport) -> None:
        if self._recovered or self._closed:
            return
        try:
            if not segments:
                segments = [self._create_segment(1)]
            self._fd = os.open(segments[-1].path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise BackendWriteError(f"cannot open WAL segment for appends: {exc}", retryable=False) from exc
        self._segments = segments
        self._next_lsn = segments[-1].last_lsn + 1
        self.last_replay = report
        self._recovered = True

    def _ready_locked(self) -> None:
        if self._closed:
            raise BackendWriteError(f"WAL {self._dir} is closed", retryable=False)
        if self._failed is not None:
            raise BackendWriteError(
                f"WAL {self._dir} is unusable after an I/O error ({self._failed}); close and reopen it",
                retryable=False,
            )
        if not self._recovered:
            for _ in self._recover(yield_records=False):
                pass

    # ----------------------------------------------------------------- appends
    def append(self, payload: bytes | bytearray | memoryview) -> int:
        """Append one record and return its LSN; under ``"batch"`` it is on stable storage on return."""
        return self._append([_as_view(payload)], sync=True)[0]

    def append_many(
        self, payloads: Sequence[bytes | bytearray | memoryview], *, defer_sync: bool = False
    ) -> list[int]:
        """Append records with consecutive LSNs as one group: one write per segment touched, one fsync.

        ``defer_sync=True`` skips the ``"batch"`` fsync: the caller must call :meth:`sync` before it treats
        the records as durable (so that it can do other work, without its own locks held, meanwhile).
        """
        views = [_as_view(p) for p in payloads]
        return self._append(views, sync=not defer_sync) if views else []

    def _append(self, views: list[memoryview], *, sync: bool) -> list[int]:
        with self._lock:
            self._ready_locked()
            first = self._next_lsn
            i = 0
            while i < len(views):
                seg = self._segments[-1]
                start = i
                count = seg.last_lsn - seg.first_lsn + 1
                chunk = 0
                while i < len(views):
                    size = RECORD_HEADER_SIZE + len(views[i])
                    if count > 0 and seg.size + chunk + size > self._segment_bytes:
                        break
                    chunk += size
                    count += 1
                    i += 1
                if i == start:
                    self._rotate_locked()
                    continue
                self._write_chunk_locked(seg, views[start:i], chunk)
            if sync and self._durability == "batch":
                self._sync_locked()
            return list(range(first, self._next_lsn))

    def _write_chunk_locked(self, seg: _Segment, views: list[memoryview], nbytes: int) -> None:
        assert self._fd is not None
        try:
            _write_all(self._fd, frame_records(self._next_lsn, views))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, seg.size)
            self._fail(f"write failed: {exc}")
            raise BackendWriteError(f"WAL append to {seg.path} failed: {exc}", retryable=False) from exc
        seg.size += nbytes
        seg.last_lsn += len(views)
        self._next_lsn += len(views)
        self._dirty = True

    def _fail(self, reason: str) -> None:
        self._failed = reason

    def _sync_locked(self, *, force: bool = False) -> None:
        if self._fd is None or not (self._dirty or force):
            return
        try:
            fdatasync(self._fd)
        except OSError as exc:
            self._fail(f"fsync failed: {exc}")
            raise BackendWriteError(f"WAL fsync in {self._dir} failed: {exc}", retryable=False) from exc
        self._fsyncs += 1
        self._dirty = False

    def _background_sync(self) -> None:
        with self._lock:
            if self._closed or self._failed is not None or not self._recovered:
                return
            with contextlib.suppress(BackendWriteError):  # recorded in self._failed; next append raises
                self._sync_locked()

    def sync(self) -> None:
        """Make every appended record durable now, whatever the durability mode."""
        with self._lock:
            self._ready_locked()
            self._sync_locked()

    # ----------------------------------------------------------------- segments
    def _create_segment(self, first_lsn: int) -> _Segment:
        path = self._dir / segment_name(first_lsn)
        if not create_file_atomically(path, encode_header(first_lsn), overwrite=False):
            raise CorruptBlockError(f"WAL segment for lsn {first_lsn} already exists", path=str(path))
        return _Segment(path, first_lsn, first_lsn - 1, HEADER_SIZE)

    def _rotate_locked(self) -> None:
        seg = self._segments[-1]
        if not seg.has_records:
            return
        self._sync_locked()  # seal: a sealed segment is always on stable storage
        try:
            new = self._create_segment(self._next_lsn)
            fd = os.open(new.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self._fail(f"rotation failed: {exc}")
            raise BackendWriteError(f"WAL rotation in {self._dir} failed: {exc}", retryable=False) from exc
        assert self._fd is not None
        os.close(self._fd)
        self._fd = fd
        self._segments.append(new)

    def rotate(self) -> None:
        """Seal the current segment (fsynced) and start a new one; a no-op while the current one is empty."""
        with self._lock:
            self._ready_locked()
            self._rotate_locked()

    def truncate(self, upto_lsn: int) -> int:
        """Delete whole segments whose records all have LSN <= ``upto_lsn``; returns how many were removed.

        The open segment goes only when it is fully covered, after rotating to a fresh (empty) one, so the
        next LSN always stays on disk. Oldest segments go first, each removal made durable, so a crash in
        the middle leaves a contiguous run of segments.
        """
        with self._lock:
            self._ready_locked()
            current = self._segments[-1]
            if current.has_records and current.last_lsn <= upto_lsn:
                self._rotate_locked()
            removed = 0
            while len(self._segments) > 1 and self._segments[0].last_lsn <= upto_lsn:
                seg = self._segments[0]
                try:
                    os.unlink(seg.path)
                    fsync_dir(self._dir)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise BackendWriteError(f"cannot remove WAL segment {seg.path}: {exc}") from exc
                self._segments.pop(0)
                removed += 1
            return removed

    # ----------------------------------------------------------------- lifecycle
    def _release_dir_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def close(self) -> None:
        """Sync (unless durability is ``"none"``), close the segment and release the directory lock."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._durability != "none" and self._failed is None:
                    self._sync_locked()
            finally:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._release_dir_lock()

    def __enter__(self) -> WAL:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # Last resort for a WAL that was never closed: release descriptors and the lock, no fsync.
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._stop.set()
        with contextlib.suppress(OSError):
            if self._fd is not None:
                os.close(self._fd)
        with contextlib.suppress(OSError):
            self._release_dir_lock()

    def __repr__(self) -> str:
        return f"WAL({str(self._dir)!r}, durability={self._durability!r})"

"""The manifest log and its commit protocol: open, refresh, commit with optimistic concurrency, time travel.

Version ``n`` of the catalog is the object ``_catalog/log/{n:020d}.json``, created with ``put_if_absent``:
exactly one committer wins each number. A committer that loses reads the entries that won, re-checks its
own actions against the new state (rebase) and retries the next number, or gives up with
:class:`CommitConflictError`. Nothing is ever half-applied: an entry is one object. See ``catalog/CATALOG.md``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tsdb_lake.catalog.actions import (
    DEFAULT_TIERS,
    Action,
    AddFile,
    Entry,
    SetTiers,
    SetWatermark,
    decode_entry,
    encode_entry,
    validate_action,
    validate_key,
    validate_operation,
)
from tsdb_lake.catalog.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    read_last_checkpoint,
    read_log_floor,
    write_checkpoint,
    write_log_floor,
)
from tsdb_lake.catalog.snapshot import Snapshot, StateBuilder
from tsdb_lake.errors import (
    BackendWriteError,
    CommitConflictError,
    CorruptBlockError,
    InvalidNameError,
    InvalidQueryError,
    NotFoundError,
)
from tsdb_lake.storage.base import Storage
from tsdb_lake.storage.layout import (
    CATALOG_LOG_PREFIX,
    catalog_checkpoint_key,
    catalog_log_key,
    parse_catalog_log_key,
)

__all__ = [
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_LOG_RETENTION_MS",
    "DEFAULT_MAX_RETRIES",
    "MIN_LOG_RETENTION_MS",
    "Catalog",
    "EntryInfo",
    "LogExpiry",
    "Validator",
]

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_INTERVAL = 50
DEFAULT_MAX_RETRIES = 30
_BACKOFF_BASE_S = 0.002
_BACKOFF_CAP_S = 0.25
_ENTRY_CACHE = 1024
_SNAPSHOT_CACHE = 8
#: Log entries and checkpoints are kept this long by default (Delta Lake's ``logRetentionDuration``).
DEFAULT_LOG_RETENTION_MS = 30 * 86_400_000
#: The shortest log retention ``expire_log`` accepts: a pinned snapshot stays committable for this long.
MIN_LOG_RETENTION_MS = 3_600_000

#: ``validate(head, actions)`` is called with the state a commit is about to land on (again after every
#: rebase); raising aborts the commit with that error.
Validator = Callable[[Snapshot, list[Action]], None]


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """A summary of one log entry for ``history()``: counts per action type, bytes and points added/removed."""

    version: int
    timestamp_ms: int
    operation: str
    writer: str | None
    base_version: int | None
    summary: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LogExpiry:
    """The outcome of :meth:`Catalog.expire_log`: the new log floor and what was (or would be) deleted."""

    dry_run: bool
    cutoff_ms: int
    floor: int
    entries: tuple[int, ...]
    checkpoints: tuple[int, ...]

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly summary."""
        return {
            "dry_run": self.dry_run,
            "cutoff_ms": self.cutoff_ms,
            "floor": self.floor,
            "entries": len(self.entries),
            "checkpoints": len(self.checkpoints),
        }


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _summarise(entry: Entry) -> dict[str, int]:
    counts: Counter[str] = Counter(a.TYPE for a in entry.actions)
    out = dict(counts)
    adds = [a.file for a in entry.actions if isinstance(a, AddFile)]
    out["bytes_added"] = sum(f.bytes for f in adds)
    out["points_added"] = sum(f.points for f in adds)
    return out


class Catalog:
    """A lake's catalog: a cached head snapshot plus the operations on the log.

    Thread-safe: several threads may share one instance (each commit runs its own retry loop). Processes
    each open their own instance; they coordinate only through ``put_if_absent`` on the storage.
    """

    def __init__(
        self,
        storage: Storage,
        head: Snapshot,
        *,
        checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL,
        last_checkpoint: int = -1,
    ) -> None:
        if checkpoint_interval < 1:
            raise InvalidQueryError(f"checkpoint_interval must be >= 1, got {checkpoint_interval}")
        self.storage = storage
        self.checkpoint_interval = checkpoint_interval
        self._head = head
        self._last_checkpoint = last_checkpoint
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        #: A head whose entry is older than this may have been overtaken by log expiry; refresh checks.
        self.stale_after_ms = MIN_LOG_RETENTION_MS

    # ------------------------------------------------------------------------------------ open / create

    @classmethod
    def open(cls, storage: Storage, *, checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL) -> Catalog:
        """Open an existing catalog: newest checkpoint, then the entries after it. NotFoundError if none."""
        cat = cls(storage, Snapshot.empty(), checkpoint_interval=checkpoint_interval)
        base = cat._load_latest_checkpoint()
        cat._head = cat._replay_forward(base)
        if cat._head.version < 0:
            raise NotFoundError(f"no tsdb-lake catalog at {storage.uri}")
        return cat

    @classmethod
    def create_or_open(
        cls,
        storage: Storage,
        *,
        checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL,
        initial_actions: Sequence[Action] | None = None,
    ) -> Catalog:
        """Open the catalog, creating version 0 (operation ``create``) first if the lake has none.

        ``initial_actions`` default to the default rollup tiers. Racing creators are safe: one wins version 0
        and the others open it.
        """
        try:
            return cls.open(storage, checkpoint_interval=checkpoint_interval)
        except NotFoundError:
            pass
        actions = (
            tuple(initial_actions) if initial_actions is not None else (SetTiers(None, None, DEFAULT_TIERS),)
        )
        for a in actions:
            validate_action(a)
        entry = Entry(0, _now_ms(), "create", actions, base_version=None, commit_id=uuid.uuid4().hex)
        StateBuilder(Snapshot.empty()).apply(entry, check=True)
        storage.put_if_absent(catalog_log_key(0), encode_entry(entry))
        return cls.open(storage, checkpoint_interval=checkpoint_interval)

    def _load_latest_checkpoint(self, upto: int | None = None) -> Snapshot:
        """The newest readable checkpoint (<= upto), else the empty state. Uses the pointer when it can."""
        if upto is None:
            pointed = read_last_checkpoint(self.storage)
            if pointed is not None:
                try:
                    snap = load_checkpoint(self.storage, pointed)
                    self._last_checkpoint = max(self._last_checkpoint, pointed)
                    return snap
                except NotFoundError:
                    pass
                except CorruptBlockError as exc:
                    log.warning("ignoring unreadable checkpoint: %s", exc)
        for version in reversed(list_checkpoints(self.storage)):
            if upto is not None and version > upto:
                continue
            try:
                snap = load_checkpoint(self.storage, version)
            except NotFoundError:
                continue
            except CorruptBlockError as exc:
                log.warning("ignoring unreadable checkpoint: %s", exc)
                continue
            self._last_checkpoint = max(self._last_checkpoint, version)
            return snap
        return Snapshot.empty()

    # ------------------------------------------------------------------------------------------ entries

    def read_entry(self, version: int) -> Entry:
        """Entry ``version`` (cached); NotFoundError if absent, CorruptBlockError (naming the key) if bad."""
        with self._lock:
            cached = self._entries.get(version)
        if cached is not None:
            return cached
        key = catalog_log_key(version)
        entry = decode_entry(self.storage.read_bytes(key), key)
        if entry.version != version:
            raise CorruptBlockError(f"entry claims version {entry.version}", path=key)
        self._remember(entry)
        return entry

    def _try_entry(self, version: int) -> Entry | None:
        try:
            return self.read_entry(version)
        except NotFoundError:
            return None

    def _remember(self, entry: Entry) -> None:
        with self._lock:
            self._entries[entry.version] = entry
            self._entries.move_to_end(entry.version)
            while len(self._entries) > _ENTRY_CACHE:
                self._entries.popitem(last=False)

    def _replay_forward(
        self,
        snap: Snapshot,
        upto: int | None = None,
        seen: list[Entry] | None = None,
        limit: int | None = None,
    ) -> Snapshot:
        """Apply entries after ``snap`` up to ``upto`` (or until one is missing, or ``limit`` were applied).

        Applied entries are appended to ``seen``. With ``upto``, a missing entry is a NotFoundError.
        """
        builder: StateBuilder | None = None
        version = snap.version
        while (upto is None or version < upto) and (limit is None or version - snap.version < limit):
            entry = self._try_entry(version + 1)
            if entry is None:
                if upto is not None:
                    raise NotFoundError(f"catalog version {version + 1} does not exist")
                break
            if builder is None:
                builder = StateBuilder(snap)
            builder.apply(entry, check=False)
            if seen is not None:
                seen.append(entry)
            version += 1
        return snap if builder is None else builder.build()

    # --------------------------------------------------------------------------------------- snapshots

    @property
    def version(self) -> int:
        """The version of the cached head snapshot."""
        return self._head.version

    def refresh(self) -> Snapshot:
        """Read the entries newer than the cached head (one GET each, plus one that finds nothing).

        After a checkpoint interval's worth of new entries, jump to the newest checkpoint if it is ahead.
        """
        head = self._head
        new = self._replay_forward(head, limit=self.checkpoint_interval)
        if new.version - head.version >= self.checkpoint_interval:
            cp = self._load_latest_checkpoint()
            new = self._replay_forward(cp if cp.version > new.version else new)
        elif new is head and head.timestamp_ms < _now_ms() - self.stale_after_ms and self._overtaken(head):
            new = self._replay_forward(self._load_latest_checkpoint())
        self._install(new)
        return self._head

    def _overtaken(self, snap: Snapshot) -> bool:
        """Whether log expiry removed entries after ``snap`` (so replaying forward from it finds nothing)."""
        return self.log_floor() > snap.version

    def _install(self, snap: Snapshot) -> None:
        with self._lock:
            if snap.version > self._head.version:
                self._head = snap

    def snapshot(self, version: int | None = None) -> Snapshot:
        """The cached latest snapshot, or the snapshot at ``version`` (time travel).

        ``snapshot()`` does not touch storage; call :meth:`refresh` to see other writers' commits.
        NotFoundError if ``version`` does not exist (yet).
        """
        head = self._head
        if version is None or version == head.version:
            return head
        if version < 0:
            raise NotFoundError(f"catalog version {version} does not exist")
        if version > head.version:
            head = self.refresh()
            if version > head.version:
                raise NotFoundError(f"catalog version {version} does not exist (latest is {head.version})")
            if version == head.version:
                return head
        with self._lock:
            cached = self._snapshots.get(version)
        if cached is not None:
            return cached
        base = self._load_latest_checkpoint(upto=version)
        try:
            snap = self._replay_forward(base, upto=version)
        except NotFoundError:
            floor = self.log_floor()
            if version < floor:
                raise NotFoundError(
                    f"catalog version {version} was expired by log retention; the oldest readable version "
                    f"is {floor}"
                ) from None
            raise
        with self._lock:
            self._snapshots[version] = snap
            while len(self._snapshots) > _SNAPSHOT_CACHE:
                self._snapshots.popitem(last=False)
        return snap

    # ------------------------------------------------------------------------------------------- commit

    def commit(
        self,
        actions: Iterable[Action],
        *,
        operation: str,
        base: Snapshot | None = None,
        writer: str | None = None,
        reads: Iterable[str] = (),
        validate: Validator | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> Snapshot:
        """Commit ``actions`` as the next version; returns the snapshot it produced.

        ``base`` is the snapshot the actions were computed from (default: the cached head); ``reads`` are
        data paths the commit depends on. If other commits land first, the commit is rebased onto them
        when that is safe and retried with exponential backoff and jitter; otherwise, or after
        ``max_retries`` lost races, :class:`CommitConflictError` is raised and nothing is applied. Schema
        conflicts raise :class:`SchemaConflictError`.
        """
        acts = tuple(actions)
        validate_operation(operation)
        for a in acts:
            validate_action(a)
        read_paths = tuple(sorted({validate_key(p) for p in reads}))
        base = self._head if base is None else base
        commit_id = uuid.uuid4().hex
        winners: list[Entry] = []
        state = base
        if state.version < self._head.version:
            try:
                state = self._replay_forward(state, upto=self._head.version, seen=winners)
            except NotFoundError:
                raise CommitConflictError(
                    f"{operation} was planned on catalog version {base.version}, whose successors were expired "
                    "by log retention; nothing was applied, plan again from a fresh snapshot"
                ) from None
        attempt = 0
        while True:
            _check_rebase(acts, winners)
            entry = Entry(
                state.version + 1,
                max(_now_ms(), state.timestamp_ms),
                operation,
                acts,
                base_version=base.version,
                writer=writer,
                reads=read_paths,
                commit_id=commit_id,
            )
            builder = StateBuilder(state)
            builder.apply(entry, check=True)
            if validate is not None:
                validate(state, list(acts))
            new = builder.build()
            if self._put_entry(entry):
                if entry.version >= self.log_floor():
                    self._remember(entry)
                    self._install(new)
                    self._maybe_checkpoint(new)
                    return new
                state = self._withdraw_expired(entry, acts)
                winners = []
            attempt += 1
            if attempt > max_retries:
                raise CommitConflictError(
                    f"{operation} commit lost {attempt} races for catalog versions (last tried "
                    f"{entry.version}); nothing was applied, try again"
                )
            time.sleep(random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt)))
            state = self._replay_forward(state, seen=winners)
            self._install(state)

    def _withdraw_expired(self, entry: Entry, actions: Sequence[Action]) -> Snapshot:
        """Undo a put that landed on a version log expiry had already deleted; returns the true head.

        The entry sits below the floor, where no reader looks, so deleting it is invisible. The winners
        between the stale state and the head are gone, so a commit whose rebase needs them (watermark
        moves) cannot be checked and is abandoned.
        """
        self.storage.delete([catalog_log_key(entry.version)])
        head = self._replay_forward(self._load_latest_checkpoint())
        self._install(head)
        if any(isinstance(a, SetWatermark) for a in actions):
            raise CommitConflictError(
                f"{entry.operation} was planned on catalog version {entry.base_version}, whose successors "
                "were expired by log retention; nothing was applied, plan again from a fresh snapshot"
            )
        return head

    def _put_entry(self, entry: Entry) -> bool:
        """put_if_absent, resolving an ambiguous backend failure by reading the key back (commit id)."""
        key = catalog_log_key(entry.version)
        data = encode_entry(entry)
        for _ in range(3):
            try:
                return self.storage.put_if_absent(key, data)
            except BackendWriteError:
                try:
                    existing = decode_entry(self.storage.read_bytes(key), key)
                except NotFoundError:
                    continue
                return existing.commit_id == entry.commit_id
        return self.storage.put_if_absent(key, data)

    def _maybe_checkpoint(self, snap: Snapshot) -> None:
        due = snap.version % self.checkpoint_interval == 0
        overdue = snap.version - self._last_checkpoint >= 2 * self.checkpoint_interval
        if not (due or overdue):
            return
        try:
            write_checkpoint(self.storage, snap)
            with self._lock:
                self._last_checkpoint = max(self._last_checkpoint, snap.version)
        except Exception as exc:  # a failed checkpoint only costs replay time; the commit stands
            log.warning("checkpoint of catalog version %d failed: %s", snap.version, exc)

    def checkpoint(self) -> int:
        """Write a checkpoint of the current head now; returns its version."""
        snap = self.refresh()
        write_checkpoint(self.storage, snap)
        with self._lock:
            self._last_checkpoint = max(self._last_checkpoint, snap.version)
        return snap.version

    # ------------------------------------------------------------------------------------------ history

    def history(self, start_version: int | None = None, end_version: int | None = None) -> list[EntryInfo]:
        """Summaries of entries ``start_version..end_version`` (default: all retained, up to the refreshed head)."""
        head = self.refresh()
        stop = head.version if end_version is None else min(end_version, head.version)
        out: list[EntryInfo] = []
        for v in range(max(self.log_floor(), start_version or 0), stop + 1):
            e = self.read_entry(v)
            out.append(
                EntryInfo(e.version, e.timestamp_ms, e.operation, e.writer, e.base_version, _summarise(e))
            )
        return out

    def version_as_of(self, timestamp_ms: int) -> int:
        """The newest version committed at or before ``timestamp_ms`` (binary search over the retained log)."""
        head = self.refresh()
        lo, hi = self.log_floor(), head.version
        if self.read_entry(lo).timestamp_ms > timestamp_ms:
            raise NotFoundError(f"the catalog has no version at or before timestamp {timestamp_ms} ms")
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.read_entry(mid).timestamp_ms <= timestamp_ms:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # --------------------------------------------------------------------------------------- log expiry

    def log_floor(self) -> int:
        """The oldest version whose entry log expiry keeps (one GET; 0 if the log was never expired)."""
        return read_log_floor(self.storage)

    def expire_log(
        self,
        retention_ms: int = DEFAULT_LOG_RETENTION_MS,
        *,
        now_ms: int | None = None,
        dry_run: bool = False,
    ) -> LogExpiry:
        """Delete the log entries and checkpoints that no snapshot younger than ``retention_ms`` needs.

        The new floor is the newest checkpoint at or before the version current at ``now - retention``;
        the floor is raised first, then entries and checkpoints below it are deleted, oldest first. Time
        travel below the floor ends; a committer that lands on an expired number withdraws (see commit).
        """
        if retention_ms < MIN_LOG_RETENTION_MS:
            raise InvalidQueryError(
                f"log retention must be at least {MIN_LOG_RETENTION_MS // 60_000} minutes, got {retention_ms} ms"
            )
        cutoff = (_now_ms() if now_ms is None else now_ms) - retention_ms
        old_floor = self.log_floor()
        try:
            protected = self.version_as_of(cutoff)
        except NotFoundError:
            protected = old_floor  # every retained entry is younger than the cutoff
        checkpoints = list_checkpoints(self.storage)
        floor = max([c for c in checkpoints if c <= protected] + [old_floor])
        if floor > old_floor:
            self._ensure_checkpoint(floor)
        entries = sorted(v for v in self._log_versions() if v < floor)
        stale_checkpoints = [c for c in checkpoints if c < floor]
        if not dry_run:
            write_log_floor(self.storage, floor)
            self.storage.delete([catalog_log_key(v) for v in entries])
            self.storage.delete([catalog_checkpoint_key(c) for c in stale_checkpoints])
            with self._lock:
                for cache in (self._entries, self._snapshots):
                    for v in [v for v in cache if v < floor]:
                        del cache[v]
        return LogExpiry(dry_run, cutoff, floor, tuple(entries), tuple(stale_checkpoints))

    def _ensure_checkpoint(self, version: int) -> None:
        """Rewrite checkpoint ``version`` from the log if it is unreadable, before the log below it goes."""
        try:
            load_checkpoint(self.storage, version)
        except CorruptBlockError as exc:
            log.warning("rewriting unreadable checkpoint before log expiry: %s", exc)
            write_checkpoint(self.storage, self.snapshot(version))

    def _log_versions(self) -> list[int]:
        """Versions of every entry object under ``_catalog/log/`` (one LIST)."""
        out: list[int] = []
        for obj in self.storage.list(CATALOG_LOG_PREFIX):
            try:
                out.append(parse_catalog_log_key(obj.key))
            except InvalidNameError:
                continue  # a stray object or temp file is not an entry
        return out

    def referenced_paths(self, since_version: int) -> set[str]:
        """Every data path live in any snapshot from ``since_version`` to the head (what vacuum must keep)."""
        head = self.refresh()
        paths = set(self.snapshot(since_version).by_path)
        for v in range(since_version + 1, head.version + 1):
            for a in self.read_entry(v).actions:
                if isinstance(a, AddFile):
                    paths.add(a.file.path)
        return paths


def _check_rebase(actions: Sequence[Action], winners: Sequence[Entry]) -> None:
    """Conflicts the state check cannot see: a concurrent commit moved a watermark this commit also moves."""
    if not winners:
        return
    mine = {(a.tenant, a.metric, a.tier) for a in actions if isinstance(a, SetWatermark)}
    if not mine:
        return
    for entry in winners:
        for a in entry.actions:
            if isinstance(a, SetWatermark) and (a.tenant, a.metric, a.tier) in mine:
                raise CommitConflictError(
                    f"a concurrent {entry.operation} commit (version {entry.version}) moved the {a.tier} "
                    f"watermark of {a.tenant}/{a.metric}; replan from the new snapshot"
                )

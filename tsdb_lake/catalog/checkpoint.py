"""Checkpoints: the whole catalog state at one version as one JSON object, the ``_last_checkpoint`` pointer
and the ``_log_floor`` marker of log expiry.

A checkpoint at version ``v`` (``_catalog/checkpoints/{v:020d}.json``) equals replaying entries ``0..v``.
Opening a lake loads the newest checkpoint and replays only the entries after it. ``_last_checkpoint`` is a
hint (``{"format_version": 1, "version": v}``); a missing or stale pointer only costs extra reads.
``_log_floor`` (same shape) is the oldest version whose entry and checkpoint log expiry kept: every entry
below it may be gone.
"""

from __future__ import annotations

import gc
import json
from typing import Any

from tsdb_lake.catalog.actions import FORMAT_VERSION, DataFile, TierSpec, check_format_version
from tsdb_lake.catalog.document import dump_document, load_document
from tsdb_lake.catalog.schema import MetricSchema
from tsdb_lake.catalog.snapshot import DirtyRange, Snapshot
from tsdb_lake.errors import CorruptBlockError, InvalidNameError, NotFoundError
from tsdb_lake.storage.base import Storage
from tsdb_lake.storage.layout import (
    CATALOG_CHECKPOINT_PREFIX,
    CATALOG_LAST_CHECKPOINT,
    CATALOG_LOG_FLOOR,
    catalog_checkpoint_key,
    parse_catalog_checkpoint_key,
)

__all__ = [
    "decode_checkpoint",
    "encode_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_last_checkpoint",
    "read_log_floor",
    "write_checkpoint",
    "write_log_floor",
]


def encode_checkpoint(snap: Snapshot) -> bytes:
    """The checkpoint JSON of a snapshot (compact UTF-8, lists sorted for reproducible bytes)."""
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "version": snap.version,
        "timestamp_ms": snap.timestamp_ms,
        "files": [snap.by_path[p].to_json() for p in sorted(snap.by_path)],
        "schemas": [
            {"tenant": t, "metric": m, "schema": s.to_json()} for (t, m), s in sorted(snap.schemas.items())
        ],
        "writer_progress": dict(sorted(snap.writer_progress.items())),
        "tiers": [
            {"tenant": t, "metric": m, "tiers": [x.to_json() for x in tiers]}
            for (t, m), tiers in sorted(
                snap.tier_rules.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "")
            )
        ],
        "retention": [
            {"tenant": t, "metric": m, "tier": tier, "ttl_ns": ttl}
            for (t, m, tier), ttl in sorted(
                snap.retention_rules.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or "", kv[0][2])
            )
        ],
        "watermarks": [
            {"tenant": t, "metric": m, "tier": tier, "watermark_ns": w}
            for (t, m, tier), w in sorted(snap.watermarks.items())
        ],
        "dirty": [
            {
                "tenant": t,
                "metric": m,
                "tier": tier,
                "start_ns": r.start_ns,
                "end_ns": r.end_ns,
                "version": r.version,
            }
            for (t, m, tier), ranges in sorted(snap.dirty_ranges.items())
            for r in ranges
        ],
        "properties": dict(sorted(snap.properties.items())),
    }
    return dump_document(doc)


def decode_checkpoint(data: bytes, key: str) -> Snapshot:
    """Parse a checkpoint; malformed content raises :class:`CorruptBlockError` naming ``key``.

    The cyclic garbage collector is paused while the (acyclic) objects are built: it would otherwise
    rescan them many times, costing ~30 % of the decode time of a large checkpoint.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _decode_checkpoint(data, key)
    finally:
        if paused:
            gc.enable()


def _decode_checkpoint(data: bytes, key: str) -> Snapshot:
    doc = load_document(data, key, "checkpoint")
    if not isinstance(doc, dict):
        raise CorruptBlockError("catalog checkpoint is not a JSON object", path=key)
    check_format_version(doc, key)
    try:
        files = {f["path"]: DataFile.from_json(f) for f in doc["files"]}
        schemas = {(s["tenant"], s["metric"]): MetricSchema.from_json(s["schema"]) for s in doc["schemas"]}
        progress = {str(k): int(v) for k, v in doc["writer_progress"].items()}
        tiers = {
            (r["tenant"], r["metric"]): tuple(TierSpec.from_json(x) for x in r["tiers"]) for r in doc["tiers"]
        }
        retention = {
            (r["tenant"], r["metric"], r["tier"]): (None if r["ttl_ns"] is None else int(r["ttl_ns"]))
            for r in doc["retention"]
        }
        watermarks = {
            (r["tenant"], r["metric"], r["tier"]): int(r["watermark_ns"]) for r in doc["watermarks"]
        }
        dirty: dict[tuple[str, str, str], tuple[DirtyRange, ...]] = {}
        for r in doc["dirty"]:
            k = (r["tenant"], r["metric"], r["tier"])
            dirty[k] = (
                *dirty.get(k, ()),
                DirtyRange(int(r["start_ns"]), int(r["end_ns"]), int(r["version"])),
            )
        return Snapshot(
            int(doc["version"]),
            int(doc["timestamp_ms"]),
            files,
            schemas,
            progress,
            tiers,
            retention,
            watermarks,
            dirty,
            dict(doc["properties"]),
        )
    except CorruptBlockError:
        raise
    except Exception as exc:
        raise CorruptBlockError(
            f"catalog checkpoint is malformed: {type(exc).__name__}: {exc}", path=key
        ) from None


def _version_of(key: str) -> int | None:
    try:
        return parse_catalog_checkpoint_key(key)
    except InvalidNameError:
        return None  # a stray object under the prefix is not a checkpoint


def list_checkpoints(storage: Storage) -> list[int]:
    """Versions of every checkpoint object, ascending (one LIST request)."""
    out = [_version_of(o.key) for o in storage.list(CATALOG_CHECKPOINT_PREFIX)]
    return sorted(v for v in out if v is not None)


def read_last_checkpoint(storage: Storage) -> int | None:
    """The version ``_last_checkpoint`` points at, or None if it is missing or unreadable (it is a hint)."""
    return _read_pointer(storage, CATALOG_LAST_CHECKPOINT)


def read_log_floor(storage: Storage) -> int:
    """The log floor: entries below it may have been expired (0 when the log was never expired).

    Unlike the checkpoint hint, an unreadable floor is corruption (CorruptBlockError): commits rely on it.
    """
    try:
        data = storage.read_bytes(CATALOG_LOG_FLOOR)
    except NotFoundError:
        return 0
    try:
        doc = json.loads(data)
        version = doc["version"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        version = None
    else:
        check_format_version(doc, CATALOG_LOG_FLOOR)
    if not isinstance(version, int) or version < 0:
        raise CorruptBlockError("the log floor has no valid version", path=CATALOG_LOG_FLOOR)
    return version


def write_log_floor(storage: Storage, version: int) -> None:
    """Raise the log floor to ``version`` (never lowers it as far as this writer can see)."""
    if read_log_floor(storage) < version:
        doc = {"format_version": FORMAT_VERSION, "version": version}
        storage.write_bytes(CATALOG_LOG_FLOOR, json.dumps(doc).encode())


def _read_pointer(storage: Storage, key: str) -> int | None:
    try:
        doc = json.loads(storage.read_bytes(key))
        version = doc["version"]
        return version if isinstance(version, int) and version >= 0 else None
    except NotFoundError:
        return None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def load_checkpoint(storage: Storage, version: int) -> Snapshot:
    """Read and decode the checkpoint of ``version``; NotFoundError if absent."""
    key = catalog_checkpoint_key(version)
    snap = decode_checkpoint(storage.read_bytes(key), key)
    if snap.version != version:
        raise CorruptBlockError(f"checkpoint holds version {snap.version}, expected {version}", path=key)
    return snap


def write_checkpoint(storage: Storage, snap: Snapshot) -> None:
    """Write the checkpoint of ``snap`` and then move ``_last_checkpoint`` to it (never backwards if seen)."""
    storage.write_bytes(catalog_checkpoint_key(snap.version), encode_checkpoint(snap))
    current = read_last_checkpoint(storage)
    if current is None or current < snap.version:
        pointer = {"format_version": FORMAT_VERSION, "version": snap.version}
        storage.write_bytes(CATALOG_LAST_CHECKPOINT, json.dumps(pointer).encode())

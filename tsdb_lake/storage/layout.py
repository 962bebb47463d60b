"""Every object key of the lake, as pure functions (no I/O). Specified in ``catalog/LAYOUT.md``.

Data files live under Hive-style partitions so that any engine can read a tier directly::

    data/tenant=T/metric=M/tier=raw/hour=2024-01-02T03/part-<file_id>.parquet
    data/tenant=T/metric=M/tier=1m/day=2024-01-02/part-<file_id>.parquet
    data/tenant=T/metric=M/tier=1h/month=2024-01/part-<file_id>.parquet
    data/tenant=T/metric=M/tier=1d/year=2024/part-<file_id>.parquet

The catalog lives under ``_catalog/``: ``log/<version:020d>.json``, ``checkpoints/<version:020d>.json`` and the
``_last_checkpoint`` pointer. Partitions are UTC calendar periods; a partition is named by the period it
covers and its bounds are half-open ``[start_ns, end_ns)``. Timestamps before 1970 work (floor, not truncate).
Partitioning supports timestamps in ``[MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS)`` (1678-01-01 .. 2262-01-01), the
widest range in which every partition of every tier has int64-nanosecond bounds.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
import numpy.typing as npt

from tsdb_lake.errors import InvalidNameError, InvalidTimestampError
from tsdb_lake.model import validate_name

__all__ = [
    "CATALOG_CHECKPOINT_PREFIX",
    "CATALOG_LAST_CHECKPOINT",
    "CATALOG_LOG_FLOOR",
    "CATALOG_LOG_PREFIX",
    "CATALOG_PREFIX",
    "DATA_PREFIX",
    "MAX_TIMESTAMP_NS",
    "MIN_TIMESTAMP_NS",
    "PARTITION_KIND",
    "TEMP_SUFFIX_RE",
    "TIERS",
    "catalog_checkpoint_key",
    "catalog_log_key",
    "data_file_key",
    "is_temp_name",
    "metric_prefix",
    "new_file_id",
    "parse_catalog_checkpoint_key",
    "parse_catalog_log_key",
    "parse_data_file_key",
    "partition_bounds",
    "partition_ids",
    "partition_of",
    "partition_prefix",
    "raw_partition_prefix",
    "temp_name",
    "tenant_prefix",
    "tier_prefix",
    "validate_key",
    "validate_prefix",
    "validate_tier",
]

DATA_PREFIX: Final = "data/"
CATALOG_PREFIX: Final = "_catalog/"
CATALOG_LOG_PREFIX: Final = "_catalog/log/"
CATALOG_CHECKPOINT_PREFIX: Final = "_catalog/checkpoints/"
CATALOG_LAST_CHECKPOINT: Final = "_catalog/_last_checkpoint"
CATALOG_LOG_FLOOR: Final = "_catalog/_log_floor"

#: Storage tiers, finest first, and the calendar period each tier is partitioned by.
TIERS: Final = ("raw", "1m", "1h", "1d")
PARTITION_KIND: Final = {"raw": "hour", "1m": "day", "1h": "month", "1d": "year"}
_NUMPY_UNIT: Final = {"hour": "h", "day": "D", "month": "M", "year": "Y"}

MIN_TIMESTAMP_NS: Final = int(np.datetime64("1678-01-01", "ns").astype(np.int64))
MAX_TIMESTAMP_NS: Final = int(np.datetime64("2262-01-01", "ns").astype(np.int64))

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_VERSION = 10**20 - 1

_PARTITION_RE: Final = {
    "hour": re.compile(r"^hour=([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2})\Z"),
    "day": re.compile(r"^day=([0-9]{4})-([0-9]{2})-([0-9]{2})\Z"),
    "month": re.compile(r"^month=([0-9]{4})-([0-9]{2})\Z"),
    "year": re.compile(r"^year=([0-9]{4})\Z"),
}
_FILE_ID_RE: Final = re.compile(r"^[A-Za-z0-9_\-]{1,64}\Z")
_DATA_KEY_RE: Final = re.compile(
    r"^data/tenant=([^/]+)/metric=([^/]+)/tier=([^/]+)/([^/]+)/part-([^/]+)\.parquet$"
)
_LOG_KEY_RE: Final = re.compile(r"^_catalog/log/([0-9]{20})\.json\Z")
_CHECKPOINT_KEY_RE: Final = re.compile(r"^_catalog/checkpoints/([0-9]{20})\.json\Z")

#: Suffix of the temporary files a backend writes before an atomic rename/link (never a valid key).
TEMP_SUFFIX_RE: Final = re.compile(r"\.tmp-[0-9a-f]{32}\Z")


# --------------------------------------------------------------------------------------------- keys


def validate_key(key: object) -> str:
    """Return ``key`` if it is a well-formed object key, else raise :class:`InvalidNameError`.

    A key is ``/``-separated, relative (no leading ``/``), without empty, ``.`` or ``..`` segments, without
    backslashes or control characters, and its last segment is not a backend temp-file name.
    """
    if not isinstance(key, str) or not key:
        raise InvalidNameError(f"object key must be a non-empty string, got {key!r}")
    if key.startswith("/") or key.endswith("/") or "\\" in key:
        raise InvalidNameError(f"object key {key!r} must be relative, '/'-separated and not end with '/'")
    if any(ord(c) < 0x20 or c == "\x7f" for c in key):
        raise InvalidNameError(f"object key {key!r} contains control characters")
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise InvalidNameError(f"object key {key!r} has an empty, '.' or '..' segment")
    if is_temp_name(segments[-1]):
        raise InvalidNameError(f"object key {key!r} looks like a backend temp file")
    return key


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it may be listed: ``""`` or the start of a valid key (may end with ``/``)."""
    if not isinstance(prefix, str):
        raise InvalidNameError(f"listing prefix must be a string, got {type(prefix).__name__}")
    if prefix.startswith("/") or "\\" in prefix or any(ord(c) < 0x20 or c == "\x7f" for c in prefix):
        raise InvalidNameError(f"listing prefix {prefix!r} must be relative, '/'-separated, printable")
    *complete, last = prefix.split("/")  # the last segment may be partial, e.g. "_catalog/log/0000"
    if any(s in ("", ".", "..") for s in complete) or last in (".", ".."):
        raise InvalidNameError(f"listing prefix {prefix!r} has an empty, '.' or '..' segment")
    return prefix


def is_temp_name(name: str) -> bool:
    """Whether a file name (last key segment) is a backend temp file (``.<name>.tmp-<32 hex>``)."""
    return TEMP_SUFFIX_RE.search(name) is not None


def temp_name(name: str) -> str:
    """A fresh temp-file name for ``name`` in the same directory: hidden (leading ``.``) and recognisable."""
    return f".{name}.tmp-{uuid.uuid4().hex}"


def new_file_id() -> str:
    """A fresh data-file id (32 lowercase hex digits of a random UUID)."""
    return uuid.uuid4().hex


def validate_tier(tier: object) -> str:
    """Return ``tier`` if it is one of :data:`TIERS`, else raise :class:`InvalidNameError`."""
    if not isinstance(tier, str) or tier not in PARTITION_KIND:
        raise InvalidNameError(f"unknown tier {tier!r}; expected one of {', '.join(TIERS)}")
    return tier


def tenant_prefix(tenant: str) -> str:
    """``data/tenant=T/``: every data file of a tenant."""
    # validate_prefix as well: defence in depth against names with control characters
    return validate_prefix(f"{DATA_PREFIX}tenant={validate_name('tenant', tenant)}/")


def metric_prefix(tenant: str, metric: str) -> str:
    """``data/tenant=T/metric=M/``: every data file of a metric, all tiers."""
    return validate_prefix(f"{tenant_prefix(tenant)}metric={validate_name('metric', metric)}/")


def tier_prefix(tenant: str, metric: str, tier: str) -> str:
    """``data/tenant=T/metric=M/tier=X/``: every data file of one tier of a metric."""
    return f"{metric_prefix(tenant, metric)}tier={validate_tier(tier)}/"


def raw_partition_prefix(tenant: str, metric: str, tier: str = "raw") -> str:
    """The prefix holding all partitions of ``tier`` (raw by default); same as :func:`tier_prefix`."""
    return tier_prefix(tenant, metric, tier)


def partition_prefix(tenant: str, metric: str, tier: str, partition: str) -> str:
    """``data/tenant=T/metric=M/tier=X/<partition>/``: the files of one partition."""
    _check_partition(tier, partition)
    return f"{tier_prefix(tenant, metric, tier)}{partition}/"


def data_file_key(tenant: str, metric: str, tier: str, partition: str, file_id: str) -> str:
    """The key of one data file: ``data/tenant=T/metric=M/tier=X/<partition>/part-<file_id>.parquet``."""
    if not isinstance(file_id, str) or not _FILE_ID_RE.match(file_id):
        raise InvalidNameError(f"file id {file_id!r} must be 1-64 characters of [A-Za-z0-9_-]")
    return validate_key(f"{partition_prefix(tenant, metric, tier, partition)}part-{file_id}.parquet")


def parse_data_file_key(key: str) -> tuple[str, str, str, str, str]:
    """Inverse of :func:`data_file_key`: ``(tenant, metric, tier, partition, file_id)``.

    Raises :class:`InvalidNameError` for anything that is not exactly a data-file key.
    """
    m = _DATA_KEY_RE.match(key) if isinstance(key, str) else None
    if m is None:
        raise InvalidNameError(f"{key!r} is not a data-file key")
    tenant, metric, tier, partition, file_id = m.groups()
    if data_file_key(tenant, metric, tier, partition, file_id) != key:  # validates every part
        raise InvalidNameError(f"{key!r} is not a canonical data-file key")
    return tenant, metric, tier, partition, file_id


def _check_version(version: object) -> int:
    if isinstance(version, bool) or not isinstance(version, int | np.integer):
        raise InvalidNameError(f"catalog version must be an int, got {type(version).__name__}")
    v = int(version)
    if not 0 <= v <= _MAX_VERSION:
        raise InvalidNameError(f"catalog version {v} is outside [0, 10**20)")
    return v


def catalog_log_key(version: int) -> str:
    """The key of catalog log entry ``version``: ``_catalog/log/<version:020d>.json``."""
    return f"{CATALOG_LOG_PREFIX}{_check_version(version):020d}.json"


def catalog_checkpoint_key(version: int) -> str:
    """The key of the checkpoint at ``version``: ``_catalog/checkpoints/<version:020d>.json``."""
    return f"{CATALOG_CHECKPOINT_PREFIX}{_check_version(version):020d}.json"


def parse_catalog_log_key(key: str) -> int:
    """Inverse of :func:`catalog_log_key`; raises :class:`InvalidNameError` for any other key."""
    m = _LOG_KEY_RE.match(key) if isinstance(key, str) else None
    if m is None:
        raise InvalidNameError(f"{key!r} is not a catalog log key")
    return int(m.group(1))


def parse_catalog_checkpoint_key(key: str) -> int:
    """Inverse of :func:`catalog_checkpoint_key`; raises :class:`InvalidNameError` for any other key."""
    m = _CHECKPOINT_KEY_RE.match(key) if isinstance(key, str) else None
    if m is None:
        raise InvalidNameError(f"{key!r} is not a catalog checkpoint key")
    return int(m.group(1))


# ---------------------------------------------------------------------------------------- partitions


def _check_ts(t_ns: object) -> int:
    if isinstance(t_ns, bool) or not isinstance(t_ns, int | np.integer):
        raise InvalidTimestampError(f"timestamp must be int nanoseconds, got {type(t_ns).__name__}")
    t = int(t_ns)
    if not MIN_TIMESTAMP_NS <= t < MAX_TIMESTAMP_NS:
        raise InvalidTimestampError(f"timestamp {t} ns is outside the supported range 1678-01-01..2262-01-01")
    return t


def _to_ns(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _start_of(kind: str, t: int) -> datetime:
    dt = _EPOCH + timedelta(microseconds=t // 1_000)  # floor division: exact for negative t too
    if kind == "hour":
        return dt.replace(minute=0, second=0, microsecond=0)
    if kind == "day":
        return dt.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "month":
        return dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return dt.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _name_of(kind: str, start: datetime) -> str:
    if kind == "hour":
        return f"hour={start.year:04d}-{start.month:02d}-{start.day:02d}T{start.hour:02d}"
    if kind == "day":
        return f"day={start.year:04d}-{start.month:02d}-{start.day:02d}"
    if kind == "month":
        return f"month={start.year:04d}-{start.month:02d}"
    return f"year={start.year:04d}"


def partition_of(tier: str, t_ns: int) -> str:
    """The partition of ``tier`` holding timestamp ``t_ns`` (UTC), e.g. ``hour=2024-01-02T03`` for raw."""
    kind = PARTITION_KIND[validate_tier(tier)]
    return _name_of(kind, _start_of(kind, _check_ts(t_ns)))


def _parse_partition(partition: object) -> tuple[str, datetime]:
    if isinstance(partition, str):
        for kind, rx in _PARTITION_RE.items():
            m = rx.match(partition)
            if m is None:
                continue
            parts = [int(g) for g in m.groups()]
            y, mo, d, h = (*parts, *(0, 1, 1, 0)[len(parts) :])  # year, month, day, hour
            try:
                start = datetime(y, mo, d, h, tzinfo=UTC)
            except ValueError:
                break
            return kind, start
    raise InvalidNameError(
        f"{partition!r} is not a partition name (hour=YYYY-MM-DDTHH, day=YYYY-MM-DD, month=YYYY-MM, year=YYYY)"
    )


def _end_of(kind: str, start: datetime) -> datetime:
    if kind == "hour":
        return start + timedelta(hours=1)
    if kind == "day":
        return start + timedelta(days=1)
    if kind == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start.replace(year=start.year + 1)


def _check_partition(tier: str, partition: str) -> str:
    kind, start = _parse_partition(partition)
    if kind != PARTITION_KIND[validate_tier(tier)]:
        raise InvalidNameError(f"partition {partition!r} does not belong to tier {tier!r}")
    if _name_of(kind, start) != partition:
        raise InvalidNameError(f"partition {partition!r} is not canonical")
    return partition


def partition_bounds(partition: str) -> tuple[int, int]:
    """The half-open time range ``[start_ns, end_ns)`` covered by a partition name (any tier's kind)."""
    kind, start = _parse_partition(partition)
    if _name_of(kind, start) != partition:
        raise InvalidNameError(f"partition {partition!r} is not canonical")
    return _to_ns(start), _to_ns(_end_of(kind, start))


def partition_ids(tier: str, t_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Vectorised :func:`partition_of` for grouping: the start (ns) of each timestamp's partition.

    ``partition_of(tier, ids[i]) == partition_of(tier, t_ns[i])``; raises :class:`InvalidTimestampError` if any
    timestamp is outside ``[MIN_TIMESTAMP_NS, MAX_TIMESTAMP_NS)``.
    """
    kind = PARTITION_KIND[validate_tier(tier)]
    arr = np.asarray(t_ns)
    if arr.dtype.kind not in "iu":
        raise InvalidTimestampError(f"timestamps must be an integer array, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (int(arr.min()) < MIN_TIMESTAMP_NS or int(arr.max()) >= MAX_TIMESTAMP_NS):
        raise InvalidTimestampError("timestamps outside the supported range 1678-01-01..2262-01-01")
    if kind == "hour":
        step = 3_600_000_000_000
        return (arr // step) * step
    if kind == "day":
        step = 86_400_000_000_000
        return (arr // step) * step
    unit = _NUMPY_UNIT[kind]  # numpy casts ns -> M / Y with floor semantics, negative values included
    floored = arr.view("datetime64[ns]").astype(f"datetime64[{unit}]").astype("datetime64[ns]")
    return floored.view(np.int64)

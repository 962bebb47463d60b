"""Catalog actions and log entries: the typed, JSON-serialisable vocabulary of the manifest log.

An :class:`Entry` is one numbered commit: metadata plus an ordered list of actions. Every action is a frozen
dataclass with ``to_json`` / ``from_json``; ``action_from_json`` dispatches on the ``"type"`` key. The JSON
layout is specified in ``catalog/CATALOG.md`` and ``catalog/manifest.schema.json``.

Number encoding: every JSON integer fits in a signed 64-bit integer and readers must parse it as one
(nanosecond timestamps exceed 2**53). Unsigned 64-bit series ids are written as decimal *strings*. Float
statistics that are not finite are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias

from tsdb_lake.catalog.document import dump_document, load_document
from tsdb_lake.catalog.schema import MetricSchema
from tsdb_lake.errors import CorruptBlockError, InvalidNameError, InvalidTimestampError
from tsdb_lake.model import validate_name
from tsdb_lake.storage import layout

__all__ = [
    "DEFAULT_TIERS",
    "FORMAT_VERSION",
    "MAX_LABEL_VALUES",
    "Action",
    "AddFile",
    "ClearDirty",
    "DataFile",
    "Entry",
    "FieldStats",
    "Lineage",
    "MarkDirty",
    "PartitionKind",
    "PropertyValue",
    "RemoveFile",
    "RemoveRetention",
    "SetProperty",
    "SetRetention",
    "SetSchema",
    "SetTiers",
    "SetWatermark",
    "SourceRange",
    "TierSpec",
    "WriterProgress",
    "action_from_json",
    "decode_entry",
    "encode_entry",
    "validate_key",
]

#: Version of the catalog JSON written by this code; carried by every entry, checkpoint and data file record.
FORMAT_VERSION = 1
#: A file's ``label_values`` omits a label key with more distinct values than this.
MAX_LABEL_VALUES = 256
RAW_TIER = "raw"

PartitionKind = Literal["hour", "day", "month", "year"]
PropertyValue: TypeAlias = str | int | float | bool | None
_TIER_RE = re.compile(r"^[a-z0-9]{1,16}$")
_OPERATION_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def validate_key(path: object) -> str:
    """Return ``path`` if it is a valid object key for a data file (not under ``_catalog/``)."""
    key = layout.validate_key(path)
    if key.startswith(layout.CATALOG_PREFIX):
        raise InvalidNameError(f"data file path {key!r} is inside the catalog")
    return key


def validate_tier(tier: object) -> str:
    """Return ``tier`` if it is a valid tier name (``raw``, ``1m``, ``1h``, ``1d`` ...)."""
    if not isinstance(tier, str) or not _TIER_RE.match(tier):
        raise InvalidNameError(f"tier name must be 1-16 lowercase letters or digits, got {tier!r}")
    return tier


def _opt_name(kind: Literal["tenant", "metric"], name: str | None) -> str | None:
    return None if name is None else validate_name(kind, name)


def _float_to_json(x: float | int | None) -> float | int | str | None:
    if isinstance(x, float) and not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    return x


def _float_from_json(x: Any) -> float | int | None:
    if isinstance(x, str):
        return float(x.replace("Infinity", "inf"))
    if x is None or isinstance(x, (int, float)):
        return x
    raise TypeError(f"expected a number, got {x!r}")


# --------------------------------------------------------------------------------------------- file records


@dataclass(frozen=True, slots=True)
class FieldStats:
    """Statistics of one field over a file: min / max of the non-NaN values (None if none), counts."""

    min: float | int | None
    max: float | int | None
    count: int
    nan_count: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"min": _float_to_json(self.min), "max": _float_to_json(self.max)}
        out["count"] = self.count
        if self.nan_count:
            out["nan_count"] = self.nan_count
        return out

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> FieldStats:
        return FieldStats(
            _float_from_json(obj["min"]),
            _float_from_json(obj["max"]),
            int(obj["count"]),
            int(obj.get("nan_count", 0)),
        )


@dataclass(frozen=True, slots=True)
class SourceRange:
    """Lineage reference to a time range of a tier (used when listing every source file would be too long)."""

    tier: str
    start_ns: int
    end_ns: int

    def to_json(self) -> dict[str, Any]:
        return {"tier": self.tier, "start_ns": self.start_ns, "end_ns": self.end_ns}


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a compacted or rolled-up file came from: the snapshot it was built from and its inputs."""

    source_version: int
    paths: tuple[str, ...] = ()
    ranges: tuple[SourceRange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source_version": self.source_version, "paths": list(self.paths)}
        if self.ranges:
            out["ranges"] = [r.to_json() for r in self.ranges]
        return out

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> Lineage:
        return Lineage(
            int(obj["source_version"]),
            tuple(obj["paths"]),
            tuple(
                SourceRange(r["tier"], int(r["start_ns"]), int(r["end_ns"])) for r in obj.get("ranges", ())
            ),
        )


@dataclass(frozen=True, slots=True)
class DataFile:
    """The catalog's record of one data file: identity, partition, bounds and statistics for pruning.

    ``min_time`` / ``max_time`` are inclusive nanosecond bounds of the points; ``rows`` counts Parquet rows
    (chunks for raw files, buckets for rollups); ``label_values`` maps a label key to its sorted distinct
    values — a key absent from the mapping is not tracked (too many values), an empty list means no series
    in the file has that label. ``series_min`` / ``series_max`` are unsigned 64-bit series ids.
    """

    path: str
    tenant: str
    metric: str
    tier: str
    partition: str
    min_time: int
    max_time: int
    rows: int
    points: int
    series: int
    bytes: int
    created_ms: int
    writer: str | None = None
    format_version: int = FORMAT_VERSION
    field_stats: Mapping[str, FieldStats] = field(default_factory=dict)
    label_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    series_min: int | None = None
    series_max: int | None = None
    lineage: Lineage | None = None
    codecs: Mapping[str, Any] = field(default_factory=dict)
    #: Data sequence number: the catalog version whose commit first made this data live. Newer data wins
    #: when files overlap. ``None`` in an AddFile means "the version of this commit" (filled on apply);
    #: compaction outputs carry the largest ``seq`` of their inputs.
    seq: int | None = None

    def validate(self) -> DataFile:
        """Check names, key and bounds; returns ``self``. Raises InvalidNameError / InvalidTimestampError."""
        validate_key(self.path)
        validate_name("tenant", self.tenant)
        validate_name("metric", self.metric)
        validate_tier(self.tier)
        if self.min_time > self.max_time:
            raise InvalidTimestampError(f"data file {self.path!r} has min_time > max_time")
        for sid in (self.series_min, self.series_max):
            if sid is not None and not 0 <= sid < 2**64:
                raise InvalidNameError(
                    f"data file {self.path!r} series id {sid} is not an unsigned 64-bit int"
                )
        return self

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "tenant": self.tenant,
            "metric": self.metric,
            "tier": self.tier,
            "partition": self.partition,
            "min_time": self.min_time,
            "max_time": self.max_time,
            "rows": self.rows,
            "points": self.points,
            "series": self.series,
            "bytes": self.bytes,
            "format_version": self.format_version,
            "created_ms": self.created_ms,
            "writer": self.writer,
            "field_stats": {k: v.to_json() for k, v in self.field_stats.items()},
            "label_values": {k: list(v) for k, v in self.label_values.items()},
            "series_min": None if self.series_min is None else str(self.series_min),
            "series_max": None if self.series_max is None else str(self.series_max),
            "codecs": dict(self.codecs),
        }
        if self.lineage is not None:
            out["lineage"] = self.lineage.to_json()
        if self.seq is not None:
            out["seq"] = self.seq
        return out

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> DataFile:
        smin, smax, lin = obj.get("series_min"), obj.get("series_max"), obj.get("lineage")
        return DataFile(
            path=obj["path"],
            tenant=obj["tenant"],
            metric=obj["metric"],
            tier=obj["tier"],
            partition=obj["partition"],
            min_time=int(obj["min_time"]),
            max_time=int(obj["max_time"]),
            rows=int(obj["rows"]),
            points=int(obj["points"]),
            series=int(obj["series"]),
            bytes=int(obj["bytes"]),
            format_version=int(obj["format_version"]),
            created_ms=int(obj["created_ms"]),
            writer=obj.get("writer"),
            field_stats={k: FieldStats.from_json(v) for k, v in obj.get("field_stats", {}).items()},
            label_values={k: tuple(v) for k, v in obj.get("label_values", {}).items()},
            series_min=None if smin is None else int(smin),
            series_max=None if smax is None else int(smax),
            lineage=None if lin is None else Lineage.from_json(lin),
            codecs=dict(obj.get("codecs", {})),
            seq=None if obj.get("seq") is None else int(obj["seq"]),
        )

    @staticmethod
    def summarise_labels(values: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
        """``label_values`` from raw distinct values: sorted, keys with > MAX_LABEL_VALUES values dropped."""
        return {k: tuple(sorted(set(v))) for k, v in values.items() if len(set(v)) <= MAX_LABEL_VALUES}


@dataclass(frozen=True, slots=True)
class TierSpec:
    """One rollup tier: its name (``1m``), bucket width in ns, partition granularity and KLL sketches on/off."""

    name: str
    bucket_ns: int
    partition: PartitionKind
    sketches: bool = True

    def __post_init__(self) -> None:
        validate_tier(self.name)
        if (
            self.name == RAW_TIER
            or self.bucket_ns <= 0
            or self.partition not in ("hour", "day", "month", "year")
        ):
            raise InvalidNameError(f"invalid tier spec {self!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bucket_ns": self.bucket_ns,
            "partition": self.partition,
            "sketches": self.sketches,
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> TierSpec:
        return TierSpec(obj["name"], int(obj["bucket_ns"]), obj["partition"], bool(obj["sketches"]))


_MIN_NS = 60 * 1_000_000_000
#: Tiers of a new lake: 1m buckets in day partitions (no sketches: a 1m bucket holds a handful of values),
#: 1h in month partitions and 1d in year partitions, both with KLL sketches.
DEFAULT_TIERS: tuple[TierSpec, ...] = (
    TierSpec("1m", _MIN_NS, "day", sketches=False),
    TierSpec("1h", 60 * _MIN_NS, "month", sketches=True),
    TierSpec("1d", 24 * 60 * _MIN_NS, "year", sketches=True),
)


# --------------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class AddFile:
    """Make a data file part of the lake."""

    TYPE: ClassVar[str] = "add_file"
    file: DataFile

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "file": self.file.to_json()}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> AddFile:
        return AddFile(DataFile.from_json(obj["file"]))


@dataclass(frozen=True, slots=True)
class RemoveFile:
    """Drop a data file from the lake (compacted away, expired...). The object is deleted later by vacuum."""

    TYPE: ClassVar[str] = "remove_file"
    path: str
    reason: str = "compact"

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "path": self.path, "reason": self.reason}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> RemoveFile:
        return RemoveFile(obj["path"], obj["reason"])


@dataclass(frozen=True, slots=True)
class SetSchema:
    """Evolve a metric's schema additively; with ``set_kinds`` also set the kinds of the listed fields."""

    TYPE: ClassVar[str] = "set_schema"
    tenant: str
    metric: str
    schema: MetricSchema
    set_kinds: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.TYPE,
            "tenant": self.tenant,
            "metric": self.metric,
            "schema": self.schema.to_json(),
        }
        if self.set_kinds:
            out["set_kinds"] = True
        return out

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> SetSchema:
        return SetSchema(
            obj["tenant"],
            obj["metric"],
            MetricSchema.from_json(obj["schema"]),
            bool(obj.get("set_kinds", False)),
        )


@dataclass(frozen=True, slots=True)
class WriterProgress:
    """The highest WAL LSN of ``writer_id`` whose data is now in the lake (replay skips records <= it)."""

    TYPE: ClassVar[str] = "writer_progress"
    writer_id: str
    lsn: int

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "writer_id": self.writer_id, "lsn": self.lsn}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> WriterProgress:
        return WriterProgress(obj["writer_id"], int(obj["lsn"]))


@dataclass(frozen=True, slots=True)
class SetTiers:
    """Set the rollup tiers of a tenant / metric (None = any); the most specific rule wins."""

    TYPE: ClassVar[str] = "set_tiers"
    tenant: str | None
    metric: str | None
    tiers: tuple[TierSpec, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "tenant": self.tenant,
            "metric": self.metric,
            "tiers": [t.to_json() for t in self.tiers],
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> SetTiers:
        return SetTiers(obj["tenant"], obj["metric"], tuple(TierSpec.from_json(t) for t in obj["tiers"]))


@dataclass(frozen=True, slots=True)
class SetRetention:
    """Retention of ``tier`` data of a tenant / metric (None = any): a TTL in ns, or None = keep forever."""

    TYPE: ClassVar[str] = "set_retention"
    tenant: str | None
    metric: str | None
    tier: str
    ttl_ns: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "tenant": self.tenant,
            "metric": self.metric,
            "tier": self.tier,
            "ttl_ns": self.ttl_ns,
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> SetRetention:
        ttl = obj["ttl_ns"]
        return SetRetention(obj["tenant"], obj["metric"], obj["tier"], None if ttl is None else int(ttl))


@dataclass(frozen=True, slots=True)
class RemoveRetention:
    """Delete the retention rule with exactly this scope, so a less specific rule applies again."""

    TYPE: ClassVar[str] = "remove_retention"
    tenant: str | None
    metric: str | None
    tier: str

    def to_json(self) -> dict[str, Any]:
        return {"type": self.TYPE, "tenant": self.tenant, "metric": self.metric, "tier": self.tier}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> RemoveRetention:
        return RemoveRetention(obj["tenant"], obj["metric"], obj["tier"])


@dataclass(frozen=True, slots=True)
class SetWatermark:
    """Rollup coverage: every bucket of ``tier`` before ``watermark_ns`` is built (except dirty ranges)."""

    TYPE: ClassVar[str] = "set_watermark"
    tenant: str
    metric: str
    tier: str
    watermark_ns: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "tenant": self.tenant,
            "metric": self.metric,
            "tier": self.tier,
            "watermark_ns": self.watermark_ns,
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> SetWatermark:
        return SetWatermark(obj["tenant"], obj["metric"], obj["tier"], int(obj["watermark_ns"]))


@dataclass(frozen=True, slots=True)
class MarkDirty:
    """Late data landed in ``[start_ns, end_ns)`` of an already rolled-up ``tier``: rebuild those buckets."""

    TYPE: ClassVar[str] = "mark_dirty"
    tenant: str
    metric: str
    tier: str
    start_ns: int
    end_ns: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "tenant": self.tenant,
            "metric": self.metric,
            "tier": self.tier,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> MarkDirty:
        return MarkDirty(obj["tenant"], obj["metric"], obj["tier"], int(obj["start_ns"]), int(obj["end_ns"]))


@dataclass(frozen=True, slots=True)
class ClearDirty:
    """``[start_ns, end_ns)`` of ``tier`` was rebuilt from the entry's base snapshot.

    Clears only dirtiness marked at or before the entry's ``base_version``: late data marked while the
    rebuild ran stays dirty.
    """

    TYPE: ClassVar[str] = "clear_dirty"
    tenant: str
    metric: str
    tier: str
    start_ns: int
    end_ns: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "tenant": self.tenant,
            "metric": self.metric,
            "tier": self.tier,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> ClearDirty:
        return ClearDirty(obj["tenant"], obj["metric"], obj["tier"], int(obj["start_ns"]), int(obj["end_ns"]))


@dataclass(frozen=True, slots=True)
class SetProperty:
    """A lake-level setting; ``value`` None deletes the key."""

    TYPE: ClassVar[str] = "set_property"
    key: str
    value: PropertyValue

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "key": self.key,
            "value": _float_to_json(self.value) if isinstance(self.value, float) else self.value,
        }

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> SetProperty:
        return SetProperty(obj["key"], obj["value"])


Action: TypeAlias = (
    AddFile
    | RemoveFile
    | SetSchema
    | WriterProgress
    | SetTiers
    | SetRetention
    | RemoveRetention
    | SetWatermark
    | MarkDirty
    | ClearDirty
    | SetProperty
)

_DECODERS: dict[str, Any] = {
    cls.TYPE: cls.from_json
    for cls in (
        AddFile,
        RemoveFile,
        SetSchema,
        WriterProgress,
        SetTiers,
        SetRetention,
        RemoveRetention,
        SetWatermark,
        MarkDirty,
        ClearDirty,
        SetProperty,
    )
}


def action_from_json(obj: Mapping[str, Any]) -> Action:
    """Decode one action by its ``"type"``; unknown types raise KeyError (callers turn it into corruption)."""
    result: Action = _DECODERS[obj["type"]](obj)
    return result


def validate_action(action: Action) -> None:
    """Check the names and values of an action before it is committed; raises InvalidNameError."""
    if isinstance(action, AddFile):
        action.file.validate()
    elif isinstance(action, RemoveFile):
        validate_key(action.path)
        if not isinstance(action.reason, str) or not action.reason:
            raise InvalidNameError("remove_file needs a non-empty reason")
    elif isinstance(action, SetSchema):
        validate_name("tenant", action.tenant)
        validate_name("metric", action.metric)
    elif isinstance(action, WriterProgress):
        if not isinstance(action.writer_id, str) or not action.writer_id or action.lsn < 0:
            raise InvalidNameError(f"invalid writer progress {action!r}")
    elif isinstance(action, SetTiers):
        _opt_name("tenant", action.tenant)
        _opt_name("metric", action.metric)
        names = [t.name for t in action.tiers]
        if len(set(names)) != len(names):
            raise InvalidNameError(f"duplicate tier names in {names}")
    elif isinstance(action, (SetRetention, RemoveRetention)):
        _opt_name("tenant", action.tenant)
        _opt_name("metric", action.metric)
        validate_tier(action.tier)
        if isinstance(action, SetRetention) and action.ttl_ns is not None and action.ttl_ns <= 0:
            raise InvalidNameError(f"retention ttl must be positive or None, got {action.ttl_ns}")
    elif isinstance(action, (SetWatermark, MarkDirty, ClearDirty)):
        validate_name("tenant", action.tenant)
        validate_name("metric", action.metric)
        validate_tier(action.tier)
        if isinstance(action, (MarkDirty, ClearDirty)) and action.start_ns >= action.end_ns:
            raise InvalidNameError(f"dirty range must have start < end: {action!r}")
    elif isinstance(action, SetProperty):
        if not isinstance(action.key, str) or not _PROPERTY_RE.match(action.key):
            raise InvalidNameError(f"property key {action.key!r} is invalid")
        if action.value is not None and not isinstance(action.value, (str, int, float, bool)):
            raise InvalidNameError(f"property value must be a JSON scalar, got {action.value!r}")
    else:  # pragma: no cover - the Action union is closed
        raise InvalidNameError(f"unknown action {action!r}")


_PROPERTY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,127}$")


# ---------------------------------------------------------------------------------------------------- entries


@dataclass(frozen=True, slots=True)
class Entry:
    """One committed log entry (``_catalog/log/{version:020d}.json``).

    ``base_version`` is the version of the snapshot the committer read (None for the create entry); an
    entry rebased over concurrent commits has ``version > base_version + 1``. ``reads`` lists data paths the
    commit depended on (must still be live when it lands); ``commit_id`` is a random id the committer uses to
    recognise its own entry after an ambiguous write failure.
    """

    version: int
    timestamp_ms: int
    operation: str
    actions: tuple[Action, ...]
    base_version: int | None = None
    writer: str | None = None
    reads: tuple[str, ...] = ()
    commit_id: str | None = None
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "version": self.version,
            "timestamp_ms": self.timestamp_ms,
            "operation": self.operation,
            "writer": self.writer,
            "base_version": self.base_version,
        }
        if self.commit_id is not None:
            out["commit_id"] = self.commit_id
        if self.reads:
            out["reads"] = list(self.reads)
        out["actions"] = [a.to_json() for a in self.actions]
        return out


def validate_operation(operation: object) -> str:
    """Return ``operation`` if it is a valid operation name (lowercase identifier)."""
    if not isinstance(operation, str) or not _OPERATION_RE.match(operation):
        raise InvalidNameError(f"operation must be a lowercase identifier, got {operation!r}")
    return operation


def encode_entry(entry: Entry) -> bytes:
    """Stored bytes of an entry: compact JSON, gzip-framed when large (see ``catalog.document``)."""
    return dump_document(entry.to_json())


def check_format_version(obj: Mapping[str, Any], key: str) -> None:
    """Raise CorruptBlockError if a document's format_version is missing or newer than this reader."""
    fv = obj.get("format_version")
    if not isinstance(fv, int) or fv < 1:
        raise CorruptBlockError("catalog object has no valid format_version", path=key)
    if fv > FORMAT_VERSION:
        raise CorruptBlockError(
            f"catalog format_version {fv} is newer than this reader supports ({FORMAT_VERSION}); "
            "upgrade tsdb-lake",
            path=key,
        )


def decode_entry(data: bytes, key: str) -> Entry:
    """Parse an entry; any malformed content raises :class:`CorruptBlockError` naming ``key``."""
    obj = load_document(data, key, "entry")
    if not isinstance(obj, dict):
        raise CorruptBlockError("catalog entry is not a JSON object", path=key)
    check_format_version(obj, key)
    try:
        base = obj["base_version"]
        return Entry(
            version=int(obj["version"]),
            timestamp_ms=int(obj["timestamp_ms"]),
            operation=str(obj["operation"]),
            actions=tuple(action_from_json(a) for a in obj["actions"]),
            base_version=None if base is None else int(base),
            writer=obj.get("writer"),
            reads=tuple(obj.get("reads", ())),
            commit_id=obj.get("commit_id"),
            format_version=int(obj["format_version"]),
        )
    except CorruptBlockError:
        raise
    except Exception as exc:  # malformed structure of any kind is corruption of this object
        raise CorruptBlockError(
            f"catalog entry is malformed: {type(exc).__name__}: {exc}", path=key
        ) from None

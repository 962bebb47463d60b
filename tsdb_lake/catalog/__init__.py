"""The manifest catalog: an append-only log of JSON entries under ``_catalog/`` with checkpoints.

It records which data files make up the lake (with the statistics readers prune by), per-metric schemas,
writer progress, rollup tiers, retention rules, rollup watermarks and dirty ranges. Commits use
``put_if_absent`` with optimistic concurrency; readers pin immutable :class:`Snapshot` objects and may time
travel. The catalog never opens data files. The protocol is specified in ``catalog/CATALOG.md``.
"""

from tsdb_lake.catalog.actions import (
    DEFAULT_TIERS,
    FORMAT_VERSION,
    MAX_LABEL_VALUES,
    Action,
    AddFile,
    ClearDirty,
    DataFile,
    Entry,
    FieldStats,
    Lineage,
    MarkDirty,
    RemoveFile,
    RemoveRetention,
    SetProperty,
    SetRetention,
    SetSchema,
    SetTiers,
    SetWatermark,
    SourceRange,
    TierSpec,
    WriterProgress,
    decode_entry,
    encode_entry,
)
from tsdb_lake.catalog.checkpoint import decode_checkpoint, encode_checkpoint
from tsdb_lake.catalog.document import dump_document, load_document
from tsdb_lake.catalog.log import (
    DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_LOG_RETENTION_MS,
    MIN_LOG_RETENTION_MS,
    Catalog,
    EntryInfo,
    LogExpiry,
    Validator,
)
from tsdb_lake.catalog.schema import FieldSpec, MetricSchema, evolve
from tsdb_lake.catalog.snapshot import DirtyRange, Snapshot

__all__ = [
    "DEFAULT_CHECKPOINT_INTERVAL",
    "DEFAULT_LOG_RETENTION_MS",
    "DEFAULT_TIERS",
    "FORMAT_VERSION",
    "MAX_LABEL_VALUES",
    "MIN_LOG_RETENTION_MS",
    "Action",
    "AddFile",
    "Catalog",
    "ClearDirty",
    "DataFile",
    "DirtyRange",
    "Entry",
    "EntryInfo",
    "FieldSpec",
    "FieldStats",
    "Lineage",
    "LogExpiry",
    "MarkDirty",
    "MetricSchema",
    "RemoveFile",
    "RemoveRetention",
    "SetProperty",
    "SetRetention",
    "SetSchema",
    "SetTiers",
    "SetWatermark",
    "Snapshot",
    "SourceRange",
    "TierSpec",
    "Validator",
    "WriterProgress",
    "decode_checkpoint",
    "decode_entry",
    "dump_document",
    "encode_checkpoint",
    "encode_entry",
    "evolve",
    "load_document",
]

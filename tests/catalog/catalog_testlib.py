"""Helpers shared by the catalog tests: data-file records, JSON Schema checks, a read-counting storage."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow.fs as pafs

from tsdb_lake.catalog import DataFile, FieldStats, load_document
from tsdb_lake.storage.base import ObjectInfo, Storage
from tsdb_lake.storage.layout import data_file_key, partition_of

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "catalog" / "manifest.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
HOUR = 3_600_000_000_000
T0 = 1_700_000_000_000_000_000


def _validator(defn: str) -> jsonschema.Draft202012Validator:
    doc = {k: v for k, v in SCHEMA.items() if k != "oneOf"}
    doc["$ref"] = f"#/$defs/{defn}"
    return jsonschema.Draft202012Validator(doc)


ENTRY = _validator("entry")
CHECKPOINT = _validator("checkpoint")
LAST_CHECKPOINT = _validator("last_checkpoint")
LOG_FLOOR = _validator("log_floor")
ANY = jsonschema.Draft202012Validator(SCHEMA)


def assert_catalog_valid(storage: Storage) -> int:
    """Validate every object under ``_catalog/`` against the manifest JSON Schema; returns how many."""
    n = 0
    for info in storage.list("_catalog/"):
        doc = load_document(storage.read_bytes(info.key), info.key, "object")
        if info.key.startswith("_catalog/log/"):
            ENTRY.validate(doc)
        elif info.key.startswith("_catalog/checkpoints/"):
            CHECKPOINT.validate(doc)
        elif info.key == "_catalog/_last_checkpoint":
            LAST_CHECKPOINT.validate(doc)
        elif info.key == "_catalog/_log_floor":
            LOG_FLOOR.validate(doc)
        else:
            raise AssertionError(f"unexpected catalog object {info.key}")
        ANY.validate(doc)
        n += 1
    return n


def make_file(
    tenant: str = "acme",
    metric: str = "cpu",
    tier: str = "raw",
    start: int = T0,
    span: int = HOUR // 2,
    labels: Mapping[str, Iterable[str]] | None = None,
    writer: str | None = None,
    points: int = 100,
) -> DataFile:
    """A plausible record of a raw data file starting at ``start``."""
    partition = partition_of(tier, start)
    path = data_file_key(tenant, metric, tier, partition, uuid.uuid4().hex)
    return DataFile(
        path=path,
        tenant=tenant,
        metric=metric,
        tier=tier,
        partition=partition,
        min_time=start,
        max_time=start + span,
        rows=3,
        points=points,
        series=2,
        bytes=1000 + points,
        created_ms=1_700_000_000_000,
        writer=writer,
        field_stats={"usage": FieldStats(0.0, 99.5, points, 1)},
        label_values=DataFile.summarise_labels(labels or {"host": ["a", "b"]}),
        series_min=2**63 + 12345,
        series_max=2**64 - 1,
        codecs={"gorilla": 3},
    )


class CountingStorage(Storage):
    """Delegates to another storage and counts calls (to prove how few objects an operation reads)."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.reads: list[str] = []
        self.lists: list[str] = []

    def read_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return self.inner.read_bytes(key)

    def write_bytes(self, key: str, data: bytes) -> None:
        self.inner.write_bytes(key, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self.inner.put_if_absent(key, data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str) -> list[ObjectInfo]:
        self.lists.append(prefix)
        return self.inner.list(prefix)

    def delete(self, keys: Iterable[str]) -> None:
        self.inner.delete(keys)

    def arrow_fs(self) -> pafs.FileSystem:
        return self.inner.arrow_fs()

    def arrow_path(self, key: str) -> str:
        return self.inner.arrow_path(key)

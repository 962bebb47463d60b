"""``lake.verify()``: check the catalog against the storage and report problems; it never changes anything.

Checks, each producing :class:`Finding` records:

* **catalog** — every object under ``_catalog/`` parses with the library's own decoder; log entries,
  checkpoints and ``_last_checkpoint`` validate against ``catalog/manifest.schema.json`` (when ``jsonschema``
  is importable and the schema file is found — otherwise a note says the check was skipped); the log has no
  gaps; ``_last_checkpoint`` points at a checkpoint that exists.
* **missing** — a live data file of the latest snapshot is not in storage; **size** — its size differs from
  the catalog's ``bytes``.
* **footer** — every live data file's Parquet footer is readable and carries the expected
  ``tsdb_lake.*`` metadata (kind, format version, tier), row count and columns (raw chunk columns, or rollup
  columns), with labels / fields that the metric's catalog schema knows. ``deep=True`` also reads every
  page (decompression catches corrupt bytes; Parquet files carry no whole-file checksum).
* **orphan** (warning) — an object under ``data/`` no catalog entry ever referenced (a crashed writer or a
  lost commit race); **unreferenced** (note) — a file removed from the catalog that vacuum has not deleted
  yet; **stray** (warning) — an object under ``data/`` that is not a data-file key.

Errors make :attr:`VerifyReport.ok` false; warnings only with ``strict``. Vacuum removes orphans.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsdb_lake.catalog import (
    AddFile,
    DataFile,
    MetricSchema,
    decode_checkpoint,
    decode_entry,
    load_document,
)
from tsdb_lake.errors import TsdbLakeError
from tsdb_lake.storage.layout import (
    CATALOG_CHECKPOINT_PREFIX,
    CATALOG_LAST_CHECKPOINT,
    CATALOG_LOG_FLOOR,
    CATALOG_LOG_PREFIX,
    CATALOG_PREFIX,
    DATA_PREFIX,
    is_temp_name,
    parse_catalog_checkpoint_key,
    parse_catalog_log_key,
    parse_data_file_key,
)

if TYPE_CHECKING:
    from tsdb_lake.lake import Lake
    from tsdb_lake.storage.base import ObjectInfo, Storage

__all__ = ["Finding", "VerifyReport", "manifest_schema_path", "verify_lake"]

ERROR, WARNING, NOTE = "error", "warning", "note"
_RAW_COLUMNS = ("_series_id", "_t_min", "_t_max", "_count", "_time")
_ROLLUP_COLUMNS = ("_series_id", "time")


@dataclass(frozen=True, slots=True)
class Finding:
    """One observation: ``severity`` error / warning / note, the ``check`` that made it, the key, a detail."""

    severity: str
    check: str
    key: str | None
    detail: str

    def text(self) -> str:
        """One line for a terminal."""
        where = f" {self.key}" if self.key else ""
        return f"{self.severity:<7} {self.check:<12}{where}: {self.detail}"


@dataclass
class VerifyReport:
    """What :func:`verify_lake` checked and found."""

    lake: str
    version: int
    strict: bool = False
    data_files: int = 0
    objects_listed: int = 0
    catalog_objects: int = 0
    footers_checked: int = 0
    deep: bool = False
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: str, check: str, key: str | None, detail: str) -> None:
        """Record a finding."""
        self.findings.append(Finding(severity, check, key, detail))

    @property
    def problems(self) -> list[Finding]:
        """Findings that fail the verification: errors, and warnings too when ``strict``."""
        bad = (ERROR, WARNING) if self.strict else (ERROR,)
        return [f for f in self.findings if f.severity in bad]

    @property
    def ok(self) -> bool:
        """True when there is no problem."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "lake": self.lake,
            "version": self.version,
            "ok": self.ok,
            "strict": self.strict,
            "deep": self.deep,
            "data_files": self.data_files,
            "objects_listed": self.objects_listed,
            "catalog_objects": self.catalog_objects,
            "footers_checked": self.footers_checked,
            "problems": len(self.problems),
            "findings": [
                {"severity": f.severity, "check": f.check, "key": f.key, "detail": f.detail}
                for f in self.findings
            ],
        }

    def text(self, limit: int = 50) -> str:
        """A terminal summary: counts, then up to ``limit`` findings (errors first)."""
        order = {ERROR: 0, WARNING: 1, NOTE: 2}
        found = sorted(self.findings, key=lambda f: order.get(f.severity, 3))
        head = (
            f"verify {self.lake} at catalog version {self.version}: {self.data_files} live data files, "
            f"{self.objects_listed} objects under data/, {self.catalog_objects} catalog objects, "
            f"{self.footers_checked} footers{' (deep read)' if self.deep else ''} checked"
        )
        lines = [head]
        for f in found[:limit]:
            lines.append("  " + f.text())
        if len(found) > limit:
            lines.append(f"  ... {len(found) - limit} more (use --json for all)")
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in (ERROR, WARNING, NOTE)}
        verdict = "OK" if self.ok else f"{len(self.problems)} PROBLEM(S)"
        lines.append(
            f"{verdict}: {counts[ERROR]} error(s), {counts[WARNING]} warning(s), {counts[NOTE]} note(s)"
        )
        return "\n".join(lines)


def manifest_schema_path() -> Path | None:
    """``catalog/manifest.schema.json`` of a source checkout, or None when it is not beside the package."""
    path = Path(__file__).resolve().parent.parent / "catalog" / "manifest.schema.json"
    return path if path.is_file() else None


def _validators(report: VerifyReport) -> dict[str, Any] | None:
    """JSON-Schema validators for entry / checkpoint / last_checkpoint, or None (with a note) if unavailable."""
    path = manifest_schema_path()
    if path is None:
        report.add(
            NOTE, "catalog", None, "manifest.schema.json not found beside the package: schema check skipped"
        )
        return None
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        report.add(NOTE, "catalog", None, "jsonschema is not installed: JSON-Schema check skipped")
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema.pop("oneOf", None)
    cls = jsonschema.validators.validator_for(schema)
    return {
        kind: cls({**schema, "$ref": f"#/$defs/{kind}"})
        for kind in ("entry", "checkpoint", "last_checkpoint", "log_floor")
    }


def _schema_errors(validator: Any, doc: Any) -> list[str]:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"[:300] for e in errors[:3]]


def _check_catalog(storage: Storage, report: VerifyReport, head_version: int) -> set[str]:
    """Validate every catalog object; returns every data path any entry or checkpoint ever added."""
    validators = _validators(report)
    ever: set[str] = set()
    log_versions: list[int] = []
    checkpoints: list[int] = []
    objects = storage.list(CATALOG_PREFIX)
    report.catalog_objects = len(objects)
    for obj in objects:
        key = obj.key
        if is_temp_name(key.rsplit("/", 1)[-1]):
            continue
        if key.startswith(CATALOG_LOG_PREFIX):
            kind = "entry"
        elif key.startswith(CATALOG_CHECKPOINT_PREFIX):
            kind = "checkpoint"
        elif key == CATALOG_LAST_CHECKPOINT:
            kind = "last_checkpoint"
        elif key == CATALOG_LOG_FLOOR:
            kind = "log_floor"
        else:
            report.add(WARNING, "catalog", key, "unexpected object under _catalog/")
            continue
        try:
            data = storage.read_bytes(key)
            doc = load_document(data, key, kind)
        except TsdbLakeError as exc:
            report.add(ERROR, "catalog", key, f"unreadable JSON: {exc}")
            continue
        if validators is not None:
            for msg in _schema_errors(validators[kind], doc):
                report.add(
                    ERROR, "catalog", key, f"does not match manifest.schema.json #/$defs/{kind}: {msg}"
                )
        try:
            if kind == "entry":
                version = parse_catalog_log_key(key)
                entry = decode_entry(data, key)
                if entry.version != version:
                    report.add(ERROR, "catalog", key, f"entry claims version {entry.version}")
                log_versions.append(version)
                ever.update(a.file.path for a in entry.actions if isinstance(a, AddFile))
            elif kind == "checkpoint":
                checkpoints.append(parse_catalog_checkpoint_key(key))
                ever.update(decode_checkpoint(data, key).by_path)
            elif not isinstance(doc, dict) or not isinstance(doc.get("version"), int):
                report.add(ERROR, "catalog", key, f"{key.rsplit('/', 1)[-1]} has no integer version")
        except TsdbLakeError as exc:
            report.add(ERROR, "catalog", key, f"the library cannot decode it: {exc}")
    if log_versions:
        present = set(log_versions)
        first = min(present)
        if first > 0 and not any(c >= first - 1 for c in checkpoints):
            report.add(
                ERROR, "catalog", None, f"log starts at version {first} and no checkpoint covers before it"
            )
        gaps = [v for v in range(first, max(present) + 1) if v not in present]
        if gaps:
            report.add(ERROR, "catalog", None, f"log has {len(gaps)} missing version(s), first {gaps[0]}")
        if max(present) < head_version:
            report.add(ERROR, "catalog", None, f"log ends at {max(present)} but the head is {head_version}")
    elif head_version >= 0 and not checkpoints:
        report.add(ERROR, "catalog", None, "no log entries and no checkpoints under _catalog/")
    pointer = next((o for o in objects if o.key == CATALOG_LAST_CHECKPOINT), None)
    if pointer is not None:
        try:
            target = json.loads(storage.read_bytes(CATALOG_LAST_CHECKPOINT)).get("version")
        except (TsdbLakeError, ValueError, AttributeError):
            target = None
        if isinstance(target, int) and target not in checkpoints:
            report.add(
                WARNING, "catalog", CATALOG_LAST_CHECKPOINT, f"points at checkpoint {target}, which is absent"
            )
    return ever


def _footer_problems(storage: Storage, f: DataFile, schema: MetricSchema | None, deep: bool) -> list[str]:
    """What is wrong with one data file's Parquet footer (empty = fine)."""
    import pyarrow.parquet as pq

    path, fs = storage.arrow_path(f.path), storage.arrow_fs()
    try:
        meta = pq.read_metadata(path, filesystem=fs)
        arrow_schema = pq.read_schema(path, filesystem=fs)
        if deep:
            pq.read_table(path, filesystem=fs)
    except Exception as exc:  # any failure to parse is the finding itself
        return [f"unreadable Parquet: {type(exc).__name__}: {exc}"[:300]]
    kv = {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in (arrow_schema.metadata or {}).items()
    }
    out: list[str] = []
    kind = "raw" if f.tier == "raw" else "rollup"
    if kv.get("tsdb_lake.kind") != kind:
        out.append(f"footer tsdb_lake.kind is {kv.get('tsdb_lake.kind')!r}, expected {kind!r}")
    if kv.get("tsdb_lake.format_version") != str(f.format_version):
        out.append(
            f"footer tsdb_lake.format_version is {kv.get('tsdb_lake.format_version')!r}, "
            f"catalog says {f.format_version}"
        )
    if kind == "rollup" and kv.get("tsdb_lake.tier") != f.tier:
        out.append(f"footer tsdb_lake.tier is {kv.get('tsdb_lake.tier')!r}, expected {f.tier!r}")
    if meta.num_rows != f.rows:
        out.append(f"{meta.num_rows} Parquet rows, catalog says {f.rows}")
    try:
        labels = json.loads(kv.get("tsdb_lake.labels", "null"))
        fields = json.loads(kv.get("tsdb_lake.fields", "null"))
    except ValueError:
        return [*out, "footer tsdb_lake.labels / tsdb_lake.fields are not JSON"]
    if not isinstance(labels, list) or not isinstance(fields, dict):
        return [*out, "footer lacks tsdb_lake.labels / tsdb_lake.fields"]
    names = set(arrow_schema.names)
    required = list(_RAW_COLUMNS if kind == "raw" else _ROLLUP_COLUMNS) + list(labels)
    required += list(fields) if kind == "raw" else [f"{name}__count" for name in fields]
    absent = [c for c in required if c not in names]
    if absent:
        out.append(f"columns missing: {', '.join(absent[:5])}")
    if schema is not None:
        unknown_labels = [x for x in labels if x not in schema.labels]
        unknown_fields = [x for x in fields if x not in schema.fields]
        if unknown_labels or unknown_fields:
            out.append(f"labels / fields unknown to the catalog schema: {unknown_labels + unknown_fields}")
        if kind == "raw":
            for name, dtype in fields.items():
                spec = schema.fields.get(name)
                if spec is not None and spec.dtype != dtype:
                    out.append(f"field {name} is {dtype} in the footer but {spec.dtype} in the catalog")
    return out


def _check_data(
    storage: Storage,
    report: VerifyReport,
    live: Mapping[str, DataFile],
    schemas: Mapping[tuple[str, str], MetricSchema],
    listed: Iterable[ObjectInfo],
    ever: set[str],
    deep: bool,
    progress: Callable[[int, int], None] | None,
) -> None:
    stored = {o.key: o for o in listed}
    report.objects_listed = len(stored)
    for key, f in sorted(live.items()):
        obj = stored.get(key)
        if obj is None:
            report.add(ERROR, "missing", key, "in the catalog but not in storage")
        elif obj.size != f.bytes:
            report.add(ERROR, "size", key, f"{obj.size} bytes in storage, catalog says {f.bytes}")
    for key in sorted(set(stored) - set(live)):
        try:
            parse_data_file_key(key)
        except TsdbLakeError:
            report.add(WARNING, "stray", key, "not a data-file key (a leftover temp file?)")
            continue
        if key in ever:
            report.add(
                NOTE,
                "unreferenced",
                key,
                "removed from the catalog; vacuum deletes it after the grace period",
            )
        else:
            report.add(
                WARNING,
                "orphan",
                key,
                "never committed to the catalog (crashed or lost writer); vacuum deletes it",
            )
    todo = [f for key, f in sorted(live.items()) if key in stored]
    for i, f in enumerate(todo, 1):
        for msg in _footer_problems(storage, f, schemas.get((f.tenant, f.metric)), deep):
            report.add(ERROR, "footer", f.path, msg)
        report.footers_checked += 1
        if progress is not None:
            progress(i, len(todo))


def verify_lake(
    lake: Lake,
    *,
    deep: bool = False,
    strict: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Check the latest catalog snapshot against the storage; read-only. See the module docstring."""
    snap = lake.snapshot()
    report = VerifyReport(lake=lake.uri, version=snap.version, strict=strict, deep=deep)
    report.data_files = len(snap.by_path)
    ever = _check_catalog(lake.storage, report, snap.version)
    listed = [o for o in lake.storage.list(DATA_PREFIX) if o.key.startswith(DATA_PREFIX)]
    _check_data(
        lake.storage, report, snap.by_path, snap.schemas, listed, ever | set(snap.by_path), deep, progress
    )
    return report

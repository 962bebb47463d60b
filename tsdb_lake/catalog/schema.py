"""Per-metric schemas recorded in the catalog and their additive evolution.

A metric's schema is its set of label keys (strings) and its fields (numeric columns with a dtype and a
kind). Evolution is additive only: new labels and new fields may appear; a name may never switch between
label and field and a field may never change dtype. Field kinds (gauge / counter) change only through an
explicit ``SetSchema(..., set_kinds=True)`` action, never as a side effect of a write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from tsdb_lake.errors import SchemaConflictError
from tsdb_lake.model import FieldKind, validate_name

__all__ = ["DTYPES", "FieldDType", "FieldSpec", "MetricSchema", "evolve"]

FieldDType = Literal["float64", "int64"]
DTYPES: tuple[FieldDType, ...] = ("float64", "int64")


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One numeric field: its storage dtype and whether it is a gauge or a (reset-aware) counter."""

    dtype: FieldDType = "float64"
    kind: FieldKind = FieldKind.GAUGE

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise SchemaConflictError(f"field dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not isinstance(self.kind, FieldKind):
            object.__setattr__(self, "kind", FieldKind(self.kind))

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``{"dtype": ..., "kind": ...}``."""
        return {"dtype": self.dtype, "kind": self.kind.value}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> FieldSpec:
        """Inverse of :meth:`to_json`."""
        return FieldSpec(dtype=obj["dtype"], kind=FieldKind(obj["kind"]))


@dataclass(frozen=True, slots=True)
class MetricSchema:
    """The label keys (sorted) and fields (sorted by name) of one metric of one tenant."""

    labels: tuple[str, ...] = ()
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = tuple(sorted(set(self.labels)))
        for name in labels:
            validate_name("label", name)
        fields = {k: self.fields[k] for k in sorted(self.fields)}
        for name, spec in fields.items():
            validate_name("field", name)
            if not isinstance(spec, FieldSpec):
                raise SchemaConflictError(f"field {name!r} spec must be a FieldSpec, got {spec!r}")
        clash = set(labels) & set(fields)
        if clash:
            raise SchemaConflictError(f"names {sorted(clash)} are both labels and fields")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "fields", fields)

    def __hash__(self) -> int:
        return hash((self.labels, tuple(self.fields.items())))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricSchema):
            return NotImplemented
        return self.labels == other.labels and dict(self.fields) == dict(other.fields)

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``{"labels": [...], "fields": {name: FieldSpec}}``."""
        return {"labels": list(self.labels), "fields": {k: v.to_json() for k, v in self.fields.items()}}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> MetricSchema:
        """Inverse of :meth:`to_json`."""
        return MetricSchema(
            labels=tuple(obj["labels"]),
            fields={k: FieldSpec.from_json(v) for k, v in obj["fields"].items()},
        )

    def with_kinds(self, kinds: Mapping[str, FieldKind | str]) -> MetricSchema:
        """A copy with the kinds of the named (existing) fields replaced."""
        fields = dict(self.fields)
        for name, kind in kinds.items():
            if name not in fields:
                raise SchemaConflictError(f"cannot set the kind of unknown field {name!r}")
            fields[name] = FieldSpec(fields[name].dtype, FieldKind(kind))
        return MetricSchema(self.labels, fields)


def _describe_field(spec: FieldSpec) -> str:
    return f"a {spec.dtype} field"


def evolve(
    existing: MetricSchema | None,
    labels: Iterable[str],
    fields: Mapping[str, FieldSpec | str],
    *,
    tenant: str = "?",
    metric: str = "?",
) -> MetricSchema | None:
    """The schema after a write with these labels and fields, or ``None`` if ``existing`` already covers it.

    Additive only. Raises :class:`SchemaConflictError` (naming the column, the metric and both types) if a
    name is a label in one schema and a field in the other, or a field's dtype differs. Existing fields keep
    their kind; new fields take the kind given (default gauge).
    """
    specs = {
        k: (v if isinstance(v, FieldSpec) else FieldSpec(cast(FieldDType, v))) for k, v in fields.items()
    }
    label_set = set(labels)
    if existing is None:
        return MetricSchema(tuple(label_set), specs)
    where = f"metric {metric!r} of tenant {tenant!r}"
    for name in label_set:
        if name in existing.fields:
            raise SchemaConflictError(
                f"column {name!r} of {where} is {_describe_field(existing.fields[name])} in the lake "
                "but a label (string) in this write"
            )
    new_fields = dict(existing.fields)
    for name, spec in specs.items():
        if name in existing.labels:
            raise SchemaConflictError(
                f"column {name!r} of {where} is a label (string) in the lake "
                f"but {_describe_field(spec)} in this write"
            )
        old = existing.fields.get(name)
        if old is None:
            new_fields[name] = spec
        elif old.dtype != spec.dtype:
            raise SchemaConflictError(
                f"field {name!r} of {where} is {old.dtype} in the lake but {spec.dtype} in this write"
            )
    new_labels = set(existing.labels) | label_set
    if len(new_labels) == len(existing.labels) and len(new_fields) == len(existing.fields):
        return None
    return MetricSchema(tuple(new_labels), new_fields)

"""Property test: random action sequences against a plain in-memory model of the catalog, with reopens
(from checkpoints, small interval), log expiry, and time travel checked against the model's recorded history."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest
from catalog_testlib import HOUR, T0, assert_catalog_valid, make_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsdb_lake.catalog import (
    MIN_LOG_RETENTION_MS,
    AddFile,
    Catalog,
    FieldSpec,
    MetricSchema,
    RemoveFile,
    SetProperty,
    SetRetention,
    SetSchema,
    SetWatermark,
    Snapshot,
    WriterProgress,
)
from tsdb_lake.errors import CommitConflictError, NotFoundError, SchemaConflictError
from tsdb_lake.storage.base import Storage

_scope = st.sampled_from([None, "acme", "beta"])
_metric_scope = st.sampled_from([None, "cpu", "mem"])
ops = st.one_of(
    st.tuples(st.just("add"), st.integers(1, 3), st.sampled_from(["cpu", "mem"])),
    st.tuples(st.just("remove"), st.integers(0, 50), st.booleans()),
    st.tuples(
        st.just("retention"),
        _scope,
        _metric_scope,
        st.sampled_from(["raw", "1m"]),
        st.sampled_from([None, 1, 5]),
    ),
    st.tuples(st.just("watermark"), st.sampled_from(["1m", "1h"]), st.integers(0, 100)),
    st.tuples(st.just("property"), st.sampled_from(["a", "b"]), st.sampled_from([None, 1, "x", True, 2.5])),
    st.tuples(st.just("progress"), st.sampled_from(["w1", "w2"]), st.integers(-3, 5)),
    st.tuples(st.just("field"), st.sampled_from(["f1", "f2", "host"]), st.sampled_from(["float64", "int64"])),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("travel"), st.integers(0, 50)),
    st.tuples(st.just("expire")),
)


@dataclass
class Model:
    files: dict[str, Any] = field(default_factory=dict)
    retention: dict[tuple[Any, Any, str], int | None] = field(default_factory=dict)
    watermarks: dict[tuple[str, str, str], int] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, int] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def copy(self) -> Model:
        return Model(*(dict(getattr(self, k)) for k in self.__dataclass_fields__))


def _matches(snap: Snapshot, m: Model) -> None:
    assert dict(snap.by_path) == m.files
    assert dict(snap.retention_rules) == m.retention
    assert dict(snap.watermarks) == m.watermarks
    assert dict(snap.properties) == m.properties
    assert dict(snap.writer_progress) == m.progress
    schema = snap.schema("acme", "cpu")
    got = {} if schema is None else {k: v.dtype for k, v in schema.fields.items()}
    assert got == m.fields
    assert schema is None or schema.labels == ("host",)


def test_random_histories_match_the_model(storage: Storage, lake_target: Any) -> None:
    @settings(
        max_examples=15 if lake_target.kind == "local" else 5,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(ops, min_size=1, max_size=14))
    def run(steps: list[tuple[Any, ...]]) -> None:
        storage.delete([o.key for o in storage.list("")])
        cat = Catalog.create_or_open(storage, checkpoint_interval=3)
        model = Model()
        history = [model.copy()]  # model state per version
        floor = 0  # versions below it were expired
        for step in steps:
            kind = step[0]
            actions: list[Any] = []
            expect: type[Exception] | None = None
            new = model.copy()
            if kind == "add":
                for i in range(step[1]):
                    f = make_file(metric=step[2], start=T0 + i * HOUR)
                    actions.append(AddFile(f))
                    # an added file takes the committing version as its data sequence number
                    new.files[f.path] = dataclasses.replace(f, seq=len(history))
            elif kind == "remove":
                live = sorted(model.files)
                if live and step[2]:
                    path = live[step[1] % len(live)]
                    del new.files[path]
                else:
                    path, expect = (
                        "data/tenant=acme/metric=cpu/tier=raw/hour=2024-01-01T00/part-gone.parquet",
                        CommitConflictError,
                    )
                actions.append(RemoveFile(path, "compact"))
            elif kind == "retention":
                _, t, m, tier, ttl = step
                ttl_ns = None if ttl is None else ttl * HOUR
                actions.append(SetRetention(t, m, tier, ttl_ns))
                new.retention[(t, m, tier)] = ttl_ns
            elif kind == "watermark":
                actions.append(SetWatermark("acme", "cpu", step[1], T0 + step[2]))
                new.watermarks[("acme", "cpu", step[1])] = T0 + step[2]
            elif kind == "property":
                actions.append(SetProperty(step[1], step[2]))
                if step[2] is None:
                    new.properties.pop(step[1], None)
                else:
                    new.properties[step[1]] = step[2]
            elif kind == "progress":
                lsn = model.progress.get(step[1], 0) + step[2]
                if lsn < 0:
                    continue
                actions.append(WriterProgress(step[1], lsn))
                if lsn < model.progress.get(step[1], -1):
                    expect = CommitConflictError
                new.progress[step[1]] = lsn
            elif kind == "field":
                name, dtype = step[1], step[2]
                if name == "host" and not model.fields:
                    continue  # no schema yet: "host" would simply become a field
                labels = () if name == "host" else ("host",)
                actions.append(SetSchema("acme", "cpu", MetricSchema(labels, {name: FieldSpec(dtype)})))
                if name == "host" or model.fields.get(name, dtype) != dtype:
                    expect = SchemaConflictError
                new.fields[name] = dtype
            elif kind == "reopen":
                cat = Catalog.open(storage, checkpoint_interval=3)
                _matches(cat.snapshot(), model)
                continue
            elif kind == "expire":  # everything is a day old: keep only the newest checkpoint onwards
                report = cat.expire_log(MIN_LOG_RETENTION_MS, now_ms=cat.snapshot().timestamp_ms + 86_400_000)
                assert floor <= report.floor <= cat.version and not any(
                    v >= report.floor for v in report.entries
                )
                floor = report.floor
                continue
            else:
                v = step[1] % (cat.version + 1)
                if v < floor:
                    with pytest.raises(NotFoundError, match="expired by log retention"):
                        Catalog.open(storage).snapshot(v)
                else:
                    _matches(Catalog.open(storage).snapshot(v), history[v])
                continue
            if expect is not None:
                with pytest.raises(expect):
                    cat.commit(actions, operation="test")
                _matches(cat.refresh(), model)
                continue
            snap = cat.commit(actions, operation="test")
            model = new
            history.append(model.copy())
            assert snap.version == len(history) - 1
            _matches(snap, model)
        _matches(Catalog.open(storage, checkpoint_interval=3).snapshot(), model)
        assert assert_catalog_valid(storage) >= len(history) - floor

    run()

"""Pure catalog pieces: schema evolution, action JSON round trips, snapshot pruning and rule resolution."""

from __future__ import annotations

import gzip
import json
import math

import pytest
from catalog_testlib import ENTRY, HOUR, T0, make_file
from hypothesis import given, settings
from hypothesis import strategies as st

from tsdb_lake.catalog import (
    AddFile,
    ClearDirty,
    DataFile,
    Entry,
    FieldSpec,
    FieldStats,
    Lineage,
    MarkDirty,
    MetricSchema,
    RemoveFile,
    RemoveRetention,
    SetProperty,
    SetRetention,
    SetSchema,
    SetTiers,
    SetWatermark,
    Snapshot,
    SourceRange,
    TierSpec,
    WriterProgress,
    decode_entry,
    dump_document,
    encode_entry,
    evolve,
    load_document,
)
from tsdb_lake.catalog.document import GZIP_MIN_BYTES
from tsdb_lake.catalog.snapshot import StateBuilder
from tsdb_lake.errors import CommitConflictError, CorruptBlockError, InvalidNameError, SchemaConflictError
from tsdb_lake.model import FieldKind

F = FieldSpec("float64")
INT = FieldSpec("int64")


# ------------------------------------------------------------------------------------------- schema


def test_evolve_creates_adds_and_reports_unchanged() -> None:
    s = evolve(None, ["host"], {"usage": F})
    assert s == MetricSchema(("host",), {"usage": F})
    assert evolve(s, ["host"], {"usage": F}) is None
    assert evolve(s, [], {}) is None
    grown = evolve(s, ["dc", "host"], {"idle": INT})
    assert grown is not None
    assert grown.labels == ("dc", "host")
    assert list(grown.fields) == ["idle", "usage"]
    assert grown.fields["idle"].dtype == "int64"


def test_evolve_keeps_existing_kinds() -> None:
    s = MetricSchema(("host",), {"bytes": FieldSpec("int64", FieldKind.COUNTER)})
    grown = evolve(s, [], {"bytes": FieldSpec("int64"), "temp": F})
    assert grown is not None
    assert grown.fields["bytes"].kind is FieldKind.COUNTER
    assert grown.fields["temp"].kind is FieldKind.GAUGE


@pytest.mark.parametrize(
    ("labels", "fields", "words"),
    [
        (["usage"], {}, ["'usage'", "'cpu'", "float64 field", "label"]),
        ([], {"host": F}, ["'host'", "'cpu'", "label", "float64 field"]),
        ([], {"usage": INT}, ["'usage'", "'cpu'", "float64", "int64"]),
    ],
)
def test_evolve_conflicts_name_column_metric_and_both_types(
    labels: list[str], fields: dict[str, FieldSpec], words: list[str]
) -> None:
    s = MetricSchema(("host",), {"usage": F})
    with pytest.raises(SchemaConflictError) as info:
        evolve(s, labels, fields, tenant="acme", metric="cpu")
    for w in words:
        assert w in str(info.value)


def test_schema_rejects_bad_names_and_label_field_overlap() -> None:
    with pytest.raises(InvalidNameError):
        MetricSchema(("../x",), {})
    with pytest.raises(SchemaConflictError):
        MetricSchema(("a",), {"a": F})
    with pytest.raises(SchemaConflictError):
        FieldSpec("string")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ json round trip

_i64 = st.integers(-(2**63), 2**63 - 1)
_u64 = st.integers(0, 2**64 - 1)
_stat = st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-(2**63), 2**63 - 1))


@st.composite
def data_files(draw: st.DrawFn) -> DataFile:
    lo = draw(_i64)
    hi = draw(st.integers(lo, 2**63 - 1))
    stats = draw(
        st.dictionaries(
            st.sampled_from(["usage", "idle", "bytes"]),
            st.builds(FieldStats, _stat, _stat, st.integers(0, 2**40), st.integers(0, 10)),
        )
    )
    labels = draw(st.dictionaries(st.sampled_from(["host", "dc"]), st.lists(st.text(max_size=5), max_size=4)))
    lineage = draw(
        st.one_of(
            st.none(),
            st.builds(
                Lineage,
                st.integers(0, 10**6),
                st.just(("data/tenant=a/metric=b/tier=raw/hour=2024-01-01T00/part-x.parquet",)),
                st.just((SourceRange("1m", 0, 60),)),
            ),
        )
    )
    return DataFile(
        path=f"data/tenant=acme/metric=cpu/tier=raw/hour=2024-01-01T00/part-{draw(st.uuids()).hex}.parquet",
        tenant="acme",
        metric="cpu",
        tier="raw",
        partition="hour=2024-01-01T00",
        min_time=lo,
        max_time=hi,
        rows=draw(st.integers(0, 2**40)),
        points=draw(st.integers(0, 2**40)),
        series=draw(st.integers(0, 2**40)),
        bytes=draw(st.integers(0, 2**40)),
        created_ms=draw(st.integers(0, 2**45)),
        writer=draw(st.one_of(st.none(), st.text(min_size=1, max_size=8))),
        field_stats=stats,
        label_values=DataFile.summarise_labels(labels),
        series_min=draw(st.one_of(st.none(), _u64)),
        series_max=draw(st.one_of(st.none(), _u64)),
        lineage=lineage,
        codecs=draw(st.dictionaries(st.sampled_from(["gorilla", "adaptive"]), st.integers(0, 100))),
    )


def _same_stat(a: float | int | None, b: float | int | None) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


@settings(max_examples=150, deadline=None)
@given(data_files())
def test_data_file_json_round_trips_exactly(f: DataFile) -> None:
    entry = Entry(7, 1, "write", (AddFile(f),), base_version=6, writer="w1")
    raw = encode_entry(entry)
    doc = load_document(raw, "k", "entry")
    ENTRY.validate(doc)
    back = decode_entry(raw, "k")
    g = back.actions[0]
    assert isinstance(g, AddFile)
    assert g.file.series_min == f.series_min and g.file.series_max == f.series_max
    for name, stat in f.field_stats.items():
        other = g.file.field_stats[name]
        assert _same_stat(stat.min, other.min) and _same_stat(stat.max, other.max)
    plain = {
        k: v
        for k, v in f.field_stats.items()
        if not any(isinstance(x, float) and math.isnan(x) for x in (v.min, v.max))
    }
    assert {k: g.file.field_stats[k] for k in plain} == plain
    assert g.file.label_values == f.label_values and g.file.lineage == f.lineage
    assert (g.file.min_time, g.file.max_time, g.file.bytes) == (f.min_time, f.max_time, f.bytes)
    if f.series_max is not None:
        assert isinstance(doc["actions"][0]["file"]["series_max"], str)  # uint64 travel as strings


def test_every_action_type_round_trips_and_validates() -> None:
    schema = MetricSchema(("host",), {"usage": F})
    actions = (
        AddFile(make_file()),
        RemoveFile("data/tenant=acme/metric=cpu/tier=raw/hour=2024-01-01T00/part-a.parquet", "retention"),
        SetSchema("acme", "cpu", schema),
        SetSchema(
            "acme",
            "cpu",
            MetricSchema((), {"usage": FieldSpec("float64", FieldKind.COUNTER)}),
            set_kinds=True,
        ),
        WriterProgress("w1", 42),
        SetTiers(None, "cpu", (TierSpec("5m", 300 * 10**9, "day", False),)),
        SetRetention("acme", None, "raw", 7 * 24 * HOUR),
        SetRetention(None, None, "1d", None),
        RemoveRetention("acme", None, "raw"),
        SetWatermark("acme", "cpu", "1m", T0),
        MarkDirty("acme", "cpu", "1m", T0, T0 + HOUR),
        ClearDirty("acme", "cpu", "1m", T0, T0 + HOUR),
        SetProperty("compaction.target_bytes", 128 * 2**20),
        SetProperty("note", None),
    )
    entry = Entry(3, 99, "config", actions, base_version=1, reads=(actions[1].path,), commit_id="c")
    raw = encode_entry(entry)
    ENTRY.validate(load_document(raw, "k", "entry"))
    assert decode_entry(raw, "k") == entry


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"[]",
        b'{"format_version": 1}',
        b'{"format_version": 1, "version": 0, "timestamp_ms": 0, '
        b'"operation": "x", "writer": null, "base_version": null, "actions": [{"type": "teleport"}]}',
        b"\xff\xfe",
        b"\x1f\x8b\x08 not a gzip member",
        gzip.compress(b'{"format_version": 1, "version": 0, "actions": [')[:-9],  # truncated member
        gzip.compress(b"{not json"),
    ],
)
def test_malformed_entries_are_corrupt_block_errors_naming_the_key(data: bytes) -> None:
    with pytest.raises(CorruptBlockError) as info:
        decode_entry(data, "_catalog/log/00000000000000000003.json")
    assert info.value.path == "_catalog/log/00000000000000000003.json"
    assert "00000000000000000003.json" in str(info.value)


def test_large_documents_are_gzip_framed_and_small_ones_stay_plain_json() -> None:
    small = {"format_version": 1, "version": 0, "note": "x"}
    large = {"format_version": 1, "values": [f"host_{i}" for i in range(GZIP_MIN_BYTES)]}
    assert dump_document(small).startswith(b"{")
    packed = dump_document(large)
    assert packed[:2] == b"\x1f\x8b" and len(packed) < len(json.dumps(large)) // 4
    assert dump_document(large) == packed  # deterministic bytes (gzip mtime 0)
    assert load_document(packed, "k", "entry") == large
    assert load_document(dump_document(small), "k", "entry") == small
    # readers accept both forms whatever the size: plain JSON written by other engines stays valid
    assert load_document(json.dumps(large).encode(), "k", "entry") == large
    assert load_document(gzip.compress(json.dumps(small).encode()), "k", "entry") == small


def test_newer_format_version_is_refused_clearly() -> None:
    with pytest.raises(CorruptBlockError, match="newer than this reader"):
        decode_entry(b'{"format_version": 2, "version": 0}', "k")


# ------------------------------------------------------------------------------------------ snapshot


def _apply(snap: Snapshot, *actions: object, base: int | None = None, check: bool = True) -> Snapshot:
    b = StateBuilder(snap)
    v = snap.version + 1
    b.apply(
        Entry(v, v, "test", tuple(actions), base_version=snap.version if base is None else base), check=check
    )  # type: ignore[arg-type]
    return b.build()


def _paths(files: list[DataFile]) -> list[str]:
    return [f.path for f in files]


def test_file_pruning_by_tier_time_and_labels() -> None:
    a = make_file(start=T0, span=HOUR // 2, labels={"host": ["a", "b"]})
    b = make_file(start=T0 + HOUR, span=HOUR // 2, labels={"host": ["c"]})
    c = make_file(start=T0 + 2 * HOUR, span=10, labels={"host": [f"h{i}" for i in range(300)]})  # untracked
    d = make_file(tier="1m", start=T0, span=HOUR)
    e = make_file(metric="mem", start=T0)
    s = _apply(Snapshot.empty(), *(AddFile(f) for f in (a, b, c, d, e)))
    assert "host" not in c.label_values
    assert _paths(s.files("acme", "cpu")) == _paths([a, b, c])
    assert _paths(s.files("acme", "cpu", "1m")) == _paths([d])
    assert _paths(s.files("acme", "cpu", start=T0 + HOUR // 2 + 1)) == _paths([b, c])
    assert _paths(s.files("acme", "cpu", start=T0 + HOUR // 2)) == _paths([a, b, c])  # max_time is inclusive
    assert _paths(s.files("acme", "cpu", end=T0 + HOUR)) == _paths([a])  # end is exclusive
    assert _paths(s.files("acme", "cpu", where_labels={"host": "c"})) == _paths([b, c])
    assert _paths(s.files("acme", "cpu", where_labels={"host": "zz"})) == _paths([c])
    assert _paths(s.files("acme", "cpu", where_labels={"dc": "x"})) == _paths(
        [a, b, c]
    )  # untracked key: keep
    assert _paths(s.files("other", "cpu")) == _paths([])
    assert s.tenants() == ["acme"] and s.metrics("acme") == ["cpu", "mem"]


def test_retention_and_tiers_most_specific_rule_wins() -> None:
    t1 = (TierSpec("1m", 60 * 10**9, "day"),)
    t2 = (TierSpec("1h", 3600 * 10**9, "month"),)
    s = _apply(
        Snapshot.empty(),
        SetRetention(None, None, "raw", 30 * HOUR),
        SetRetention(None, "cpu", "raw", 20 * HOUR),
        SetRetention("acme", None, "raw", 10 * HOUR),
        SetRetention("acme", "cpu", "raw", 5 * HOUR),
        SetRetention("acme", "cpu", "1d", None),
        SetTiers(None, None, t1),
        SetTiers("acme", "cpu", t2),
        SetTiers("beta", None, ()),
    )
    assert s.retention_for("acme", "cpu", "raw") == 5 * HOUR
    assert s.retention_for("acme", "mem", "raw") == 10 * HOUR
    assert s.retention_for("beta", "cpu", "raw") == 20 * HOUR
    assert s.retention_for("beta", "mem", "raw") == 30 * HOUR
    assert s.retention_for("acme", "cpu", "1d") is None
    assert s.retention_for("acme", "cpu", "1h") is None
    assert (
        s.tiers_for("acme", "cpu") == t2
        and s.tiers_for("acme", "mem") == t1
        and s.tiers_for("beta", "x") == ()
    )
    s2 = _apply(s, RemoveRetention("acme", "cpu", "raw"))
    assert s2.retention_for("acme", "cpu", "raw") == 10 * HOUR
    assert s.retention_for("acme", "cpu", "raw") == 5 * HOUR  # snapshots are immutable


def test_dirty_ranges_merge_and_clear_only_what_the_rebuild_saw() -> None:
    s = _apply(Snapshot.empty(), SetWatermark("acme", "cpu", "1m", T0 + 10 * HOUR))
    s = _apply(s, MarkDirty("acme", "cpu", "1m", T0, T0 + HOUR))
    s = _apply(s, MarkDirty("acme", "cpu", "1m", T0 + HOUR, T0 + 2 * HOUR))  # touching: merged
    assert s.dirty("acme", "cpu", "1m") == [(T0, T0 + 2 * HOUR)]
    built_from = s.version
    s = _apply(s, MarkDirty("acme", "cpu", "1m", T0 + 5 * HOUR, T0 + 6 * HOUR))  # late data during rebuild
    s = _apply(s, ClearDirty("acme", "cpu", "1m", T0, T0 + 6 * HOUR), base=built_from)
    assert s.dirty("acme", "cpu", "1m") == [(T0 + 5 * HOUR, T0 + 6 * HOUR)]
    s = _apply(s, ClearDirty("acme", "cpu", "1m", T0 + 5 * HOUR, T0 + 5 * HOUR + 10))
    assert s.dirty("acme", "cpu", "1m") == [(T0 + 5 * HOUR + 10, T0 + 6 * HOUR)]
    assert s.watermark("acme", "cpu", "1m") == T0 + 10 * HOUR
    assert s.watermark("acme", "cpu", "1h") is None


def test_checked_apply_rejects_what_does_not_fit() -> None:
    f = make_file()
    s = _apply(Snapshot.empty(), AddFile(f), WriterProgress("w", 10))
    with pytest.raises(CommitConflictError, match="already in the lake"):
        _apply(s, AddFile(f))
    with pytest.raises(CommitConflictError, match="not live"):
        _apply(s, RemoveFile("data/x.parquet", "compact"))
    with pytest.raises(CommitConflictError, match="go back") as info:
        _apply(s, WriterProgress("w", 9))
    assert not info.value.retryable
    assert _apply(s, WriterProgress("w", 10)).progress("w") == 10
    assert s.progress("w") == 10 and s.progress("nobody") is None


def test_set_kinds_is_the_only_way_to_change_a_kind() -> None:
    s = _apply(Snapshot.empty(), SetSchema("acme", "net", MetricSchema(("host",), {"bytes": INT})))
    s = _apply(
        s, SetSchema("acme", "net", MetricSchema((), {"bytes": FieldSpec("int64", FieldKind.COUNTER)}))
    )
    schema = s.schema("acme", "net")
    assert schema is not None and schema.fields["bytes"].kind is FieldKind.GAUGE
    s = _apply(
        s,
        SetSchema(
            "acme", "net", MetricSchema((), {"bytes": FieldSpec("int64", FieldKind.COUNTER)}), set_kinds=True
        ),
    )
    schema = s.schema("acme", "net")
    assert (
        schema is not None and schema.fields["bytes"].kind is FieldKind.COUNTER and schema.labels == ("host",)
    )
    s = _apply(
        s, SetSchema("acme", "net", MetricSchema(("dc",), {"bytes": INT}))
    )  # a plain write keeps counter
    schema = s.schema("acme", "net")
    assert (
        schema is not None
        and schema.fields["bytes"].kind is FieldKind.COUNTER
        and schema.labels == ("dc", "host")
    )

"""The TSBS cpu-only generator (tsdb_lake.datagen.tsbs)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from tsdb_lake.datagen import CPU_FIELDS, TAG_KEYS, generate_cpu_only, host_tags, iter_cpu_only, to_ns
from tsdb_lake.datagen.tsbs import (
    ARCH_CHOICES,
    OS_CHOICES,
    REGIONS,
    SERVICE_ENVIRONMENT_CHOICES,
    TEAM_CHOICES,
    cpu_only_schema,
)
from tsdb_lake.errors import InvalidTimestampError, InvalidValueTypeError
from tsdb_lake.schema import normalize_frame

START = 1_451_606_400_000_000_000  # 2016-01-01T00:00:00Z, TSBS's default start
TEN_S = 10_000_000_000


def test_shape_order_and_normal_form() -> None:
    table = generate_cpu_only(5, "2016-01-01T00:00:00Z", "2016-01-01T00:01:00Z")
    assert table.num_rows == 5 * 6  # hosts x steps
    assert table.schema == cpu_only_schema()
    assert table.schema.names == ["time", *sorted(TAG_KEYS), *sorted(CPU_FIELDS)]
    assert normalize_frame(table, metric="cpu").table.equals(table)
    times = table.column("time").to_numpy()
    assert np.array_equal(times, np.repeat(START + TEN_S * np.arange(6), 5))
    assert table.column("hostname").to_pylist()[:6] == [
        "host_0",
        "host_1",
        "host_2",
        "host_3",
        "host_4",
        "host_0",
    ]


def test_row_count_for_partial_interval_and_empty_range() -> None:
    assert generate_cpu_only(3, START, START + 25 * 10**9).num_rows == 3 * 3  # t = 0, 10, 20 s
    empty = generate_cpu_only(3, START, START)
    assert empty.num_rows == 0 and empty.schema == cpu_only_schema()
    assert generate_cpu_only(2, START, START + 60 * 10**9, interval_ns=30 * 10**9).num_rows == 4


def test_tag_value_sets_match_tsbs() -> None:
    tags = host_tags(2000, seed=3)
    assert tags["hostname"] == [f"host_{i}" for i in range(2000)]
    assert set(tags["region"]) == set(REGIONS)  # 2000 hosts hit all 9 regions
    for region, datacenter in zip(tags["region"], tags["datacenter"], strict=True):
        assert datacenter in REGIONS[region]
    assert set(tags["rack"]) == {str(i) for i in range(100)}
    assert set(tags["service"]) == {str(i) for i in range(20)}
    assert set(tags["service_version"]) == {"0", "1"}
    assert set(tags["os"]) == set(OS_CHOICES) == {"Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"}
    assert set(tags["arch"]) == set(ARCH_CHOICES) == {"x64", "x86"}
    assert set(tags["team"]) == set(TEAM_CHOICES) == {"SF", "NYC", "LON", "CHI"}
    assert set(tags["service_environment"]) == set(SERVICE_ENVIRONMENT_CHOICES)
    assert sum(len(v) for v in REGIONS.values()) == 23


def test_tags_constant_per_host() -> None:
    table = generate_cpu_only(7, START, START + 50 * TEN_S, seed=1)
    tags = host_tags(7, seed=1)
    for key in TAG_KEYS:
        assert table.column(key).to_pylist() == tags[key] * 50


def test_fields_are_integral_clamped_random_walks() -> None:
    table = generate_cpu_only(20, START, START + 2000 * TEN_S, seed=5)
    for field in CPU_FIELDS:
        values = table.column(field).to_numpy().reshape(2000, 20)  # time x host
        assert values.dtype == np.float64
        assert np.all(values == np.trunc(values))
        assert values.min() >= 0 and values.max() <= 100
        steps = np.abs(np.diff(values, axis=0))
        # N(0,1) steps on the untruncated walk: truncated values move by at most a few units per tick
        assert steps.max() <= 8
        assert 0.3 < steps.mean() < 1.5
    walks = np.stack([table.column(f).to_numpy() for f in CPU_FIELDS])
    assert (walks == 100).any() or (walks == 0).any()  # long walks touch the clamps


def test_first_values_are_uniform_starts() -> None:
    table = generate_cpu_only(500, START, START + TEN_S, seed=2)
    first = np.concatenate([table.column(f).to_numpy() for f in CPU_FIELDS])
    assert first.min() >= 0 and first.max() < 100
    assert 40 < first.mean() < 60  # uniform on [0, 100), truncated: mean about 49.5


def test_determinism_by_seed() -> None:
    a = generate_cpu_only(10, START, START + 100 * TEN_S, seed=7)
    b = generate_cpu_only(10, START, START + 100 * TEN_S, seed=7)
    c = generate_cpu_only(10, START, START + 100 * TEN_S, seed=8)
    assert a.equals(b)
    assert not a.equals(c)


@pytest.mark.parametrize("batch_rows", [1, 7, 1000, 10_000])
def test_batches_concatenate_to_the_whole(batch_rows: int) -> None:
    whole = generate_cpu_only(3, START, START + 700 * TEN_S, seed=4)
    batches = list(iter_cpu_only(3, START, START + 700 * TEN_S, batch_rows=batch_rows, seed=4))
    assert all(b.num_rows == batch_rows for b in batches[:-1])
    assert 0 < batches[-1].num_rows <= batch_rows
    assert pa.concat_tables(batches).equals(whole)


def test_start_end_forms() -> None:
    assert to_ns("2016-01-01") == START
    assert to_ns("2016-01-01T01:00:00+01:00") == START
    assert to_ns(dt.datetime(2016, 1, 1)) == START
    assert to_ns(dt.datetime(2016, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))) == START
    assert to_ns(np.datetime64("2016-01-01T00:00:00")) == START
    assert to_ns(START) == START
    for bad in ("not a date", 1.5, True, "2500-01-01"):
        with pytest.raises(InvalidTimestampError):
            to_ns(bad)
    with pytest.raises(InvalidValueTypeError):
        generate_cpu_only(0, START, START + TEN_S)


def test_hundred_hosts_for_a_day_generates_quickly() -> None:
    import time

    began = time.process_time()
    table = generate_cpu_only(100, "2016-01-01", "2016-01-02")
    elapsed = time.process_time() - began
    assert table.num_rows == 100 * 8640
    assert elapsed < 10  # about a second of CPU on the dev machine; generous for loaded CI

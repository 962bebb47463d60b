"""A TSBS-compatible ``cpu-only`` generator (timescale/tsbs ``pkg/data/usecases/devops``), vectorised with numpy.

Each host gets TSBS's ten tags, drawn once from TSBS's value sets, and ten ``usage_*`` fields that follow
clamped random walks: a uniform start in ``[0, 100)``, N(0, 1) steps, clamped to ``[0, 100]``, emitted
truncated to integers (TSBS's ``ToPointAllInt64``; here as float64 columns holding integral values). Rows
come in TSBS order: every host for one timestamp, then the next timestamp. Output tables are in the
normalised form of :mod:`tsdb_lake.schema` (``time`` int64 ns, labels then fields sorted by name).
The random stream does not depend on batching: the same seed gives the same points for any ``batch_rows``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tsdb_lake.errors import InvalidTimestampError, InvalidValueTypeError
from tsdb_lake.model import TIME_COLUMN
from tsdb_lake.schema import normalized_schema

__all__ = [
    "ARCH_CHOICES",
    "CPU_FIELDS",
    "OS_CHOICES",
    "REGIONS",
    "SERVICE_ENVIRONMENT_CHOICES",
    "TAG_KEYS",
    "TEAM_CHOICES",
    "cpu_only_schema",
    "generate_cpu_only",
    "host_tags",
    "iter_cpu_only",
    "to_line_protocol",
    "to_ns",
]

#: TSBS ``MachineTagKeys``, in TSBS order.
TAG_KEYS = (
    "hostname",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
)
#: TSBS ``cpuFields``, in TSBS order.
CPU_FIELDS = (
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
)
#: TSBS regions and their datacenters.
REGIONS: dict[str, tuple[str, ...]] = {
    "us-east-1": ("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1e"),
    "us-west-1": ("us-west-1a", "us-west-1b"),
    "us-west-2": ("us-west-2a", "us-west-2b", "us-west-2c"),
    "eu-west-1": ("eu-west-1a", "eu-west-1b", "eu-west-1c"),
    "eu-central-1": ("eu-central-1a", "eu-central-1b"),
    "ap-southeast-1": ("ap-southeast-1a", "ap-southeast-1b"),
    "ap-southeast-2": ("ap-southeast-2a", "ap-southeast-2b"),
    "ap-northeast-1": ("ap-northeast-1a", "ap-northeast-1c"),
    "sa-east-1": ("sa-east-1a", "sa-east-1b", "sa-east-1c"),
}
TEAM_CHOICES = ("SF", "NYC", "LON", "CHI")
OS_CHOICES = ("Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10")
ARCH_CHOICES = ("x64", "x86")
SERVICE_ENVIRONMENT_CHOICES = ("production", "staging", "test")
RACK_CHOICES = 100  # racks "0".."99"
SERVICE_CHOICES = 20  # services "0".."19"
SERVICE_VERSION_CHOICES = 2  # versions "0", "1"

_BLOCK_STEPS = 512  # timestamps generated per numpy block


def to_ns(value: object) -> int:
    """Nanoseconds since the epoch (UTC) of a datetime (naive = UTC), ISO 8601 string, numpy / pandas
    timestamp or int nanoseconds."""
    import pandas as pd

    if isinstance(value, bool):
        raise InvalidTimestampError(f"cannot use {value!r} as a time")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str | dt.datetime | dt.date | np.datetime64 | pd.Timestamp):
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidTimestampError(f"cannot parse {value!r} as a time: {exc}") from None
        if ts is pd.NaT:
            raise InvalidTimestampError(f"{value!r} is not a time (NaT)")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        try:
            return int(ts.as_unit("ns").value)
        except (OverflowError, ValueError) as exc:
            raise InvalidTimestampError(f"{value!r} is outside the nanosecond range: {exc}") from None
    raise InvalidTimestampError(f"cannot use a {type(value).__name__} as a time")


def cpu_only_schema() -> pa.Schema:
    """The normalised schema of generated cpu-only tables."""
    return normalized_schema(TAG_KEYS, dict.fromkeys(CPU_FIELDS, "float64"))


def host_tags(scale: int, *, seed: int = 0) -> dict[str, list[str]]:
    """The tags of hosts ``host_0 .. host_{scale-1}``, drawn from TSBS's value sets (key -> one value per host)."""
    rng = np.random.default_rng([seed, 0])
    region_names = list(REGIONS)
    region_idx = rng.integers(0, len(region_names), scale)
    dc_pick = rng.random(scale)

    def choose(options: tuple[str, ...]) -> list[str]:
        return [options[i] for i in rng.integers(0, len(options), scale)]

    def numbered(limit: int) -> list[str]:
        return [str(i) for i in rng.integers(0, limit, scale)]

    regions = [region_names[i] for i in region_idx]
    return {
        "hostname": [f"host_{i}" for i in range(scale)],
        "region": regions,
        "datacenter": [
            REGIONS[r][int(p * len(REGIONS[r]))] for r, p in zip(regions, dc_pick.tolist(), strict=True)
        ],
        "rack": numbered(RACK_CHOICES),
        "os": choose(OS_CHOICES),
        "arch": choose(ARCH_CHOICES),
        "team": choose(TEAM_CHOICES),
        "service": numbered(SERVICE_CHOICES),
        "service_version": numbered(SERVICE_VERSION_CHOICES),
        "service_environment": choose(SERVICE_ENVIRONMENT_CHOICES),
    }


def iter_cpu_only(
    scale: int,
    start: object,
    end: object,
    *,
    batch_rows: int = 10_000,
    interval_ns: int = 10_000_000_000,
    seed: int = 0,
) -> Iterator[pa.Table]:
    """Yield cpu-only points for timestamps ``start, start + interval, ... < end`` as tables of
    ``batch_rows`` rows (the last may be shorter), in time order with every host per timestamp."""
    if scale < 1:
        raise InvalidValueTypeError(f"scale must be at least 1 host, got {scale}")
    if interval_ns < 1 or batch_rows < 1:
        raise InvalidValueTypeError("interval_ns and batch_rows must be positive")
    t0, t1 = to_ns(start), to_ns(end)
    steps = max(0, -(-(t1 - t0) // interval_ns))
    tags = host_tags(scale, seed=seed)
    tag_arrays = {k: pa.array(v, pa.string()) for k, v in tags.items()}
    schema = cpu_only_schema()
    rng = np.random.default_rng([seed, 1])
    state = rng.random((scale, len(CPU_FIELDS))) * 100.0
    pending: list[pa.Table] = []
    pending_rows = 0
    done = 0
    while done < steps:
        k = min(_BLOCK_STEPS, steps - done)
        values = np.empty((k, scale, len(CPU_FIELDS)), dtype=np.float64)
        noise = rng.standard_normal((k, scale, len(CPU_FIELDS)))
        first = 0
        if done == 0:  # TSBS emits the initial state first, then ticks
            values[0] = state
            first = 1
        for i in range(first, k):
            np.add(state, noise[i], out=state)
            np.clip(state, 0.0, 100.0, out=state)
            values[i] = state
        np.trunc(values, out=values)
        times = t0 + (np.arange(done, done + k, dtype=np.int64) * interval_ns)
        host_idx = pa.array(np.tile(np.arange(scale, dtype=np.int32), k))
        columns: dict[str, Any] = {TIME_COLUMN: pa.array(np.repeat(times, scale))}
        for key in TAG_KEYS:
            columns[key] = tag_arrays[key].take(cast(Any, host_idx))
        for j, field in enumerate(CPU_FIELDS):
            columns[field] = pa.array(values[:, :, j].reshape(-1))
        block = pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
        done += k
        pending.append(block)
        pending_rows += block.num_rows
        if pending_rows >= batch_rows:
            merged = pa.concat_tables(pending)
            offset = 0
            while merged.num_rows - offset >= batch_rows:
                yield merged.slice(offset, batch_rows).combine_chunks()
                offset += batch_rows
            pending = [merged.slice(offset)] if offset < merged.num_rows else []
            pending_rows = merged.num_rows - offset
    if pending_rows:
        yield pa.concat_tables(pending).combine_chunks()


def generate_cpu_only(
    scale: int,
    start: object,
    end: object,
    *,
    interval_ns: int = 10_000_000_000,
    seed: int = 0,
) -> pa.Table:
    """All cpu-only points of ``scale`` hosts over ``[start, end)`` as one normalised table."""
    batches = list(iter_cpu_only(scale, start, end, batch_rows=1 << 22, interval_ns=interval_ns, seed=seed))
    if not batches:
        return cpu_only_schema().empty_table()
    return pa.concat_tables(batches)


def _escape(col: Any, specials: str) -> Any:
    col = pc.replace_substring(col, "\\", "\\\\")
    for ch in specials:
        col = pc.replace_substring(col, ch, "\\" + ch)
    return col


def _escape_text(text: str, specials: str) -> str:
    text = text.replace("\\", "\\\\")
    for ch in specials:
        text = text.replace(ch, "\\" + ch)
    return text


_LP_ROWS_PER_PASS = 1 << 17


def to_line_protocol(table: pa.Table, metric: str = "cpu") -> bytes:
    """Influx line protocol for a normalised table (labels as tags, fields with ``i`` for int64; nulls
    omitted). Floats are written in shortest round-trip form; NaN and infinities cannot be written."""
    names = table.schema.names
    if TIME_COLUMN not in names:
        raise InvalidTimestampError(f"table has no {TIME_COLUMN!r} column")
    for name in names:
        t = table.schema.field(name).type
        col = table.column(name)
        if name == TIME_COLUMN:
            continue
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            if pc.any(pc.match_substring_regex(col, "[\\n\\r]")).as_py():
                raise InvalidValueTypeError(
                    f"label {name!r} has a line break, which line protocol cannot hold"
                )
        elif pa.types.is_floating(t):
            if pc.any(pc.invert(pc.is_finite(col))).as_py():
                raise InvalidValueTypeError(
                    f"field {name!r} holds NaN or infinity; line protocol cannot hold it"
                )
        elif not pa.types.is_integer(t):
            raise InvalidValueTypeError(f"column {name!r} of type {t} cannot be written as line protocol")
    out = bytearray()
    for start in range(0, table.num_rows, _LP_ROWS_PER_PASS):
        out += _line_protocol_rows(table.slice(start, _LP_ROWS_PER_PASS).combine_chunks(), metric)
    return bytes(out)


def _line_protocol_rows(table: pa.Table, metric: str) -> bytes:
    """Assemble lines with one ``take``: every piece of every line is an element of a pool of strings
    (constants, escaped tag dictionaries, field values), and taking them in row-major order lays the text
    out contiguously in the result's data buffer."""
    n = table.num_rows
    pool: list[Any] = []
    pool_size = 0

    def add(values: Any) -> int:
        nonlocal pool_size
        pool.append(values.cast(pa.large_string()))
        pool_size += len(values)
        return pool_size - len(values)

    def const(text: str) -> np.ndarray:
        return np.full(n, add(pa.array([text])), dtype=np.int64)

    blank = int(const("")[0]) if n else 0
    columns: list[np.ndarray] = [const(_escape_text(metric, ", "))]
    names = [name for name in table.schema.names if name != TIME_COLUMN]
    present = np.zeros(n, dtype=bool)
    space, comma = const(" "), const(",")
    for name in names:
        col: Any = table.column(name).chunk(0)
        if _is_text(col.type):
            encoded: Any = col.dictionary_encode()
            key = pa.scalar(f",{_escape_text(name, ', =')}=")
            base = add(pc.binary_join_element_wise(key, _escape(encoded.dictionary, ", ="), ""))
            idx = encoded.indices.to_numpy(zero_copy_only=False)
            valid = col.is_valid().to_numpy(zero_copy_only=False)
            columns.append(np.where(valid, base + np.nan_to_num(idx, nan=0).astype(np.int64), blank))
    for name in names:
        col = table.column(name).chunk(0)
        if _is_text(col.type):
            continue
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        first = valid & ~present  # the first field present on a row follows the space, the others a comma
        present |= valid
        columns.append(np.where(valid, np.where(first, space, comma), blank))
        columns.append(np.where(valid, const(f"{_escape_text(name, ', =')}="), blank))
        base = add(pc.fill_null(col.cast(pa.string()), ""))
        columns.append(np.arange(base, base + n, dtype=np.int64))
        if pa.types.is_integer(col.type):
            columns.append(np.where(valid, const("i"), blank))
    columns.append(space)
    base = add(table.column(TIME_COLUMN).chunk(0).cast(pa.string()))
    columns += [np.arange(base, base + n, dtype=np.int64), const("\n")]
    order = np.stack(columns, axis=1).reshape(-1)
    laid_out: Any = pa.concat_arrays(pool).take(pa.array(order))
    offsets = np.frombuffer(laid_out.buffers()[1], dtype=np.int64, count=len(laid_out) + 1)
    return bytes(memoryview(laid_out.buffers()[2])[offsets[0] : offsets[-1]])


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))

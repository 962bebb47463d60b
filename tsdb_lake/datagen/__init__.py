"""Synthetic data generators for benchmarks, the demo and tests (TSBS-compatible ``cpu-only``)."""

from tsdb_lake.datagen.tsbs import (
    CPU_FIELDS,
    TAG_KEYS,
    generate_cpu_only,
    host_tags,
    iter_cpu_only,
    to_line_protocol,
    to_ns,
)

__all__ = [
    "CPU_FIELDS",
    "TAG_KEYS",
    "generate_cpu_only",
    "host_tags",
    "iter_cpu_only",
    "to_line_protocol",
    "to_ns",
]

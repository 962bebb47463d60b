"""A writer process for crash tests: writes deterministic batches, printing ``ACK <i>`` after each returns.

usage: python crash_writer.py LAKE_URI STORAGE_OPTIONS_JSON FIRST_BATCH N_BATCHES FLUSH_EVERY [WRITER_SETTINGS_JSON]
"""

from __future__ import annotations

import json
import sys

import numpy as np

import tsdb_lake

BASE_NS = 1_700_000_000_000_000_000
POINTS_PER_BATCH = 40


def batch(i: int) -> dict[str, object]:
    """Batch ``i``: 40 points, unique timestamps (1 s apart), 4 hosts, value = i * 1000 + j."""
    j = np.arange(POINTS_PER_BATCH)
    return {
        "time": BASE_NS + (i * POINTS_PER_BATCH + j) * 60_000_000_000,
        "host": np.array([f"h{k % 4}" for k in j]),
        "value": (i * 1000 + j).astype(np.float64),
    }


def main() -> None:
    uri, options, first, n, flush_every = sys.argv[1], json.loads(sys.argv[2]), *map(int, sys.argv[3:6])
    settings = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {"flush_bytes": 64 << 10}
    from tsdb_lake import codecs
    from tsdb_lake.schema import normalize_frame

    normalize_frame(
        batch(0), metric="m"
    )  # warm imports and JIT caches so kills land mid-work, not mid-import
    codecs.encode_floats(np.zeros(8))
    codecs.encode_timestamps(np.arange(8, dtype=np.int64))
    lake = tsdb_lake.connect(uri, storage_options=options or None)
    with lake.writer(tenant="crash", durability="batch", **settings) as writer:
        print("READY", flush=True)
        for i in range(first, first + n):
            writer.write("m", batch(i))
            print(f"ACK {i}", flush=True)
            if flush_every and (i + 1) % flush_every == 0:
                writer.flush()
                print(f"FLUSHED {i}", flush=True)


if __name__ == "__main__":
    main()

"""A writer process for the concurrency test: writer K writes N batches of 25 points for host w<K>.

usage: python concurrent_writer.py LAKE_URI STORAGE_OPTIONS_JSON K N
"""

from __future__ import annotations

import json
import sys

import numpy as np

import tsdb_lake

BASE_NS = 1_700_000_000_000_000_000
BATCH = 25


def main() -> None:
    uri, options, k, n = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    lake = tsdb_lake.connect(uri, storage_options=options or None)
    with lake.writer(tenant="cc", durability="none") as writer:
        for i in range(n):
            j = np.arange(BATCH)
            t = BASE_NS + (i * BATCH + j) * 30_000_000_000
            writer.write(
                "m", {"time": t, "host": np.array([f"w{k}"] * BATCH), "v": (k * 1e6 + i * BATCH + j) * 1.0}
            )
            writer.flush()  # every batch is its own commit: many racing commits
    print("DONE", flush=True)


if __name__ == "__main__":
    main()

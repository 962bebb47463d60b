"""Several writer processes and a reader on one lake: no commit lost, no point duplicated, consistent reads."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

import tsdb_lake

SCRIPT = Path(__file__).parent / "concurrent_writer.py"
BASE_NS = 1_700_000_000_000_000_000
BATCH = 25


def test_writer_processes_and_a_reader(lake_target: Any, tmp_path: Path) -> None:
    writers, batches = 3, 6 if lake_target.kind == "s3" else 10
    opts = json.dumps(lake_target.storage_options)
    env = {**__import__("os").environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    tsdb_lake.connect(
        lake_target.uri, lake_target.storage_options, wal_root=tmp_path / "w"
    )  # create the lake
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), lake_target.uri, opts, str(k), str(batches)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(writers)
    ]
    reader = tsdb_lake.connect(lake_target.uri, lake_target.storage_options, wal_root=tmp_path / "r")
    seen: dict[str, int] = {}
    observations = 0
    try:
        while any(p.poll() is None for p in procs):
            snap = reader.snapshot()
            if snap.schema("cc", "m") is not None:
                df = reader.query("m", BASE_NS, BASE_NS + 10**15, tenant="cc", as_of=snap.version)
                counts = dict(df.group_by("host").len().iter_rows())
                for host, n in counts.items():
                    assert n % BATCH == 0, f"snapshot {snap.version} shows a partial batch of {host}: {n}"
                    assert n >= seen.get(host, 0), "a later snapshot lost points"
                    seen[host] = n
                observations += 1
            time.sleep(0.05)
    finally:
        outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "DONE" in out
    final = tsdb_lake.connect(lake_target.uri, lake_target.storage_options, wal_root=tmp_path / "f")
    df = final.query("m", BASE_NS, BASE_NS + 10**15, tenant="cc")
    assert df.height == writers * batches * BATCH
    assert df.select(pl.struct("host", "time").is_duplicated().any()).item() is False
    snap = final.snapshot()
    assert sum(f.points for f in snap.files("cc", "m", "raw")) == df.height  # nothing stored twice
    assert snap.version >= writers * batches  # every flush committed its own version
    assert observations > 0

"""Guard for the pyarrow exit-abort (ARCHITECTURE.md): short interpreters that read Parquet through both
storages' native ``arrow_fs()`` must exit cleanly, every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tsdb_lake.storage import open_storage

REPO = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("TSDB_LAKE_EXIT_RUNS", "20"))  # each run imports the whole package
PARALLEL = 2
KEY = "data/tenant=t/metric=m/tier=raw/hour=2024-01-02T03/part-exit.parquet"

SCRIPT = """
import json, sys
import pyarrow.parquet as pq
from tsdb_lake.storage import open_storage
local = open_storage(sys.argv[1])
remote = open_storage(sys.argv[2], json.loads(sys.argv[3]))
for st in (local, remote):
    table = pq.read_table(st.arrow_path(sys.argv[4]), filesystem=st.arrow_fs())
    assert table.num_rows == 5000, table.num_rows
    with st.open_input_file(sys.argv[4]) as f:
        assert pq.ParquetFile(f).metadata.num_rows == 5000
    assert st.read_bytes("_catalog/log/00000000000000000000.json") == b"{}"
    assert [o.key for o in st.list("data/")] == [sys.argv[4]]
print("ok")
"""


@pytest.mark.s3
def test_short_processes_exit_cleanly(tmp_path: Path, s3_lake: tuple[str, dict[str, object]]) -> None:
    s3_uri, options = s3_lake
    local_uri = str(tmp_path / "lake")
    table = pa.table({"time": pa.array(range(5000), pa.int64()), "v": pa.array([0.25] * 5000)})
    for st in (open_storage(local_uri), open_storage(s3_uri, options)):
        with st.open_output(KEY) as sink:
            pq.write_table(table, sink)
        st.write_bytes("_catalog/log/00000000000000000000.json", b"{}")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-c", SCRIPT, local_uri, s3_uri, json.dumps(options), KEY]
    failures: list[str] = []
    for start in range(0, RUNS, PARALLEL):
        procs = [
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(min(PARALLEL, RUNS - start))
        ]
        for p in procs:
            out, err = p.communicate(timeout=120)
            if p.returncode != 0 or out.strip() != b"ok":
                failures.append(f"exit {p.returncode}: {err.decode(errors='replace')[-800:]}")
    assert not failures, f"{len(failures)}/{RUNS} runs failed; first: {failures[0]}"

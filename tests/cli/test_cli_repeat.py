"""The CLI exits 0 every time: short commands that read Parquet, run many times as real processes.

Guards the pyarrow exit-abort (ARCHITECTURE.md: ``terminate called without an active exception``, exit 134,
when Parquet was read through Python file objects). 20 runs alternate ``query`` (reads data files) and
``status`` (reads the catalog), two at a time.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RUNS = 20


def test_short_commands_exit_0_every_time(small_lake: Path, cli_cmd: list[str]) -> None:
    query = [
        *cli_cmd,
        "query",
        "cpu",
        "--tenant",
        "acme",
        "--lake",
        str(small_lake),
        "--where",
        '{"host": "h2"}',
        "--start",
        "2023-11-14T01:00:00Z",
        "--end",
        "2023-11-14T02:00:00Z",
        "--format",
        "csv",
    ]
    status = [*cli_cmd, "status", "--lake", str(small_lake)]

    def run(i: int) -> tuple[int, int, str, str]:
        proc = subprocess.run(query if i % 2 == 0 else status, capture_output=True, text=True, timeout=300)
        return i, proc.returncode, proc.stdout, proc.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, range(RUNS)))
    failures = [(i, code, err[-300:]) for i, code, _, err in results if code != 0]
    assert not failures, failures
    for i, _, out, err in results:
        assert "terminate called" not in err
        if i % 2 == 0:
            assert len(out.strip().splitlines()) == 361  # header + one hour of one host
        else:
            assert "tenant acme" in out

"""Fixtures for the CLI tests: a small lake built once per session, copies of it, and an in-process runner.

``small_lake`` (session): tenant ``acme``, metric ``cpu`` (labels host, region; fields usage_user,
usage_system) — 3 hosts x 3 hours at 10 s from 2023-11-14T00:00Z, written in three flushes, rolled up.
Tests that change a lake take ``lake_copy`` (a private copy). ``run_cli(*argv)`` runs ``tsdb_lake.cli.main``
in-process and returns ``(exit_code, stdout, stderr)``; ``cli_cmd`` is the command line of the
installed script for subprocess tests.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

HOUR = 3_600_000_000_000
T0 = 1_699_920_000_000_000_000  # 2023-11-14T00:00:00Z
HOSTS = ("h0", "h1", "h2")
HOURS = 3
STEP = 10_000_000_000

RunCli = Callable[..., tuple[int, str, str]]


def cpu_frame(start: int, end: int, seed: int = 0) -> pl.DataFrame:
    """Points of every host every 10 s in ``[start, end)``."""
    rng = np.random.default_rng(seed)
    times = np.arange(start, end, STEP, dtype=np.int64)
    n = len(times) * len(HOSTS)
    return pl.DataFrame(
        {
            "time": np.repeat(times, len(HOSTS)),
            "host": np.tile(np.array(HOSTS), len(times)),
            "region": np.tile(np.array(["eu", "us", "eu"]), len(times)),
            "usage_user": rng.uniform(0, 100, n).round(1),
            "usage_system": rng.uniform(0, 20, n).round(1),
        }
    ).with_columns(pl.col("time").cast(pl.Datetime("ns", "UTC")))


def build_lake(path: Path) -> Path:
    """Write the small lake at ``path`` (three flushes, one per hour) and build its rollups."""
    import tsdb_lake

    lake = tsdb_lake.connect(path)
    with lake.writer(tenant="acme") as w:
        for h in range(HOURS):
            w.write("cpu", cpu_frame(T0 + h * HOUR, T0 + (h + 1) * HOUR, seed=h))
            w.flush()
    lake.rollup()
    return path


@pytest.fixture(scope="session")
def small_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only small lake shared by the session (do not change it: use ``lake_copy``)."""
    return build_lake(tmp_path_factory.mktemp("cli") / "lake")


@pytest.fixture
def lake_copy(small_lake: Path, tmp_path: Path) -> Path:
    """A private copy of the small lake that a test may change."""
    dest = tmp_path / "lake"
    shutil.copytree(small_lake, dest)
    return dest


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """Run the CLI in-process: ``run_cli("status", "--lake", path)`` -> (exit code, stdout, stderr)."""
    from tsdb_lake.cli import main

    monkeypatch.delenv("TSDB_LAKE_DEBUG", raising=False)

    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse: --help, usage errors
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def cli_cmd() -> list[str]:
    """The installed console script, or ``python -m tsdb_lake.cli`` when it is not installed."""
    script = Path(sys.executable).parent / "tsdb-lake"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tsdb_lake.cli"]

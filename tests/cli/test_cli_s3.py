"""The CLI against an S3 lake (the local moto endpoint), storage options from the flag and the environment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import tsdb_lake

T0 = 1_699_920_000_000_000_000


@pytest.mark.s3
def test_cli_on_s3(
    run_cli, s3_lake: tuple[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, options = s3_lake
    lake = tsdb_lake.connect(uri, options, wal_root=tmp_path / "wal")
    with lake.writer(tenant="acme", wal_dir=tmp_path / "wal" / "w") as w:
        w.write("cpu", {"time": [T0, T0 + 10**9], "host": ["a", "b"], "v": [1.0, 2.0]})
    opts = json.dumps(options)
    code, out, err = run_cli("status", "--lake", uri, "--storage-options", opts, "--json")
    assert code == 0, err
    assert json.loads(out)["tenants"]["acme"]["cpu"]["tiers"]["raw"]["points"] == 2
    monkeypatch.setenv("TSDB_LAKE_STORAGE_OPTIONS", opts)
    monkeypatch.setenv("TSDB_LAKE_URI", uri)
    code, out, err = run_cli("query", "cpu", "--tenant", "acme", "--format", "csv")
    assert code == 0 and len(out.strip().splitlines()) == 3, err
    code, out, err = run_cli("verify", "--lake", uri, "--deep")
    assert code == 0 and "OK" in out, out + err
    code, out, err = run_cli("export", tmp_path / "out", "--lake", uri, "--tenant", "acme", "--json")
    assert code == 0 and json.loads(out)["rows"] == 2, err

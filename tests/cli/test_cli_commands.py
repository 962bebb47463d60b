"""Happy paths of every ``tsdb-lake`` command, run in-process against a small lake."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tsdb_lake.cli import _parser

HOUR = 3_600_000_000_000
T0 = 1_699_920_000_000_000_000

COMMANDS = [
    "demo",
    "ingest",
    "query",
    "sql",
    "compact",
    "rollup",
    "retention",
    "vacuum",
    "status",
    "verify",
    "export",
]


def test_every_command_is_registered() -> None:
    sub = next(a for a in _parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "argv", [[c] for c in COMMANDS] + [["retention", a] for a in ("show", "set", "remove", "apply")]
)
def test_help_explains_with_an_example(run_cli, argv: list[str]) -> None:
    code, out, err = run_cli(*argv, "--help")
    assert code == 0 and not err
    assert "example:" in out and "tsdb-lake " in out.split("example:", 1)[1]
    assert "--lake" in out or argv == ["retention"]


def test_top_level_help_lists_commands(run_cli) -> None:
    code, out, _ = run_cli("--help")
    assert code == 0
    for c in COMMANDS:
        assert c in out


def test_status_text_and_json(run_cli, small_lake: Path) -> None:
    code, out, err = run_cli("status", "--lake", small_lake)
    assert code == 0, err
    assert "tenant acme" in out and "metric cpu" in out and "raw" in out and "built up to" in out
    code, out, _ = run_cli("status", "--lake", small_lake, "--json")
    assert code == 0
    status = json.loads(out)
    raw = status["tenants"]["acme"]["cpu"]["tiers"]["raw"]
    assert raw["points"] == 3 * 360 * 3 and raw["series"] == 3 and raw["partitions"] == 3
    assert status["tenants"]["acme"]["cpu"]["tiers"]["1m"]["watermark"] is not None
    assert raw["start"] == "2023-11-14T00:00:00Z"


def test_query_formats(run_cli, small_lake: Path, tmp_path: Path) -> None:
    base = [
        "query",
        "cpu",
        "--lake",
        small_lake,
        "--tenant",
        "acme",
        "--start",
        "2023-11-14T00:00:00Z",
        "--end",
        "2023-11-14T01:00:00Z",
        "--where",
        '{"host": "h1"}',
    ]
    code, out, err = run_cli(*base, "--format", "csv")
    assert code == 0, err
    rows = out.strip().splitlines()
    assert len(rows) == 361 and rows[0].startswith("time,") and "h1" in rows[1]
    code, out, _ = run_cli(*base, "--format", "json", "--fields", "usage_user")
    records = json.loads(out)
    assert len(records) == 360 and set(records[0]) >= {"time", "host", "usage_user"}
    code, out, _ = run_cli(*base, "--format", "table", "--limit", "3")
    assert code == 0 and "shape: (3," in out
    target = tmp_path / "q.parquet"
    code, _, err = run_cli(*base, "--format", "parquet", "--output", target)
    assert code == 0 and "360 rows" in err
    assert pl.read_parquet(target).height == 360


def test_query_buckets_selector_and_explain(run_cli, small_lake: Path) -> None:
    code, out, err = run_cli(
        "query",
        "cpu",
        "--lake",
        small_lake,
        "--tenant",
        "acme",
        "--where",
        'host=~"h[01]"',
        "--every",
        "1h",
        "--agg",
        "avg,max,p99",
        "--fields",
        "usage_user",
        "--format",
        "csv",
        "--explain",
    )
    assert code == 0, err
    frame = pl.read_csv(out.encode())
    assert frame.height == 2 * 3 and {"usage_user_avg", "usage_user_max", "usage_user_p99"} <= set(
        frame.columns
    )
    explain = json.loads(err.strip().splitlines()[-1])
    assert "tiers" in explain and explain["files_total"] >= 1


def test_sql(run_cli, small_lake: Path) -> None:
    code, out, err = run_cli(
        "sql",
        "SELECT host, count(*) AS n FROM cpu GROUP BY host ORDER BY host",
        "--lake",
        small_lake,
        "--tenant",
        "acme",
        "--format",
        "csv",
    )
    assert code == 0, err
    assert out.strip().splitlines() == ["host,n", "h0,1080", "h1,1080", "h2,1080"]


def test_ingest_csv_parquet_and_line_protocol(run_cli, tmp_path: Path) -> None:
    lake = tmp_path / "new"
    csv = tmp_path / "temps.csv"
    csv.write_text(
        "ts,site,temp\n2024-01-01T00:00:00Z,a,1.5\n2024-01-01T00:01:00Z,a,2.5\n2024-01-01T00:00:00Z,b,3\n"
    )
    code, out, err = run_cli(
        "ingest", csv, "--lake", lake, "--metric", "temp", "--tenant", "t1", "--time-column", "ts"
    )
    assert code == 0, err
    assert "ingested 3 points" in out
    pq_path = tmp_path / "more.parquet"
    pl.DataFrame({"when": [1_704_067_200_000_000_000], "site": ["c"], "temp": [9.0]}).write_parquet(pq_path)
    code, out, err = run_cli(
        "ingest", pq_path, "--lake", lake, "--metric", "temp", "--tenant", "t1", "--rename", "when=time"
    )
    assert code == 0, err
    lp = tmp_path / "m.lp"
    lp.write_text("mem,host=a used=1i 1704067200000000000\nmem,host=a used=2i 1704067260000000000\n")
    code, out, err = run_cli("ingest", lp, "--lake", lake, "--tenant", "t1")
    assert code == 0 and "ingested 2 points" in out, err
    code, out, _ = run_cli("query", "temp", "--lake", lake, "--tenant", "t1", "--format", "csv")
    assert len(out.strip().splitlines()) == 1 + 4
    code, out, _ = run_cli("query", "mem", "--lake", lake, "--tenant", "t1", "--format", "json")
    assert [r["used"] for r in json.loads(out)] == [1, 2]


def test_compact_merges_small_files(run_cli, tmp_path: Path) -> None:
    import tsdb_lake

    lake_path = tmp_path / "lake"
    lake = tsdb_lake.connect(lake_path)
    with lake.writer(tenant="acme") as w:
        for i in range(5):  # five small files in one settled hour
            w.write("cpu", {"time": [T0 + i * 1_000_000_000], "host": ["a"], "v": [float(i)]})
            w.flush()
    code, out, err = run_cli("compact", "--lake", lake_path, "--quiet", "0s", "--dry-run")
    assert code == 0 and "would merge 5 file(s)" in out, (out, err)
    code, out, err = run_cli("compact", "--lake", lake_path, "--quiet", "0s", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["files_removed"] == 5 and report["files_added"] == 1
    code, out, _ = run_cli("query", "cpu", "--lake", lake_path, "--tenant", "acme", "--format", "csv")
    assert len(out.strip().splitlines()) == 6


def test_rollup_reports_passes(run_cli, tmp_path: Path) -> None:
    import tsdb_lake

    lake_path = tmp_path / "lake"
    with tsdb_lake.connect(lake_path).writer(tenant="acme") as w:
        w.write("cpu", {"time": [T0, T0 + HOUR], "host": ["a", "a"], "v": [1.0, 2.0]})
    code, out, err = run_cli("rollup", "--lake", lake_path, "--dry-run")
    assert code == 0 and "would build" in out, err
    code, out, err = run_cli("rollup", "--lake", lake_path, "--json")
    assert code == 0, err
    tiers = {p["tier"] for p in json.loads(out)["passes"] if p["files_added"]}
    assert tiers == {"1m", "1h", "1d"}
    code, out, _ = run_cli("rollup", "--lake", lake_path)
    assert code == 0 and "rollup of" in out


def test_retention_show_set_apply_remove(run_cli, lake_copy: Path) -> None:
    code, out, _ = run_cli("retention", "show", "--lake", lake_copy)
    assert code == 0 and "no retention rules" in out
    code, out, err = run_cli("retention", "set", "raw", "30d", "--lake", lake_copy, "--tenant", "acme")
    assert code == 0 and "keep 30d" in out, err
    code, out, _ = run_cli("retention", "show", "--lake", lake_copy, "--json")
    rules = json.loads(out)
    assert rules == [
        {
            "tenant": "acme",
            "metric": None,
            "tier": "raw",
            "ttl_ns": 30 * 86_400 * 10**9,
            "ttl_s": 30 * 86_400.0,
        }
    ]
    code, out, err = run_cli("retention", "apply", "--lake", lake_copy, "--dry-run", "--json")
    assert code == 0, err
    dry = json.loads(out)
    assert dry["dry_run"] and dry["files"] == 3  # the 2023 raw hours are past 30 days, rollups cover them
    code, out, err = run_cli("retention", "apply", "--lake", lake_copy)
    assert code == 0 and "expired 3 partition(s)" in out, (out, err)
    code, out, _ = run_cli("status", "--lake", lake_copy, "--json")
    assert json.loads(out)["tenants"]["acme"]["cpu"]["tiers"]["raw"]["files"] == 0
    code, out, _ = run_cli("retention", "remove", "raw", "--lake", lake_copy, "--tenant", "acme")
    assert code == 0 and "removed" in out
    code, out, _ = run_cli("retention", "show", "--lake", lake_copy, "--json")
    assert json.loads(out) == []


def test_vacuum_deletes_expired_files(run_cli, lake_copy: Path) -> None:
    run_cli("retention", "set", "raw", "1d", "--lake", lake_copy)
    code, _, err = run_cli("retention", "apply", "--lake", lake_copy)
    assert code == 0, err
    code, out, _ = run_cli("vacuum", "--lake", lake_copy, "--older-than", "0s", "--dry-run", "--json")
    dry = json.loads(out)
    assert dry["files"] == 3 and dry["dry_run"]
    assert len(list((lake_copy / "data").rglob("*.parquet"))) == 6  # nothing deleted by the dry run
    code, out, _ = run_cli("vacuum", "--lake", lake_copy, "--older-than", "0s")
    assert code == 0 and "deleted 3 object(s)" in out
    assert len(list((lake_copy / "data").rglob("*.parquet"))) == 3  # the three rollup files remain


def test_verify_clean_lake(run_cli, small_lake: Path) -> None:
    code, out, err = run_cli("verify", "--lake", small_lake)
    assert code == 0, out + err
    assert "OK" in out and "6 footers" in out
    code, out, _ = run_cli("verify", "--lake", small_lake, "--deep", "--json")
    report = json.loads(out)
    assert report["ok"] and report["footers_checked"] == 6 and report["deep"]


def test_export_full_then_incremental(run_cli, lake_copy: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    code, out, err = run_cli("export", dest, "--lake", lake_copy, "--tenant", "acme", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first["partitions_written"] == 3 and first["rows"] == 3 * 1080
    code, out, _ = run_cli("export", dest, "--lake", lake_copy, "--tenant", "acme", "--incremental", "--json")
    again = json.loads(out)
    assert again["partitions_written"] == 0 and again["partitions_unchanged"] == 3
    code, out, _ = run_cli(
        "export", tmp_path / "roll", "--lake", lake_copy, "--tenant", "acme", "--tier", "1h"
    )
    assert code == 0 and "3 partition" not in out and "exported 1h" in out
    files = list((tmp_path / "roll").rglob("*.parquet"))
    assert len(files) == 1 and pl.read_parquet(files[0]).height == 3 * 3


def test_demo_small(run_cli, tmp_path: Path) -> None:
    lake = tmp_path / "demo"
    code, out, err = run_cli("demo", "--lake", lake, "--hosts", "2", "--hours", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["points"] == 2 * 2 * 360 and report["raw_bytes"] > 0 and report["parquet_bytes"] > 0
    assert any("rollup" in k for k in report["maintenance"]) and "1h" in report["tier_bytes"]
    tiers_used = {t for q in report["queries"] for t in q["tiers"]}
    assert "raw" in tiers_used and tiers_used & {"1m", "1h", "1d"}
    png = Path(report["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    code, out, err = run_cli("demo", "--lake", lake, "--hosts", "2", "--hours", "1", "--no-plot")
    assert code == 0, err  # a lake the demo created is replaced on the next run
    assert "tsdb-lake demo" in out and "2 hosts x 1 h" in out

"""Error paths of every ``tsdb-lake`` command: one ``error:`` line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tsdb_lake.catalog import dump_document, load_document


def _one_line_error(code: int, out: str, err: str, *, expect_code: int = 2) -> str:
    assert code == expect_code, (code, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


CASES = {
    "demo-bad-hosts": (["demo", "--hosts", "0"], "host"),
    "ingest-missing-file": (["ingest", "/nonexistent/data.csv", "--metric", "m"], "no such file"),
    "ingest-no-metric": (["ingest", "{csv}", "--tenant", "acme"], "metric"),
    "ingest-bad-rename": (["ingest", "{csv}", "--metric", "m", "--rename", "ts"], "old=new"),
    "ingest-unknown-column": (["ingest", "{csv}", "--metric", "m", "--rename", "nope=time"], "nope"),
    "query-no-lake": (["query", "cpu", "--lake", "{missing}"], "no lake at"),
    "query-unknown-metric": (["query", "nosuch", "--tenant", "acme"], "nosuch"),
    "query-bad-time": (["query", "cpu", "--tenant", "acme", "--start", "yesterday-ish"], "yesterday-ish"),
    "query-bad-json": (["query", "cpu", "--tenant", "acme", "--where", '{"host": h1}'], "JSON"),
    "query-bad-agg": (
        ["query", "cpu", "--tenant", "acme", "--every", "1m", "--agg", "median_ish"],
        "median_ish",
    ),
    "query-parquet-needs-output": (["query", "cpu", "--tenant", "acme", "--format", "parquet"], "--output"),
    "query-bad-tenant-name": (["query", "cpu", "--tenant", "../etc"], "tenant"),
    "sql-bad-table": (["sql", "SELECT * FROM nosuch", "--tenant", "acme"], "nosuch"),
    "sql-not-a-query": (["sql", "DROP TABLE cpu", "--tenant", "acme"], ""),
    "compact-bad-duration": (["compact", "--settle", "soon"], "soon"),
    "rollup-bad-duration": (["rollup", "--settle", "-5"], "settle"),
    "retention-bad-ttl": (["retention", "set", "raw", "a while"], "a while"),
    "retention-no-lake": (["retention", "show", "--lake", "{missing}"], "no lake at"),
    "vacuum-bad-duration": (["vacuum", "--older-than", "forever"], "forever"),
    "status-bad-storage-options": (["status", "--storage-options", "[1, 2]"], "JSON object"),
    "status-no-lake": (["status", "--lake", "{missing}"], "no lake at"),
    "verify-no-lake": (["verify", "--lake", "{missing}"], "no lake at"),
    "export-bad-tier": (["export", "{out}", "--tenant", "acme", "--tier", "5m"], "5m"),
    "export-unknown-metric": (["export", "{out}", "--tenant", "acme", "--metric", "nosuch"], "nosuch"),
    "export-future-version": (["export", "{out}", "--tenant", "acme", "--since-version", "999"], "999"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_error_is_one_line(run_cli, small_lake: Path, tmp_path: Path, name: str) -> None:
    argv, needle = CASES[name]
    csv = tmp_path / "in.csv"
    csv.write_text("ts,host,v\n2024-01-01T00:00:00Z,a,1\n")
    subs = {"{csv}": str(csv), "{missing}": str(tmp_path / "missing"), "{out}": str(tmp_path / "out")}
    argv = [subs.get(a, a) for a in argv]
    if "--lake" not in argv:
        lake = tmp_path / "fresh" if argv[0] in ("demo", "ingest") else small_lake
        argv += ["--lake", str(lake)]
    line = _one_line_error(*run_cli(*argv))
    assert needle.lower() in line.lower()
    assert not (tmp_path / "missing").exists()  # read-only commands never create a lake


def test_query_on_missing_lake_does_not_create_it(run_cli, tmp_path: Path) -> None:
    _one_line_error(*run_cli("status", "--lake", tmp_path / "typo"))
    assert not (tmp_path / "typo").exists()


def test_argparse_mistakes_exit_2_with_usage(run_cli) -> None:
    code, _, err = run_cli("query")
    assert code == 2 and "usage:" in err and "Traceback" not in err
    code, _, err = run_cli("frobnicate")
    assert code == 2 and "invalid choice" in err


def test_verify_problems_exit_1(run_cli, lake_copy: Path) -> None:
    files = sorted((lake_copy / "data").rglob("*.parquet"))
    raw = [f for f in files if "tier=raw" in str(f)]
    raw[0].unlink()
    raw[1].write_bytes(raw[1].read_bytes()[:100])  # truncated: footer unreadable, size differs
    code, out, err = run_cli("verify", "--lake", lake_copy)
    assert code == 1, out + err
    assert "missing" in out and "footer" in out and "size" in out and "PROBLEM" in out
    assert "Traceback" not in out + err


def test_verify_orphans_are_warnings_unless_strict(run_cli, lake_copy: Path) -> None:
    part = next((lake_copy / "data").rglob("tier=raw/*/"))
    (part / "part-00000000-0000-4000-8000-000000000000.parquet").write_bytes(b"PAR1 not really")
    code, out, _ = run_cli("verify", "--lake", lake_copy)
    assert code == 0 and "orphan" in out and "warning" in out
    code, out, _ = run_cli("verify", "--lake", lake_copy, "--strict")
    assert code == 1


def test_verify_catalog_entry_against_schema(run_cli, lake_copy: Path) -> None:
    entry = sorted((lake_copy / "_catalog" / "log").glob("*.json"))[-1]
    doc = load_document(entry.read_bytes(), entry.name, "entry")
    doc["operation"] = "write\u0001"  # the schema's operation pattern rejects control characters
    entry.write_bytes(dump_document(doc))
    code, out, err = run_cli("verify", "--lake", lake_copy, "--json")
    assert code == 1, out + err
    assert "Traceback" not in out + err
    assert "catalog" in out + err


def test_verify_unopenable_catalog_exits_1(run_cli, lake_copy: Path) -> None:
    entry = sorted((lake_copy / "_catalog" / "log").glob("*.json"))[-1]
    entry.write_text("{not json")
    line = _one_line_error(*run_cli("verify", "--lake", lake_copy), expect_code=1)
    assert "catalog" in line


def test_unexpected_failure_is_one_line_in_a_real_process(cli_cmd: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('a,b\n1,"unterminated\n')
    proc = subprocess.run(
        [*cli_cmd, "ingest", str(bad), "--metric", "m", "--lake", str(tmp_path / "lake")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (2, 3), proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")

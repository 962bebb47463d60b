"""benchmarks/run_all.py: discovery, calling run() / main(argv) / main(), failures, and the RESULTS markdown."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "benchmarks_run_all_under_test", ROOT / "benchmarks" / "run_all.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


FAKE_RUN = """
QUICK = {"n": 2}
def run(n=10):
    return {"n": n, "targets": {"n_max": 5}}
def markdown(results):
    met = "met" if results["n"] <= results["targets"]["n_max"] else "**not met**"
    return f"### Fake run\\n\\n| n | target | |\\n|---|---|---|\\n| {results['n']} | <= 5 | {met} |"
"""
FAKE_MAIN_ARGV = """
def main(argv):
    return {"argv": list(argv)}
def markdown(results):
    return "## Fake main\\n\\nargv " + json.dumps(results["argv"])
import json
"""
FAKE_BROKEN = """
def main():
    raise RuntimeError("boom")
"""


def test_run_all_writes_markdown(tmp_path: Path) -> None:
    mod = _run_all()
    (tmp_path / "bench_a.py").write_text(FAKE_RUN)
    (tmp_path / "bench_b.py").write_text(FAKE_MAIN_ARGV)
    (tmp_path / "bench_c.py").write_text(FAKE_BROKEN)
    (tmp_path / "helper.py").write_text("raise SystemExit('not a benchmark')\n")
    argv_before = list(sys.argv)
    outcomes, target = mod.run_all(bench_dir=tmp_path, output=tmp_path / "R.md")
    assert sys.argv == argv_before
    assert [o.name for o in outcomes] == ["bench_a", "bench_b", "bench_c"]
    a, b, c = outcomes
    assert a.error is None and a.results == {"n": 10, "targets": {"n_max": 5}} and a.not_met == 1
    assert b.error is None and b.results == {"argv": []}
    assert c.error == "RuntimeError: boom"
    text = target.read_text()
    assert text.startswith("# Benchmark results") and "## Machine" in text and "cpu_count" in text
    assert "## Fake run" in text and "**not met**" in text and "## Fake main" in text
    assert "## bench_c — FAILED" in text and "| `bench_c` | FAILED |" in text
    assert "| `bench_a` | ok |" in text and "Quick run" not in text


def test_run_all_quick_passes_small_sizes(tmp_path: Path) -> None:
    mod = _run_all()
    (tmp_path / "bench_a.py").write_text(FAKE_RUN)
    (tmp_path / "bench_b.py").write_text(
        FAKE_MAIN_ARGV.replace("def main(argv)", "QUICK_ARGV = ['1', '2']\ndef main(argv)")
    )
    outcomes, target = mod.run_all(bench_dir=tmp_path, quick=True, only=["a", "bench_b"])
    assert target.name == "RESULTS-quick.md"
    assert outcomes[0].results["n"] == 2 and outcomes[0].not_met == 0
    assert outcomes[1].results == {"argv": ["1", "2"]}
    assert "Quick run" in target.read_text()
    assert json.loads(json.dumps(outcomes[1].results)) == {"argv": ["1", "2"]}


def test_real_benchmarks_are_discovered() -> None:
    mod = _run_all()
    names = [p.stem for p in mod.discover()]
    assert {"bench_codecs", "bench_ingest"} <= set(names)
    assert "run_all" not in names and "_common" not in names

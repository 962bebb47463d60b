"""Run every ``benchmarks/bench_*.py`` and regenerate ``benchmarks/RESULTS.md``.

``python -m benchmarks.run_all`` (what ``./dev bench`` runs) imports each benchmark module and calls it:

* a module with ``run(**kwargs)`` is called as ``run()`` (or ``run(**QUICK)`` with ``--quick``) and its results
  are written to ``benchmarks/results/<name>.json``, as its own ``main()`` would (not with ``--quick``);
* otherwise ``main(argv)`` (``QUICK_ARGV`` with ``--quick``) or ``main()`` with a clean ``sys.argv``.

``QUICK`` / ``QUICK_ARGV`` may be defined by a module; the table below covers the ones that do not. Each
module's ``markdown(results)`` renders its section — figures, the baseline measured in the same run, and the
targets met or not. A failing benchmark is reported in its section and makes the exit code 1; the others
still run. ``--quick`` writes ``benchmarks/RESULTS-quick.md`` unless ``--output`` says otherwise, so smoke
runs never replace the reference figures.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import re
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import RESULTS_DIR, machine_info, write_results  # type: ignore[import-not-found]  # noqa: E402

__all__ = ["Outcome", "discover", "main", "render", "run_all", "run_one"]

#: Reduced sizes for ``--quick`` when a module does not define ``QUICK`` / ``QUICK_ARGV`` itself.
QUICK_KWARGS: dict[str, dict[str, Any]] = {
    "bench_ingest": {"hosts": 10, "hours": 6},
    "bench_query": {"hosts": 10, "days": 1, "runs": 5},
}
QUICK_ARGVS: dict[str, list[str]] = {"bench_rollup": ["10", "1", "2", "10"]}


@dataclass
class Outcome:
    """One benchmark's run: its markdown section (or the error) and how long it took."""

    name: str
    seconds: float = 0.0
    markdown: str = ""
    error: str | None = None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def not_met(self) -> int:
        """Targets the section marks as not met (``not met`` / ``False`` in a table cell)."""
        text = self.markdown.lower()
        return text.count("not met") + len(re.findall(r"\|\s*false\s*\|", text))


def discover(bench_dir: Path = HERE, only: Sequence[str] | None = None) -> list[Path]:
    """The ``bench_*.py`` files of ``bench_dir``, sorted; ``only`` filters by name (with or without prefix)."""
    paths = sorted(bench_dir.glob("bench_*.py"))
    if only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in only}
        wanted = {n.removesuffix(".py") for n in wanted}
        paths = [p for p in paths if p.stem in wanted]
    return paths


def _load(path: Path) -> ModuleType:
    name = f"benchmarks.{path.stem}" if path.parent == HERE else path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def run_one(path: Path, *, quick: bool = False) -> Outcome:
    """Import and run one benchmark module; never raises (errors go into the outcome)."""
    out = Outcome(path.stem)
    started = time.perf_counter()
    try:
        module = _load(path)
        if hasattr(module, "run"):
            kwargs = getattr(module, "QUICK", QUICK_KWARGS.get(path.stem, {})) if quick else {}
            results = module.run(**kwargs)
            if path.parent == HERE and not quick:  # quick numbers never replace the reference results
                write_results(path.stem.removeprefix("bench_"), results)
        elif hasattr(module, "main"):
            argv = list(getattr(module, "QUICK_ARGV", QUICK_ARGVS.get(path.stem, []))) if quick else []
            with _argv([str(path), *argv]):
                takes_argv = bool(inspect.signature(module.main).parameters)
                results = module.main(argv) if takes_argv else module.main()
        else:
            raise AttributeError(f"{path.name} has neither run() nor main()")
        out.results = results if isinstance(results, dict) else {}
        out.markdown = module.markdown(results).strip() if hasattr(module, "markdown") else ""
    except BaseException as exc:  # a benchmark failing must not stop the others
        if isinstance(exc, KeyboardInterrupt):
            raise
        out.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    out.seconds = time.perf_counter() - started
    return out


def _section(o: Outcome) -> str:
    if o.error is not None:
        return f"## {o.name} — FAILED\n\n```\n{o.error}\n```"
    text = o.markdown or f"(`{o.name}` has no `markdown(results)`)"
    first, _, rest = text.partition("\n")
    if first.startswith("### "):
        first = "## " + first[4:]
    elif not first.startswith("## "):
        return f"## {o.name}\n\n{text}"
    return f"{first}\n{rest}"


def render(outcomes: Sequence[Outcome], machine: dict[str, Any], *, quick: bool, seconds: float) -> str:
    """The whole RESULTS.md: how it was made, the machine, a summary table, then every section."""
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.run_all` (`./dev bench`); do not edit by hand. Every figure is "
        "compared with a baseline measured in the same run on the same machine.",
        "",
    ]
    if quick:
        lines += ["**Quick run (`--quick`): reduced sizes, a smoke test — not the reference figures.**", ""]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine.items()]
    lines += [
        "",
        "## Summary",
        "",
        "| benchmark | status | seconds | targets marked not met |",
        "|---|---|---|---|",
    ]
    for o in outcomes:
        status = "FAILED" if o.error else "ok"
        lines.append(f"| `{o.name}` | {status} | {o.seconds:.0f} | {'-' if o.error else o.not_met} |")
    lines += ["", f"Total {seconds:.0f} s.", ""]
    for o in outcomes:
        lines += [_section(o), ""]
    return "\n".join(lines).rstrip() + "\n"


def run_all(
    *,
    quick: bool = False,
    only: Sequence[str] | None = None,
    bench_dir: Path = HERE,
    output: Path | None = None,
) -> tuple[list[Outcome], Path]:
    """Run the benchmarks and write the results markdown; returns the outcomes and the file written."""
    started = time.perf_counter()
    machine = machine_info()
    outcomes = []
    for path in discover(bench_dir, only):
        print(f"== {path.stem}{' (quick)' if quick else ''}", file=sys.stderr, flush=True)
        outcomes.append(run_one(path, quick=quick))
        o = outcomes[-1]
        print(
            f"== {path.stem}: {'FAILED ' + str(o.error) if o.error else 'ok'} in {o.seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    target = output or (bench_dir / ("RESULTS-quick.md" if quick else "RESULTS.md"))
    target.write_text(
        render(outcomes, machine, quick=quick, seconds=time.perf_counter() - started), encoding="utf-8"
    )
    return outcomes, target


def render_saved(bench_dir: Path = HERE, output: Path | None = None) -> Path:
    """Rewrite RESULTS.md from the saved ``results/<name>.json`` of every benchmark, without running any.

    Used after re-running some benchmarks with ``--only``: each section keeps the figures (and the machine
    facts) of the run that produced it.
    """
    outcomes = []
    for path in discover(bench_dir):
        saved = RESULTS_DIR / f"{path.stem.removeprefix('bench_')}.json"
        out = Outcome(path.stem)
        if not saved.exists():
            out.error = f"no saved results ({saved.name}); run it with --only {path.stem}"
        else:
            out.results = json.loads(saved.read_text(encoding="utf-8"))
            module = _load(path)
            out.markdown = module.markdown(out.results).strip() if hasattr(module, "markdown") else ""
        outcomes.append(out)
    target = output or (bench_dir / "RESULTS.md")
    text = render(outcomes, machine_info(), quick=False, seconds=0.0)
    text = text.replace("| ok | 0 |", "| ok | (saved) |").replace("\nTotal 0 s.\n", "\n")
    target.write_text(text, encoding="utf-8")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.run_all [--quick] [--only NAME ...] [--output FILE]``; exit 1 if any failed."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes (smoke test); writes RESULTS-quick.md"
    )
    parser.add_argument("--only", nargs="*", help="run only these benchmarks, e.g. --only ingest query")
    parser.add_argument("--output", type=Path, help="markdown file to write (default benchmarks/RESULTS.md)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--render", action="store_true", help="only rewrite RESULTS.md from the saved results JSON files"
    )
    args = parser.parse_args(argv)
    if args.render:
        print(f"wrote {render_saved(output=args.output)}", file=sys.stderr)
        return 0
    if args.list:
        for p in discover(HERE, args.only):
            print(p.stem)
        return 0
    if args.only and not discover(HERE, args.only):
        parser.error(f"no benchmark matches {args.only}; see --list")
    outcomes, target = run_all(quick=args.quick, only=args.only, output=args.output)
    print(f"wrote {target}", file=sys.stderr)
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())

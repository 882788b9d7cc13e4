"""Run the benchmarks (all, or the ones named) and print one table of what each compares and its figures.

    python -m benchmarks --list                  # names and what each compares
    python -m benchmarks status cli              # these two, with their default arguments
    python -m benchmarks status -- --stages 10   # arguments after `--` go to every benchmark named
    python -m benchmarks                         # all of them (chaos and swarm take tens of minutes)
    python -m benchmarks cli --json out.json     # the table's rows as JSON too (to keep, or compare later)

A benchmark is a module `benchmarks/<name>_bench.py` (or `signal_stress.py`) whose docstring's
first line says what it compares and whose `main()` parses `sys.argv` with argparse, prints its
numbers as it goes and asserts nothing. The runner sets `sys.argv` and calls `main()` in this process
(the scripts still run alone: `python benchmarks/status_bench.py`). For the table, `main()` may
return a dict of its headline figures (label -> text); if it returns None the table shows the last
line it printed. Why not pytest-benchmark: see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import io
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TextIO

HERE = Path(__file__).resolve().parent
# modules that are benchmarks without the suffix (named before the convention)
EXTRA = ("signal_stress.py",)


@dataclasses.dataclass
class Result:
    name: str
    compares: str
    seconds: float
    figures: Dict[str, str] = dataclasses.field(default_factory=dict)
    failed: str = ""


def discover(folder: Path = HERE) -> Dict[str, Path]:
    """Benchmark name -> file: `<name>_bench.py`, plus the EXTRA files (named by their stem)."""
    found = {p.name[: -len("_bench.py")]: p for p in folder.glob("*_bench.py")}
    found.update({p.stem: p for p in (folder / name for name in EXTRA) if p.exists()})
    return dict(sorted(found.items()))


def compares(path: Path) -> str:
    """The first line of the module's docstring, read without importing it (no docker-py, no dvc)."""
    doc = ast.get_docstring(ast.parse(path.read_text(), str(path))) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


class _LastLine(io.TextIOBase):
    """Passes writes through to `out` and remembers the last non-empty line (the fallback figure)."""

    def __init__(self, out: TextIO):
        self.out, self.last, self._partial = out, "", ""

    def write(self, text: str) -> int:
        self.out.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in reversed(lines):
            if line.strip():
                self.last = line.strip()
                break
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def last_line(self) -> str:
        return self._partial.strip() or self.last


def _load(name: str, path: Path):
    # the folder on sys.path: chaos and swarm import queue_bench's helpers by its bare name
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"benchmarks.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would (dataclasses, pickling look it up)
    spec.loader.exec_module(module)
    return module


def run_one(name: str, path: Path, argv: Sequence[str], load: Callable = _load) -> Result:
    """Run one benchmark's main() with `argv`; a failure (exception, sys.exit) is a row, not the end."""
    result = Result(name, compares(path), 0.0)
    saved_argv, saved_out = sys.argv, sys.stdout
    tee = _LastLine(saved_out)
    start = time.perf_counter()
    try:
        sys.argv = [str(path), *argv]
        sys.stdout = tee
        figures = load(name, path).main()
        if isinstance(figures, dict):
            result.figures = {str(k): str(v) for k, v in figures.items()}
        elif tee.last_line():
            result.figures = {"last line": tee.last_line()}
    except SystemExit as exc:  # argparse errors, and the benchmarks' sys.exit("what failed")
        if isinstance(exc.code, int) and exc.code:
            result.failed = f"exit {exc.code}"
        elif exc.code not in (None, 0):
            result.failed = (str(exc.code).strip().splitlines() or ["exit"])[0]
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
        traceback.print_exc()
        result.failed = f"{type(exc).__name__}: {exc}".splitlines()[0]
    finally:
        sys.stdout.flush()
        sys.argv, sys.stdout = saved_argv, saved_out
        result.seconds = time.perf_counter() - start
    return result


def table(results: List[Result], width: int = 100) -> str:
    """One row per benchmark: name, wall time, what it compares; its figures indented below."""
    name_w = max([len("benchmark")] + [len(r.name) for r in results])
    lines = [f"{'benchmark':<{name_w}}  {'time':>7}  compares / figures", "-" * width]
    for r in results:
        lines.append(f"{r.name:<{name_w}}  {r.seconds:6.0f}s  {r.compares}")
        pad = " " * (name_w + 11)
        if r.failed:
            lines.append(f"{pad}FAILED: {r.failed}")
        for label, value in r.figures.items():
            lines.append(f"{pad}{label}: {value}" if label != "last line" else f"{pad}{value}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None, folder: Path = HERE) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passed: List[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, passed = argv[:at], argv[at + 1 :]
    found = discover(folder)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(found)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and what each compares")
    parser.add_argument("--json", metavar="FILE", help="also write the table's rows to FILE as JSON")
    args = parser.parse_args(argv)
    if args.list:
        width = max(map(len, found))
        for name, path in found.items():
            print(f"{name:<{width}}  {compares(path)}")
        return 0
    unknown = [n for n in args.names if n not in found]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)} (there are: {', '.join(found)})")
    results = []
    for name in args.names or list(found):
        print(f"=== {name}: {compares(found[name])}", flush=True)
        results.append(run_one(name, found[name], passed))
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1) + "\n")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

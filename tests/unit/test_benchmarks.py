"""The benchmark runner (`python -m benchmarks`): discovery, what each compares, one table, failures as rows."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT

runner = importlib.import_module("benchmarks.__main__")


def test_every_benchmark_is_discovered_and_says_what_it_compares() -> None:
    found = runner.discover()
    files = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"__main__.py", "__init__.py"}
    assert {p.name for p in found.values()} == files, "a benchmark the runner cannot find (name it *_bench.py)"
    for name, path in found.items():
        first = runner.compares(path)
        assert " vs " in first, f"{path.name}: the docstring's first line must say what it compares: {first!r}"
        assert len(first) <= 120, f"{path.name}: first docstring line longer than 120 characters"


def _bench(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}_bench.py"
    path.write_text(f'"""A vs B for {name}."""\nimport argparse, sys\n\ndef main():\n{body}\n')
    return path


def test_figures_come_from_the_returned_dict_or_the_last_printed_line(tmp_path: Path, capsys) -> None:
    returns = _bench(tmp_path, "returns", "    args = sys.argv[1:]\n    print('x')\n    return {'ratio': '1.05x', 'args': ' '.join(args)}")
    prints = _bench(tmp_path, "prints", "    print('first')\n    print('ratio 0.97x')\n    print()")
    result = runner.run_one("returns", returns, ["--reps", "2"])
    assert result.figures == {"ratio": "1.05x", "args": "--reps 2"} and not result.failed
    assert result.compares == "A vs B for returns."
    assert runner.run_one("prints", prints, []).figures == {"last line": "ratio 0.97x"}
    assert "ratio 0.97x" in capsys.readouterr().out  # the benchmark's output still reaches the terminal


def test_a_failing_benchmark_is_a_row_and_the_others_still_run(tmp_path: Path) -> None:
    exits = _bench(tmp_path, "exits", "    sys.exit('no daemon here\\nmore')")
    raises = _bench(tmp_path, "raises", "    raise RuntimeError('boom')")
    usage = _bench(tmp_path, "usage", "    argparse.ArgumentParser().parse_args()")
    ok = _bench(tmp_path, "ok", "    return {'a': 1}")
    results = [runner.run_one(p.stem, p, ["--nope"] if p is usage else []) for p in (exits, raises, usage, ok)]
    assert [r.failed for r in results] == ["no daemon here", "RuntimeError: boom", "exit 2", ""]
    text = runner.table(results)
    assert "FAILED: no daemon here" in text and "a: 1" in text
    assert text.splitlines()[0].startswith("benchmark")


def test_list_and_unknown_names(capsys) -> None:
    assert runner.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in runner.discover())
    with pytest.raises(SystemExit):
        runner.main(["no-such-benchmark"])
    assert "no benchmark named no-such-benchmark" in capsys.readouterr().err


def test_the_named_benchmarks_run_into_one_table_and_json(tmp_path: Path, capsys) -> None:
    _bench(tmp_path, "one", "    return {'ratio': sys.argv[1:]}")
    _bench(tmp_path, "two", "    sys.exit('needs a daemon')")
    _bench(tmp_path, "three", "    raise AssertionError('not run: not named')")
    out = tmp_path / "out.json"
    assert runner.main(["one", "two", "--json", str(out), "--", "--reps", "1"], folder=tmp_path) == 1
    text = capsys.readouterr().out
    table = text[text.index("benchmark ") :]
    assert "one" in table and "ratio: ['--reps', '1']" in table and "FAILED: needs a daemon" in table
    assert "three" not in text
    rows = json.loads(out.read_text())
    assert [(r["name"], r["failed"]) for r in rows] == [("one", ""), ("two", "needs a daemon")]

"""The `dvc docker` command group vs all of `dvc.cli.parser`: what it adds to every `dvc` start.

Prints numbers, asserts nothing. Usage: python benchmarks/cli_bench.py [--reps 11]

Every `dvc` run imports `dvc.cli.parser`, and with it (through the import
hook) the `dvc docker` command modules, then builds the parser. In fresh
interpreters, median of --reps:

1. import of `dvc_docker_exec.commands` (cumulative, `-X importtime`) next to
   `dvc.cli.parser` as a whole;
2. building the `docker` group's subparsers next to `get_main_parser()` as a
   whole (minimum of 10 in one process, both measured alternately);
3. `dvc --help` wall time (the full start-up), for scale.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

PARSER_TIMES = r"""
import argparse, time
from dvc.cli import parser
from dvc_docker_exec import commands
parent = parser.get_parent_parser()
ours, whole = [], []
for _ in range(10):
    sub = argparse.ArgumentParser().add_subparsers()
    t0 = time.perf_counter()
    commands.add_parser(sub, parent)
    ours.append(time.perf_counter() - t0)
    parser.get_main_parser.cache_clear()
    t0 = time.perf_counter()
    parser.get_main_parser()
    whole.append(time.perf_counter() - t0)
print(min(ours), min(whole))
"""


def import_times() -> tuple:
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import dvc.cli.parser"], capture_output=True, text=True
    ).stderr
    found = {}
    for line in err.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] in ("dvc_docker_exec.commands", "dvc.cli.parser"):
            found[parts[2]] = int(parts[1])
    return found.get("dvc_docker_exec.commands", 0), found.get("dvc.cli.parser", 0)


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args()
    imports = [import_times() for _ in range(args.reps)]
    ours = statistics.median(i[0] for i in imports) / 1000
    whole = statistics.median(i[1] for i in imports) / 1000
    print(f"import dvc_docker_exec.commands: {ours:.1f} ms of {whole:.1f} ms for dvc.cli.parser ({ours / whole:.1%})")
    figures = {"import": f"{ours:.1f} of {whole:.1f} ms ({ours / whole:.1%})"}
    builds = [
        tuple(map(float, subprocess.run([sys.executable, "-c", PARSER_TIMES], capture_output=True, text=True, check=True).stdout.split()))
        for _ in range(args.reps)
    ]
    ours = statistics.median(b[0] for b in builds) * 1000
    whole = statistics.median(b[1] for b in builds) * 1000
    print(f"the `docker` group's subparsers: {ours:.1f} ms of {whole:.1f} ms for get_main_parser() ({ours / whole:.1%})")
    figures["subparsers"] = f"{ours:.1f} of {whole:.1f} ms ({ours / whole:.1%})"
    walls = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dvc", "--help"], capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    print(f"`dvc --help` wall time: {statistics.median(walls) * 1000:.0f} ms (median of {args.reps})")
    figures["`dvc --help`"] = f"{statistics.median(walls) * 1000:.0f} ms"
    return figures


if __name__ == "__main__":
    main()

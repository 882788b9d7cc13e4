"""`dvc repro -f` with this package vs another version (--base): what the lifecycle protections cost.

The protections: read-only .dvc mounts, private config copies.

Prints numbers, asserts nothing. Usage (Docker Engine and test images ready,
see scripts/test.sh), with another version of the package to compare with:

    git archive main dvc_docker_exec | tar -x -C /tmp/base
    python benchmarks/lifecycle_bench.py --base /tmp/base [--reps 3] [--stages 10]

`dvc repro -f` of N trivial stages in one repo (with a `.dvc/config.local`,
so config copies are made), alternately with the package found under --base
(PYTHONPATH) and with the installed one. Medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE = "dvc-docker-exec-test/busybox:latest"


def run(args, cwd: Path, env: dict) -> None:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{args} failed:\n{proc.stderr}")


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", help="folder holding the dvc_docker_exec package to compare with")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stages", type=int, default=10)
    args = parser.parse_args()
    if not args.base:
        print("skipped: --base names no other version to compare with (see the module's docstring)")
        return {"skipped": "needs --base FOLDER (another version of the package)"}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DVC_NO_ANALYTICS"] = "1"
    dvc = [sys.executable, "-m", "dvc"]
    with tempfile.TemporaryDirectory(prefix="dde-lifecycle-bench-") as tmp:
        repo = Path(tmp)
        run(["git", "init", "-q"], repo, env)
        run([*dvc, "init", "-q"], repo, env)
        run([*dvc, "config", "docker.image", IMAGE], repo, env)
        run([*dvc, "config", "docker.pull", "never"], repo, env)
        run([*dvc, "config", "--local", "docker.network", "none"], repo, env)
        for i in range(args.stages):
            run([*dvc, "stage", "add", "-n", f"s{i}", "-o", f"out{i}.txt", f"echo {i} > out{i}.txt"], repo, env)
        sides = {"base": {**env, "PYTHONPATH": args.base}, "this": env}
        times: dict = {name: [] for name in sides}
        run([*dvc, "repro"], repo, env)  # warm caches
        for _ in range(args.reps):
            for name, side_env in sides.items():
                start = time.perf_counter()
                run([*dvc, "repro", "-f"], repo, side_env)
                times[name].append(time.perf_counter() - start)
    base, this = statistics.median(times["base"]), statistics.median(times["this"])
    print(f"dvc repro -f, {args.stages} trivial stages, median of {args.reps}:")
    print(f"  base {base:.2f} s ({base / args.stages * 1000:.0f} ms/stage)   this {this:.2f} s "
          f"({this / args.stages * 1000:.0f} ms/stage)   ratio this/base {this / base:.2f}")
    return {"this / base": f"{this / base:.2f}x ({this / args.stages * 1000:.0f} vs {base / args.stages * 1000:.0f} ms/stage)"}


if __name__ == "__main__":
    main()

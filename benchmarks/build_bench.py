"""`dvc repro`/`status` with a built image (`docker.build`) vs a named one (`docker.image`); hashing; a rebuild.

The cost of `docker.build` (issue 19), measured side by side; prints numbers, asserts nothing.

    python benchmarks/build_bench.py [--reps 9] [--files 1000] [--mb 200]

1. `dvc repro` and `dvc status` with nothing to run: a stage whose image is
   built from a Dockerfile whose context holds FILES files / MB megabytes
   (present image, unchanged inputs) vs the same repository with `docker.image`
   set to a present image instead (today's). Alternating repetitions; medians and the
   difference in milliseconds (target: at most +50 ms).
2. Hashing that context in-process: cold (every file read) vs warm (the stat
   cache: stats only).
3. An unchanged rebuild with a warm layer cache (`dvc docker build --force`:
   the context is sent again, every step is a cache hit).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = "dvc-docker-exec-test/busybox:latest"


def dvc(root: Path, *args: str, cpu: bool = False) -> float:
    """Wall seconds of `dvc ARGS`, or with `cpu` its user+sys seconds (steadier on a shared machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"dvc {' '.join(args)} failed in {root}:\n{proc.stdout}\n{proc.stderr}")
    if cpu:
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took


def make_repo(root: Path, files: int, mb: int, build: bool) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    (root / "in.txt").write_text("in\n")
    # both repos hold the same context (DVC walks the repo either way): only the config differs
    env = root / "env"
    (env / "data").mkdir(parents=True)
    size = mb * 1_000_000 // files
    for i in range(files):
        (env / "data" / f"f{i:04d}.bin").write_bytes(os.urandom(size))
    (env / "Dockerfile").write_text(f"FROM {BASE}\nCOPY data /data\n")
    if build:
        dvc(root, "config", "docker.build", "env")
        dvc(root, "config", "docker.image", f"dde-bench/build:{os.getpid()}")
    else:
        dvc(root, "config", "docker.image", BASE)
    dvc(root, "config", "docker.pull", "never")
    dvc(root, "stage", "add", "-q", "-n", "s", "-d", "in.txt", "-o", "out.txt", "cp in.txt out.txt")
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "bench"], cwd=root, check=True, env={**os.environ, "GIT_AUTHOR_NAME": "b",
                   "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"})
    dvc(root, "repro")
    return root


def side_by_side(cmd: str, built: Path, plain: Path, reps: int) -> str:
    """Prints wall and CPU medians; returns the wall-time difference, for the runner's table."""
    figure = ""
    for what, cpu in (("wall", False), ("cpu", True)):
        times: dict = {"build": [], "image": []}
        for rep in range(reps):
            order = [("build", built), ("image", plain)] if rep % 2 == 0 else [("image", plain), ("build", built)]
            for label, root in order:
                times[label].append(dvc(root, cmd, cpu=cpu))
        b, i = statistics.median(times["build"]), statistics.median(times["image"])
        print(f"dvc {cmd:7s} nothing to run, {what:4s}: docker.build {b:.3f}s, docker.image {i:.3f}s: "
              f"{(b - i) * 1000:+.0f} ms ({b / i:.3f}x), medians of {reps}", flush=True)
        figure = figure or f"{(b - i) * 1000:+.0f} ms ({b / i:.3f}x)"
    return figure


def hashing(built: Path, reps: int) -> str:
    from dvc_docker_exec.types import build

    spec = build.spec_for(str(built), "env")
    cache_file = str(built.parent / "hash-cache.json")
    cold, warm = [], []
    for _ in range(reps):
        if os.path.exists(cache_file):
            os.unlink(cache_file)
        start = time.perf_counter()
        build.context_digest(spec, build.HashCache.load(cache_file))
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        build.context_digest(spec, build.HashCache.load(cache_file))
        warm.append(time.perf_counter() - start)
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"context hash in-process: cold {c * 1000:.0f} ms, warm (stat cache) {w * 1000:.1f} ms ({c / w:.0f}x)")
    return f"cold {c * 1000:.0f} ms, warm {w * 1000:.1f} ms"


def rebuild(built: Path, reps: int) -> str:
    times = [dvc(built, "docker", "build", "--force") for _ in range(reps)]
    print(f"unchanged rebuild, warm layer cache (dvc docker build --force): median {statistics.median(times):.2f}s "
          f"(min {min(times):.2f}, max {max(times):.2f})")
    return f"{statistics.median(times):.2f} s"


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dde-build-bench-"))
    tag = f"dde-bench/build:{os.getpid()}"
    try:
        built = make_repo(work / "built", args.files, args.mb, build=True)
        plain = make_repo(work / "plain", args.files, args.mb, build=False)
        print(f"context: {args.files} files, {args.mb} MB")
        dvc(built, "status")  # the first status fills the hash cache (a repro did already; same cost)
        figures = {
            "repro, build - image (wall)": side_by_side("repro", built, plain, args.reps),
            "status, build - image (wall)": side_by_side("status", built, plain, args.reps),
            "context hash": hashing(built, args.reps),
            "unchanged rebuild": rebuild(built, max(2, args.reps // 2)),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
        ids = subprocess.run(["docker", "images", "-q", "--filter", f"reference={tag.split(':')[0]}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "image", "rm", "-f", *ids], capture_output=True)
    return figures


if __name__ == "__main__":
    main()

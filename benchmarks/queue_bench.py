"""`dvc queue start -j 1` vs `-j 2`, natively and with the plugin, side by side.

Prints numbers, asserts nothing. Usage (Docker Engine and test images ready,
see scripts/test.sh):

    python benchmarks/queue_bench.py [--exps 4] [--sleep 3] [--reps 1]

Each measurement uses a fresh Git+DVC repo with N queued experiments whose
stage sleeps S seconds (`-S x=i` makes them distinct), and times
`dvc queue start -j J` until the queue has drained, i.e. every experiment's
ref exists (DVC creates it when it collects the finished run). The repo is
fresh each time because a `dvc queue stop` that no worker receives stays in
the filesystem broker and would stop the next workers at once. Native: the
same stage on the host (`dvc config docker.enabled false`). Plugin: the stage
in the busybox test image. Workers are stopped, and waited for, between
measurements so that idle workers do not compete for the CPU.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE = "dvc-docker-exec-test/busybox:latest"
DVC = [sys.executable, "-m", "dvc"]


def sh(args, cwd, env, timeout: float = 120) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode:
        sys.exit(f"{shlex.join(map(str, args))} failed in {cwd}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def bench_env(drop: tuple = ("DVC_", "GIT_")) -> dict:
    """Our environment without DVC/Git variables, with a Git identity; this venv's `dvc` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.com",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.com",
        # queue workers and `dvc exp exec-run` are started as `dvc` from PATH
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    )
    return env


def make_repo(root: Path, env: dict, plugin: bool, exps: int, sleep: float) -> Path:
    root.mkdir(parents=True)
    sh(["git", "init", "-q"], root, env)
    sh([*DVC, "init", "-q"], root, env)
    if plugin:
        sh([*DVC, "config", "docker.image", IMAGE], root, env)
        sh([*DVC, "config", "docker.pull", "never"], root, env)
    else:
        sh([*DVC, "config", "docker.enabled", "false"], root, env)
    (root / "params.yaml").write_text("x: 0\n")
    (root / "dvc.yaml").write_text(
        f"stages:\n  s:\n    cmd: sleep {sleep} && cp params.yaml out.txt\n"
        "    params: [x]\n    outs: [{out.txt: {cache: false}}]\n"
    )
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "pipeline"], root, env)
    for i in range(1, exps + 1):
        sh([*DVC, "exp", "run", "--queue", "-n", f"e{i}", "-S", f"x={i}"], root, env)
    return root


def finished(root: Path, env: dict, names: set) -> int:
    """Experiments collected so far: refs/exps/<baseline>/<name> (not the celery stash)."""
    refs = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], root, env).split()
    return len({ref.rsplit("/", 1)[-1] for ref in refs if "/celery/" not in ref} & names)


def worker_pids(root: Path) -> list:
    pids = []
    for pidfile in (root / ".dvc" / "tmp" / "exps" / "celery").glob("dvc-exp-worker-*.pid"):
        try:
            pid = int(pidfile.read_text())
            os.kill(pid, 0)
            pids.append(pid)
        except (ValueError, OSError):
            pass
    return pids


def drain(root: Path, env: dict, jobs: int, exps: int, timeout: float = 300) -> float:
    names = {f"e{i}" for i in range(1, exps + 1)}
    log = root.parent / f"{root.name}-queue-start.log"
    start = time.perf_counter()
    with open(log, "wb") as out:  # never a pipe: the worker daemons inherit it
        subprocess.run([*DVC, "queue", "start", "-j", str(jobs)], cwd=root, env=env, stdout=out, stderr=out, check=True)
    while finished(root, env, names) < len(names):
        if time.perf_counter() - start > timeout:
            status = sh([*DVC, "queue", "status"], root, env)
            sys.exit(f"queue of {root} not drained after {timeout}s:\n{status}")
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    subprocess.run([*DVC, "queue", "stop"], cwd=root, env=env, capture_output=True)
    deadline = time.monotonic() + 30
    while worker_pids(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    return elapsed


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exps", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=3)
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    env = bench_env()
    times: dict = {(mode, jobs): [] for mode in ("native", "plugin") for jobs in (1, 2)}
    with tempfile.TemporaryDirectory(prefix="dde-queue-bench-") as tmp:
        base = Path(tmp)
        env["HOME"] = str(base / "home")
        (base / "home").mkdir()
        for rep in range(args.reps):
            order = list(times)
            if rep % 2:
                order.reverse()
            for mode, jobs in order:
                root = make_repo(base / f"{mode}-j{jobs}-{rep}", env, mode == "plugin", args.exps, args.sleep)
                times[(mode, jobs)].append(drain(root, env, jobs, args.exps))
                print(f"  {mode:6} -j {jobs}: {times[(mode, jobs)][-1]:6.2f} s", file=sys.stderr)

    med = {key: statistics.median(values) for key, values in times.items()}
    print(f"{args.exps} queued experiments, stage `sleep {args.sleep:g}`, {os.cpu_count()} CPUs, reps {args.reps}")
    print(f"{'':8}{'-j 1':>10}{'-j 2':>10}{'speed-up':>10}")
    for mode in ("native", "plugin"):
        j1, j2 = med[(mode, 1)], med[(mode, 2)]
        print(f"{mode:8}{j1:9.2f}s{j2:9.2f}s{j1 / j2:9.2f}x")
    overhead = (med[("plugin", 1)] - med[("native", 1)]) / args.exps
    print(f"plugin overhead per experiment ((plugin j1 - native j1) / {args.exps}): {overhead:+.2f} s")
    print(f"pure sleep: {args.exps * args.sleep:g} s at -j 1, {args.exps * args.sleep / 2:g} s at -j 2")
    figures = {f"{mode} -j 1 / -j 2": f"{med[(mode, 1)] / med[(mode, 2)]:.2f}x" for mode in ("native", "plugin")}
    figures["plugin overhead per experiment"] = f"{overhead:+.2f} s"
    return figures


if __name__ == "__main__":
    main()

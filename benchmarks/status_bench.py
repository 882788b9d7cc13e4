"""`dvc status` with image provenance vs `docker.enabled false`, side by side.

Prints numbers, asserts nothing. Usage (Docker Engine and test images ready,
see scripts/test.sh):

    python benchmarks/status_bench.py [--stages 50] [--reps 7]

1. `dvc status` of an up-to-date pipeline of N stages on one image, fresh
   `dvc` processes, alternating: the plugin (identity of the image resolved
   and compared for every stage) vs the same pipeline with
   `docker.enabled false` (stages on the host, no daemon contact).
   Also: what importing docker-py alone costs (the bulk of the difference).
2. The daemon calls one `dvc status` makes, counted at docker-py's HTTP layer,
   for 1, 10 and N stages: they must not grow with the number of stages
   (one inspect per distinct image per dvc process).
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

# `dvc status` with every HTTP request of docker-py counted (printed to stderr as "daemon-calls N PATHS")
COUNTING_DVC = """
import atexit, collections, sys
import requests
calls = collections.Counter()
send = requests.Session.send
def counting_send(self, request, **kwargs):
    if type(self).__module__.startswith("docker."):
        calls[request.method + " " + request.path_url.split("?")[0]] += 1
    return send(self, request, **kwargs)
requests.Session.send = counting_send
atexit.register(lambda: sys.stderr.write(f"daemon-calls {sum(calls.values())} {dict(calls)}\\n"))
from dvc.cli import main
code = main(sys.argv[1:])
sys.stderr.flush()
sys.exit(code)
"""


def sh(args, cwd, env) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{shlex.join(map(str, args))} failed in {cwd}:\n{proc.stderr}")
    return proc


def dvc(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return sh([sys.executable, "-m", "dvc", *args], root, env)


def make_repo(root: Path, env: dict, stages: int, enabled: bool) -> Path:
    """N independent stages on one image, reproduced once, so that all are up to date."""
    root.mkdir(parents=True)
    sh(["git", "init", "-q"], root, env)
    dvc(root, env, "init", "-q")
    for key, value in (("image", IMAGE), ("pull", "never"), ("enabled", str(enabled).lower())):
        dvc(root, env, "config", f"docker.{key}", value)
    # a dependency each: DVC reruns dependency-less stages always, and the plugin leaves those alone
    (root / "in.txt").write_text("in\n")
    text = "".join(
        f"  s{i}:\n    cmd: echo {i} > out{i}.txt\n    deps: [in.txt]\n    outs: [out{i}.txt]\n" for i in range(stages)
    )
    (root / "dvc.yaml").write_text("stages:\n" + text)
    dvc(root, env, "repro", "-q")
    out = dvc(root, env, "status").stdout
    if "up to date" not in out:
        sys.exit(f"{root}: not up to date after repro:\n{out}")
    return root


def timed_status(root: Path, env: dict) -> float:
    start = time.perf_counter()
    dvc(root, env, "status")
    return time.perf_counter() - start


def daemon_calls(root: Path, env: dict, script: Path) -> str:
    proc = sh([sys.executable, str(script), "status"], root, env)
    line = [row for row in proc.stderr.splitlines() if row.startswith("daemon-calls ")][-1]
    return line[len("daemon-calls ") :]


def docker_import_cost(reps: int = 5) -> float:
    code = "import time, dvc.repo; t = time.perf_counter(); import docker; print(time.perf_counter() - t)"
    runs = [float(sh([sys.executable, "-c", code], Path.cwd(), os.environ).stdout) for _ in range(reps)]
    return statistics.median(runs)


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stages", type=int, default=50)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    with tempfile.TemporaryDirectory(prefix="dde-status-bench-") as tmp:
        base = Path(tmp)
        plugin = make_repo(base / "plugin", env, args.stages, enabled=True)
        host = make_repo(base / "host", env, args.stages, enabled=False)
        times: dict = {"plugin": [], "enabled false": []}
        for rep in range(args.reps):
            order = [("plugin", plugin), ("enabled false", host)]
            if rep % 2:
                order.reverse()
            for label, root in order:
                times[label].append(timed_status(root, env))
        p, h = statistics.median(times["plugin"]), statistics.median(times["enabled false"])
        print(f"`dvc status`, {args.stages} up-to-date stages on one image, {args.reps} fresh processes each")
        for label in times:
            runs = ", ".join(f"{t:.2f}" for t in times[label])
            print(f"  {label:14} median {statistics.median(times[label]):6.2f} s   min {min(times[label]):5.2f} s   runs {runs}")
        print(f"  ratio plugin / docker.enabled false: median {p / h:.2f}x, min {min(times['plugin']) / min(times['enabled false']):.2f}x (target <= 1.2x)")

        print(f"  of which importing docker-py (requests, urllib3; `dvc status` imports neither otherwise): "
              f"{docker_import_cost() * 1000:.0f} ms (median of 5 fresh interpreters, after dvc.repo)")

        script = base / "counting_dvc.py"
        script.write_text(COUNTING_DVC)
        print("daemon calls of one `dvc status` (docker-py HTTP requests):")
        calls = {}
        for n in sorted({1, 10, args.stages}):
            root = plugin if n == args.stages else make_repo(base / f"plugin-{n}", env, n, enabled=True)
            calls[n] = daemon_calls(root, env, script)
            print(f"  {n:3} stages: {calls[n]}")
        print(f"  docker.enabled false, {args.stages} stages: {daemon_calls(host, env, script)}")
        return {
            f"plugin / docker.enabled false, {args.stages} stages": f"{p / h:.2f}x ({p:.2f} s vs {h:.2f} s)",
            "daemon calls for " + ", ".join(f"{n}" for n in calls) + " stages": ", ".join(
                c.split()[0] for c in calls.values()
            ),
        }


if __name__ == "__main__":
    main()

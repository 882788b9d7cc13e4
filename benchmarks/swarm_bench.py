"""Swarm backend: a queue on 1 node vs 3, and a stage as a service vs as a container (engine backend).

Prints numbers, asserts nothing. Needs root, the main Docker Engine and the
test images (scripts/test.sh), and starts the 3-node test swarm itself
(scripts/engines/swarm-netns.sh, kept up with --keep):

    python benchmarks/swarm_bench.py [--exps 6] [--sleep 5 20] [--stages 10] [--reps 3]

1. Scale-out: N queued experiments whose stage reserves 1.5 CPUs (of each
   node's 2, so one experiment per node at a time) and sleeps S seconds,
   `dvc queue start -j N`, timed until every experiment is collected: all
   pinned to one node (`docker.constraints node.labels.dde==n1`) vs free to
   use the 3 nodes. The wall time is split, from the nodes' own container
   events, into "start" (`dvc queue start` until the first stage container
   starts), "stages" (first start until the last stage container dies) and
   "collect" (the rest). Why: on a 2-core machine the N queue workers and
   their `dvc exp exec-run` processes all start at once, and that start
   (DVC's own, measured without the plugin as "DVC alone") does not shrink
   with more nodes; it bounds the wall-time ratio for short stages.
2. Interrupt: SIGINT to `dvc repro` while its task runs on node 2, until
   dvc exits and until node 2 has no container of the plugin left.
3. Overhead: `dvc repro` of K trivial stages (`true`) with `docker.backend
   swarm` on the swarm vs the engine backend on the main engine, medians of
   alternating reps; the difference per stage is the price of a service
   (create, schedule, start, poll, logs, remove) over a plain container.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from queue_bench import DVC, IMAGE, bench_env, drain, sh  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SWARM = ROOT / "scripts" / "engines" / "swarm-netns.sh"


def label_nodes(host: str) -> None:
    import docker

    client = docker.DockerClient(base_url=host)
    for i in (1, 2, 3):
        node_id = docker.DockerClient(base_url=host.replace("node1", f"node{i}")).info()["Swarm"]["NodeID"]
        spec = client.api.inspect_node(node_id)
        client.api.update_node(node_id, spec["Version"]["Index"], {**spec["Spec"], "Labels": {"dde": f"n{i}"}})


def new_repo(root: Path, env: dict, config: dict, dvc_yaml: str) -> Path:
    root.mkdir(parents=True)
    sh(["git", "init", "-q"], root, env)
    sh([*DVC, "init", "-q"], root, env)
    for key, value in {"docker.image": IMAGE, "docker.pull": "never", **config}.items():
        sh([*DVC, "config", key, value], root, env)
    (root / "params.yaml").write_text("x: 0\n")
    (root / "dvc.yaml").write_text(dvc_yaml)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "pipeline"], root, env)
    return root


class NodeEvents:
    """Start/die times of stage containers on every node (each node's own event stream)."""

    def __init__(self, host: str, nodes: int = 3):
        self.times: Dict[str, List[float]] = {"start": [], "die": []}
        self._procs = []
        for n in range(1, nodes + 1):
            proc = subprocess.Popen(
                ["docker", "-H", host.replace("node1", f"node{n}"), "events", "--filter", "type=container",
                 "--filter", "label=dvc-docker-exec.stage", "--format", "{{.TimeNano}} {{.Action}}"],
                stdout=subprocess.PIPE, text=True,
            )
            self._procs.append(proc)
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            nanos, action = line.split()
            if action in self.times:
                self.times[action].append(int(nanos) / 1e9)

    def close(self) -> None:
        time.sleep(1)  # the last events are in flight
        for proc in self._procs:
            proc.terminate()


def scale_out(base: Path, env: dict, nodes: int, exps: int, sleep: float, host: str) -> Tuple[float, float, float]:
    """(wall, start, stages) seconds; start and stages from the nodes' container events."""
    config = {"docker.backend": "swarm", "docker.cpus": "1.5"}
    if nodes == 1:
        config["docker.constraints"] = "node.labels.dde==n1"
    dvc_yaml = (
        f"stages:\n  s:\n    cmd: sleep {sleep} && cp params.yaml out.txt\n"
        "    params: [x]\n    outs: [{out.txt: {cache: false}}]\n"
    )
    root = new_repo(base / f"queue-{nodes}-{time.monotonic_ns()}", env, config, dvc_yaml)
    for i in range(1, exps + 1):
        sh([*DVC, "exp", "run", "--queue", "-n", f"e{i}", "-S", f"x={i}"], root, env)
    events = NodeEvents(host)
    began = time.time()
    wall = drain(root, env, exps, exps, timeout=900)
    events.close()
    first, last = min(events.times["start"]), max(events.times["die"])
    return wall, first - began, last - first


def dvc_alone_start(base: Path, env: dict, exps: int) -> float:
    """Seconds from `dvc queue start -j N` to the first stage command, without the plugin (DVC's own start)."""
    stamps = base / f"stamps-{time.monotonic_ns()}"
    dvc_yaml = (
        f"stages:\n  s:\n    cmd: date +%s.%N >> {stamps} && cp params.yaml out.txt\n"
        "    params: [x]\n    outs: [{out.txt: {cache: false}}]\n"
    )
    root = new_repo(base / f"native-{time.monotonic_ns()}", env, {"docker.enabled": "false"}, dvc_yaml)
    for i in range(1, exps + 1):
        sh([*DVC, "exp", "run", "--queue", "-n", f"e{i}", "-S", f"x={i}"], root, env)
    began = time.time()
    drain(root, env, exps, exps, timeout=900)
    return min(float(x) for x in stamps.read_text().split()) - began


def interrupt(base: Path, env: dict, host: str) -> Tuple[float, float]:
    """SIGINT to `dvc repro` while its task runs on node 2: seconds until dvc exits, and until node 2 has no
    container of the plugin left (the service removed and its task's container gone)."""
    import signal

    import docker

    node2 = docker.DockerClient(base_url=host.replace("node1", "node2"))
    dvc_yaml = "stages:\n  slow:\n    cmd: sleep 300\n    meta: {docker: {constraints: node.labels.dde==n2}}\n"
    root = new_repo(base / f"sigint-{time.monotonic_ns()}", env, {"docker.backend": "swarm"}, dvc_yaml)
    proc = subprocess.Popen(
        [*DVC, "repro"], cwd=root, env={**env, "DOCKER_HOST": host},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ours = {"label": "dvc-docker-exec.stage=slow", "status": "running"}
    while not node2.containers.list(filters=ours):
        time.sleep(0.05)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    exited = time.perf_counter() - sent
    while node2.containers.list(all=True, filters={"label": "dvc-docker-exec.stage=slow"}):
        time.sleep(0.05)
    return exited, time.perf_counter() - sent


def repro(base: Path, env: dict, backend: str, stages: int, swarm_host: str) -> float:
    dvc_yaml = "stages:\n" + "".join(f"  s{i}:\n    cmd: 'true'\n    always_changed: true\n" for i in range(stages))
    root = new_repo(base / f"repro-{backend}-{time.monotonic_ns()}", env, {"docker.backend": backend}, dvc_yaml)
    run_env = dict(env)
    if backend == "swarm":
        run_env["DOCKER_HOST"] = swarm_host
    start = time.perf_counter()
    sh([*DVC, "repro"], root, run_env, timeout=600)
    return time.perf_counter() - start


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exps", type=int, default=6)
    parser.add_argument("--sleep", type=float, nargs="+", default=[5, 20], help="stage lengths to compare")
    parser.add_argument("--stages", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the test swarm running")
    args = parser.parse_args()
    up = subprocess.run([str(SWARM), "up", "3"], capture_output=True, text=True, check=True)
    host = up.stdout.strip().splitlines()[-1].split("=", 1)[1]
    subprocess.run([str(SWARM), "load", IMAGE], check=True)
    label_nodes(host)
    env = bench_env(drop=("DVC_", "GIT_", "DOCKER_"))
    try:
        with tempfile.TemporaryDirectory(prefix="dde-swarm-bench-") as tmp:
            base = Path(tmp)
            env["HOME"] = str(base / "home")
            (base / "home").mkdir()
            queue_env = {**env, "DOCKER_HOST": host}
            alone = dvc_alone_start(base, env, args.exps)
            print(f"  DVC alone, queue start to first stage: {alone:6.2f} s", file=sys.stderr)
            queue = {}
            for sleep in args.sleep:
                for nodes in (1, 3):
                    queue[(sleep, nodes)] = scale_out(base, queue_env, nodes, args.exps, sleep, host)
                    print(f"  sleep {sleep:g}, {nodes} node(s): {queue[(sleep, nodes)][0]:6.2f} s", file=sys.stderr)
            stops = [interrupt(base, env, host) for _ in range(args.reps)]
            times: dict = {"engine": [], "swarm": []}
            for rep in range(args.reps):
                for backend in ("engine", "swarm") if rep % 2 == 0 else ("swarm", "engine"):
                    times[backend].append(repro(base, env, backend, args.stages, host))
                    print(f"  repro {backend:6}: {times[backend][-1]:6.2f} s", file=sys.stderr)
    finally:
        if not args.keep:
            subprocess.run([str(SWARM), "down"], check=False)
    engine, swarm = statistics.median(times["engine"]), statistics.median(times["swarm"])
    print(f"{args.exps} queued experiments (1.5 CPUs reserved), dvc queue start -j {args.exps}, {os.cpu_count()} CPUs:")
    print(f"  DVC alone (no plugin), queue start to first stage command: {alone:.2f} s")
    print(f"  {'stage':>7} {'nodes':>5} {'wall':>8} {'start':>8} {'stages':>8} {'collect':>8}")
    for (sleep, nodes), (wall, start, stages) in queue.items():
        print(f"  {sleep:6g}s {nodes:5} {wall:7.2f}s {start:7.2f}s {stages:7.2f}s {wall - start - stages:7.2f}s")
    for sleep in args.sleep:
        one, three = queue[(sleep, 1)], queue[(sleep, 3)]
        print(
            f"  sleep {sleep:g} s: 3 nodes {one[0] / three[0]:.2f}x faster than 1 in wall time, "
            f"{one[2] / three[2]:.2f}x in the stage phase"
        )
    print(f"SIGINT to dvc repro with a running task, median of {args.reps}:")
    print(
        f"  dvc exited after {statistics.median(s[0] for s in stops):.2f} s, "
        f"the node had no container of it after {statistics.median(s[1] for s in stops):.2f} s"
    )
    print(f"dvc repro of {args.stages} trivial stages, median of {args.reps}:")
    print(f"  engine backend {engine:.2f} s, swarm backend {swarm:.2f} s")
    print(f"  swarm overhead per stage: {(swarm - engine) / args.stages:+.2f} s")
    figures = {f"3 nodes vs 1, sleep {s:g} s (wall)": f"{queue[(s, 1)][0] / queue[(s, 3)][0]:.2f}x" for s in args.sleep}
    figures["swarm overhead per stage"] = f"{(swarm - engine) / args.stages:+.2f} s"
    return figures


if __name__ == "__main__":
    main()

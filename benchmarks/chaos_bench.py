"""Queued experiments under SIGKILLs, `dvc queue kill`, engine restarts vs what they must give: nothing corrupt or left.

Prints numbers, asserts nothing (issue 18). Usage (test images built, see scripts/test.sh):

    python benchmarks/chaos_bench.py [--exps 100] [-j 4] [--kills 10] [--queue-kills 2]
                                     [--restarts 2] [--engine docker|podman] [--stop-trials 5]

A fresh Git+DVC repo gets a two-stage pipeline whose outputs derive from the
parameter x: `gen` appends "x=X i" for i = 1..5 to a.txt over two seconds,
`count` writes how many lines of a.txt carry this x. N experiments (`-S x=i`)
are queued and run by `dvc queue start -j M`, restarted whenever every worker
is gone while experiments wait. Meanwhile, at random moments: SIGKILL of a
`dvc exp exec-run` (the `dvc repro` of a queued experiment) or of a queue
worker, `dvc queue kill` of a running experiment, and a restart of the engine.
Restarts need a private engine: `--engine podman` starts one of its own
(scripts/engines/podman.sh with a state folder and socket of this benchmark);
the system Docker Engine is never restarted (others use it).

Reported: succeeded; failed with a reason (the ERROR line of its log, or the
chaos event that hit it); failed without one; corrupt (a result that does
not match its parameter, a lock whose md5 is not in the cache or not the
file's); containers of the repo and config copies left 5 s after the end.
`--stop-trials`: before the chaos, how long a stage container runs on after
its `dvc repro` gets SIGKILL (min / median / max), on the chosen engine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from queue_bench import DVC, IMAGE, bench_env, sh  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LABEL = "dvc-docker-exec"
LINES = 5
GEN = f"rm -f a.txt; x=$(sed -n 's/^x: //p' params.yaml); i=1; while [ $i -le {LINES} ]; do echo \"x=$x $i\" >> a.txt; i=$((i+1)); sleep 0.4; done"
COUNT = "x=$(sed -n 's/^x: //p' params.yaml); grep -c \"^x=$x \" a.txt > b.txt"
PODMAN_DIR = "/var/lib/dde-podman-chaos-bench"
PODMAN_SOCK = "/run/dde-podman-chaos-bench/podman.sock"


def private_podman() -> str:
    """A Podman service of this benchmark alone (restarting it disturbs nobody); its DOCKER_HOST."""
    env = {**os.environ, "DDE_PODMAN_DIR": PODMAN_DIR, "DDE_PODMAN_SOCK": PODMAN_SOCK}
    out = subprocess.run([str(ROOT / "scripts/engines/podman.sh")], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def restart_podman() -> float:
    """Stop the private service (its containers live on under conmon, its API connections break), start it again."""
    started = time.monotonic()
    pid = int(Path(PODMAN_DIR, "service.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    time.sleep(1)
    private_podman()
    return time.monotonic() - started


def make_repo(root: Path, env: dict) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    sh(["git", "init", "-q"], repo, env)
    sh([*DVC, "init", "-q"], repo, env)
    sh([*DVC, "config", "docker.image", IMAGE], repo, env)
    sh([*DVC, "config", "docker.pull", "never"], repo, env)
    (repo / "params.yaml").write_text("x: 0\n")
    sh([*DVC, "stage", "add", "-n", "gen", "-p", "x", "-o", "a.txt", GEN], repo, env)
    sh([*DVC, "stage", "add", "-n", "count", "-p", "x", "-d", "a.txt", "-o", "b.txt", COUNT], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "pipeline"], repo, env)
    return repo


def processes(repo: Path, marker: str) -> List[int]:
    """pids of dvc processes whose command line has `marker` and that work in (a copy under) `repo`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if marker in cmdline and "dvc" in cmdline and cwd.startswith(str(repo)):
            found.append(int(entry))
    return found


def exp_name(pid: int) -> Optional[str]:
    """The experiment a `dvc exp exec-run --infofile F` runs (ExecutorInfo's name)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
        infofile = os.fsdecode(args[args.index(b"--infofile") + 1])
        return json.loads(Path(cwd, infofile).read_text()).get("name")
    except (OSError, ValueError, IndexError):
        return None


def queue_status(repo: Path, env: dict) -> Dict[str, str]:
    out = subprocess.run([*DVC, "queue", "status"], cwd=repo, env=env, capture_output=True, text=True).stdout
    status = {}
    for line in out.splitlines():
        words = line.split()
        names = [w for w in words if re.fullmatch(r"e\d+", w)]
        states = [w for w in words if w in ("Queued", "Running", "Success", "Failed")]
        if names and states:
            status[names[0]] = states[-1]
    return status


def engine_client(env: dict):
    import docker

    return docker.DockerClient(base_url=env["DOCKER_HOST"]) if env.get("DOCKER_HOST") else docker.from_env()


def ours(client, repo: Path, running: bool = False) -> list:
    found = client.containers.list(all=not running, filters={"label": LABEL}, ignore_removed=True)
    return [c for c in found if c.labels.get(f"{LABEL}.repo", "").startswith(str(repo))]


def stop_trials(root: Path, env: dict, trials: int) -> List[float]:
    """Seconds a stage container runs on after SIGKILL of its `dvc repro` (polled every 20 ms)."""
    client = engine_client(env)
    repo = make_repo(root / "stop", env)
    sh([*DVC, "stage", "add", "-n", "long", "sleep 60"], repo, env)
    times = []
    for _ in range(trials):
        proc = subprocess.Popen([*DVC, "repro", "long"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while not ours(client, repo, running=True) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait()
        while ours(client, repo, running=True) and time.monotonic() < killed + 90:
            time.sleep(0.02)
        times.append(time.monotonic() - killed)
    return times


class Chaos(threading.Thread):
    """Fires the events at random moments within `window` seconds; records which experiment each one hit."""

    def __init__(self, repo: Path, env: dict, args, window: float):
        super().__init__(daemon=True)
        self.repo, self.env, self.window = repo, env, window
        events = ["kill-exec-run"] * (args.kills - args.kills // 3) + ["kill-worker"] * (args.kills // 3)
        events += ["queue-kill"] * args.queue_kills + ["restart"] * args.restarts
        rng = random.Random(args.seed)
        self.plan = sorted((rng.uniform(0.05, 0.9) * window, event) for event in events)
        self.hit: Dict[str, str] = {}  # experiment -> the event that hit it
        self.log: List[str] = []
        self.restart_seconds: List[float] = []
        self.rng = rng

    def run(self) -> None:
        start = time.monotonic()
        for at, event in self.plan:
            time.sleep(max(0.0, start + at - time.monotonic()))
            try:
                self.fire(event)
            except Exception as exc:  # noqa: BLE001 - a benchmark goes on
                self.log.append(f"{event}: {exc}")

    def _running_exec_run(self, wait: float = 60) -> Optional[int]:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = processes(self.repo, "exec-run")
            if pids:
                return self.rng.choice(pids)
            time.sleep(0.2)
        return None

    def fire(self, event: str) -> None:
        if event == "restart":
            self.restart_seconds.append(restart_podman())
            self.log.append(f"engine restarted ({self.restart_seconds[-1]:.1f} s)")
            return
        if event == "kill-worker":
            pids = processes(self.repo, "queue-worker") or processes(self.repo, "celery")
            if pids:
                os.kill(self.rng.choice(pids), signal.SIGKILL)
                self.log.append("SIGKILL of a queue worker")
            return
        pid = self._running_exec_run()
        if pid is None:
            self.log.append(f"{event}: no running experiment")
            return
        name = exp_name(pid) or "?"
        time.sleep(self.rng.uniform(0, 1.5))  # somewhere in its stages
        if event == "kill-exec-run":
            os.kill(pid, signal.SIGKILL)
            self.hit[name] = "SIGKILL of its dvc exp exec-run"
        else:
            subprocess.run([*DVC, "queue", "kill", name], cwd=self.repo, env=self.env, capture_output=True)
            self.hit[name] = "dvc queue kill"
        self.log.append(f"{self.hit[name]} ({name})")


def verify(repo: Path, env: dict, name: str) -> Optional[str]:
    """None if experiment `name`'s result matches its parameter and its lock the cache; else what is wrong."""
    ref = subprocess.run(["git", "for-each-ref", "--format=%(refname)", f"refs/exps/*/*/{name}"], cwd=repo,
                         env=env, capture_output=True, text=True).stdout.split()
    if not ref:
        return "no experiment ref"
    import yaml

    show = lambda path: subprocess.run(["git", "show", f"{ref[0]}:{path}"], cwd=repo, env=env,  # noqa: E731
                                       capture_output=True, text=True).stdout
    x = yaml.safe_load(show("params.yaml"))["x"]
    if f"e{x}" != name:
        return f"params x={x} for {name}"
    lock = yaml.safe_load(show("dvc.lock"))
    expected = {"a.txt": "".join(f"x={x} {i}\n" for i in range(1, LINES + 1)), "b.txt": f"{LINES}\n"}
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            md5 = out["md5"]
            cached = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
            if not cached.exists():
                return f"{out['path']}: md5 {md5} is in no cache"
            data = cached.read_bytes()
            if hashlib.md5(data).hexdigest() != md5:
                return f"{out['path']}: the cache object does not match its md5"
            if data.decode() != expected[out["path"]]:
                return f"{out['path']}: {data.decode()!r} does not derive from x={x}"
    return None


def failure_reason(repo: Path, env: dict, name: str, hit: Dict[str, str]) -> Optional[str]:
    if name in hit:
        return hit[name]
    logs = subprocess.run([*DVC, "queue", "logs", name], cwd=repo, env=env, capture_output=True, text=True).stdout
    errors = [line.strip() for line in logs.splitlines() if line.startswith("ERROR")]
    return errors[-1][:160] if errors else None


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exps", type=int, default=8)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--queue-kills", type=int, default=1)
    parser.add_argument("--restarts", type=int, default=0)
    parser.add_argument("--engine", choices=["docker", "podman"], default="docker")
    parser.add_argument("--stop-trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    if args.restarts and args.engine != "podman":
        sys.exit("--restarts needs --engine podman (a private engine); the system Docker Engine is never restarted")
    env = bench_env()
    if args.engine == "podman":
        env["DOCKER_HOST"] = private_podman()
    root = Path(tempfile.mkdtemp(prefix="dde-chaos-"))
    print(f"engine {args.engine} ({env.get('DOCKER_HOST', 'system Docker')}), work folder {root}")
    figures = {}
    if args.stop_trials:
        times = stop_trials(root, env, args.stop_trials)
        figures["stop after SIGKILL (median, max)"] = f"{statistics.median(times):.2f} s, {max(times):.2f} s"
        print(f"stop time after SIGKILL of dvc repro ({args.engine}, {len(times)} trials): min {min(times):.2f} s, "
              f"median {statistics.median(times):.2f} s, max {max(times):.2f} s")
    if not args.exps:
        return figures
    repo = make_repo(root / "chaos", env)
    for i in range(1, args.exps + 1):
        sh([*DVC, "exp", "run", "--queue", "-n", f"e{i}", "-S", f"x={i}"], repo, env)
    worker_log = open(root / "workers.log", "ab")  # noqa: SIM115 - open for the whole run
    start = time.monotonic()

    def start_workers() -> None:
        subprocess.run([*DVC, "queue", "start", "-j", str(args.jobs)], cwd=repo, env=env, stdin=subprocess.DEVNULL,
                       stdout=worker_log, stderr=subprocess.STDOUT, timeout=120)

    start_workers()
    # a rough window for the events: the queue's duration without chaos (~5 s an experiment, M at a time)
    chaos = Chaos(repo, env, args, window=max(30.0, args.exps * 6.0 / args.jobs))
    chaos.start()
    restarts_of_workers = 0
    while time.monotonic() - start < args.timeout:
        status = queue_status(repo, env)
        running = processes(repo, "exec-run")
        # DVC keeps saying "Running" for an experiment whose exec-run was SIGKILLed: only a live one waits
        waiting = [n for n, s in status.items() if s == "Queued" or (s == "Running" and running)]
        if not waiting and len(status) >= args.exps and not chaos.is_alive():
            break
        if waiting and not processes(repo, "queue-worker") and not running:
            restarts_of_workers += 1
            start_workers()
        time.sleep(5)
    elapsed = time.monotonic() - start
    subprocess.run([*DVC, "queue", "stop"], cwd=repo, env=env, capture_output=True)
    time.sleep(5)
    client = engine_client(env)
    left = ours(client, repo)
    copies = [p for p in (repo / ".dvc/tmp/docker-exec").glob("*/config*")]
    copies += [p for p in (repo / ".dvc/tmp/exps").rglob(".dvc/tmp/docker-exec/*/config*")]
    status = queue_status(repo, env)
    results: Counter = Counter()
    reasons: Counter = Counter()
    corrupt: List[str] = []
    for i in range(1, args.exps + 1):
        name = f"e{i}"
        state = status.get(name, "?")
        if state == "Success":
            wrong = verify(repo, env, name)
            if wrong:
                corrupt.append(f"{name}: {wrong}")
                results["corrupt"] += 1
            else:
                results["succeeded"] += 1
        elif state == "Failed" or state == "Running":
            # "Running" with no exec-run left: DVC's own status of a run whose process was SIGKILLed
            reason = failure_reason(repo, env, name, chaos.hit)
            if reason is None and state == "Running":
                reason = "its dvc process was killed (DVC still says Running; a SIGKILLed queue worker)"
            results["failed with a reason" if reason else "failed without a reason"] += 1
            reasons[reason or "(none)"] += 1
        else:
            results[f"not finished ({state})"] += 1
    print(f"{args.exps} experiments, -j {args.jobs}, {elapsed:.0f} s; workers restarted {restarts_of_workers} times")
    print("chaos: " + "; ".join(chaos.log))
    if chaos.restart_seconds:
        print(f"engine restarts took {', '.join(f'{s:.1f}' for s in chaos.restart_seconds)} s")
    for key in ("succeeded", "failed with a reason", "failed without a reason", "corrupt"):
        print(f"  {key}: {results.pop(key, 0)}")
    for key, count in results.items():
        print(f"  {key}: {count}")
    for reason, count in reasons.most_common():
        print(f"    {count} x {reason}")
    for line in corrupt:
        print(f"    CORRUPT {line}")
    print(f"  containers left after 5 s: {len(left)} {[c.name for c in left]}")
    print(f"  config copies left after 5 s: {len(copies)}")
    figures["experiments"] = f"{args.exps}: " + ", ".join(f"{key} {count}" for key, count in sorted(results.items()))
    figures["left after 5 s"] = f"{len(left)} containers, {len(copies)} config copies"
    return figures


if __name__ == "__main__":
    main()

"""How fast an interrupted stage's container is gone: plugin vs `docker run --rm --init`.

Prints numbers, asserts nothing (the tests only check "gone, and the command
got the signal", with generous bounds). Usage (Docker Engine and test images
ready, see scripts/test.sh):

    python benchmarks/stop_bench.py [--reps 5] [--queue]

For each signal (SIGINT to the process group, i.e. Ctrl-C, and SIGTERM) and
each kind of command (one that exits on the signal, one that ignores it and
must be killed after the runner's grace period), a `dvc repro` of one stage
sleeping 60 s is started, the signal is sent once the command runs, and the
time until no container of the repo is left is measured. Side by side: the
same command under an attached `docker run --rm --init` whose CLI gets the
same signal. The promise in the README, "gone within 2 s", is the last column.
`--queue` also times `dvc queue kill` of a running queued experiment (from the
kill command's start, including its own ~1 s start-up).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

import docker

IMAGE = "dvc-docker-exec-test/busybox:latest"
LABEL = "dvc-docker-exec"
DVC = [sys.executable, "-m", "dvc"]
PROMISE = 2.0  # seconds
REPORT = "trap 'exit 130' INT; trap 'exit 143' TERM"
IGNORE = "trap '' INT TERM"
CMD = "{traps}; echo started > started.txt; sleep 60 & wait $!"


def sh(args, cwd, env) -> None:
    proc = subprocess.run(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{shlex.join(map(str, args))} failed in {cwd}:\n{proc.stdout}{proc.stderr}")


def make_repo(root: Path, env: dict, cmd: str) -> Path:
    root.mkdir(parents=True)
    sh(["git", "init", "-q"], root, env)
    sh([*DVC, "init", "-q"], root, env)
    for key, value in (("image", IMAGE), ("pull", "never")):
        sh([*DVC, "config", f"docker.{key}", value], root, env)
    sh([*DVC, "stage", "add", "-n", "s", cmd], root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "init"], root, env)
    return root


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


def start(args: List[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a shell job: Ctrl-C goes to its process group
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def interrupt(proc: subprocess.Popen, sig: str) -> None:
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)


def plugin_once(root: Path, env: dict, sig: str, client) -> float:
    (root / "started.txt").unlink(missing_ok=True)
    proc = start([*DVC, "repro", "-f"], root, env)
    wait_for((root / "started.txt").exists, "the stage to start")
    mine = lambda: client.containers.list(all=True, filters={"label": f"{LABEL}.repo={root}"}, ignore_removed=True)  # noqa: E731
    sent = time.monotonic()
    interrupt(proc, sig)
    wait_for(lambda: not mine(), "the container to go", timeout=120)
    gone = time.monotonic() - sent
    proc.wait(timeout=60)
    return gone


def docker_run_once(root: Path, env: dict, cmd: str, sig: str, client) -> float:
    (root / "started.txt").unlink(missing_ok=True)
    name = f"dde-stop-bench-{os.getpid()}"
    proc = start(
        ["docker", "run", "--rm", "--init", "--name", name, "--network", "none", "-v", f"{root}:{root}", "-w",
         str(root), IMAGE, "sh", "-c", cmd],
        root,
        env,
    )
    wait_for((root / "started.txt").exists, "the container to start")
    there = lambda: client.containers.list(all=True, filters={"name": f"^{name}$"}, ignore_removed=True)  # noqa: E731
    sent = time.monotonic()
    interrupt(proc, sig)
    try:
        wait_for(lambda: not there(), "docker run's container to go", timeout=15)
        gone = time.monotonic() - sent
    except SystemExit:
        gone = float("inf")  # the CLI forwards the signal; a command that ignores it runs on
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    proc.wait(timeout=60)
    return gone


def queue_kill_once(base: Path, env: dict, client, rep: int) -> float:
    root = make_repo(base / f"queue-{rep}", env, CMD.format(traps=REPORT))
    env = {**env, "PATH": os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])}
    sh([*DVC, "exp", "run", "--queue", "-n", "victim"], root, env)
    log = open(base / f"queue-{rep}.log", "wb")
    try:
        subprocess.run([*DVC, "queue", "start", "-j", "1"], cwd=root, env=env, stdin=subprocess.DEVNULL,
                       stdout=log, stderr=subprocess.STDOUT, check=True, timeout=60)
        mine = lambda: [  # noqa: E731
            c for c in client.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
            if c.labels.get(f"{LABEL}.repo", "").startswith(str(root))
        ]
        wait_for(lambda: any(c.status == "running" for c in mine()), "the queued stage to start", timeout=120)
        time.sleep(0.5)
        sent = time.monotonic()
        sh([*DVC, "queue", "kill", "victim"], root, env)
        wait_for(lambda: not mine(), "the container to go", timeout=120)
        return time.monotonic() - sent
    finally:
        subprocess.run([*DVC, "queue", "stop", "--kill"], cwd=root, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
        log.close()


def row(name: str, times: List[float], width: int = 46) -> str:
    finite = [t for t in times if t != float("inf")]
    within = sum(t <= PROMISE for t in times)
    if not finite:
        return f"  {name:<{width}} never gone (ignored signal runs on)"
    return (
        f"  {name:<{width}} median {statistics.median(finite):5.2f} s  max {max(finite):5.2f} s  "
        f"within {PROMISE:g} s: {within}/{len(times)}"
        + (f"  ({len(times) - len(finite)} never gone)" if len(finite) < len(times) else "")
    )


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--queue", action="store_true", help="also time `dvc queue kill`")
    args = parser.parse_args()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    client = docker.from_env()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="dde-stop-bench-") as tmp:
        base = Path(tmp)
        print(f"signal -> container gone, {args.reps} runs each (seconds; README promise: within {PROMISE:g} s)")
        for kind, traps in (("command exits on the signal", REPORT), ("command ignores the signal", IGNORE)):
            cmd = CMD.format(traps=traps)
            root = make_repo(base / kind.split()[1], env, cmd)
            manual = base / f"manual-{kind.split()[1]}"
            manual.mkdir()
            print(kind)
            for sig in ("SIGINT", "SIGTERM"):
                plugin, cli = [], []
                for _ in range(args.reps):  # alternate, so drift hits both sides
                    plugin.append(plugin_once(root, env, sig, client))
                    cli.append(docker_run_once(manual, env, cmd, sig, client))
                print(row(f"{sig} to dvc repro (plugin)", plugin))
                figures[f"{sig}, {kind}: plugin median, max"] = f"{statistics.median(plugin):.2f} s, {max(plugin):.2f} s"
                print(row(f"{sig} to attached docker run --rm --init", cli))
                finite = [t for t in cli if t != float("inf")]
                if finite:
                    print(f"  ratio plugin / docker run (medians): {statistics.median(plugin) / statistics.median(finite):.2f}x")
        if args.queue:
            times = [queue_kill_once(base, env, client, rep) for rep in range(args.reps)]
            print("dvc queue kill of a running experiment (command exits on SIGINT)")
            print(row("from `dvc queue kill` start to container gone", times))
            figures["dvc queue kill to container gone (median)"] = f"{statistics.median(times):.2f} s"
    return figures


if __name__ == "__main__":
    main()

"""SIGTERM/SIGHUP at random moments of `dvc repro` vs the promise that nothing is left (this version or --base).

Counts what is left behind. Prints numbers, asserts nothing.

    python benchmarks/signal_stress.py [--tries 60] [--base /tmp/base]

Each try starts `dvc repro -f` of one short stage and signals it after a
random delay spread over the whole run (as long as one run takes here) (start-up, create, start, the command,
removal). Afterwards it counts containers of the repo in any state (Created
included), config copies in .dvc/tmp/docker-exec (cumulative: a copy
left by one try is counted again by the next ones), and a dvc process that
exited 0 with a dvc.lock despite the signal. With --base, the package under that folder is used
(PYTHONPATH), to compare with another version.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

IMAGE = "dvc-docker-exec-test/busybox:latest"


def _exiting(pid: int) -> bool:
    """A zombie (done, not yet reaped): a signal now changes nothing."""
    try:
        with open(f"/proc/{pid}/stat") as fobj:
            return fobj.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tries", type=int, default=60)
    parser.add_argument("--base", help="folder holding the dvc_docker_exec package to use instead")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DVC_NO_ANALYTICS"] = "1"
    if args.base:
        env["PYTHONPATH"] = args.base
    dvc = [sys.executable, "-m", "dvc"]
    client = docker.from_env()
    counts = {"containers": 0, "created": 0, "copies": 0, "locks": 0, "finished": 0}
    with tempfile.TemporaryDirectory(prefix="dde-signal-stress-") as tmp:
        repo = Path(tmp)
        for cmd in (["git", "init", "-q"], [*dvc, "init", "-q"], [*dvc, "config", "docker.image", IMAGE],
                    [*dvc, "config", "docker.pull", "never"], [*dvc, "config", "--local", "docker.network", "none"],
                    [*dvc, "stage", "add", "-n", "s", "-o", "out.txt", "sleep 0.3; echo x > out.txt"]):
            subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
        # delays spread over one whole run, as long as it takes on this machine
        start = time.monotonic()
        subprocess.run([*dvc, "repro", "-f"], cwd=repo, env=env, check=True, capture_output=True)
        duration = time.monotonic() - start
        for i in range(args.tries):
            (repo / "dvc.lock").unlink(missing_ok=True)
            proc = subprocess.Popen([*dvc, "repro", "-f"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(random.uniform(0.0, duration))
            sig = signal.SIGTERM if i % 2 == 0 else signal.SIGHUP
            signalled = proc.poll() is None and not _exiting(proc.pid)
            if signalled:
                os.kill(proc.pid, sig)
            proc.wait(timeout=60)
            if not signalled:
                counts["finished"] += 1  # the run was over before the signal: nothing to count
                continue
            time.sleep(0.5)
            left = client.api.containers(all=True, filters={"label": "dvc-docker-exec"})
            mine = [c for c in left if c["Labels"].get("dvc-docker-exec.repo", "").startswith(str(repo))]
            counts["containers"] += len(mine)
            counts["created"] += sum(1 for c in mine if c["State"] == "created")
            for c in mine:
                try:
                    client.api.remove_container(c["Id"], force=True)
                except docker.errors.APIError:
                    pass  # its auto-removal is under way
            folder = repo / ".dvc" / "tmp" / "docker-exec"
            copies = [p for p in folder.glob("*/*")] if folder.is_dir() else []
            counts["copies"] += len(copies)
            # with a non-zero exit, a lock means the signal came during DVC's own work after the stage
            counts["locks"] += (repo / "dvc.lock").exists() and proc.returncode == 0
    print(f"{args.tries} tries ({'base ' + args.base if args.base else 'this version'}), "
          f"{args.tries - counts['finished']} signalled mid-run: "
          f"containers left {counts['containers']} (Created: {counts['created']}), "
          f"copies left {counts['copies']}, exit 0 with dvc.lock despite the signal {counts['locks']}")
    return {
        "signalled mid-run": f"{args.tries - counts['finished']} of {args.tries}",
        "left": f"{counts['containers']} containers, {counts['copies']} copies, {counts['locks']} locks",
    }


if __name__ == "__main__":
    main()

"""Helpers shared by several test modules (issue 22): test modules import them from here or from
tests/conftest.py, never from each other. Plain functions over a DvcRepo; fixtures stay in conftest."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Dict, Iterable

import yaml

from dvc_docker_exec.types.provenance import record_from_lock
from tests.conftest import DvcRepo

# --- experiments and DVC's queue -------------------------------------------------------------------------

QUEUE_TIMEOUT = 120  # seconds: a queue test must fail, not hang


def git_show(repo: DvcRepo, rev: str, path: str) -> str:
    return repo.run("git", "show", f"{rev}:{path}").stdout


def experiments(repo: DvcRepo) -> Dict[str, dict]:
    """name -> {rev, state, params, metrics, deps} of every experiment in `dvc exp show --json`."""
    found = {}
    for baseline in json.loads(repo.dvc("exp", "show", "--json").stdout):
        for group in baseline.get("experiments") or []:
            for rev in group["revs"]:
                data = rev.get("data") or {}
                metrics = {
                    path: (entry.get("data") or {}) for path, entry in (data.get("metrics") or {}).items()
                }
                params = {path: (entry.get("data") or {}) for path, entry in (data.get("params") or {}).items()}
                state = (group.get("executor") or {}).get("state")  # None once done in the workspace
                found[rev.get("name") or rev["rev"]] = {
                    "rev": rev["rev"],
                    "state": state,
                    "metrics": metrics,
                    "params": params,
                    # non-params deps: path -> hash (the image columns: docker:<image> -> 12 hex digits)
                    "deps": {path: (entry or {}).get("hash") for path, entry in (data.get("deps") or {}).items()},
                }
    return found


def queue(repo: DvcRepo, name: str, *sets: str) -> None:
    args = [a for s in sets for a in ("-S", s)]
    repo.dvc("exp", "run", "--queue", "-n", name, *args)


def start_workers(repo: DvcRepo, jobs: int, env: Dict[str, str] = {}) -> None:  # noqa: B006
    """`dvc queue start -j N` (as the repo's user where it has a `prefix`), output to a file: the daemons
    inherit our stdout."""
    log = repo.path.parent / f"queue-start-{time.monotonic_ns()}.log"
    with open(log, "wb") as out:
        proc = subprocess.run(
            [*getattr(repo, "prefix", []), *repo.dvc_argv(), "queue", "start", "-j", str(jobs)],
            cwd=repo.path,
            env={**repo.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=60,
        )
    assert proc.returncode == 0, log.read_text()


def stop_workers(repo: DvcRepo) -> None:
    subprocess.run(
        [*getattr(repo, "prefix", []), *repo.dvc_argv(), "queue", "stop", "--kill"],
        cwd=repo.path,
        env=repo.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


def queue_status(repo: DvcRepo) -> Dict[str, str]:
    """name -> Queued/Running/Success/Failed from `dvc queue status`."""
    table = {}
    for line in repo.dvc("queue", "status").stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] not in ("Task", "Worker"):
            table[parts[1]] = parts[-1]
    return table


def wait_for_queue(repo: DvcRepo, names: Iterable[str], timeout: float = QUEUE_TIMEOUT) -> Dict[str, str]:
    names = set(names)
    deadline = time.monotonic() + timeout
    while True:
        status = queue_status(repo)
        if all(status.get(n) in ("Success", "Failed") for n in names):
            return status
        assert time.monotonic() < deadline, f"queue not drained after {timeout}s: {status}\n{queue_diagnostics(repo)}"
        time.sleep(1)


def queue_diagnostics(repo: DvcRepo) -> str:
    """The tails of the worker logs and of every experiment's log, for a failure message."""
    exps_dir = repo.path / ".dvc" / "tmp" / "exps"
    parts = []
    for log in sorted(exps_dir.glob("celery/*.out")) + sorted(exps_dir.glob("run/*/*.out")):
        lines = log.read_text(errors="replace").splitlines()[-15:]
        parts.append(f"--- {log.relative_to(repo.path)}\n" + "\n".join(lines))
    return "\n".join(parts)


# --- provenance: what dvc.lock records ------------------------------------------------------------


def lock_records(text: str) -> Dict[str, tuple]:
    """stage -> (image, identity) as a dvc.lock text records them."""
    found = {}
    for name, entry in ((yaml.safe_load(text) or {}).get("stages") or {}).items():
        rec = record_from_lock(name, entry)
        if rec is not None:
            found[name] = (rec.image, rec.identity)
    return found


def records(repo: DvcRepo, folder: str = ".") -> Dict[str, tuple]:
    path = repo.path / folder / "dvc.lock"
    return lock_records(path.read_text()) if path.exists() else {}


def status(repo: DvcRepo, **kwargs) -> dict:
    return json.loads(repo.dvc("status", "--json", **kwargs).stdout)


# --- dvc docker doctor ----------------------------------------------------------------------------


def doctor(repo, *args: str, **kwargs) -> dict:
    proc = repo.dvc("docker", "doctor", "--json", *args, check=False, **kwargs)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    report["rc"] = proc.returncode
    report["by_name"] = {c["name"]: c for c in report["checks"]}
    return report

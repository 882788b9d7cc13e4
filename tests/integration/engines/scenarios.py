"""The core scenarios every engine must pass, run through its endpoint by tests/integration/engines/test_*.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.conftest import DvcRepo, in_container_probe, our_containers


def add_stage(repo: DvcRepo, name: str, cmd: str, *extra: str) -> None:
    repo.dvc("stage", "add", "-n", name, *extra, cmd)


def failed_stage_records_nothing(repo: DvcRepo) -> None:
    """Finding (a): the exit status is exact; a failed stage's output never enters the lock or the cache."""
    add_stage(repo, "partial", "echo partial > o.txt; exit 7", "-o", "o.txt")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "exited with 7" in proc.stderr, proc.stderr
    assert repo.lock() is None
    cache = repo.path / ".dvc" / "cache"
    assert not [p for p in cache.rglob("*") if p.is_file()], "a failed stage's output was cached"


def stage_runs_and_is_recorded(repo: DvcRepo) -> str:
    """Output, stderr apart, PID 1 an init, the lock as for a host run. Returns the probe's PID-1 line."""
    cmd = f"{in_container_probe()} > where.txt; echo out; echo err >&2; echo \"$DVC_STAGE\" > out.txt"
    add_stage(repo, "hello", cmd, "-o", "out.txt")
    proc = repo.dvc("repro")
    # whole lines: the echoed command line (on stdout) contains both words
    assert "out" in proc.stdout.splitlines() and "err" in proc.stderr.splitlines()
    assert "err" not in proc.stdout.splitlines()
    assert repo.read("out.txt") == "hello\n"
    assert "out.txt" in (repo.lock() or "")
    return repo.read("where.txt")


def several_lines_stop_at_first_failure(repo: DvcRepo) -> None:
    repo.write("dvc.yaml", "stages:\n  multi:\n    cmd:\n    - echo one > a.txt\n    - exit 4\n    - echo three > c.txt\n")
    proc = repo.dvc("repro", check=False)
    assert "exited with 4" in proc.stderr, proc.stderr
    assert (repo.path / "a.txt").exists() and not (repo.path / "c.txt").exists()
    assert repo.lock() is None


def signal_stops_and_removes(repo: DvcRepo, client, sig: str = "SIGTERM") -> None:
    """SIGTERM to dvc, or Ctrl-C (SIGINT to its process group): the stage container is stopped and removed."""
    add_stage(repo, "sleepy", "echo started; sleep 60; echo never > out.txt", "-o", "out.txt")
    proc = subprocess.Popen(
        [*getattr(repo, "prefix", []), sys.executable, "-m", "dvc", "repro"],
        cwd=repo.path,
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # own process group, like a shell job; SIGINT reset (background jobs inherit SIG_IGN)
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not [c for c in our_containers(client, str(repo.path)) if c.status == "running"]:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "container never started"
        time.sleep(0.1)
    time.sleep(0.5)
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
    else:
        proc.send_signal(signal.SIGTERM)  # (setpriv execs: proc.pid is dvc's)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    deadline = time.monotonic() + 5
    while our_containers(client, str(repo.path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not our_containers(client, str(repo.path))
    assert not (repo.path / "out.txt").exists() and repo.lock() is None


def file_owner(repo: DvcRepo, name: str) -> int:
    return os.stat(repo.path / name).st_uid


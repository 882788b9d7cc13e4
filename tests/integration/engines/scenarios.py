"""The core scenarios every engine must pass, run through its endpoint by tests/integration/engines/test_*.py."""

from __future__ import annotations

import os
import signal
import time

from tests.conftest import DvcRepo, in_container_probe, our_containers, running, start_dvc, wait_started, wait_until


def add_stage(repo: DvcRepo, name: str, cmd: str, *extra: str) -> None:
    repo.stage_add("-n", name, *extra, cmd)


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
    out = repo.path.parent / f"{repo.path.name}-stdout.txt"
    # own process group, like a shell job; SIGINT reset (background jobs inherit SIG_IGN)
    proc, err = start_dvc(repo, "repro", stdout=out, preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_started(client, repo, out, proc)
    if sig == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the foreground process group
    else:
        proc.send_signal(signal.SIGTERM)  # (setpriv execs: proc.pid is dvc's)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert "Traceback" not in err.read_text(), err.read_text()
    wait_until(lambda: not our_containers(client, str(repo.path)), "the container removed")
    assert not (repo.path / "out.txt").exists() and repo.lock() is None


def file_owner(repo: DvcRepo, name: str) -> int:
    return os.stat(repo.path / name).st_uid



# --- issue 18: no container outlives its dvc process ---------------------------------------------------

STOP_BUDGET = 15.0  # seconds; the promise is 2 s on one engine (benchmarks/chaos_bench.py measures it)


def sigkill_stops_the_container(repo: DvcRepo, client, budget: float = STOP_BUDGET, seconds: int = 20) -> float:
    """SIGKILL of `dvc repro` while its stage runs: the container stops and is removed; returns the stop time.

    The stage would write `late.txt` after `seconds`: it never may, and the
    next run finds nothing of the killed one.
    """
    add_stage(repo, "orphan", f"echo started; sleep {seconds}; echo late > late.txt")
    out = repo.path.parent / f"{repo.path.name}-stdout.txt"
    proc, _ = start_dvc(repo, "repro", "orphan", stdout=out)
    wait_started(client, repo, out, proc)
    os.kill(proc.pid, signal.SIGKILL)  # (setpriv execs: proc.pid is dvc's)
    killed = time.monotonic()
    proc.wait(timeout=30)
    wait_until(lambda: not running(client, repo), "the container to stop")
    stopped = time.monotonic() - killed
    wait_until(lambda: not our_containers(client, str(repo.path)), "the container to be removed")
    assert stopped < budget, f"the container ran {stopped:.1f} s after its dvc process was killed"
    assert not (repo.path / "late.txt").exists()
    return stopped


def second_wall_removes_an_orphan(repo: DvcRepo, client) -> None:
    """dvc killed after the create, before the start: the container it leaves is named by `dvc status`
    and removed by the next run before anything starts (with one line)."""
    add_stage(repo, "s", "echo x > out.txt", "-o", "out.txt")
    proc, err = start_dvc(repo, "repro", env={"DVC_DOCKER_EXEC_TEST_PAUSE": "created"})
    wait_until(lambda: "paused at created" in err.read_text(), "the pause after the create", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    orphans = our_containers(client, str(repo.path))
    assert len(orphans) == 1, orphans
    name = orphans[0].name
    status = repo.dvc("status")
    assert f"container {name} of stage 's'" in status.stderr and "dvc docker prune" in status.stderr, status.stderr
    proc = repo.dvc("repro")
    assert f"removed container {name} of stage 's'" in proc.stderr, proc.stderr
    assert repo.read("out.txt") == "x\n"
    assert not our_containers(client, str(repo.path))
    assert "outlived" not in repo.dvc("status").stderr

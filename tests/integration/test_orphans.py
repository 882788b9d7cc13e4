"""Issue 18 and P7 on the system Docker Engine: no container outlives its dvc process, removal is complete.

The other engines run the same scenarios (tests/integration/engines/scenarios.py)
from their own test modules; the stop time is measured by benchmarks/chaos_bench.py.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import (
    anonymous_volume,
    assert_volume_removed,
    our_containers,
    start_dvc,
    wait_running,
    wait_started,
    wait_until,
)
from tests.integration.engines import scenarios

pytestmark = pytest.mark.docker

# --- issue 18 (1): a SIGKILLed dvc leaves nothing running ---------------------------------------------


def test_sigkill_of_dvc_repro_stops_and_removes_the_container(repo, docker_client):
    stopped = scenarios.sigkill_stops_the_container(repo, docker_client)
    print(f"stop time after SIGKILL (Docker): {stopped:.2f} s")


def test_killed_run_never_writes_into_the_next_one(repo, docker_client):
    """Issue 18's reproduction: kill -9 of `dvc repro` after 1 s, rerun with other params: the lock matches the file."""
    repo.write("params.yaml", "tag: first\n")
    repo.stage_add("-n", "s", "-p", "tag", "-o", "out.txt", "sleep 8; grep tag params.yaml > out.txt")
    proc, _ = start_dvc(repo, "repro")
    wait_running(docker_client, repo, proc)
    time.sleep(1)  # the scenario: killed 1 s into its command (not a synchronisation)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    repo.write("params.yaml", "tag: second\n")
    repo.dvc("repro", timeout=120)
    time.sleep(2)  # the killed run's command would have written at 8 s
    assert repo.read("out.txt") == "tag: second\n"
    import hashlib

    md5 = hashlib.md5((repo.path / "out.txt").read_bytes()).hexdigest()
    assert md5 in (repo.lock() or ""), repo.lock()


def test_stage_exit_status_signals_and_tty_are_unchanged(repo, docker_client):
    """The lease watcher is not the command's parent: the command's exit code and its signal traps are its own."""
    repo.stage_add("-n", "e", "echo $$ > pid.txt; exit 5")
    proc = repo.dvc("repro", check=False)
    assert "exited with 5" in proc.stderr, proc.stderr
    # PID 1 is still docker-init, the command runs as its child (pid 2 for busybox: the watcher forks later)
    assert repo.read("pid.txt").strip().isdigit()


# --- issue 18 (2): the second wall -------------------------------------------------------------------


def test_next_run_removes_an_orphan_and_status_names_it(repo, docker_client):
    scenarios.second_wall_removes_an_orphan(repo, docker_client)


def test_a_live_runs_container_is_not_an_orphan(repo, docker_client):
    """Two dvc processes of one repo: the second wall removes nothing of a process that lives."""
    repo.stage_add("-n", "long", "sleep 6")
    repo.stage_add("-n", "short", "-o", "x.txt", "echo x > x.txt")
    proc, _ = start_dvc(repo, "repro", "long")
    wait_running(docker_client, repo, proc)
    quick = repo.dvc("repro", "short")
    assert "removed container" not in quick.stderr, quick.stderr
    assert proc.wait(timeout=60) == 0


# --- P7: every removal path removes the anonymous volumes --------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_stage_leaves_no_anonymous_volume(make_repo, volume_image, docker_client, no_leftovers, sig):
    repo = make_repo(volume_image)
    repo.stage_add("-n", "v", "echo started; sleep 60")
    out = repo.path.parent / "dvc-stdout.txt"
    proc, _ = start_dvc(repo, "repro", stdout=out)
    volume = anonymous_volume(docker_client, repo)
    wait_started(docker_client, repo, out, proc)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: to the whole foreground process group
    else:
        os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    wait_until(lambda: not our_containers(docker_client, str(repo.path)), "the container removed")
    assert_volume_removed(docker_client, volume)


def test_prune_and_the_second_wall_remove_the_anonymous_volume(make_repo, volume_image, docker_client, no_leftovers):
    repo = make_repo(volume_image)
    repo.stage_add("-n", "v", "true")
    volumes = []
    for remover in (("docker", "prune"), ("repro",)):
        proc, err = start_dvc(repo, "repro", env={"DVC_DOCKER_EXEC_TEST_PAUSE": "created"})
        wait_until(lambda: "paused at created" in err.read_text(), "the pause", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        orphan = our_containers(docker_client, str(repo.path))[0]
        volume = [m["Name"] for m in orphan.attrs["Mounts"] if m["Type"] == "volume"][0]
        out = repo.dvc(*remover, "-f") if remover == ("repro",) else repo.dvc(*remover)
        assert orphan.short_id in out.stdout or orphan.name in out.stderr, out.stdout + out.stderr
        volumes.append(volume)
        assert_volume_removed(docker_client, volume)
    assert len(set(volumes)) == 2

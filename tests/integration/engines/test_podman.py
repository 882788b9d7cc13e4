"""Podman 4.3's Docker-compatible API (rootful service on a unix socket, scripts/engines/podman.sh)."""

from __future__ import annotations

import pytest

from tests.integration.engines import scenarios
from tests.integration.engines.conftest import engine_client, start_engine

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.podman]


@pytest.fixture(scope="module")
def engine_url() -> str:
    return start_engine("podman.sh")


@pytest.fixture(scope="module")
def engine(engine_url):
    return engine_client(engine_url)


def test_exit_status_is_exact_and_nothing_recorded(engine_repo):
    # finding (a): Podman's wait "removed" said 0 for this; it must fail
    scenarios.failed_stage_records_nothing(engine_repo)


def test_stage_runs_with_catatonit_as_init_and_is_recorded(engine_repo, engine):
    where = scenarios.stage_runs_and_is_recorded(engine_repo)
    # --init under Podman is catatonit, mounted as /run/podman-init
    assert where.startswith("/run/podman-init -- /bin/sh -c"), where
    assert engine.version()["Components"][0]["Name"] == "Podman Engine"


def test_several_lines_stop_at_first_failure(engine_repo):
    scenarios.several_lines_stop_at_first_failure(engine_repo)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_stops_and_removes_the_container(engine_repo, engine, sig):
    scenarios.signal_stops_and_removes(engine_repo, engine, sig)


def test_verbose_names_the_podman_endpoint_and_engine(engine_repo, engine_url):
    scenarios.add_stage(engine_repo, "v", "echo v > v.txt", "-o", "v.txt")
    proc = engine_repo.dvc("repro", "-v")
    assert f"Docker endpoint '{engine_url}' (from DOCKER_HOST)" in proc.stderr + proc.stdout
    assert "engine: Podman Engine 4.3" in proc.stderr + proc.stdout


def test_memory_limit_is_enforced(engine_repo):
    # Podman 4.3 sends no "oom" event and AutoRemove takes the container's
    # OOMKilled state with it: the kill is enforced, but not named (README)
    engine_repo.config("docker.memory", "16m")
    scenarios.add_stage(engine_repo, "oom", "dd if=/dev/zero of=/dev/null bs=256M count=1")
    proc = engine_repo.dvc("repro", check=False)
    assert "exited with 137" in proc.stderr, proc.stderr


def test_a_ulimit_podman_cannot_set_is_one_line_and_leaves_nothing(engine_repo):
    """Root here lacks CAP_SYS_RESOURCE: Podman 4.3 fails any docker.ulimits at start (README, field notes)."""
    engine_repo.config("docker.ulimits", "nofile=256:512", local=True)
    scenarios.add_stage(engine_repo, "u", "echo ran > seen.txt")
    proc = engine_repo.dvc("repro", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert "error setting rlimit" in errors[0] and "lower or unset docker.ulimits" in errors[0], errors[0]
    assert not (engine_repo.path / "seen.txt").exists()
    # engine_repo: no container of this repo left on Podman


def test_container_options_podman_honours(engine_repo):
    engine_repo.config("docker.read_only", "true", local=True)
    engine_repo.config("docker.cap_drop", "ALL", local=True)
    engine_repo.config("docker.extra_hosts", "db.internal:10.0.0.5", local=True)
    cmd = "grep CapBnd /proc/self/status > caps.txt; cat /etc/hosts > hosts.txt; touch /x 2>/dev/null || echo RO > ro.txt"
    scenarios.add_stage(engine_repo, "o", cmd)
    engine_repo.dvc("repro")
    assert engine_repo.read("caps.txt").split()[-1].strip("0") == ""
    assert "10.0.0.5" in engine_repo.read("hosts.txt") and "db.internal" in engine_repo.read("hosts.txt")
    assert engine_repo.read("ro.txt").strip() == "RO"
def test_sigkill_of_dvc_stops_and_removes_the_container(engine_repo, engine):
    stopped = scenarios.sigkill_stops_the_container(engine_repo, engine)
    print(f"stop time after SIGKILL (Podman): {stopped:.2f} s")


def test_next_run_removes_an_orphan_and_status_names_it(engine_repo, engine):
    scenarios.second_wall_removes_an_orphan(engine_repo, engine)

"""Rootless engines for test users of our own: Docker (scripts/engines/rootless.sh, user
dde-rootless) and Podman (scripts/engines/podman.sh --rootless, user dde-podman).

DVC runs as that user (setpriv), against its own daemon. Inside the user
namespace uid 0 is that user, so the plugin runs stages as 0:0 there and
their outputs belong to the user on the host; the daemon's cgroup driver is
``none``, so asked-for limits are refused unless allowed.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

import pytest

from tests.conftest import need_python_for, setpriv
from tests.helpers import queue_diagnostics, start_workers, stop_workers, wait_for_queue
from tests.integration.engines import scenarios
from tests.integration.engines.conftest import assert_no_leftovers, engine_client, start_engine

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.rootless]

# engine -> (start script and its arguments, the user it runs as)
ROOTLESS = {"docker": (("rootless.sh",), "dde-rootless"), "podman": (("podman.sh", "--rootless"), "dde-podman")}


@pytest.fixture(scope="module", params=sorted(ROOTLESS))
def rootless(request):
    script, user = ROOTLESS[request.param]
    return start_engine(*script), user


@pytest.fixture(scope="module")
def engine_url(rootless) -> str:
    return rootless[0]


@pytest.fixture(scope="module")
def engine(engine_url):
    return engine_client(engine_url)


@pytest.fixture
def user_repo(rootless, engine_url, engine, busybox_image, make_user_repo):
    user = rootless[1]
    entry = pwd.getpwnam(user)  # made by the engine's script
    prefix = setpriv(entry, "init")
    need_python_for(prefix, user)
    # PATH: DVC's queue workers run `dvc` from PATH, which must not find root's own (mode 700) first
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    repo = make_user_repo(entry, prefix, busybox_image, DOCKER_HOST=engine_url, PATH=path)
    yield repo
    assert_no_leftovers(engine, str(repo.path))


def test_outputs_belong_to_the_user_and_root_inside(user_repo):
    cmd = "id -u > inside.txt; mkdir -p out && echo x > out/f"
    scenarios.add_stage(user_repo, "own", cmd, "-o", "out")
    user_repo.dvc("repro")
    assert user_repo.read("inside.txt").strip() == "0"  # root inside the user namespace ...
    for name in ("inside.txt", "out", "out/f"):
        assert scenarios.file_owner(user_repo, name) == user_repo.uid, name  # ... is the user outside
    assert "out" in (user_repo.lock() or "")


def test_another_uid_inside_cannot_write_and_says_so(user_repo):
    # what happened before: the invoking uid inside maps to a subordinate id outside
    user_repo.config("docker.user", str(user_repo.uid), local=True)  # this machine's choice (trust model)
    scenarios.add_stage(user_repo, "s", "id -u > o.txt", "-o", "o.txt")
    proc = user_repo.dvc("repro", check=False)
    assert proc.returncode != 0 and "Permission denied" in proc.stderr, proc.stderr
    assert user_repo.lock() is None


def test_exit_status_is_exact_and_nothing_recorded(user_repo):
    scenarios.failed_stage_records_nothing(user_repo)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_stops_and_removes_the_container(user_repo, engine, sig):
    scenarios.signal_stops_and_removes(user_repo, engine, sig)


def test_limits_the_daemon_cannot_enforce_are_refused(user_repo, engine):
    # what makes the daemon ignore them: Docker says cgroup driver "none"; rootless Podman on cgroup v1
    # says "Resource limits are not supported and ignored on cgroups V1 rootless systems"
    info = engine.info()
    assert info["CgroupDriver"] == "none" or str(info["CgroupVersion"]) == "1"
    user_repo.config("docker.memory", "256m")
    scenarios.add_stage(user_repo, "s", "echo hi > o.txt", "-o", "o.txt")
    proc = user_repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert "cannot enforce docker.memory" in proc.stderr and "docker.allow_unlimited" in proc.stderr, proc.stderr
    assert not (user_repo.path / "o.txt").exists() and user_repo.lock() is None

    user_repo.config("docker.allow_unlimited", "true")
    proc = user_repo.dvc("repro")
    assert "WARNING" in proc.stderr and "running anyway" in proc.stderr
    assert user_repo.read("o.txt") == "hi\n"


def test_exp_run_queue(user_repo):
    user_repo.write("params.yaml", "n: 1\n")
    os.chown(user_repo.path / "params.yaml", user_repo.uid, user_repo.uid)  # written by this (root) process
    scenarios.add_stage(user_repo, "p", "echo n=${n} > o.txt; id -u >> o.txt", "-p", "n", "-o", "o.txt")
    user_repo.run("git", "add", "-A")
    user_repo.run("git", "commit", "-qm", "pipeline")
    user_repo.dvc("exp", "run", "--queue", "-n", "q1", "-S", "n=5")
    try:
        start_workers(user_repo, 1)  # as the user (their prefix)
        status = wait_for_queue(user_repo, ["q1"])
    finally:
        stop_workers(user_repo)
    assert status["q1"] == "Success", f"{status}\n{queue_diagnostics(user_repo)}"
    user_repo.dvc("exp", "apply", "q1")
    assert user_repo.read("o.txt") == "n=5\n0\n"


def test_sigkill_of_dvc_stops_and_removes_the_container(user_repo, engine, rootless):
    stopped = scenarios.sigkill_stops_the_container(user_repo, engine)
    print(f"stop time after SIGKILL (rootless {rootless[1]}): {stopped:.2f} s")


def test_next_run_removes_an_orphan_and_status_names_it(user_repo, engine):
    scenarios.second_wall_removes_an_orphan(user_repo, engine)

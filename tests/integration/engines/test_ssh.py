"""DOCKER_HOST=ssh://user@host:port, through the ssh client as the Docker CLI does it.

The "remote" is this machine over loopback (scripts/engines/ssh.sh: an sshd
of our own, a test user in the docker group): the remote side runs
`docker system dial-stdio`. The client options a user keeps in ~/.ssh/config
(key, known hosts) are given by a wrapper first on PATH, since ssh reads the
config of the passwd home, not $HOME.
"""

from __future__ import annotations

import os
import stat

import pytest

from tests.integration.engines import scenarios
from tests.integration.engines.conftest import start_engine

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.ssh]

KEYS = "/var/lib/dde-ssh"


@pytest.fixture(scope="module")
def engine_url() -> str:
    return start_engine("ssh.sh")


@pytest.fixture(scope="module")
def engine(docker_client):
    return docker_client  # the daemon at the other end of ssh


@pytest.fixture
def ssh_repo(engine_repo, tmp_path):
    shim = tmp_path / "ssh-bin"
    shim.mkdir()
    wrapper = shim / "ssh"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'exec /usr/bin/ssh -i {KEYS}/client_key -o UserKnownHostsFile={KEYS}/known_hosts -o BatchMode=yes "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    engine_repo.env["PATH"] = f"{shim}:{os.environ['PATH']}"
    return engine_repo


def test_stage_runs_through_ssh_and_the_endpoint_is_named(ssh_repo, engine_url):
    scenarios.add_stage(ssh_repo, "s", "echo over-ssh > o.txt; echo shown", "-o", "o.txt")
    proc = ssh_repo.dvc("repro", "-v")
    assert f"Docker endpoint '{engine_url}' (from DOCKER_HOST)" in proc.stderr + proc.stdout
    assert "shown" in proc.stdout.splitlines()
    assert ssh_repo.read("o.txt") == "over-ssh\n"


def test_exit_status_is_exact_through_ssh(ssh_repo):
    scenarios.failed_stage_records_nothing(ssh_repo)

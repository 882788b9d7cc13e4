"""Container options (issue 21) on a real Swarm: what a service takes reaches the task; the rest is refused
in one line before any service exists."""

from __future__ import annotations

import re

import pytest

from tests.integration.swarm.conftest import write_pipeline

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

CAP_SYS_ADMIN, CAP_NET_RAW = 21, 13


def test_options_a_service_takes_reach_the_task(swarm_repo, swarm_clean):
    for key, value in {
        "cap_add": "SYS_ADMIN",
        "cap_drop": "NET_RAW",
        "read_only": "true",
        "extra_hosts": "db.internal:10.0.0.5",
        "tmpfs": "/scratch:size=8m",
        "platform": "linux/amd64",
    }.items():
        swarm_repo.config(f"docker.{key}", value, local=True)
    cmd = (
        "grep CapBnd /proc/self/status > caps.txt; cat /etc/hosts > hosts.txt; "
        "grep ' /scratch ' /proc/self/mounts > scratch.txt; "
        "(touch /x 2>/dev/null && echo RW || echo RO) > ro.txt; touch /tmp/t \"$HOME/h\" && echo TMP >> ro.txt"
    )
    write_pipeline(swarm_repo, {"o": {"cmd": cmd}})
    swarm_repo.dvc("repro")
    bounding = int(swarm_repo.read("caps.txt").split()[-1], 16)
    assert bounding & (1 << CAP_SYS_ADMIN) and not bounding & (1 << CAP_NET_RAW)
    assert re.search(r"^10\.0\.0\.5\s+db\.internal$", swarm_repo.read("hosts.txt"), re.M), swarm_repo.read("hosts.txt")
    assert "tmpfs" in swarm_repo.read("scratch.txt") and "size=8192k" in swarm_repo.read("scratch.txt")
    assert swarm_repo.read("ro.txt").split() == ["RO", "TMP"]


@pytest.mark.parametrize(("key", "value"), [("ulimits", "nofile=64"), ("pids_limit", "50"), ("ipc", "host")])
def test_options_a_service_cannot_take_are_refused_before_any_service(swarm_repo, swarm_clean, key, value):
    swarm_repo.config(f"docker.{key}", value, local=True)
    write_pipeline(swarm_repo, {"o": {"cmd": "echo ran > seen.txt"}})
    before = len(swarm_clean.services())
    proc = swarm_repo.dvc("repro", check=False)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert f"docker.{key} cannot be used with docker.backend swarm" in errors[0], errors[0]
    assert not (swarm_repo.path / "seen.txt").exists()
    assert len(swarm_clean.services()) == before

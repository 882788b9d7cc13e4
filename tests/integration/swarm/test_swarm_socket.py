"""The socket pattern on a Swarm manager: DVC in a runner container, stages as services on other nodes."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.integration.swarm.conftest import write_pipeline

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

WORKDIR = "/work"  # the project's path inside the runner, not on the host


def test_runner_on_the_manager_places_stages_on_other_nodes(swarm_repo, swarm_clean, manager_runner):
    """Paths inside the runner are translated to the host path every node shares.

    The services' bind sources must be host paths: had the runner's /work been
    passed on, the nodes would reject the tasks ("bind source path does not exist").
    """
    stages = {
        "a": {
            "cmd": 'echo "$DVC_DOCKER_NODE" > a.txt',
            "outs": ["a.txt"],
            "meta": {"docker": {"constraints": "node.labels.dde==n2"}},
        },
        "b": {
            "cmd": 'cat a.txt > b.txt; echo "$DVC_DOCKER_NODE" >> b.txt; pwd >> b.txt',
            "deps": ["a.txt"],
            "outs": ["b.txt"],
            "meta": {"docker": {"constraints": "node.labels.dde==n3"}},
        },
    }
    write_pipeline(swarm_repo, stages)
    socket = swarm_clean.host.split("://", 1)[1]
    proc = subprocess.run(
        [
            "docker", "-H", swarm_clean.host, "run", "--rm", "--init", "--network", "host",
            "-v", f"{socket}:/var/run/docker.sock", "-v", f"{swarm_repo.path}:{WORKDIR}", "-w", WORKDIR,
            "-e", "DVC_NO_ANALYTICS=1", "-e", "DOCKER_HOST=unix:///var/run/docker.sock",
            manager_runner, "dvc", "repro",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr
    node_a, node_b, workdir = swarm_repo.read("b.txt").split()
    assert node_a == swarm_repo.read("a.txt").strip() == swarm_clean.nodes["n2"]
    assert node_b == swarm_clean.nodes["n3"]
    assert workdir == WORKDIR  # the stage sees the project where the runner does
    lock = yaml.safe_load(swarm_repo.lock())
    assert lock["stages"]["b"]["cmd"] == stages["b"]["cmd"]
    assert "docker:dvc-docker-exec-test/busybox" in swarm_repo.lock()

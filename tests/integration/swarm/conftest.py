"""A real 3-node Docker Swarm on this machine (scripts/engines/swarm-netns.sh).

Each node is a Docker Engine in its own network namespace; the nodes share the
host's filesystem, standing in for the shared filesystem of a real cluster.
Nodes carry the label `dde=n1..n3` so tests can place stages on purpose;
node n2 alone advertises two fake GPUs (generic resource NVIDIA-GPU).
A registry on the swarm's bridge (`Swarm.registry`) is reachable from every
node, not from the host's engine: push from a node (`Swarm.node(1)`).
Under CI=true a swarm that cannot start fails the tests instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List

import pytest
import yaml

from dvc_docker_exec.backends.swarm import GPU_RESOURCE
from dvc_docker_exec.boundary.paths import is_within
from tests.conftest import BUSYBOX, LABEL, ROOT, DvcRepo, _unavailable

SCRIPT = ROOT / "scripts" / "engines" / "swarm-netns.sh"
NODES = 3
# DDE_SWARM_PREFIX (swarm-netns.sh) lets two test runs keep separate swarms on one machine
PREFIX = os.environ.get("DDE_SWARM_PREFIX", "dde-sw")
HIDDEN_DATA = f"/srv/{PREFIX}-hidden/data"  # on the host and nodes 1-2, missing on node 3 (swarm-netns.sh)


@dataclass
class Swarm:
    host: str  # DOCKER_HOST of the manager
    nodes: Dict[str, str]  # label n1..n3 -> node id
    client: object
    gpus: Dict[str, List[str]]  # label -> the ids of the GPUs it advertises (swarm-netns.sh: n2 has two fake ones)
    registry: str  # host:port of the registry every node trusts (only the nodes reach it)

    def node(self, number: int):
        """A docker-py client of node `number`'s own engine (node 1 is the manager)."""
        import docker

        return docker.DockerClient(base_url=self.host.replace("node1", f"node{number}"))

    def services(self) -> List[dict]:
        return self.client.api.services(filters={"label": LABEL})

    def node_containers(self) -> List[str]:
        """Containers of the plugin on every node (a removed service's tasks must go too)."""
        found = []
        for n in range(1, NODES + 1):
            # ignore_removed: a task container a node agent removes between the list and its inspect is gone,
            # not a 404 (as conftest's our_containers)
            containers = self.node(n).containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
            found += [c.name for c in containers]
        return found


@pytest.fixture(scope="session")
def swarm(docker_client, busybox_image) -> Iterator[Swarm]:
    if os.getuid() != 0:
        _unavailable("the test swarm needs root (network namespaces)")
    up = subprocess.run([str(SCRIPT), "up", str(NODES)], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        _unavailable(f"the test swarm did not start: {up.stderr.strip()[-500:]}")
    printed = dict(line.split("=", 1) for line in up.stdout.strip().splitlines() if "=" in line)
    host = printed["DOCKER_HOST"]
    load = subprocess.run([str(SCRIPT), "load", BUSYBOX], capture_output=True, text=True, timeout=300)
    assert load.returncode == 0, load.stderr
    import docker

    client = docker.DockerClient(base_url=host)
    assert len(client.api.nodes()) == NODES
    nodes = {}
    for i in range(1, NODES + 1):
        # label n<i> = the engine behind node<i>'s socket (the last one lacks HIDDEN/data)
        node_id = docker.DockerClient(base_url=host.replace("node1", f"node{i}")).info()["Swarm"]["NodeID"]
        spec = client.api.inspect_node(node_id)
        body = dict(spec["Spec"])
        body["Labels"] = {**(body.get("Labels") or {}), "dde": f"n{i}"}
        client.api.update_node(node_id, spec["Version"]["Index"], body)
        nodes[f"n{i}"] = node_id
    gpus = {label: node_gpus(client, node_id) for label, node_id in nodes.items()}
    assert [label for label, ids in gpus.items() if ids] == ["n2"], (
        f"only node n2 should advertise GPUs, found {gpus}: restart the test swarm ({SCRIPT.name} down, then up)"
    )
    try:
        yield Swarm(host=host, nodes=nodes, client=client, gpus=gpus, registry=printed["DDE_SWARM_REGISTRY"])
    finally:
        if os.environ.get("DDE_KEEP_SWARM") != "1":
            subprocess.run([str(SCRIPT), "down"], capture_output=True, timeout=300)


def node_gpus(client, node_id: str) -> List[str]:
    resources = client.api.inspect_node(node_id)["Description"]["Resources"].get("GenericResources") or []
    named = [r["NamedResourceSpec"] for r in resources if "NamedResourceSpec" in r]
    return sorted(r["Value"] for r in named if r["Kind"] == GPU_RESOURCE)


@pytest.fixture
def swarm_clean(swarm) -> Iterator[Swarm]:
    """Each test leaves no service of ours on the swarm and no container on any node."""
    before = {s["ID"] for s in swarm.services()}
    yield swarm
    deadline = time.monotonic() + 60  # generous: node agents remove task containers asynchronously
    while True:
        left = [s["Spec"]["Name"] for s in swarm.services() if s["ID"] not in before]
        on_nodes = swarm.node_containers()
        if (not left and not on_nodes) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for s in swarm.services():
        if s["ID"] not in before:
            swarm.client.api.remove_service(s["ID"])
    assert not left, f"services left behind: {left}"
    assert not on_nodes, f"containers left on nodes: {on_nodes}"


@pytest.fixture(scope="session")
def manager_runner(swarm, runner_image) -> str:
    """The runner image (DVC + this plugin) on the manager node, for the socket pattern there."""
    load = subprocess.run([str(SCRIPT), "load", runner_image, "1"], capture_output=True, text=True, timeout=600)
    assert load.returncode == 0, load.stderr
    return runner_image


@pytest.fixture
def swarm_repo(make_repo, busybox_image, swarm_clean):
    repo = make_repo(busybox_image)
    repo.config("docker.backend", "swarm")
    repo.env["DOCKER_HOST"] = swarm_clean.host
    repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])
    return repo


def write_pipeline(repo: DvcRepo, stages: dict) -> None:
    repo.write("dvc.yaml", yaml.safe_dump({"stages": stages}))
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "pipeline")


def services_of(swarm: Swarm, repo: DvcRepo) -> List[dict]:
    """The services of `repo`'s stages (its experiments' copies, below it, too)."""
    return [s for s in swarm.services() if is_within(s["Spec"]["Labels"].get(f"{LABEL}.repo", ""), str(repo.path))]


def running_tasks(swarm: Swarm, repo: DvcRepo) -> List[dict]:
    """The tasks of `repo`'s services that run now (the condition to wait for before a signal)."""
    api = swarm.client.api
    return [t for s in services_of(swarm, repo) for t in api.tasks(filters={"service": s["ID"]}) if t["Status"]["State"] == "running"]

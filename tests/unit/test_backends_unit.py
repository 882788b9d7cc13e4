"""The two backends behind one interface: what orchestration asks of each (no `if backend ==` in dvc_glue)."""

from __future__ import annotations

import types
from dataclasses import replace

import pytest

from dvc_docker_exec.api.engine import Engine
from dvc_docker_exec.backends.base import Backend
from dvc_docker_exec.backends.runner import ContainerRunner
from dvc_docker_exec.backends.session import backend_class, make_backend
from dvc_docker_exec.backends.swarm import SwarmRunner
from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.errors import DockerExecError

CLIENT = types.SimpleNamespace(api=None)
IMAGE_ID = "sha256:" + "c" * 64


class Identities:
    def identity(self, reference: str):
        return None

    def image_id(self, reference: str):
        return IMAGE_ID


class Builder:
    def __init__(self):
        self.pushed = []

    def ensure(self, spec):
        return "build:sha256:" + "d" * 64, IMAGE_ID

    def push(self, spec, identity, image_id, registry):
        self.pushed.append(registry)
        return f"{registry}/built@sha256:" + "e" * 64


def test_every_backend_has_every_member_of_the_interface() -> None:
    members = [m for m in vars(Backend) if not m.startswith("_")] + list(Backend.__annotations__)
    for kind in ("engine", "swarm"):
        backend = make_backend(kind, CLIENT, Engine("Docker Engine", "20.10"), types.SimpleNamespace(describe=lambda: "'unix:///x'"))
        assert isinstance(backend, backend_class(kind))
        assert [m for m in members if not hasattr(backend, m)] == []


def test_the_engine_backend_runs_the_inspected_image_id_and_checks_limits() -> None:
    runner = ContainerRunner(CLIENT, Engine("Docker Engine", "20.10", cgroup_driver="none"))
    settings = DockerSettings(image="python:3.11")
    assert runner.image_place is None and runner.RUNS_HERE
    assert runner.pulled(settings, types.SimpleNamespace(identities=Identities())) == (settings, IMAGE_ID)
    assert runner.built("s", settings, Builder(), object()) == (settings, IMAGE_ID)
    with pytest.raises(DockerExecError):  # an engine that cannot enforce memory limits
        runner.check_limits(types.SimpleNamespace(mem_limit=1 << 30, nano_cpus=None), allow_unlimited=False)


def test_the_swarm_backend_pins_a_built_image_to_the_registry_and_checks_no_limits() -> None:
    swarm = SwarmRunner(CLIENT, types.SimpleNamespace(describe=lambda: "'tcp://m:2375'"))
    assert swarm.image_place == "the Swarm manager 'tcp://m:2375'" and not swarm.RUNS_HERE
    swarm.check_limits(types.SimpleNamespace(mem_limit=1 << 30, nano_cpus=None), allow_unlimited=False)  # nodes enforce
    settings = DockerSettings(image="train:1", backend="swarm")
    builder = Builder()
    with pytest.raises(DockerExecError, match="docker.registry"):
        swarm.built("train", settings, builder, object())
    with_registry = replace(settings, registry="reg:5000")
    pinned, image_id = swarm.built("train", with_registry, builder, object())
    assert image_id is None and pinned.image == "reg:5000/built@sha256:" + "e" * 64 and builder.pushed == ["reg:5000"]

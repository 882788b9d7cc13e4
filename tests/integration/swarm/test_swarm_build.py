"""docker.build on Swarm (issue 19, item 7): pushed to the machine's registry and pinned by digest, or refused."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import BUSYBOX
from tests.integration.swarm.conftest import write_pipeline

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


@pytest.fixture
def build_repo(swarm_repo, swarm_clean):
    token = uuid.uuid4().hex[:10]
    swarm_repo.write("env/Dockerfile", f"FROM {BUSYBOX}\nLABEL dde-test-token={token}\nRUN echo {token} > /built\n")
    swarm_repo.config("docker.build", "env")
    swarm_repo.config("docker.image", f"dde-i19-test/swarm:{token}")
    write_pipeline(swarm_repo, {"s": {"cmd": "cat /built > out.txt", "outs": ["out.txt"]}})
    yield swarm_repo, token
    for node in (1, 2, 3):
        engine = swarm_clean.node(node)
        for image in engine.images.list(filters={"label": f"dde-test-token={token}"}):
            engine.images.remove(image.id, force=True)


def test_without_registry_fails_before_any_service(build_repo, swarm_clean):
    repo, _ = build_repo
    before = len(swarm_clean.services())
    out = repo.dvc("repro", check=False)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "must reach the Swarm nodes" in out.stderr and "docker.registry" in out.stderr, out.stderr
    assert len(swarm_clean.services()) == before and repo.lock() is None


def test_built_image_is_pushed_and_nodes_run_its_digest(build_repo, swarm_clean):
    repo, token = build_repo
    repo.config("docker.registry", swarm_clean.registry, local=True)
    repo.dvc("repro")
    assert repo.read("out.txt") == f"{token}\n"
    assert "build: env/Dockerfile" in repo.read("dvc.lock")
    assert "up to date" in repo.dvc("status").stdout


def test_registry_from_the_repository_is_refused(build_repo, swarm_clean):
    repo, _ = build_repo
    repo.config("docker.registry", swarm_clean.registry)  # .dvc/config: comes with the repository
    out = repo.dvc("repro", check=False)
    assert out.returncode != 0 and "chooses where built images are pushed" in out.stderr, out.stderr

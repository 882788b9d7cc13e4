"""Issue 19: the image as code (`docker.build`) and running exactly what is recorded.

Offline: every image here is built FROM the local test images.
"""

from __future__ import annotations

import io
import os
import signal
import uuid
from typing import Iterator, List

import pytest

from tests.conftest import BUSYBOX, DvcRepo, start_dvc, wait_until

pytestmark = pytest.mark.docker


@pytest.fixture
def scratch_images(docker_client) -> Iterator[List[str]]:
    """Tags (and IDs) a test creates; removed afterwards, nothing else."""
    made: List[str] = []
    yield made
    for ref in reversed(made):
        try:
            docker_client.images.remove(ref, force=True, noprune=False)
        except Exception:  # noqa: BLE001 - already gone
            pass


def marker_image(docker_client, text: str) -> str:
    """A local image FROM busybox whose /marker holds `text`; returns its ID."""
    dockerfile = f"FROM {BUSYBOX}\nRUN echo {text} > /marker\n".encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, labels={"dde-test": "i19"})
    return image.id


def test_moved_tag_between_identity_and_create_runs_recorded_bytes(repo: DvcRepo, docker_client, scratch_images):
    """A `docker tag` (or build, or pull) in another terminal while the stage starts: the recorded image runs."""
    tag = f"dde-i19-test/moved:{uuid.uuid4().hex[:8]}"
    first, second = marker_image(docker_client, "first"), marker_image(docker_client, "second")
    scratch_images += [tag, first, second]
    docker_client.images.get(first).tag(tag)
    repo.dvc("config", "docker.image", tag)
    repo.dvc("stage", "add", "-n", "s", "-o", "out.txt", "cat /marker > out.txt")
    proc, err = start_dvc(repo, "repro", env={"DVC_DOCKER_EXEC_TEST_PAUSE": "create"})
    wait_until(lambda: "paused at create" in err.read_text(), "pause at create", proc)
    docker_client.images.get(second).tag(tag)  # the tag moves after the identity was read
    os.kill(proc.pid, signal.SIGUSR1)
    assert proc.wait(timeout=120) == 0, err.read_text()
    assert repo.read("out.txt") == "first\n"
    assert first in repo.read("dvc.docker.lock")
    # the tag moved: status says so (the recorded bytes are not what the tag names now)
    assert "s:" in repo.dvc("status").stdout

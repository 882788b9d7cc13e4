"""Other engines, each started by its own script under scripts/engines/ (idempotent).

Run one engine alone with its marker: ``scripts/test.sh -m podman``,
``-m proxy``, ``-m rootless`` (all of them: ``-m engines``). As with Docker,
an engine that cannot start skips on a laptop and fails when ``CI=true``.
"""

from __future__ import annotations

import subprocess
import time
from typing import Iterator

import pytest

from tests.conftest import ROOT, _unavailable, machine_lock, our_containers


def start_engine(script: str, *args: str, env: dict | None = None) -> str:
    """Run scripts/engines/<script>; its last stdout line is the endpoint URL."""
    import os

    try:
        with machine_lock("engines"):
            proc = subprocess.run(
                [str(ROOT / "scripts" / "engines" / script), *args],
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, **(env or {})},
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"scripts/engines/{script} failed: {exc}")
    if proc.returncode != 0 or not proc.stdout.strip():
        _unavailable(f"scripts/engines/{script} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def engine_client(url: str):
    import docker

    try:
        client = docker.DockerClient(base_url=url)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"the engine at {url} does not answer: {exc}")
    return client


def assert_no_leftovers(client, under: str, grace: float = 5.0) -> None:
    deadline = time.monotonic() + grace
    while (left := our_containers(client, under)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for container in left:
        container.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


@pytest.fixture
def engine_repo(make_repo, busybox_image, engine_url: str, engine: object) -> Iterator:
    """A repo whose dvc talks to `engine_url` (DOCKER_HOST); nothing of it may be left on that engine."""
    repo = make_repo(busybox_image)
    repo.env["DOCKER_HOST"] = engine_url
    yield repo
    assert_no_leftovers(engine, str(repo.path))

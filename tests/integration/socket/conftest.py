"""Fixtures for the socket pattern: DVC in the runner image, stages as siblings.

The runner is the image built from the repo's own ``Dockerfile`` (by
``scripts/build-images.sh runner``: offline, rebuilt when the plugin source
changes) and it is started through the repo's own ``docker-compose.yml``
(Debian's docker-compose v1). pytest-docker's ``docker_services`` drives the
compose project's life cycle: ``config -q`` (the file is valid) at the start,
``down`` (the project network) at the end; each test runs the service with
``docker-compose run --rm`` itself, since it needs its own environment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import uuid
from typing import Iterator, List, Optional

import pytest

from tests.conftest import ROOT, _unavailable

SERVICE = "dvc-runner"
# Prints the id of the container the shell runs in: the source of its
# /etc/hostname is /var/lib/docker/containers/<id>/hostname (busybox and GNU sed).
CONTAINER_ID = r"sed -n 's|.*/containers/\([0-9a-f]\{64\}\)/hostname.*|\1|p' /proc/self/mountinfo"


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    if not shutil.which("docker-compose"):
        _unavailable("docker-compose (v1) is not installed; run scripts/ensure-docker.sh")
    return "docker-compose"


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "docker-compose.yml")


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"ddesocket{os.getpid()}"


@pytest.fixture(scope="session")
def docker_setup() -> List[str]:
    # nothing to start: the runner is a one-off per test; just validate the file
    return ["config -q"]


@pytest.fixture(scope="session")
def docker_cleanup() -> List[str]:
    return ["down --remove-orphans"]


class Compose:
    """`docker-compose -f <repo>/docker-compose.yml -p <project> run --rm -T dvc-runner ...`."""

    def __init__(self, command: str, file: str, project: str, image: str, client):
        self.command = shlex.split(command)
        self.file = file
        self.project = project
        self.image = image
        self.client = client

    def env(self, **overrides: str) -> dict:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DVC_", "DOCKER_GID", "DOCKER_SOCKET", "COMPOSE_"))
        }
        env.update(DVC_RUNNER_IMAGE=self.image, DVC_NO_ANALYTICS="1", **overrides)
        return env

    def run(
        self,
        script: str,
        *run_args: str,
        env: Optional[dict] = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        """Run `sh -c script` in a fresh runner container (removed afterwards)."""
        args = [*self.command, "-f", self.file, "-p", self.project, "run", "--rm", "-T", *run_args]
        return subprocess.run(
            [*args, SERVICE, "sh", "-c", script],
            env=self.env(**(env or {})),
            cwd=os.path.dirname(self.file),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def containers(self) -> list:
        """Containers of this compose project (the runner's one-off `run` containers)."""
        return self.client.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={self.project}"}, ignore_removed=True
        )


@pytest.fixture(scope="session")
def compose(
    docker_services,
    docker_compose_command,
    docker_compose_file,
    docker_compose_project_name,
    runner_image,
    docker_client,
) -> Compose:
    return Compose(
        docker_compose_command, docker_compose_file, docker_compose_project_name, runner_image, docker_client
    )


@pytest.fixture
def runner(compose, busybox_image, no_leftovers) -> Iterator[Compose]:
    """The compose runner; afterwards neither stage nor runner containers are left."""
    yield compose
    left = compose.containers()
    for c in left:
        c.remove(force=True)
    assert not left, f"runner containers left behind: {[c.name for c in left]}"


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def volume(docker_client, token) -> Iterator[str]:
    name = f"dde-socket-{token}"
    docker_client.volumes.create(name, labels={"dvc-docker-exec-test": "socket"})
    yield name
    docker_client.volumes.get(name).remove(force=True)


def in_volume(client, volume: str, script: str, *, image: str, binds: Optional[dict] = None) -> str:
    """Run `sh -c script` in a helper busybox container with `volume` at /workspace."""
    volumes = {volume: {"bind": "/workspace", "mode": "rw"}, **(binds or {})}
    out = client.containers.run(
        image, ["sh", "-c", script], volumes=volumes, network_mode="none", remove=True, stdout=True, stderr=True
    )
    return out.decode()


# --- shared by the socket-pattern test modules (they import these from here, not from each other) ----

# The stage records where it ran and whether it can see a daemon socket.
STAGE = (
    f"{CONTAINER_ID} > stage-id.txt; "
    "if [ -e /var/run/docker.sock ]; then echo yes; else echo no; fi > socket.txt; "
    "id -u > uid.txt; mkdir -p out && echo payload > out/data.txt"
)
STAGE_OUTS = ("-o", "out")


def runner_id_of(stdout: str) -> str:
    match = re.search(r"^runner-id=([0-9a-f]{64})$", stdout, re.M)
    assert match, stdout
    return match.group(1)


def ok_output(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout

"""A real Docker context (made with `docker context create/use`) pointing at a second socket.

The second socket is an HAProxy in front of the same daemon
(scripts/engines/proxy.sh with default rules): DVC must use the context's
socket, say so, refuse to hand that socket's folder to a stage, and name it
when it is down.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.integration.engines import scenarios
from tests.integration.engines.conftest import start_proxy

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.proxy]


def make_context(config_dir, name: str, url: str) -> None:
    for args in (["context", "create", name, "--docker", f"host={url}"], ["context", "use", name]):
        subprocess.run(["docker", "--config", str(config_dir), *args], check=True, capture_output=True)


@pytest.fixture
def context_repo(make_repo, busybox_image, tmp_path, no_leftovers):
    url = start_proxy("context")
    config_dir = tmp_path / "docker-config"
    make_context(config_dir, "i9-second", url)
    repo = make_repo(busybox_image)
    repo.env.pop("DOCKER_HOST", None)
    repo.env.pop("DOCKER_CONTEXT", None)
    repo.env["DOCKER_CONFIG"] = str(config_dir)
    return repo, url, config_dir


def test_current_context_is_used_and_named(context_repo):
    repo, url, config_dir = context_repo
    scenarios.add_stage(repo, "s", "echo hi > o.txt", "-o", "o.txt")
    proc = repo.dvc("repro", "-v")
    expected = f"Docker endpoint '{url}' (from Docker context 'i9-second', the current context in {config_dir}/config.json)"
    assert expected in proc.stderr + proc.stdout
    assert repo.read("o.txt") == "hi\n"


def test_the_context_socket_folder_is_refused_as_a_stage_path(context_repo):
    repo, url, _ = context_repo
    folder = os.path.dirname(url[len("unix://") :])
    # not a well-known socket path: the context's socket in an ordinary folder
    repo.config("docker.volumes", f"{folder}:/mnt/engine:ro", local=True)  # this machine's choice (trust model)
    scenarios.add_stage(repo, "s", "ls /mnt/engine > o.txt", "-o", "o.txt")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert f"it contains the daemon socket '{url[len('unix://'):]}'" in proc.stderr, proc.stderr
    assert not (repo.path / "o.txt").exists()


def test_a_down_context_socket_is_named_in_the_error(make_repo, busybox_image, tmp_path):
    config_dir = tmp_path / "docker-config"
    url = f"unix://{tmp_path}/nobody-listens.sock"
    make_context(config_dir, "i9-down", url)
    repo = make_repo(busybox_image)
    repo.env.pop("DOCKER_HOST", None)
    repo.env["DOCKER_CONFIG"] = str(config_dir)
    scenarios.add_stage(repo, "s", "echo hi > o.txt", "-o", "o.txt")
    proc = repo.dvc("repro", check=False)
    assert f"cannot reach the Docker daemon at '{url}' (from Docker context 'i9-down'" in proc.stderr, proc.stderr
    assert "/var/run/docker.sock" not in proc.stderr


def test_build_through_a_context(make_repo, busybox_image, tmp_path, docker_client, no_leftovers):
    """docker.build through a Docker context (a socket proxy allowing builds): the context goes by the API."""
    url = start_proxy("build", BUILD="1")
    config_dir = tmp_path / "docker-config"
    make_context(config_dir, "i19-build", url)
    repo = make_repo(busybox_image)
    repo.env.pop("DOCKER_HOST", None)
    repo.env.pop("DOCKER_CONTEXT", None)
    repo.env["DOCKER_CONFIG"] = str(config_dir)
    token = os.urandom(6).hex()
    repo.write("env/Dockerfile", f"FROM {busybox_image}\nLABEL dde-test-token={token}\nCOPY m /m\n")
    repo.write("env/m", token)
    repo.config("docker.build", "env/Dockerfile")
    repo.config("docker.image", f"dde-i19-test/context:{token}")
    scenarios.add_stage(repo, "s", "cat /m > o.txt", "-o", "o.txt")
    try:
        proc = repo.dvc("repro")
        assert "Building image" in proc.stderr + proc.stdout
        assert repo.read("o.txt") == token
    finally:
        for image in docker_client.images.list(filters={"label": f"dde-test-token={token}"}):
            docker_client.images.remove(image.id, force=True)

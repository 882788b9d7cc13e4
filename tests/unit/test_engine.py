"""engine: what the /version and /info answers change, and the proxy's denial messages."""

from __future__ import annotations

import logging

import pytest

from dvc_docker_exec.api.engine import Engine, check_limits, from_api, gone_is_not_found
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.api.proxy import denied_message, permissions_for

DOCKER_VERSION = {"Version": "20.10.24", "Components": [{"Name": "Engine", "Version": "20.10.24"}]}
PODMAN_VERSION = {"Version": "4.3.1", "Components": [{"Name": "Podman Engine", "Version": "4.3.1"}]}


def test_docker_rootful():
    engine = from_api(DOCKER_VERSION, {"SecurityOptions": ["name=seccomp,profile=default"], "CgroupDriver": "cgroupfs"})
    assert (engine.name, engine.is_podman, engine.rootless, engine.enforces_limits) == ("Docker Engine", False, False, True)
    assert engine.wait_condition == "removed"
    assert engine.stage_ids(4545, 4546) == (4545, 4546)


def _response(status: int, body: bytes):
    import requests

    response = requests.Response()
    response.status_code, response._content = status, body
    response.headers["Content-Type"] = "application/json"
    response.url = "http+docker://localhost/v1.41/containers/2d91f636ee40/json"
    return response


@pytest.mark.parametrize(
    "status, body, raised",
    [
        # Podman, inspecting a container AutoRemove is removing (measured: 1 in 40 under load)
        (500, b'{"cause":"no such container","message":"container 2d91f636ee40 does not exist in database: '
              b'no such container","response":500}', "NotFound"),
        (404, b'{"message":"No such container: 2d91f636ee40"}', "NotFound"),  # Docker
        (500, b'{"message":"no space left on device"}', "APIError"),  # another 500 stays one
    ],
)
def test_a_container_podman_no_longer_has_is_not_found_as_on_docker(status, body, raised):
    import docker

    client = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")  # no version probe
    with pytest.raises(docker.errors.APIError) as caught:
        client._raise_for_status(gone_is_not_found(_response(status, body)))
    assert type(caught.value).__name__ == raised


def test_podman_waits_for_next_exit():
    engine = from_api(PODMAN_VERSION, None)
    assert engine.is_podman and engine.wait_condition == "next-exit"
    assert engine.rootless is None and engine.enforces_limits is None  # /info refused: unknown


def test_rootless_runs_stages_as_root_inside():
    info = {"SecurityOptions": ["name=seccomp,profile=default", "name=rootless"], "CgroupDriver": "none"}
    engine = from_api(DOCKER_VERSION, info)
    assert engine.rootless and engine.stage_ids(4545, 4546) == (0, 0)
    assert engine.enforces_limits is False
    assert "rootless, cgroup driver none" in engine.describe()


def test_limits_refused_where_not_enforced_unless_allowed(caplog):
    engine = Engine("Docker Engine", "20.10", rootless=True, cgroup_driver="none")
    with pytest.raises(DockerExecError, match="cannot enforce docker.memory and docker.cpus.*docker.allow_unlimited"):
        check_limits(engine, 1 << 30, 2 * 10**9, allow_unlimited=False)
    with caplog.at_level(logging.WARNING, logger="dvc"):
        check_limits(engine, 1 << 30, None, allow_unlimited=True)
    assert "cannot enforce docker.memory" in caplog.text and "running anyway" in caplog.text
    check_limits(engine, None, None, allow_unlimited=False)  # nothing asked: nothing to refuse
    check_limits(Engine("Docker Engine", "20.10", cgroup_driver="cgroupfs"), 1 << 30, None, allow_unlimited=False)
    check_limits(Engine("Docker Engine", "20.10"), 1 << 30, None, allow_unlimited=False)  # unknown: not refused


@pytest.mark.parametrize(
    ("method", "url", "needed"),
    [
        ("GET", "http+docker://localhost/v1.41/info", ["INFO"]),
        ("POST", "http+docker://localhost/v1.41/containers/create?name=x", ["CONTAINERS", "POST"]),
        ("DELETE", "http+docker://localhost/v1.41/containers/abc?force=True", ["CONTAINERS", "POST"]),
        ("GET", "http+docker://localhost/v1.41/images/busybox%3Alatest/json", ["IMAGES"]),
        ("GET", "http+docker://localhost/_ping", ["PING"]),
        ("GET", "http+docker://localhost/v1.41/events?since=1", ["EVENTS"]),
    ],
)
def test_permissions_for(method, url, needed):
    assert permissions_for(method, url) == needed


def test_denied_message():
    text = denied_message("post", "http+docker://localhost/v1.41/containers/create", "'unix:///p.sock' (from DOCKER_HOST)")
    assert text == (
        "the Docker endpoint 'unix:///p.sock' (from DOCKER_HOST) refused POST /v1.41/containers/create "
        "(403 Forbidden): a socket proxy in front of the daemon must allow it (CONTAINERS=1 and POST=1 "
        "in docker-socket-proxy terms)"
    )


def test_rootless_podman_on_cgroup_v1():
    # measured: compat /info has no "name=rootless"; /libpod/info does, and cgroup v1 gives it no controllers
    info = {"SecurityOptions": ["name=seccomp,profile=default"], "CgroupDriver": "cgroupfs", "CgroupVersion": "1"}
    engine = from_api(PODMAN_VERSION, info, {"host": {"security": {"rootless": True}}})
    assert engine.rootless and engine.stage_ids(4545, 4545) == (0, 0)
    assert engine.enforces_limits is False
    rootful = from_api(PODMAN_VERSION, info, {"host": {"security": {"rootless": False}}})
    assert rootful.rootless is False and rootful.enforces_limits is True

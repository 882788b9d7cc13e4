"""`dvc docker doctor` / `ps` against other engines: Podman's API, and a socket proxy that denies INFO."""

from __future__ import annotations

import json

import pytest

from tests.integration.engines.conftest import engine_client, start_engine, start_proxy

pytestmark = [pytest.mark.docker, pytest.mark.engines]


@pytest.fixture(scope="module")
def podman_url() -> str:
    return start_engine("podman.sh")  # the default service, which the other Podman tests use too


@pytest.fixture(scope="module")
def proxy_url() -> str:
    return start_proxy("noinfo")  # Tecnativa's defaults: INFO=0


def doctor(repo, url: str) -> dict:
    proc = repo.dvc("docker", "doctor", "--json", check=False, env={"DOCKER_HOST": url})
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    report["rc"] = proc.returncode
    return {**report, **{c["name"]: c for c in report["checks"]}}


@pytest.mark.podman
def test_doctor_names_podman(make_repo, busybox_image, podman_url):
    engine_client(podman_url)
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "s", "echo hi")
    report = doctor(repo, podman_url)
    assert report["rc"] == 0, report
    assert report["endpoint"]["message"] == f"'{podman_url}' (from DOCKER_HOST)"
    assert report["daemon"]["message"].startswith("Podman Engine 4.")
    assert report["engine"]["level"] == "ok" and report["engine"]["message"].startswith("Podman Engine, cgroup")
    assert report["stage 's'"]["message"].startswith(f"image '{busybox_image}' is present")  # loaded by podman.sh


@pytest.mark.proxy
def test_doctor_through_a_proxy_that_denies_info(make_repo, busybox_image, proxy_url):
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "s", "echo hi")
    repo.config("docker.memory", "64m")
    report = doctor(repo, proxy_url)
    assert report["rc"] == 0, report
    assert report["engine"]["level"] == "warning" and "GET /info refused" in report["engine"]["message"]
    assert report["limits"]["level"] == "warning" and "unknown" in report["limits"]["message"]
    assert report["stage 's'"]["level"] == "ok"
    ps = repo.dvc("docker", "ps", env={"DOCKER_HOST": proxy_url})
    assert ps.stdout.strip() == "No containers of dvc-docker-exec for this repo."

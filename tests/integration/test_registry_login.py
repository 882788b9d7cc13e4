"""A private registry (basic auth, on loopback): errors say `docker login REGISTRY`; the Docker CLI's
credentials work as they do for the CLI (auths, credsStore, credHelpers in $DOCKER_CONFIG/config.json).

The registry is Debian's docker-registry with an htpasswd file (apache2-utils). Nothing is written to
the real user's ~/.docker: each test gets a DOCKER_CONFIG folder of its own.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid

import pytest

from tests.conftest import _unavailable, loopback_registry, push_test_image

pytestmark = pytest.mark.docker

USER, PASSWORD = "dde-user", "dde-secret-pw"
HELPER = "dde-test"  # docker-credential-dde-test, a credential helper of our own


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory, docker_client):
    htpasswd = shutil.which("htpasswd")
    if not htpasswd:
        _unavailable("htpasswd is not installed (apache2-utils); run scripts/ensure-docker.sh")
    folder = tmp_path_factory.mktemp("private-registry")
    users = folder / "htpasswd"
    users.write_text(subprocess.run([htpasswd, "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True).stdout)
    auth = f"auth: {{htpasswd: {{realm: dde, path: {users}}}}}\n"
    with loopback_registry(folder, auth=auth) as address:
        yield address


@pytest.fixture
def private_image(private_registry, docker_client, busybox_image):
    reference = f"{private_registry}/team/dde-private-{uuid.uuid4().hex[:8]}:1"
    push_test_image(docker_client, busybox_image, reference, auth_config={"username": USER, "password": PASSWORD})
    yield reference
    try:
        docker_client.images.remove(reference, force=True)
    except Exception:  # noqa: BLE001 - not pulled by this test
        pass


def docker_config(tmp_path, config: dict) -> dict:
    """Env for a dvc process whose Docker CLI config is `config` (and whose PATH finds our helper)."""
    folder = tmp_path / "docker-config"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    bin_dir = tmp_path / "helper-bin"
    bin_dir.mkdir(exist_ok=True)
    helper = bin_dir / f"docker-credential-{HELPER}"
    # the credential-helper protocol: `get` reads the server on stdin, answers JSON
    helper.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = get ] || exit 1\nread server\necho "$server" >> "{bin_dir}/asked"\n'
        f'printf \'{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}\' "$server"\n'
    )
    helper.chmod(0o755)
    return {"DOCKER_CONFIG": str(folder), "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def pull_stage(make_repo, image: str):
    repo = make_repo(image)
    repo.config("docker.pull", "missing")
    repo.stage_add("-n", "p", "echo pulled > out.txt")
    return repo


def test_without_credentials_the_error_says_docker_login_registry(make_repo, private_image, private_registry, tmp_path, no_leftovers):
    repo = pull_stage(make_repo, private_image)
    proc = repo.dvc("repro", check=False, env=docker_config(tmp_path, {}))
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, proc.stderr
    # the absent-image line (image_help): not present here, the pull's short reason, the fix
    assert f"image '{private_image}' is not present on this machine, and pulling it from {private_registry} failed" in errors[0]
    assert f"`docker login {private_registry}`" in errors[0], errors[0]
    assert not (repo.path / "out.txt").exists()


def test_wrong_credentials_the_error_says_docker_login_registry(make_repo, private_image, private_registry, tmp_path, no_leftovers):
    repo = pull_stage(make_repo, private_image)
    wrong = base64.b64encode(f"{USER}:not-the-password".encode()).decode()
    proc = repo.dvc("repro", check=False, env=docker_config(tmp_path, {"auths": {private_registry: {"auth": wrong}}}))
    assert proc.returncode != 0
    assert f"`docker login {private_registry}`" in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind", ["auths", "credsStore", "credHelpers"])
def test_the_docker_clis_credentials_are_used(make_repo, private_image, private_registry, tmp_path, kind, no_leftovers):
    config = {
        "auths": {"auths": {private_registry: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}},
        "credsStore": {"credsStore": HELPER},
        "credHelpers": {"credHelpers": {private_registry: HELPER}},
    }[kind]
    repo = pull_stage(make_repo, private_image)
    repo.dvc("repro", env=docker_config(tmp_path, config))
    assert repo.read("out.txt") == "pulled\n"
    asked = tmp_path / "helper-bin" / "asked"
    if kind != "auths":
        assert private_registry in asked.read_text()  # the helper, not a stored password, answered
    else:
        assert not asked.exists()

"""docker.platform against the real engine and a loopback registry.

No arm64 machine here: an "arm64" image is the busybox test image with its
config saying arm64 (its static amd64 binary still runs on this host), which
is all the daemon's platform matching looks at.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid

import pytest

from tests.conftest import push_image

pytestmark = pytest.mark.docker


def load_as_platform(client, base: str, reference: str, arch: str) -> None:
    """`reference` = `base` with another architecture in its image config (docker save | edit | docker load)."""
    source = tarfile.open(fileobj=io.BytesIO(b"".join(client.images.get(base).save(named=False))))
    manifest = json.load(source.extractfile("manifest.json"))
    config = json.load(source.extractfile(manifest[0]["Config"]))
    config["architecture"] = arch
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest[0].update(Config=config_name, RepoTags=[reference])
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as target:
        for member in source.getmembers():
            if member.name in ("manifest.json", manifest[0]["Config"]) or member.name.endswith(".json") and "/" not in member.name:
                continue
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        for name, data in ((config_name, config_bytes), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    client.images.load(out.getvalue())


@pytest.fixture
def arm64_in_registry(registry, docker_client, busybox_image):
    """`registry/dde-platform-X:1`: arm64 in the registry; locally the same name is the amd64 busybox."""
    reference = f"{registry}/dde-platform-{uuid.uuid4().hex[:8]}:1"
    load_as_platform(docker_client, busybox_image, reference, "arm64")
    push_image(docker_client, reference, remove=True)
    docker_client.images.get(busybox_image).tag(reference)
    yield reference
    docker_client.images.remove(reference, force=True)


def test_a_tag_of_another_platform_is_pulled_for_the_requested_one(make_repo, arm64_in_registry, docker_client, no_leftovers):
    assert docker_client.api.inspect_image(arm64_in_registry)["Architecture"] == "amd64"
    repo = make_repo(arm64_in_registry)
    repo.config("docker.pull", "missing")
    repo.config("docker.platform", "linux/arm64", local=True)
    repo.stage_add("-n", "p", "echo ran > out.txt")
    proc = repo.dvc("repro")
    assert f"Pulling image '{arm64_in_registry}' for linux/arm64..." in proc.stderr, proc.stderr
    assert repo.read("out.txt") == "ran\n"
    assert docker_client.api.inspect_image(arm64_in_registry)["Architecture"] == "arm64"

    # the image now matches: a second run pulls nothing
    proc = repo.dvc("repro", "-f")
    assert "Pulling image" not in proc.stderr


def test_a_registry_without_the_platform_is_a_clear_error(make_repo, registry, docker_client, busybox_image, no_leftovers):
    reference = f"{registry}/dde-platform-amd64-{uuid.uuid4().hex[:8]}:1"
    try:
        push_image(docker_client, reference, tag_of=busybox_image)
        repo = make_repo(reference)
        repo.config("docker.pull", "always")
        repo.config("docker.platform", "linux/arm64", local=True)
        repo.stage_add("-n", "p", "echo ran > out.txt")
        proc = repo.dvc("repro", check=False)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        assert proc.returncode != 0 and len(errors) == 1, proc.stderr
        assert "linux/arm64" in errors[0] and reference in errors[0], errors[0]
        assert not (repo.path / "out.txt").exists()
    finally:
        docker_client.images.remove(reference, force=True)

"""Pull policies against a real registry on loopback (Debian's docker-registry)."""

from __future__ import annotations

import re
import uuid

import docker.errors
import pytest

from tests.conftest import push_test_image, recorded_pulls, remove_repository, start_dvc, wait_running

pytestmark = pytest.mark.docker


@pytest.fixture
def remote_image(registry, docker_client, busybox_image):
    """An image that exists in the registry but not locally, with a layer of its own to download."""
    name = f"{registry}/dde-pull-{uuid.uuid4().hex[:8]}"
    push_test_image(docker_client, busybox_image, f"{name}:1")
    yield f"{name}:1"
    remove_repository(docker_client, name)  # the tag and the digest the pull left


def test_missing_pulls_an_absent_image_with_progress(make_repo, remote_image, docker_client, no_leftovers):
    repo = make_repo(remote_image)
    repo.config("docker.pull", "missing")
    repo.stage_add("-n", "p", "echo pulled > out.txt")
    with recorded_pulls(docker_client, remote_image) as pulls:
        proc = repo.dvc("repro")
    lines = proc.stderr.splitlines()
    start = lines.index(f"Pulling image '{remote_image}'...")
    progress = lines[start + 1 :]
    # one line per finished layer and a summary (pulling.PullProgress, not on a terminal), no progress bars
    label = re.escape(remote_image)
    layer_done = [line for line in progress if re.fullmatch(rf"{label}: [0-9a-f]{{12}}: Pull complete( \(.+\))?", line)]
    assert layer_done, proc.stderr
    summary = [line for line in progress if line.startswith(f"{remote_image}: Downloaded newer image for {remote_image}")]
    assert summary and re.search(r"; digest sha256:[0-9a-f]{64}$", summary[0]), proc.stderr
    assert not [line for line in progress if "[=" in line or "Downloading" in line], proc.stderr
    assert repo.read("out.txt") == "pulled\n"
    assert len(pulls) == 1
    docker_client.images.get(remote_image)


def test_parallel_processes_pull_once(make_repo, remote_image, docker_client, no_leftovers):
    """Two dvc processes at once (like `dvc queue start -j 2`): one pull, under a file lock."""
    repos = [make_repo(remote_image, name=f"r{i}") for i in range(2)]
    for repo in repos:
        repo.config("docker.pull", "missing")
        repo.stage_add("-n", "p", "echo ok > out.txt")
    with recorded_pulls(docker_client, remote_image) as pulls:
        procs = [start_dvc(repo, "repro") for repo in repos]
        for proc, stderr in procs:
            proc.wait(timeout=120)
            assert proc.returncode == 0, stderr.read_text()
    assert all(repo.read("out.txt") == "ok\n" for repo in repos)
    assert len(pulls) == 1


def test_always_pulls_every_run_and_never_refuses(make_repo, remote_image, docker_client, no_leftovers):
    repo = make_repo(remote_image)
    repo.config("docker.pull", "always")
    repo.stage_add("-n", "p", "echo x > out.txt")
    with recorded_pulls(docker_client, remote_image) as pulls:
        repo.dvc("repro", "-f")
        repo.dvc("repro", "-f")
    assert len(pulls) == 2

    docker_client.images.remove(remote_image)
    repo.config("docker.pull", "never")
    proc = repo.dvc("repro", "-f", check=False)
    assert proc.returncode != 0 and "docker.pull is 'never'" in proc.stderr


def test_missing_pulls_again_an_image_removed_during_the_repro(make_repo, remote_image, docker_client, no_leftovers):
    """Issue 18 (3): with `docker.pull missing`, an image removed while `dvc repro` runs is pulled for the next stage."""
    repo = make_repo()
    repo.config("docker.image", remote_image)
    repo.config("docker.pull", "missing")
    repo.stage_add("-n", "a", "-o", "a.txt", "while [ ! -e go ]; do sleep 0.05; done; echo a > a.txt")
    repo.stage_add("-n", "b", "-d", "a.txt", "-o", "b.txt", "echo b > b.txt")
    stdout = repo.path.parent / "repro-stdout.txt"
    proc, stderr = start_dvc(repo, "repro", stdout=stdout)
    wait_running(docker_client, repo, proc)
    pulled = docker_client.images.get(remote_image).id
    docker_client.images.remove(remote_image, force=True)  # untagged while stage a runs
    (repo.path / "go").write_text("")
    proc.wait(timeout=120)
    out, err = stdout.read_text(), stderr.read_text()
    assert proc.returncode == 0, out + err
    assert repo.read("b.txt") == "b\n"
    # stage b runs the recorded bytes: created from the image ID (still there, untagged, while stage a's
    # container used it), or pulled again by tag when the ID is gone too; never "No such image"
    pulls = err.count(f"Pulling image '{remote_image}'") + out.count(f"Pulling image '{remote_image}'")
    assert pulls in (1, 2), out + err
    try:  # nameless since its untagging, so remote_image's clean-up cannot find it by name
        docker_client.images.remove(pulled)
    except docker.errors.APIError:
        pass  # gone with its last container, or pulled again, named, and remote_image's clean-up's

"""Pull policies against a real registry on loopback (Debian's docker-registry)."""

from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess
import tarfile
import time
import uuid

import pytest

from tests.conftest import _unavailable

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def registry(tmp_path_factory, docker_client, busybox_image):
    """`127.0.0.1:PORT` serving a copy of the busybox test image (loopback is an allowed insecure registry)."""
    binary = shutil.which("docker-registry")
    if not binary:
        _unavailable("docker-registry is not installed; run scripts/ensure-docker.sh")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tmp_path_factory.mktemp("registry")
    config = folder / "config.yml"
    config.write_text(
        f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {folder / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "docker-registry did not start"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def remote_image(registry, docker_client, busybox_image):
    """An image that exists in the registry but not locally, with a layer of its own to download."""
    name = f"{registry}/dde-pull-{uuid.uuid4().hex[:8]}"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        data = name.encode()
        info = tarfile.TarInfo("dde-pull-marker")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    helper = docker_client.containers.create(busybox_image, "true", network_disabled=True)
    try:
        helper.put_archive("/", layer.getvalue())
        helper.commit(name, "1")
    finally:
        helper.remove(force=True)
    for line in docker_client.api.push(name, tag="1", stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(f"{name}:1")
    yield f"{name}:1"
    try:
        docker_client.images.remove(f"{name}:1", force=True)
    except Exception:  # noqa: BLE001
        pass


def pull_events(docker_client, image: str, since: int) -> list:
    """Pulls of exactly `image` (this test's registry port and unique name), not of any loopback registry."""
    until = int(time.time()) + 1
    events = docker_client.events(since=since, until=until, decode=True, filters={"type": "image", "event": "pull"})
    return [e for e in events if e.get("id") == image]


def test_missing_pulls_an_absent_image_with_progress(make_repo, remote_image, docker_client, no_leftovers):
    repo = make_repo(remote_image)
    repo.dvc("config", "docker.pull", "missing")
    repo.dvc("stage", "add", "-n", "p", "echo pulled > out.txt")
    since = int(time.time())
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
    assert len(pull_events(docker_client, remote_image, since)) == 1
    docker_client.images.get(remote_image)


def test_parallel_processes_pull_once(make_repo, remote_image, docker_client, no_leftovers):
    """Two dvc processes at once (like `dvc queue start -j 2`): one pull, under a file lock."""
    repos = [make_repo(remote_image, name=f"r{i}") for i in range(2)]
    for repo in repos:
        repo.dvc("config", "docker.pull", "missing")
        repo.dvc("stage", "add", "-n", "p", "echo ok > out.txt")
    time.sleep(1.1)  # events are filtered by whole seconds
    since = int(time.time())
    procs = [
        subprocess.Popen(
            [*repo.dvc_argv(), "repro"], cwd=repo.path, env=repo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for repo in repos
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert all(repo.read("out.txt") == "ok\n" for repo in repos)
    assert len(pull_events(docker_client, remote_image, since)) == 1


def test_always_pulls_every_run_and_never_refuses(make_repo, remote_image, docker_client, no_leftovers):
    repo = make_repo(remote_image)
    repo.dvc("config", "docker.pull", "always")
    repo.dvc("stage", "add", "-n", "p", "echo x > out.txt")
    time.sleep(1.1)
    since = int(time.time())
    repo.dvc("repro", "-f")
    repo.dvc("repro", "-f")
    assert len(pull_events(docker_client, remote_image, since)) == 2

    docker_client.images.remove(remote_image)
    repo.dvc("config", "docker.pull", "never")
    proc = repo.dvc("repro", "-f", check=False)
    assert proc.returncode != 0 and "docker.pull is 'never'" in proc.stderr


def test_missing_pulls_again_an_image_removed_during_the_repro(make_repo, remote_image, docker_client, no_leftovers):
    """Issue 18 (3): with `docker.pull missing`, an image removed while `dvc repro` runs is pulled for the next stage."""
    repo = make_repo()
    repo.dvc("config", "docker.image", remote_image)
    repo.dvc("config", "docker.pull", "missing")
    repo.dvc("stage", "add", "-n", "a", "-o", "a.txt", "while [ ! -e go ]; do sleep 0.05; done; echo a > a.txt")
    repo.dvc("stage", "add", "-n", "b", "-d", "a.txt", "-o", "b.txt", "echo b > b.txt")
    proc = subprocess.Popen(
        [*repo.dvc_argv(), "repro"], cwd=repo.path, env=repo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not docker_client.containers.list(filters={"ancestor": remote_image}):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    docker_client.images.remove(remote_image, force=True)  # untagged while stage a runs
    (repo.path / "go").write_text("")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert repo.read("b.txt") == "b\n"
    assert err.count(f"Pulling image '{remote_image}'") + out.count(f"Pulling image '{remote_image}'") == 2, out + err

"""Shared fixtures.

Docker-dependent tests carry the ``docker`` marker (set by the fixtures that
need the engine). Without a reachable engine they skip on a laptop, but fail
when ``CI=true``: a CI run that silently skipped them would prove nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABEL = "dvc-docker-exec"
BUSYBOX = "dvc-docker-exec-test/busybox:latest"
PYTHON_DVC = "dvc-docker-exec-test/python-dvc:bookworm"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"no Docker Engine answers ({exc}); run scripts/ensure-docker.sh")
    return client


def _need_image(client, image: str) -> str:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        _unavailable(f"test image {image} is missing; run scripts/build-images.sh")
    return image


@pytest.fixture(scope="session")
def busybox_image(docker_client) -> str:
    return _need_image(docker_client, BUSYBOX)


@pytest.fixture(scope="session")
def python_dvc_image(docker_client) -> str:
    return _need_image(docker_client, PYTHON_DVC)


# Repos made by this test session live under these folders. Leftover checks
# look only at containers labelled with such a repo, so that two test
# sessions on one machine do not remove each other's containers.
SESSION_ROOTS: List[str] = []


def our_containers(client, under: Optional[str] = None) -> List:
    """Containers of the plugin whose repo lies under `under` (default: this session's repos)."""
    import docker

    roots = [under] if under else SESSION_ROOTS
    # ignore_removed: a container removed between the list and its inspect (AutoRemove, another session) is
    # skipped, not a 404; whole path components: session root .../pytest-13 must not match .../pytest-139/...
    found = client.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
    return [c for c in found if any(_within(c.labels.get(f"{LABEL}.repo", ""), r) for r in roots)]


def _within(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


@pytest.fixture(scope="session", autouse=True)
def _session_root(tmp_path_factory) -> None:
    SESSION_ROOTS.append(str(tmp_path_factory.getbasetemp()))


# Why a generous bound: a container whose command has ended may still be in
# the daemon's hands (AutoRemove, or a forced removal that answered 409 because
# one was under way) for a moment after dvc exits; on a loaded machine that
# moment can be seconds. Only such containers are waited for: a running or
# never-started container of ours is a leftover at once.
REMOVAL_GRACE = 60.0  # seconds


def _being_removed(container) -> bool:
    try:
        container.reload()
    except Exception:  # noqa: BLE001 - gone meanwhile
        return True
    state = container.attrs.get("State", {})
    auto_remove = container.attrs.get("HostConfig", {}).get("AutoRemove", False)
    return state.get("Status") == "removing" or (auto_remove and state.get("Status") in ("exited", "dead"))


@pytest.fixture
def no_leftovers(docker_client) -> Iterator[None]:
    """Every integration test asserts it leaves no container of ours behind."""
    before = {c.id for c in our_containers(docker_client)}
    yield
    deadline = time.monotonic() + REMOVAL_GRACE
    while True:
        left = [c for c in our_containers(docker_client) if c.id not in before]
        if not left or not all(_being_removed(c) for c in left) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for c in left:
        c.remove(force=True)
    assert not left, f"containers left behind: {[(c.name, c.status) for c in left]}"


def container_events(client, event: str, since: int, until: Optional[int] = None, **labels: str) -> List[dict]:
    """The daemon's `event` records for containers of ours carrying `labels` (label suffix=value).

    Events are filtered by whole seconds: `since` is inclusive, `until` defaults to now + 1.
    """
    filters = {"type": "container", "event": event, "label": [LABEL]}
    filters["label"] += [f"{LABEL}.{key}={value}" for key, value in labels.items()]
    until = int(time.time()) + 1 if until is None else until
    return list(client.events(since=since, until=until, decode=True, filters=filters))


# Under CI=true a skip proves nothing, whoever wrote it (a plain skipif, an
# importorskip, a pytest.skip in a new test): the run fails and names them.
SKIPPED: List[str] = []


def pytest_runtest_logreport(report) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    """The whole suite leaves no container behind, either; under CI=true nothing was skipped."""
    if SKIPPED:
        session.exitstatus = 1
        sys.stderr.write("\nERROR: CI=true but tests were skipped:\n" + "".join(f"  {s}\n" for s in SKIPPED))
    try:
        import docker

        client = docker.from_env()
        left = our_containers(client)
    except Exception:  # noqa: BLE001
        return
    if left:
        for c in left:
            c.remove(force=True)
        session.exitstatus = 1
        sys.stderr.write(f"\nERROR: containers left behind by the suite: {[c.name for c in left]}\n")


class DvcRepo:
    """A temporary Git+DVC repo driven through the real `dvc` CLI in subprocesses."""

    def __init__(self, path: Path, env: dict):
        self.path = path
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            args,
            cwd=kwargs.pop("cwd", self.path),
            env={**self.env, **kwargs.pop("env", {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    @staticmethod
    def dvc_argv() -> List[str]:
        return [sys.executable, "-m", "dvc"]

    def dvc(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(*self.dvc_argv(), *args, **kwargs)

    def write(self, name: str, text: str) -> Path:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def lock(self) -> Optional[str]:
        path = self.path / "dvc.lock"
        return path.read_text() if path.exists() else None


def repo_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env.update(
        HOME=str(home),
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site-cache"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    return env


@pytest.fixture
def make_repo(tmp_path: Path):
    """make_repo(image=None) -> DvcRepo with `docker.image` set (pull never: no registry here)."""

    def make(image: Optional[str] = None, name: str = "repo") -> DvcRepo:
        path = tmp_path / name
        path.mkdir()
        home = tmp_path / f"{name}-home"
        home.mkdir()
        repo = DvcRepo(path, repo_env(home))
        repo.run("git", "init", "-q")
        repo.dvc("init", "-q")
        if image:
            repo.dvc("config", "docker.image", image)
            repo.dvc("config", "docker.pull", "never")
        repo.run("git", "add", "-A")
        repo.run("git", "commit", "-qm", "init")
        return repo

    return make


@pytest.fixture
def repo(make_repo, busybox_image, no_leftovers) -> DvcRepo:
    return make_repo(busybox_image)


def in_container_probe() -> str:
    """Shell snippet printing PID 1's command line: docker-init inside our containers."""
    return "tr '\\0' ' ' < /proc/1/cmdline"


RUNNER = "dvc-docker-exec-test/runner:latest"  # DVC + the plugin of this source (repo Dockerfile)


@pytest.fixture(scope="session")
def runner_image(docker_client) -> str:
    """The runner image of the current source (a cached no-op when unchanged)."""
    try:
        proc = subprocess.run(
            [str(ROOT / "scripts" / "build-images.sh"), "runner"],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"scripts/build-images.sh runner failed: {exc}")
    if proc.returncode != 0:
        _unavailable(f"scripts/build-images.sh runner failed:\n{proc.stdout}{proc.stderr}")
    return RUNNER

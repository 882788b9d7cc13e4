"""DVC run by a non-root user: outputs belong to that user, not root (field notes #1)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import SESSION_ROOTS, DvcRepo, _unavailable, repo_env

pytestmark = pytest.mark.docker

USER = "dde-tester"


@pytest.fixture(scope="module")
def tester():
    if os.getuid() != 0:
        _unavailable("creating a test user needs root")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    entry = pwd.getpwnam(USER)
    sock_gid = os.stat("/var/run/docker.sock").st_gid
    # why setpriv: su/sudo would reset the environment and need a login shell
    prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", f"--groups={sock_gid}", "--"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import dvc.repo, dvc_docker_exec"], capture_output=True)
    if probe.returncode != 0:
        _unavailable(
            f"{sys.executable} is not usable by a non-root user (make the venv with /usr/bin/python3 "
            "in a world-readable place, as scripts/test.sh does)"
        )
    return entry, prefix


def test_outputs_belong_to_invoking_user(tester, busybox_image, no_leftovers):
    entry, prefix = tester
    # not under pytest's tmp_path: that is private to root (mode 700)
    path = Path(tempfile.mkdtemp(prefix="dde-nonroot-"))
    SESSION_ROOTS.append(str(path))
    try:
        os.chown(path, entry.pw_uid, entry.pw_gid)
        home = path / "home"
        repo = DvcRepo(path / "repo", {**repo_env(home), "USER": USER})

        def as_user(*args: str, **kwargs) -> subprocess.CompletedProcess:
            return repo.run(*prefix, *args, **kwargs)

        as_user("mkdir", "-p", str(home), str(repo.path), cwd=path)
        as_user("git", "init", "-q")
        as_user(sys.executable, "-m", "dvc", "init", "-q")
        as_user(sys.executable, "-m", "dvc", "config", "docker.image", busybox_image)
        as_user(sys.executable, "-m", "dvc", "config", "docker.pull", "never")
        cmd = "id -u > uid.txt; echo $HOME > home.txt; touch $HOME/writable; mkdir -p out && echo x > out/f"
        as_user(sys.executable, "-m", "dvc", "stage", "add", "-n", "own", "-o", "out", cmd)
        as_user(sys.executable, "-m", "dvc", "repro")

        assert repo.read("uid.txt").strip() == str(entry.pw_uid)
        for name in ("uid.txt", "out", "out/f"):
            assert (repo.path / name).stat().st_uid == entry.pw_uid, name
        assert repo.read("home.txt").strip() == "/tmp/dvc-docker-exec-home"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_socket_permission_denied_is_one_clear_line(tester, busybox_image):
    entry, prefix = tester
    no_group = [arg for arg in prefix if not arg.startswith("--groups")]
    no_group.insert(-1, "--clear-groups")
    path = Path(tempfile.mkdtemp(prefix="dde-nonroot-"))
    SESSION_ROOTS.append(str(path))
    try:
        os.chown(path, entry.pw_uid, entry.pw_gid)
        repo = DvcRepo(path, {**repo_env(path / "home"), "USER": USER})
        run = lambda *a: repo.run(*no_group, *a, check=False)  # noqa: E731
        run("git", "init", "-q")
        run(sys.executable, "-m", "dvc", "init", "-q")
        run(sys.executable, "-m", "dvc", "config", "docker.image", busybox_image)
        run(sys.executable, "-m", "dvc", "stage", "add", "-n", "s", "echo hi")
        proc = run(sys.executable, "-m", "dvc", "repro")
        assert proc.returncode != 0
        err = proc.stderr.strip()
        assert "permission denied on the Docker socket" in err and "docker' group" in err, err
        assert "Traceback" not in err and len(err.splitlines()) == 1
    finally:
        shutil.rmtree(path, ignore_errors=True)

"""Unit tests for dvc_docker_exec.backends.lease: the wrapped command, the holder's files, stale folders.

The watcher itself is never *run* on the host (`kill -1` would reach every
process of the user): tests/integration/test_orphans.py runs it in containers.
"""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from dvc_docker_exec.boundary.private_files import reap_stale_overlays
from dvc_docker_exec.backends import lease
from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.types import lease as watch
from dvc_docker_exec.types.lease import LeaseRef
from dvc_docker_exec.types.spec import StageFacts, build_spec
from docker.types import Mount

CMD = "echo \"it's\" $HOME; exit 3"


def test_without_a_lease_the_command_is_unchanged() -> None:
    assert watch.command("/bin/sh", CMD, None) == ("-c", CMD)


@pytest.mark.parametrize("kind", ["fifo", "beat"])
def test_the_command_stays_one_argv_element_after_the_watcher(kind: str) -> None:
    argv = watch.command("/bin/bash", CMD, LeaseRef(kind, "/r/.dvc/tmp/docker-exec/1-lease-ab/x"))
    assert argv[0] == "-c" and argv[1] == watch.WATCHERS[kind]
    assert argv[2:] == (watch.NAME, "/bin/bash", "/r/.dvc/tmp/docker-exec/1-lease-ab/x", CMD)


@pytest.mark.parametrize("kind", ["fifo", "beat"])
def test_watcher_is_posix_sh(kind: str) -> None:
    # syntax only (-n): running it on the host would signal every process of ours
    for shell in ("/bin/sh", "/bin/dash", "/bin/bash"):
        if os.path.exists(shell):
            proc = subprocess.run([shell, "-n", "-c", watch.WATCHERS[kind]], capture_output=True, text=True)
            assert proc.returncode == 0, (shell, proc.stderr)
    # the command replaces the watcher's shell (same pid, signals, exit status); the reader is double-forked
    assert watch.WATCHERS[kind].endswith('exec "$1" -c "$3"')
    assert "kill -TERM -1" in watch.WATCHERS[kind] and "kill -KILL -1" in watch.WATCHERS[kind]


def _spec(with_lease: bool):
    facts = StageFacts(addressing="s", wdir="/r", repo_root="/r", mount_paths=("/r",))
    ref = LeaseRef("fifo", "/r/.dvc/tmp/docker-exec/1-lease-ab/fifo") if with_lease else None
    mount_for = lambda path, ro: Mount(target=path, source=path, type="bind", read_only=ro)  # noqa: E731
    settings = DockerSettings.from_mapping({"image": "busybox"})
    return build_spec(settings, facts, CMD, {}, mount_for, uid=1, gid=1, pid=2, tty=False, lease=ref)


def test_spec_wraps_the_created_command_but_not_the_shown_run_line() -> None:
    plain, leased = _spec(False), _spec(True)
    assert plain.create_kwargs(None)["command"] == ["-c", CMD]
    assert leased.create_kwargs(None)["command"][1] == watch.FIFO_WATCH
    assert leased.create_kwargs(None)["command"][-1] == CMD
    # the pasted `docker run` line has no lease to watch: it shows the plain command and says so
    assert leased.docker_run_line() == plain.docker_run_line()
    assert any("watcher" in note for note in leased.run_line_differences())
    assert leased.mounts == plain.mounts  # the lease adds no mount: the repo shows it at its path


def test_holder_makes_a_pipe_any_container_user_may_read_and_nobody_else_write(tmp_path) -> None:
    ref = lease.hold(str(tmp_path / "docker-exec"))
    info = os.stat(ref.path)
    assert stat.S_ISFIFO(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o644
    assert stat.S_IMODE(os.stat(os.path.dirname(ref.path)).st_mode) == 0o711
    # another uid (docker.user, a user without a passwd entry) reaches the pipe: every folder down to it
    # lets others through (the shared folder is made by the first of the lease and the config copies)
    assert os.stat(tmp_path / "docker-exec").st_mode & 0o001
    assert lease.hold(str(tmp_path / "docker-exec")) == ref  # one per process and folder
    # a reader gets no end-of-file while we hold the write end
    fd = os.open(ref.path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(BlockingIOError):
            os.read(fd, 1)
    finally:
        os.close(fd)
    assert lease.stale_folders([str(tmp_path / "docker-exec")]) == []
    beat = lease.hold(str(tmp_path / "docker-exec"), "beat")
    assert beat.kind == "beat" and open(beat.path).read().startswith(f"{os.getpid()}-")


def test_a_dead_processes_lease_is_stale_and_reaped(tmp_path) -> None:
    parent = str(tmp_path / "docker-exec")
    child = os.fork()
    if child == 0:  # a dvc that dies without cleaning up (SIGKILL: no atexit)
        try:
            lease._Holder(parent)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    stale = lease.stale_folders([parent])
    assert len(stale) == 1 and f"{child}-lease-" in stale[0]
    reap_stale_overlays(parent)  # the config copies' reaper leaves it to the second wall
    assert lease.stale_folders([parent]) == stale
    lease.reap(stale)
    assert lease.stale_folders([parent]) == [] and os.listdir(parent) == []


def test_lease_parents_include_the_temp_copies_of_experiments(tmp_path) -> None:
    copy = tmp_path / "exps" / "tmpab12" / ".dvc" / "tmp" / "docker-exec"
    copy.mkdir(parents=True)
    assert lease.lease_parents(str(tmp_path)) == [str(tmp_path / "docker-exec"), str(copy)]


class _FakeAPI:
    def __init__(self, containers):
        self._containers = containers
        self.removed = []

    def containers(self, all=False, filters=None):  # noqa: A002 - docker-py's name
        return self._containers

    def remove_container(self, cid, force=False, v=False):
        assert force and v, "the second wall removes the anonymous volumes too (P7)"
        self.removed.append(cid)


def test_second_wall_removes_only_this_hosts_dead_processes_containers(caplog) -> None:
    from dvc_docker_exec.backends.containers import clear_orphans

    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)  # a pid that is gone
    host = os.uname().nodename

    def item(cid, pid, host, repo="/r"):
        labels = {"dvc-docker-exec": "1", "dvc-docker-exec.stage": "s", "dvc-docker-exec.repo": repo,
                  "dvc-docker-exec.pid": str(pid), "dvc-docker-exec.host": host}
        return {"Id": cid, "Names": [f"/dvc-s-{cid}"], "State": "running", "Created": 0, "Labels": labels}

    api = _FakeAPI([item("dead", child, host), item("alive", os.getpid(), host), item("elsewhere", child, "other"),
                    item("other-repo", child, host, repo="/q"), item("temp-copy", child, host, "/r/.dvc/tmp/exps/t")])
    client = type("Client", (), {"api": api})()
    removed = clear_orphans(client, "/r")
    assert api.removed == ["dead", "temp-copy"] and [c.id for c in removed] == api.removed
    assert f"removed container dvc-s-dead of stage 's' (running): its dvc process {child} is gone" in caplog.text

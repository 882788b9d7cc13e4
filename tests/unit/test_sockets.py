"""Unit tests for dvc_docker_exec.boundary.sockets: refusal by (st_dev, st_ino), not by name (issue 7, hole 2)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.boundary.paths import IdentityPaths, RunnerPaths
from dvc_docker_exec.boundary.sockets import SocketGuard, daemon_socket, sockets_in_use


@pytest.fixture
def sock(tmp_path: Path):
    """A listening Unix socket at tmp/some/dir/d.sock, standing in for a daemon's."""
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    path = folder / "d.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen()
    yield path
    server.close()


@pytest.fixture
def guard(sock: Path, tmp_path: Path) -> SocketGuard:
    return SocketGuard(socket_paths=[str(sock)], mountinfo=str(tmp_path / "no-mountinfo"))


def test_the_socket_its_folders_and_aliases_are_refused(sock: Path, guard: SocketGuard, tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    os.symlink(tmp_path, tmp_path / "repo" / "rootlink")  # a symlink committed in the repo
    os.symlink(sock.parent, tmp_path / "repo" / "dirlink")
    aliases = [
        str(sock),
        str(sock.parent),
        str(tmp_path / "some"),
        str(tmp_path),
        "/",
        f"/proc/self/root{sock.parent}",
        str(tmp_path / "repo" / "rootlink"),
        str(tmp_path / "repo" / "dirlink"),
        f"{tmp_path}/repo/../some/dir",
    ]
    for path in aliases:
        assert guard.exposure(path), path


def test_unrelated_paths_pass(sock: Path, guard: SocketGuard, tmp_path: Path) -> None:
    (tmp_path / "some" / "other").mkdir()
    (tmp_path / "repo").mkdir()
    for path in (tmp_path / "some" / "other", tmp_path / "repo", tmp_path / "missing"):
        assert guard.exposure(str(path)) is None, path


def test_a_hard_link_to_the_socket_is_the_socket(sock: Path, guard: SocketGuard) -> None:
    link = sock.parent / "innocent"
    os.link(sock, link)
    assert "is the daemon socket" in guard.exposure(str(link))


def test_a_folder_holding_the_socket_under_its_name_is_refused(sock: Path, tmp_path: Path) -> None:
    """Where only the socket is visible (a runner), D/<tail of the socket's path> finds it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.link(sock, elsewhere / "d.sock")
    guard = SocketGuard(socket_paths=[str(elsewhere / "d.sock")], mountinfo="/nonexistent")
    assert "contains" in guard.exposure(str(sock.parent))


def test_a_symlink_leaving_the_folder_does_not_count(sock: Path, tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    os.symlink(sock, folder / "d.sock")  # resolves in the container, not on the host
    guard = SocketGuard(socket_paths=[str(sock)], mountinfo="/nonexistent")
    assert guard.exposure(str(folder)) is None


def test_a_mount_point_below_that_holds_the_socket_is_refused(sock: Path, tmp_path: Path) -> None:
    # The daemon's bind mounts are recursive: stand in for a submount with a
    # path that stats to the socket's folder, listed in a mountinfo file.
    top = tmp_path / "top"
    (top / "deep").mkdir(parents=True)
    os.symlink(sock.parent, top / "deep" / "m")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"1 0 0:1 / {top}/deep/m rw - tmpfs tmpfs rw\n2 0 0:1 / /elsewhere rw - tmpfs tmpfs rw\n")
    guard = SocketGuard(socket_paths=[str(sock)], mountinfo=str(mountinfo))
    assert "through the mount at" in guard.exposure(str(top))


def test_not_a_socket_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert daemon_socket(str(tmp_path / "file")) is None
    assert daemon_socket(str(tmp_path / "missing")) is None


def test_sockets_in_use_follow_the_configured_endpoint() -> None:
    paths = sockets_in_use({"DOCKER_HOST": "unix:///some/dir/d.sock", "XDG_RUNTIME_DIR": "/run/user/7"})
    assert paths[:2] == ["/var/run/docker.sock", "/some/dir/d.sock"]
    assert "/run/user/7/docker.sock" in paths and "/run/podman/podman.sock" in paths
    assert sockets_in_use({"DOCKER_HOST": "tcp://h:2375"})[0] == "/var/run/docker.sock"


def test_identity_paths_refuse_and_resolve(sock: Path, guard: SocketGuard, tmp_path: Path) -> None:
    paths = IdentityPaths(guard=guard)
    with pytest.raises(DockerExecError, match=r"refusing to mount '.*/rootlink' .* contains the daemon socket"):
        os.symlink(tmp_path, tmp_path / "rootlink")
        paths.mount(str(tmp_path / "rootlink"))
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "datalink")
    mount = paths.mount(str(tmp_path / "datalink"))
    # the daemon gets what we checked; the stage sees the path DVC names
    assert (mount["Source"], mount["Target"]) == (str(tmp_path / "data"), str(tmp_path / "datalink"))


def test_runner_paths_check_what_the_runner_sees(sock: Path, tmp_path: Path) -> None:
    """Socket pattern: the runner's tmp is host /srv/t; a link in it to the socket folder is refused."""
    ws = tmp_path / "ws"
    ws.mkdir()
    os.symlink(sock.parent, ws / "vrlink")
    runner = RunnerPaths(
        "c" * 64,
        [{"Type": "bind", "Source": "/srv/t", "Destination": str(tmp_path), "RW": True}],
        guard=SocketGuard(socket_paths=[str(sock)], mountinfo="/nonexistent"),
    )
    assert runner.mount(str(ws))["Source"] == "/srv/t/ws"
    with pytest.raises(DockerExecError, match="contains the daemon socket"):
        runner.mount(str(ws / "vrlink"))
    # a link leaving the runner's mounts: the host daemon could not resolve it the same way
    os.symlink("/", ws / "rootlink")
    with pytest.raises(DockerExecError):
        runner.mount(str(ws / "rootlink"))


# --- issue 16, P5: engines' sockets found from what listens, not from a list --------------------


NET_UNIX = """Num       RefCount Protocol Flags    Type St Inode Path
0000000031fb781f: 00000002 00000000 00010000 0001 01  4837 /var/run/docker.sock
000000009ae45179: 00000002 00000000 00010000 0001 01  4847 /var/run/docker/containerd/containerd-debug.sock
00000000646d3abf: 00000002 00000000 00010000 0001 01  4848 /var/run/docker/containerd/containerd.sock.ttrpc
000000008df8f871: 00000002 00000000 00010000 0001 01  4849 /run/containerd/containerd.sock
00000000aaaaaaaa: 00000002 00000000 00010000 0001 01  5001 /srv/odd/place/engine.sock
00000000bbbbbbbb: 00000002 00000000 00010000 0001 01  5002 /tmp/my-app.sock
00000000cccccccc: 00000002 00000000 00000000 0001 03  5003 /var/run/docker/connected-not-listening.sock
00000000df00dc49: 00000002 00000000 00000000 0002 01 73232 @15a62
00000000dddddddd: 00000002 00000000 00010000 0001 01  5004 /run/user/1000/docker.sock
00000000eeeeeeee: 00000002 00000000 00010000 0001 01  5005 /run/crio/crio.sock
"""


def fake_proc(tmp_path: Path) -> Path:
    proc = tmp_path / "proc"
    for pid, comm, inodes in (("10", "buildkitd", [5001]), ("11", "myapp", [5002]), ("12", "bash", [])):
        (proc / pid / "fd").mkdir(parents=True)
        (proc / pid / "comm").write_text(comm + "\n")
        for n, inode in enumerate(inodes):
            os.symlink(f"socket:[{inode}]", proc / pid / "fd" / str(n))
    (proc / "net").mkdir()
    (proc / "net" / "unix").write_text(NET_UNIX)
    return proc


def test_engine_sockets_come_from_what_listens(tmp_path: Path) -> None:
    from dvc_docker_exec.boundary.sockets import engine_sockets

    proc = fake_proc(tmp_path)
    found = engine_sockets(str(proc / "net" / "unix"), str(proc))
    assert found == sorted([
        "/var/run/docker.sock",
        "/var/run/docker/containerd/containerd-debug.sock",  # break 7: Docker's own containerd, no list names it
        "/var/run/docker/containerd/containerd.sock.ttrpc",
        "/run/containerd/containerd.sock",
        "/srv/odd/place/engine.sock",  # held by a buildkitd process, wherever it lies
        "/run/user/1000/docker.sock",  # rootless
        "/run/crio/crio.sock",
    ])


def test_one_scan_reads_the_sockets_once(sock: Path, tmp_path: Path, monkeypatch) -> None:
    from dvc_docker_exec.boundary import sockets

    calls = []
    real = sockets.daemon_socket
    monkeypatch.setattr(sockets, "daemon_socket", lambda p: calls.append(p) or real(p))
    guard = SocketGuard(socket_paths=[str(sock)], mountinfo=str(tmp_path / "none"))
    with sockets.one_scan():
        for _ in range(5):
            assert guard.exposure(str(sock.parent))
    assert len(calls) == 1
    guard.exposure(str(sock.parent))  # outside a scan: looked at again (a restarted daemon has a new inode)
    assert len(calls) == 2

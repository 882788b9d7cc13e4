"""Unit tests for dvc_docker_exec.boundary.paths (no Docker daemon needed).

The Docker fixtures below were captured verbatim (trimmed) on Docker 20.10.24,
cgroup v1, overlay2, from a container started with
``-v /tmp/dde-ws:/workspace -v dde-paths-vol:/data
-v /var/run/docker.sock:/var/run/docker.sock --mount type=tmpfs,destination=/scratch
-v /tmp/dde-ws/sub:/workspace/nested:ro``: its /proc/self/mountinfo,
/proc/self/cgroup, hostname and ``docker inspect --format '{{json .Mounts}}'``.
"""

from __future__ import annotations

import json
import os
import socket

import docker.errors
import pytest
from docker.types import Mount

from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.api.endpoint import Endpoint
from dvc_docker_exec.boundary.paths import HostRootPaths, IdentityPaths, RunnerPaths, container_id_from_cgroup, container_id_from_mountinfo, daemon_beside, detect_host_paths, is_within, normalize, root_filesystem

CID = "ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9"
OTHER = "0ae5d31084d506b6037c2973a2c37935a42fd2d21a96c1e517804d4a987db66c"

DOCKER_MOUNTINFO = """\
73 49 0:39 / / rw,relatime master:2 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/VHN7D7MLPAY6CCAWP2OMOER6QG:/var/lib/docker/overlay2/l/E2M5UOJDZHFQHFW4NQIJCYWVFH,upperdir=/var/lib/docker/overlay2/b5c42ca01cd39b92cabab18f009d60ccf803715e57764e337285e9423d9f8855/diff,workdir=/var/lib/docker/overlay2/b5c42ca01cd39b92cabab18f009d60ccf803715e57764e337285e9423d9f8855/work
74 73 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
78 77 0:46 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755
79 78 0:29 /docker/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9 /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
89 75 0:47 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
90 73 254:0 /tmp/dde-ws /workspace rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
91 73 254:0 /var/lib/docker/volumes/dde-paths-vol/_data /data rw,relatime master:1 - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
92 73 0:48 / /scratch rw,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw
93 90 254:0 /tmp/dde-ws/sub /workspace/nested ro,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
94 73 254:0 /var/lib/docker/containers/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
95 73 254:0 /var/lib/docker/containers/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
96 73 254:0 /var/lib/docker/containers/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
97 73 254:0 /run/docker.sock /var/run/docker.sock rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
50 74 0:42 /bus /proc/bus ro,nosuid,nodev,noexec,relatime - proc proc rw
"""

DOCKER_CGROUP_V1 = """\
9:name=systemd:/docker/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9
8:pids:/docker/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9
4:memory:/docker/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9
1:cpu:/docker/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9
0::/docker/ba9e8d42ddeae96f2278bb92d0b45390894577d7692b436a923f1772bae374c9
"""

DOCKER_HOSTNAME = "ba9e8d42ddea"

DOCKER_MOUNTS = json.loads(
    '[{"Type":"bind","Source":"/tmp/dde-ws/sub","Destination":"/workspace/nested",'
    '"Mode":"ro","RW":false,"Propagation":"rprivate"},'
    '{"Type":"tmpfs","Source":"","Destination":"/scratch","Mode":"","RW":true,'
    '"Propagation":""},'
    '{"Type":"bind","Source":"/tmp/dde-ws","Destination":"/workspace","Mode":"",'
    '"RW":true,"Propagation":"rprivate"},'
    '{"Type":"volume","Name":"dde-paths-vol",'
    '"Source":"/var/lib/docker/volumes/dde-paths-vol/_data","Destination":"/data",'
    '"Driver":"local","Mode":"z","RW":true,"Propagation":""},'
    '{"Type":"bind","Source":"/var/run/docker.sock","Destination":"/var/run/docker.sock",'
    '"Mode":"","RW":true,"Propagation":"rprivate"}]'
)

# The development machine of this project: /.dockerenv exists, but it is not a
# container of the local daemon. cgroup v1 without any container id.
DEV_MACHINE_CGROUP = """\
9:name=systemd:/
4:memory:/process_api/bb72bcd7ac69f428e97b5034843160fa
1:cpu:/
0::/
"""

# Podman layouts (runroot on tmpfs, so the root field is relative to it).
PODMAN_ID = "5e5914d9351994648b28b8b58ba3c67ce06a48ccdd3a52679b82ae4dc693fa53"
PODMAN_ROOTFUL_MOUNTINFO = f"""\
744 735 0:24 /containers/storage/overlay-containers/{PODMAN_ID}/userdata/.containerenv /run/.containerenv rw,relatime - tmpfs tmpfs rw,size=3262508k,mode=755,inode64
745 735 0:24 /containers/storage/overlay-containers/{PODMAN_ID}/userdata/hostname /etc/hostname rw,relatime - tmpfs tmpfs rw,size=3262508k,mode=755,inode64
"""
PODMAN_ROOTLESS_MOUNTINFO = f"""\
965 975 0:47 /containers/overlay-containers/{PODMAN_ID}/userdata/hostname /etc/hostname rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=6257324k,mode=700,uid=1000,gid=1000,inode64
966 975 0:47 /podman/podman.sock /run/docker.sock rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=6257324k,mode=700,uid=1000,gid=1000,inode64
"""


class FakeAPI:
    """Mimics APIClient.inspect_container: full id, unique id prefix or name."""

    def __init__(self, containers: dict[str, dict], names: dict[str, str] | None = None):
        self.containers = containers
        self.names = names or {}
        self.calls: list[str] = []

    def inspect_container(self, ref: str) -> dict:
        self.calls.append(ref)
        if ref in self.names:
            return self.containers[self.names[ref]]
        for full, info in self.containers.items():
            if full.startswith(ref):
                return info
        raise docker.errors.NotFound(f"No such container: {ref}")


class FakeClient:
    def __init__(self, *args, **kwargs):
        self.api = FakeAPI(*args, **kwargs)


def runner_client(mounts=DOCKER_MOUNTS, cid=CID) -> FakeClient:
    return FakeClient({cid: {"Id": cid, "Mounts": mounts}})


def make_root(tmp_path, *, marker=".dockerenv", mountinfo="", cgroup=""):
    if marker:
        (tmp_path / marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / marker).write_text("")
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "mountinfo").write_text(mountinfo)
    (proc / "cgroup").write_text(cgroup)
    return str(tmp_path)


@pytest.fixture
def runner(tmp_path):
    """Translator as detected inside the captured Docker container."""
    root = make_root(tmp_path, mountinfo=DOCKER_MOUNTINFO, cgroup=DOCKER_CGROUP_V1)
    paths = detect_host_paths(
        runner_client(), repo_root="/workspace/repo", root=root, hostname=DOCKER_HOSTNAME
    )
    assert isinstance(paths, RunnerPaths)
    return paths


# ---------------------------------------------------------------- container ids


def test_mountinfo_docker_real_sample():
    assert container_id_from_mountinfo(DOCKER_MOUNTINFO) == CID


@pytest.mark.parametrize("text", [PODMAN_ROOTFUL_MOUNTINFO, PODMAN_ROOTLESS_MOUNTINFO])
def test_mountinfo_podman(text):
    assert container_id_from_mountinfo(text) == PODMAN_ID


def test_mountinfo_rootless_docker_and_escaped_path():
    line = (
        f"612 600 0:31 /home/me\\040x/.local/share/docker/containers/{CID}/hosts "
        "/etc/hosts rw,relatime - btrfs /dev/sda2 rw\n"
    )
    assert container_id_from_mountinfo(line) == CID


@pytest.mark.parametrize(
    "text",
    [
        "",
        # A host sees every container's shm mount; only /etc/{hostname,hosts,
        # resolv.conf} count.
        f"500 29 0:70 / /var/lib/docker/containers/{CID}/mounts/shm rw - tmpfs shm rw\n",
        # A bind mount whose source merely looks like a container dir.
        f"90 73 254:0 /var/lib/docker/containers/{CID} /workspace rw - ext4 /dev/vda rw\n",
        "73 49 0:39 / / rw,relatime - overlay overlay rw\nmalformed\n",
    ],
)
def test_mountinfo_no_id(text):
    assert container_id_from_mountinfo(text) is None


@pytest.mark.parametrize(
    "text",
    [
        DOCKER_CGROUP_V1,
        f"12:cpu:/docker/{CID}",
        f"4:cpuset:/system.slice/docker-{CID}.scope",
        f"0::/docker/{CID}",
        f"0::/system.slice/docker-{CID}.scope",
        f"0::/machine.slice/libpod-{CID}.scope/container",
        f"3:cpu:/libpod_parent/libpod-{CID}",
        f"10:cpu,cpuacct:/docker/{OTHER}/docker/{CID}",  # nested: innermost wins
        f"2:cpu:/docker-ce/docker/{CID}",
        f"8:cpuset:/kubepods/besteffort/pod60070ae4-c63a-11e7-92b3-0adc1ac11520/{CID}",
        f"0::/init.scope\n12:devices:/docker/{CID}",
    ],
)
def test_cgroup_forms(text):
    assert container_id_from_cgroup(text) == CID


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0::/",
        DEV_MACHINE_CGROUP,
        "0::/system.slice/sshd.service",
        f"0::/machine.slice/libpod-conmon-{CID}.scope",  # Podman monitor, not ours
        f"1:cpu:/docker/{CID[:12]}",
    ],
)
def test_cgroup_no_id(text):
    assert container_id_from_cgroup(text) is None


# ---------------------------------------------------------------- pure paths


@pytest.mark.parametrize(
    ("path", "parent", "expected"),
    [
        ("/work", "/work", True),
        ("/work/x/y", "/work", True),
        ("/workspace", "/work", False),
        ("/workspace/x", "/work", False),
        ("/work/", "/work", True),
        ("/work", "/work/", True),
        ("/anything", "/", True),
        ("/", "/work", False),
        ("/work/../etc", "/work", False),
    ],
)
def test_is_within_by_components(path, parent, expected):
    assert is_within(path, parent) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/workspace/repo/", "/workspace/repo"),
        ("//workspace//repo/./data/..", "/workspace/repo"),
        ("/", "/"),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_relative_path_is_a_caller_bug():
    with pytest.raises(ValueError, match="absolute"):
        normalize("workspace/repo")
    with pytest.raises(ValueError):
        IdentityPaths().mount("data")


# ---------------------------------------------------------------- runner mounts


def test_detects_runner_from_real_samples(runner):
    assert runner.container_id == CID
    assert runner.describe() == "runner container ba9e8d42ddea: 5 mounts"


def test_bind_mount_translated(runner):
    assert runner.mount("/workspace/repo") == Mount(
        target="/workspace/repo", source="/tmp/dde-ws/repo", type="bind"
    )
    assert runner.mount("/workspace") == Mount(
        target="/workspace", source="/tmp/dde-ws", type="bind"
    )


def test_trailing_slash_and_dots_normalised(runner):
    m = runner.mount("/workspace//repo/./data/../")
    assert (m["Target"], m["Source"]) == ("/workspace/repo", "/tmp/dde-ws/repo")


def test_deeper_bind_wins_and_keeps_read_only(runner):
    m = runner.mount("/workspace/nested/a/b", read_only=False)
    assert m == Mount(
        target="/workspace/nested/a/b", source="/tmp/dde-ws/sub/a/b", type="bind",
        read_only=True,
    )


def test_sibling_name_is_not_a_nested_mount(runner):
    m = runner.mount("/workspace/nestedX")
    assert m["Source"] == "/tmp/dde-ws/nestedX"
    assert m["ReadOnly"] is False


def test_work_does_not_match_workspace():
    paths = RunnerPaths(
        CID,
        [
            {"Type": "bind", "Source": "/srv/a", "Destination": "/work", "RW": True},
            {"Type": "bind", "Source": "/srv/b", "Destination": "/workspace", "RW": True},
        ],
    )
    assert paths.mount("/workspace/repo")["Source"] == "/srv/b/repo"
    assert paths.mount("/work/repo")["Source"] == "/srv/a/repo"


def test_read_only_requested(runner):
    assert runner.mount("/workspace/repo", read_only=True)["ReadOnly"] is True


def test_named_volume_mounted_whole_at_same_destination(runner):
    m = runner.mount("/data/cache/files", read_only=True)
    assert m == Mount(
        target="/data", source="dde-paths-vol", type="volume", read_only=True,
        no_copy=True,
    )


def test_own_filesystem_is_an_error(runner):
    with pytest.raises(DockerExecError) as exc:
        runner.mount("/home/user/repo")
    msg = str(exc.value)
    assert "'/home/user/repo'" in msg
    assert "own filesystem" in msg
    assert '-v "$PWD:/workspace"' in msg
    assert "docker.host_root" in msg
    assert "\n" not in msg


def test_tmpfs_is_an_error(runner):
    with pytest.raises(DockerExecError, match="tmpfs mount at '/scratch'"):
        runner.mount("/scratch/tmp")


def test_socket_mount_refused(runner):
    with pytest.raises(DockerExecError, match="refusing to mount '/var/run/docker.sock'"):
        runner.mount("/var/run/docker.sock")


def test_socket_on_renamed_destination_refused():
    paths = RunnerPaths(
        CID,
        [{"Type": "bind", "Source": "/run/user/1000/docker.sock",
          "Destination": "/tmp/engine", "RW": True}],
    )
    with pytest.raises(DockerExecError, match="socket"):
        paths.mount("/tmp/engine")


def test_bind_of_host_root_refused():
    # `-v /:/host` in the runner: /host/var/run/docker.sock is the host socket.
    paths = RunnerPaths(CID, [{"Type": "bind", "Source": "/", "Destination": "/host", "RW": True}])
    with pytest.raises(DockerExecError, match="daemon socket"):
        paths.mount("/host")
    with pytest.raises(DockerExecError, match="daemon socket"):
        paths.mount("/host/run")
    assert paths.mount("/host/srv/repo")["Source"] == "/srv/repo"


def test_unix_socket_file_refused(tmp_path):
    sock_path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock_path))
        with pytest.raises(DockerExecError, match="Unix socket"):
            IdentityPaths(root="/").mount(str(sock_path))
    finally:
        server.close()


# ---------------------------------------------------------------- identity


def test_not_in_a_container_is_identity(tmp_path):
    root = make_root(tmp_path, marker=None, mountinfo=DOCKER_MOUNTINFO)
    client = runner_client()
    paths = detect_host_paths(client, repo_root="/srv/repo", root=root, hostname=DOCKER_HOSTNAME)
    assert isinstance(paths, IdentityPaths)
    assert paths.describe() == "identity (not in a container)"
    assert client.api.calls == []
    assert paths.mount("/srv/repo/", read_only=True) == Mount(
        target="/srv/repo", source="/srv/repo", type="bind", read_only=True
    )


def test_identity_refuses_socket_and_its_parents():
    for path in ("/var/run/docker.sock", "/run", "/var/run", "/"):
        with pytest.raises(DockerExecError, match="socket"):
            IdentityPaths().mount(path)


def test_dockerenv_but_unknown_to_daemon_is_identity(tmp_path, caplog):
    # The dev machine: /.dockerenv, no id in mountinfo/cgroup, hostname "vm".
    # The daemon even has a container *named* vm: it must not be picked.
    root = make_root(tmp_path, mountinfo="73 49 0:39 / / rw - overlay overlay rw\n",
                     cgroup=DEV_MACHINE_CGROUP)
    client = FakeClient({OTHER: {"Id": OTHER, "Mounts": []}}, names={"vm": OTHER})
    with caplog.at_level("DEBUG", logger="dvc"):
        paths = detect_host_paths(client, repo_root="/work/main", root=root, hostname="vm")
    assert isinstance(paths, IdentityPaths)
    assert client.api.calls == []
    assert paths.mount("/work/main")["Source"] == "/work/main"
    assert "identity" in caplog.text


def test_id_found_but_daemon_says_not_found_is_identity(tmp_path):
    root = make_root(tmp_path, mountinfo=DOCKER_MOUNTINFO, cgroup=DOCKER_CGROUP_V1)
    client = FakeClient({OTHER: {"Id": OTHER, "Mounts": []}})
    paths = detect_host_paths(client, repo_root="/workspace/repo", root=root,
                              hostname=DOCKER_HOSTNAME)
    assert isinstance(paths, IdentityPaths)
    assert CID in paths.describe()
    # mountinfo and cgroup gave the same id: asked once, then the hostname.
    assert client.api.calls == [CID, DOCKER_HOSTNAME]


# ---------------------------------------------------------------- detection order


def test_cgroup_used_when_mountinfo_id_unknown(tmp_path):
    root = make_root(tmp_path, mountinfo=DOCKER_MOUNTINFO.replace(CID, OTHER),
                     cgroup=DOCKER_CGROUP_V1)
    client = runner_client()
    paths = detect_host_paths(client, repo_root="/workspace/repo", root=root, hostname="x")
    assert isinstance(paths, RunnerPaths)
    assert client.api.calls == [OTHER, CID]


def test_hostname_fallback(tmp_path):
    # Private cgroup namespace and no id file mounts: only the hostname is left.
    root = make_root(tmp_path, mountinfo="", cgroup="0::/\n")
    client = runner_client()
    paths = detect_host_paths(client, repo_root="/workspace/repo", root=root,
                              hostname=DOCKER_HOSTNAME)
    assert isinstance(paths, RunnerPaths)
    assert paths.container_id == CID
    assert client.api.calls == [DOCKER_HOSTNAME]


def test_hostname_resolving_to_another_id_is_rejected(tmp_path):
    root = make_root(tmp_path, mountinfo="", cgroup="0::/\n")

    class Api(FakeAPI):
        def inspect_container(self, ref):
            self.calls.append(ref)
            return {"Id": OTHER, "Mounts": []}

    client = FakeClient({})
    client.api = Api({})
    paths = detect_host_paths(client, repo_root="/r", root=root, hostname="abcdef012345")
    assert isinstance(paths, IdentityPaths)


def test_podman_marker_and_mountinfo(tmp_path):
    root = make_root(tmp_path, marker="run/.containerenv",
                     mountinfo=PODMAN_ROOTLESS_MOUNTINFO, cgroup="0::/\n")
    mounts = [{"Type": "volume", "Name": "proj", "Source": "/x/_data",
               "Destination": "/workspace", "RW": True}]
    paths = detect_host_paths(runner_client(mounts, PODMAN_ID), repo_root="/workspace",
                              root=root, hostname="podman-host")
    assert isinstance(paths, RunnerPaths)
    assert paths.mount("/workspace/repo")["Source"] == "proj"


def test_api_error_other_than_not_found_is_reported(tmp_path):
    root = make_root(tmp_path, mountinfo=DOCKER_MOUNTINFO)

    class Api(FakeAPI):
        def inspect_container(self, ref):
            raise docker.errors.APIError("403 Client Error", explanation="forbidden")

    client = FakeClient({})
    client.api = Api({})
    with pytest.raises(DockerExecError, match="forbidden.*docker.host_root"):
        detect_host_paths(client, repo_root="/workspace", root=root, hostname="x")
    # From the hostname alone (weak evidence) an API error just means identity.
    bare = make_root(tmp_path / "bare")
    paths = detect_host_paths(client, repo_root="/workspace", root=bare, hostname="abcdef012345")
    assert isinstance(paths, IdentityPaths)


# ---------------------------------------------------------------- host_root override


def test_host_root_override_skips_detection(tmp_path):
    root = make_root(tmp_path, mountinfo=DOCKER_MOUNTINFO, cgroup=DOCKER_CGROUP_V1)
    client = runner_client()
    paths = detect_host_paths(client, repo_root="/workspace/repo/", host_root="/home/me/proj/",
                              root=root, hostname=DOCKER_HOSTNAME)
    assert isinstance(paths, HostRootPaths)
    assert client.api.calls == []
    assert paths.describe() == "docker.host_root: /workspace/repo -> /home/me/proj on the host"
    assert paths.mount("/workspace/repo/data", read_only=True) == Mount(
        target="/workspace/repo/data", source="/home/me/proj/data", type="bind",
        read_only=True,
    )
    assert paths.mount("/workspace/repo")["Source"] == "/home/me/proj"
    # Outside the repo (and /workspace/repository is NOT inside it): identity.
    assert paths.mount("/workspace/repository")["Source"] == "/workspace/repository"
    assert paths.mount("/cache")["Source"] == "/cache"


def test_host_root_must_be_absolute():
    with pytest.raises(DockerExecError, match="docker.host_root 'proj'"):
        detect_host_paths(runner_client(), repo_root="/workspace", host_root="proj")


def test_host_root_cannot_expose_socket():
    paths = HostRootPaths("/workspace", "/")
    with pytest.raises(DockerExecError, match="daemon socket"):
        paths.mount("/workspace")


# ------------------------------------------------- translated mounts, deduped by spec


def test_paths_on_one_volume_merge_into_one_mount_rw_wins(runner):
    from dvc_docker_exec.types.mounts import dedupe_mounts

    mounts = [
        runner.mount("/workspace/repo"),
        runner.mount("/data/cache", read_only=True),
        runner.mount("/data/outs"),
        runner.mount("/data/more", read_only=True),
    ]
    merged = dedupe_mounts(mounts)
    assert [m["Target"] for m in merged] == ["/data", "/workspace/repo"]
    assert merged[0]["ReadOnly"] is False


def test_two_sources_for_one_target_conflict():
    from dvc_docker_exec.types.mounts import dedupe_mounts

    with pytest.raises(DockerExecError, match="conflicting mounts for '/x'"):
        dedupe_mounts([Mount(target="/x", source="/a", type="bind"), Mount(target="/x", source="/b", type="bind")])


# ------------------------------------------------- the endpoint in use (issue 9)


# (the endpoint's socket folder, by identity: tests/unit/test_sockets.py and
# tests/integration/test_attack_mounts.py with a real DOCKER_HOST socket)


def test_runner_refuses_host_source_of_the_endpoint_socket():
    # runner: the endpoint socket /engine/api.sock is a bind of the host's
    # /srv/podman/podman.sock; /data is a bind of /srv (its parent on the host)
    paths = RunnerPaths(
        CID,
        [
            {"Type": "bind", "Source": "/srv/podman/podman.sock", "Destination": "/engine/api.sock", "RW": True},
            {"Type": "bind", "Source": "/srv", "Destination": "/data", "RW": True},
        ],
    )
    with pytest.raises(DockerExecError, match="socket"):
        paths.mount("/engine/api.sock")
    with pytest.raises(DockerExecError, match="/srv/podman/podman.sock"):
        paths.mount("/data/podman")
    assert paths.mount("/data/repo")["Source"] == "/srv/repo"


# ---------------------------------------------------------------- the daemon beside DVC
# This machine: /.dockerenv, and dockerd runs in the same container (same PID,
# mount and network namespaces). Rootless dockerd: its own mount and network
# namespaces over the same root. The socket pattern: the daemon's root is the
# host's, ours the container's overlay.

HOST_ROOT_LINE = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
OVERLAY_ROOT_LINE = "73 49 0:39 / / rw - overlay overlay rw\n"
UNIX_HEADER = "Num       RefCount Protocol Flags    Type St Inode Path\n"


def unix_line(path, listening=True, inode=4242):
    flags = "00010000" if listening else "00000000"
    return f"0000000000000000: 00000002 00000000 {flags} 0001 01 {inode} {path}\n"


def add_process(root, pid, program, *, mountinfo, sockets=(), holds=None):
    """A fake /proc/<pid>; `holds`: the socket inodes in its fd folder (None: no fd folder, not ours to read)."""
    folder = root / "proc" / str(pid)
    (folder / "net").mkdir(parents=True)
    (folder / "comm").write_text(program + "\n")
    (folder / "mountinfo").write_text(mountinfo)
    (folder / "net" / "unix").write_text(UNIX_HEADER + "".join(unix_line(s) for s in sockets))
    if holds is not None:
        (folder / "fd").mkdir()
        for number, inode in enumerate(holds, start=3):
            os.symlink(f"socket:[{inode}]", folder / "fd" / str(number))


def local(path="/var/run/docker.sock"):
    return Endpoint(f"unix://{path}", "the default socket")


def test_root_filesystem_last_mount_over_root_wins():
    assert root_filesystem(HOST_ROOT_LINE) == ("254:0", "/")
    assert root_filesystem(HOST_ROOT_LINE + OVERLAY_ROOT_LINE) == ("0:39", "/")
    assert root_filesystem("22 27 0:21 / /proc rw - proc proc rw\n") is None


def test_daemon_in_our_container_is_beside_no_warning(tmp_path):
    root = make_root(tmp_path, mountinfo=HOST_ROOT_LINE, cgroup=DEV_MACHINE_CGROUP)
    add_process(tmp_path, 1743, "dockerd", mountinfo=HOST_ROOT_LINE, sockets=["/var/run/docker.sock"])
    add_process(tmp_path, 1800, "containerd", mountinfo=HOST_ROOT_LINE, sockets=["/run/containerd/containerd.sock"])
    client = FakeClient({})
    paths = detect_host_paths(client, repo_root="/work/main", root=root, hostname="vm", endpoint=local())
    assert isinstance(paths, IdentityPaths) and paths.beside
    assert "dockerd, pid 1743" in paths.describe()
    assert paths.mount("/work/main")["Source"] == "/work/main"


def test_rootless_daemon_own_namespaces_same_root_is_beside(tmp_path):
    root = make_root(tmp_path, mountinfo=HOST_ROOT_LINE)
    rootless = HOST_ROOT_LINE.replace("27 1 ", "55 54 ")  # its own mount namespace: other mount ids
    add_process(tmp_path, 24217, "dockerd", mountinfo=rootless, sockets=["/run/user/1002/docker.sock"])
    assert daemon_beside("/run/user/1002/docker.sock", root) == ("24217", "dockerd")
    assert daemon_beside("/var/run/docker.sock", root) is None  # not the endpoint it listens at


@pytest.mark.parametrize("readable", [True, False], ids=["fds-readable", "fds-not-ours"])
def test_the_daemon_beside_is_the_process_holding_the_socket_not_a_neighbour_in_its_namespace(tmp_path, readable):
    """net/unix is the network namespace's: rootlesskit's parent and containerd, in dockerd's namespace,
    list dockerd's socket too (seen here: doctor named rootlesskit while a rootless engine ran)."""
    root = make_root(tmp_path, mountinfo=HOST_ROOT_LINE)
    listening = ["/var/run/docker.sock"]  # inode 4242 (unix_line)
    add_process(tmp_path, 1201, "rootlesskit", mountinfo=HOST_ROOT_LINE, sockets=listening, holds=[77] if readable else None)
    add_process(tmp_path, 1300, "containerd", mountinfo=HOST_ROOT_LINE, sockets=listening, holds=[78] if readable else None)
    add_process(tmp_path, 1743, "dockerd", mountinfo=HOST_ROOT_LINE, sockets=listening, holds=[4242] if readable else None)
    assert daemon_beside("/var/run/docker.sock", root) == ("1743", "dockerd")


def test_socket_pattern_with_host_pids_is_not_beside(tmp_path):
    # `docker run --pid host --network host -v /var/run/docker.sock:...`: the host's dockerd is
    # visible and listens at the same path, but on the host's root, not our overlay
    root = make_root(tmp_path, mountinfo=OVERLAY_ROOT_LINE, cgroup=DEV_MACHINE_CGROUP)
    add_process(tmp_path, 1743, "dockerd", mountinfo=HOST_ROOT_LINE, sockets=["/var/run/docker.sock"])
    paths = detect_host_paths(FakeClient({}), repo_root="/work/main", root=root, hostname="vm", endpoint=local())
    assert isinstance(paths, IdentityPaths) and not paths.beside
    assert "does not know" in paths.describe()


@pytest.mark.parametrize(
    "program, sockets, endpoint",
    [
        ("socat", ["/var/run/docker.sock"], local()),  # not an engine: a proxy, the daemon may be anywhere
        ("dockerd", ["/var/run/other.sock"], local()),  # an engine, but not at our endpoint
        ("dockerd", [], local()),  # its socket is not listening (a connected socket only)
        ("dockerd", ["/var/run/docker.sock"], Endpoint("tcp://10.0.0.1:2375", "DOCKER_HOST")),  # remote
    ],
)
def test_marker_and_daemon_elsewhere_still_warns(tmp_path, program, sockets, endpoint):
    root = make_root(tmp_path, mountinfo=HOST_ROOT_LINE, cgroup=DEV_MACHINE_CGROUP)
    add_process(tmp_path, 1743, program, mountinfo=HOST_ROOT_LINE, sockets=sockets)
    if not sockets:
        (tmp_path / "proc" / "1743" / "net" / "unix").write_text(UNIX_HEADER + unix_line("/var/run/docker.sock", False))
    paths = detect_host_paths(FakeClient({}), repo_root="/work/main", root=root, hostname="vm", endpoint=endpoint)
    assert isinstance(paths, IdentityPaths) and not paths.beside


def test_daemon_knows_our_id_wins_over_beside(tmp_path):
    # a container of the daemon is translated, whatever else /proc shows
    root = make_root(tmp_path, mountinfo=DOCKER_MOUNTINFO, cgroup=DOCKER_CGROUP_V1)
    add_process(tmp_path, 1743, "dockerd", mountinfo=DOCKER_MOUNTINFO, sockets=["/var/run/docker.sock"])
    paths = detect_host_paths(runner_client(), repo_root="/workspace/repo", root=root,
                              hostname=DOCKER_HOSTNAME, endpoint=local())
    assert isinstance(paths, RunnerPaths)

"""Container options (issue 21) against the real engine: each one reaches the container, or is refused.

What the stage sees is read from the kernel inside the container
(/proc/self/status, /proc/self/limits, /proc/self/mounts, /dev, /etc/hosts,
the pids cgroup), never from what we asked for.
"""

from __future__ import annotations

import os
import re
import shlex

import pytest

from tests.conftest import made_first, commit_all, refused, write_dvc_yaml

pytestmark = pytest.mark.docker

CAP_SYS_ADMIN, CAP_NET_RAW, CAP_MKNOD = 21, 13, 27


def capabilities(status: str, which: str) -> int:
    return int(re.search(rf"^{which}:\s*([0-9a-f]+)$", status, re.M).group(1), 16)


PROBE = " ; ".join(
    [
        "cat /proc/self/status > status.txt",
        "cat /proc/self/limits > limits.txt",
        "readlink /proc/self/ns/ipc > ipc.txt",
        "cat /proc/self/mounts > mounts.txt",
        "cat /etc/hosts > hosts.txt",
        "(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max) > pids.txt",
        "ls -l /dev > dev.txt",
        "(touch /written-to-root 2>ro-err.txt && echo ROOT-WRITABLE || echo ROOT-READ-ONLY) > ro.txt",
        "touch /tmp/t \"$HOME/h\" && echo TMP-AND-HOME-WRITABLE >> ro.txt",
    ]
)


def test_machine_options_reach_the_container(repo, docker_client):
    """Every key set on this machine (dvc config --local), read back inside the container."""
    settings = {
        "cap_add": "SYS_ADMIN",
        "cap_drop": "NET_RAW,MKNOD",
        "ipc": "host",
        "ulimits": "nofile=256:512,core=0",  # lowered: no CAP_SYS_RESOURCE needed (Podman, rootless)
        "tmpfs": "/scratch:size=8m,mode=700",
        "extra_hosts": "db.internal:10.0.0.5,gw.internal:host-gateway",
        "pids_limit": "77",
        "runtime": "runc",
        "read_only": "true",
        "devices": "/dev/null:/dev/dde-null:r",
        "platform": "linux/amd64",
    }
    for key, value in settings.items():
        repo.config(f"docker.{key}", value, local=True)
    repo.stage_add("-n", "probe", PROBE)
    proc = repo.dvc("repro", "-v")

    status = repo.read("status.txt")
    bounding = capabilities(status, "CapBnd")
    assert bounding & (1 << CAP_SYS_ADMIN), status
    assert not bounding & (1 << CAP_NET_RAW) and not bounding & (1 << CAP_MKNOD), status
    limits = repo.read("limits.txt")
    assert re.search(r"^Max open files\s+256\s+512\s+files", limits, re.M), limits
    assert re.search(r"^Max core file size\s+0\s+0\s+bytes", limits, re.M), limits
    assert repo.read("ipc.txt").strip() == os.readlink("/proc/self/ns/ipc")  # the host's IPC namespace
    scratch = [line.split() for line in repo.read("mounts.txt").splitlines() if line.split()[1] == "/scratch"]
    assert scratch and scratch[0][2] == "tmpfs" and "size=8192k" in scratch[0][3] and "mode=700" in scratch[0][3]
    hosts = repo.read("hosts.txt")
    assert re.search(r"^10\.0\.0\.5\s+db\.internal$", hosts, re.M), hosts
    assert re.search(r"^\d+\.\d+\.\d+\.\d+\s+gw\.internal$", hosts, re.M), hosts  # host-gateway resolved
    assert repo.read("pids.txt").strip() == "77"
    assert re.search(r"^cr--------?\s.*\s1,\s+3\s.*dde-null$|^c.*1,\s+3 .*dde-null$", repo.read("dev.txt"), re.M)
    assert repo.read("ro.txt").split() == ["ROOT-READ-ONLY", "TMP-AND-HOME-WRITABLE"]
    assert "Read-only file system" in repo.read("ro-err.txt")

    # the same options, as the docker run line shown with -v
    line = next(row for row in (proc.stdout + proc.stderr).splitlines() if "docker run --rm" in row)
    args = shlex.split(line[line.index("docker run") :])
    for flag, value in [
        ("--cap-add", "SYS_ADMIN"), ("--cap-drop", "NET_RAW"), ("--cap-drop", "MKNOD"), ("--ipc", "host"),
        ("--ulimit", "nofile=256:512"), ("--ulimit", "core=0:0"), ("--add-host", "db.internal:10.0.0.5"),
        ("--add-host", "gw.internal:host-gateway"), ("--pids-limit", "77"), ("--runtime", "runc"),
        ("--device", "/dev/null:/dev/dde-null:r"), ("--platform", "linux/amd64"),
        ("--mount", f"type=tmpfs,target=/scratch,tmpfs-size={8 * 1024**2},tmpfs-mode=700"),
    ]:
        assert any(args[i : i + 2] == [flag, value] for i in range(len(args))), (flag, value, line)
    assert "--read-only" in args


def test_the_pasted_run_line_makes_the_same_container(repo, docker_client):
    """The run line of --dry, pasted into a shell, gives the container the same options."""
    repo.config("docker.read_only", "true", local=True)
    repo.config("docker.ulimits", "nofile=128:256", local=True)
    repo.config("docker.cap_drop", "ALL", local=True)
    repo.stage_add("-n", "probe", "cat /proc/self/limits /proc/self/status > pasted.txt; touch /x || true")
    dry = repo.dvc("repro", "--dry").stdout
    line = next(row for row in dry.splitlines() if row.startswith("docker run"))
    made_first(dry, repo.path)  # --dry makes nothing on disk; the folders a run makes first, it names
    repo.run("sh", "-c", line)
    text = repo.read("pasted.txt")
    assert re.search(r"^Max open files\s+128\s+256", text, re.M)
    assert capabilities(text, "CapBnd") == 0


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"cap_add": "SYS_ADMIN"}, "cap_add"),
        ({"devices": "/dev/fuse"}, "devices"),
        ({"ipc": "host"}, "ipc"),
        ({"runtime": "runc"}, "runtime"),
        ({"extra_hosts": "pypi.org:10.9.9.9"}, "extra_hosts"),
        ({"ulimits": "nofile=-1"}, "ulimits"),
    ],
)
def test_hostile_dvc_yaml_cannot_widen_with_container_options(repo, meta, key):
    write_dvc_yaml(repo, {"evil": {"cmd": "id > seen.txt", "meta": {"docker": meta}}})
    commit_all(repo)
    error = refused(repo)
    assert f"stage 'evil': docker.{key} from dvc.yaml (meta.docker)" in error, error
    assert "dvc config --local docker.allow_repo_settings true" in error


def test_hostile_committed_config_cannot_undo_the_machines_narrowing(repo):
    # --global: the repository's .dvc/config shadows it (DVC's order: system, global, repo, local)
    repo.dvc("config", "--global", "docker.cap_drop", "NET_RAW")
    repo.config("docker.cap_drop", "MKNOD")  # the repo level: .dvc/config, committed
    write_dvc_yaml(repo, {"s": {"cmd": "id > seen.txt"}})
    commit_all(repo)
    error = refused(repo)
    assert "docker.cap_drop from the repository's .dvc/config keeps capabilities this machine drops (NET_RAW)" in error


def test_the_repository_may_narrow(repo):
    write_dvc_yaml(repo, {"s": {
        "cmd": "grep CapBnd /proc/self/status > caps.txt; cat /sys/fs/cgroup/pids/pids.max > pids.txt",
        "meta": {"docker": {"cap_drop": ["ALL"], "pids_limit": 20, "read_only": True, "ulimits": ["nofile=64"]}},
    }})
    commit_all(repo)
    repo.dvc("repro")
    assert capabilities(repo.read("caps.txt"), "CapBnd") == 0
    assert repo.read("pids.txt").strip() == "20"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        # the socket rule for devices (option_mounts.refuse_socket_device)
        ("devices", "/var/run/docker.sock:/dev/sock", "refusing docker.devices '/var/run/docker.sock:/dev/sock:rwm'"),
        ("platform", "linux/arm64", "is linux/amd64 here, but docker.platform asks for linux/arm64: pull it for that "
         "platform (`docker pull --platform linux/arm64"),
        ("runtime", "dde-no-such-runtime", "cannot create the container for 'id > seen.txt': "),
    ],
    ids=["socket-as-device", "platform-under-pull-never", "unknown-runtime"],
)
def test_a_machine_value_that_cannot_work_is_one_line_before_the_stage_runs(repo, key, value, expected):
    repo.config(f"docker.{key}", value, local=True)
    write_dvc_yaml(repo, {"s": {"cmd": "id > seen.txt"}})
    error = refused(repo)
    assert expected in error and value.split(":")[0] in error, error


def test_read_only_root_for_a_user_without_a_passwd_entry(repo):
    """A non-root uid (the usual case: the invoking user) keeps a writable /tmp and HOME under read_only."""
    repo.config("docker.user", "4343:4343", local=True)
    repo.config("docker.read_only", "true", local=True)
    cmd = 'touch /tmp/a "$HOME/b" && echo WRITABLE-$(id -u); touch /x 2>/dev/null || echo ROOT-READ-ONLY'
    repo.stage_add("-n", "s", cmd)
    out = repo.dvc("repro").stdout.splitlines()
    assert "WRITABLE-4343" in out and "ROOT-READ-ONLY" in out, out

"""Unit tests for dvc_docker_exec.stage.trust: repository settings may not widen host access."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

import pytest

from dvc_docker_exec.config import DockerSettings, SettingError
from dvc_docker_exec.stage.trust import Invoker, check, same_user


def settings(repo: dict, meta: Optional[dict] = None, machine: Optional[dict] = None) -> DockerSettings:
    levels = [("local", {"image": "busybox", **(machine or {})}), ("repo", repo)]
    return DockerSettings.from_levels(levels).override(meta, "train")


@pytest.fixture
def invoker(tmp_path: Path) -> Invoker:
    git_root = tmp_path / "git"
    (git_root / "project").mkdir(parents=True)
    return Invoker(uid=1000, gid=1000, roots=(str(git_root / "project"), str(git_root)))


@pytest.mark.parametrize(
    ("repo", "meta", "key", "where"),
    [
        ({"volumes": "/etc:/x"}, None, "volumes", "the repository's .dvc/config"),
        ({}, {"volumes": "/proc/self/root:/host"}, "volumes", r"dvc.yaml \(meta.docker\)"),
        ({}, {"volumes": "../..:/up"}, "volumes", "dvc.yaml"),
        ({}, {"user": "0:0"}, "user", "dvc.yaml"),
        ({"user": "1000"}, None, "user", ".dvc/config"),  # group 0 in most images
        ({}, {"user": "root"}, "user", "dvc.yaml"),
        ({}, {"user": "1001:1000"}, "user", "dvc.yaml"),
        ({}, {"network": "container:abc"}, "network", "dvc.yaml"),
        ({"network": "backend"}, None, "network", ".dvc/config"),
        ({"host_root": "/"}, None, "host_root", ".dvc/config"),
    ],
)
def test_repository_settings_that_widen_are_refused(invoker, repo, meta, key, where) -> None:
    with pytest.raises(SettingError) as info:
        check(settings(repo, meta), "train", invoker)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"stage 'train': docker.{key} from ")
    assert re.search(where, text), text
    assert "dvc config --local docker.allow_repo_settings true" in text


@pytest.mark.parametrize(
    ("repo", "meta"),
    [
        ({"volumes": "data:/data:ro"}, None),  # inside the repo
        ({}, {"volumes": "..:/git"}),  # the Git root (dvc init --subdir)
        ({}, {"user": "1000:1000"}),
        ({}, {"network": "none", "memory": "1g", "cpus": "0.5", "image": "other", "env": "HF_TOKEN"}),
        ({"network": "bridge", "gpus": "all"}, None),
    ],
)
def test_repository_settings_that_do_not_widen_pass(invoker, repo, meta) -> None:
    check(settings(repo, meta), "train", invoker)


def test_symlink_in_the_repository_is_judged_by_what_it_resolves_to(invoker) -> None:
    os.symlink("/", os.path.join(invoker.roots[0], "rootlink"))
    with pytest.raises(SettingError, match=r"mounts 'rootlink' \(on the host: '/'\) from outside the repository"):
        check(settings({}, {"volumes": "rootlink:/v"}), "train", invoker)


@pytest.mark.parametrize("level", ["local", "global", "system"])
def test_machine_levels_may_widen(invoker, level) -> None:
    widening = {"volumes": "/etc:/x", "user": "0:0", "network": "backend", "host_root": "/srv"}
    check(DockerSettings.from_levels([(level, {"image": "busybox", **widening})]), "train", invoker)


def test_the_machine_may_allow_repository_settings(invoker) -> None:
    allowed = settings({"volumes": "/etc:/x"}, {"user": "0:0"}, machine={"allow_repo_settings": "true"})
    check(allowed, "train", invoker)


def test_the_repository_cannot_allow_itself(invoker) -> None:
    with pytest.raises(SettingError, match=r"docker.allow_repo_settings from the repository's .dvc/config: a repository cannot allow"):
        check(settings({"allow_repo_settings": "true"}), "train", invoker)


def test_a_machine_value_shadowed_by_the_repository_is_judged_as_the_repository_s(invoker) -> None:
    levels = [("global", {"image": "b", "volumes": "/data:/data"}), ("repo", {"volumes": "/etc:/data"})]
    with pytest.raises(SettingError, match="'/etc'"):
        check(DockerSettings.from_levels(levels), "train", invoker)


@pytest.mark.parametrize(
    ("user", "uid", "gid", "same"),
    [
        (None, 1000, 1000, True),
        ("1000:1000", 1000, 1000, True),
        ("1000", 1000, 1000, False),
        ("0:0", 0, 0, True),
        ("root", 0, 0, True),
        ("root:root", 0, 0, True),
        ("0", 0, 0, True),
        ("0:0", 1000, 1000, False),
        ("1000:0", 1000, 1000, False),
        ("me:me", 1000, 1000, False),
    ],
)
def test_same_user(user, uid, gid, same) -> None:
    assert same_user(user, uid, gid) is same


@pytest.mark.parametrize(
    ("key", "value"), [("user", "0:0"), ("volumes", "/etc:/hostetc"), ("allow_repo_settings", "true"), ("host_root", "/")]
)
def test_a_tracked_machine_file_is_the_repositorys(invoker, key, value) -> None:
    """issue 16, P1: `git add -f .dvc/config.local` makes it repository-supplied, whatever its name."""
    levels = [("local", {"image": "busybox"}), ("tracked:/r/sub/.dvc/config.local", {key: value})]
    with pytest.raises(SettingError) as info:
        check(DockerSettings.from_levels(levels), "train", invoker)
    text = str(info.value)
    assert "\n" not in text and f"docker.{key} from '/r/sub/.dvc/config.local', which Git tracks" in text


def test_tracked_files_asks_git(tmp_path: Path) -> None:
    import subprocess

    from dvc_docker_exec.stage.settings import tracked_files

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "sub" / ".dvc").mkdir(parents=True)
    tracked, untracked = tmp_path / "sub" / ".dvc" / "config.local", tmp_path / "sub" / ".dvc" / "config"
    tracked.write_text("x")
    untracked.write_text("y")
    subprocess.run(["git", "-C", str(tmp_path), "add", "-f", str(tracked)], check=True)
    outside = "/etc/xdg/dvc/config"
    assert tracked_files(str(tmp_path), [str(tracked), str(untracked), outside]) == {str(tracked)}

# --- container options (issue 21) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("meta", "key", "why"),
    [
        ({"devices": "/dev/fuse"}, "devices", "gives the stage host devices \\('/dev/fuse:/dev/fuse:rwm'\\)"),
        ({"cap_add": "SYS_ADMIN"}, "cap_add", "capabilities \\('SYS_ADMIN'\\)"),
        ({"runtime": "runsc"}, "runtime", "another container runtime \\('runsc'\\)"),
        ({"extra_hosts": "pypi.org:10.0.0.1"}, "extra_hosts", "shadow DNS \\('pypi.org:10.0.0.1'\\)"),
        ({"ipc": "host"}, "ipc", "the host's IPC namespace"),
        ({"ulimits": "nofile=-1"}, "ulimits", "raises ulimit nofile to unlimited"),
    ],
)
def test_repository_container_options_that_widen_are_refused(invoker, meta, key, why) -> None:
    with pytest.raises(SettingError) as info:
        check(settings({}, meta), "train", invoker)
    text = str(info.value)
    assert text.startswith(f"stage 'train': docker.{key} from dvc.yaml (meta.docker) ")
    assert re.search(why, text), text
    assert "docker.allow_repo_settings true" in text


@pytest.mark.parametrize(
    ("machine", "repo", "why"),
    [
        ({"cap_drop": "NET_RAW, MKNOD"}, {"cap_drop": "MKNOD"}, "keeps capabilities this machine drops \\(NET_RAW\\)"),
        ({"read_only": "true"}, {"read_only": "false"}, "makes the root file system writable"),
        ({"pids_limit": "64"}, {"pids_limit": "1000"}, "raises the process limit to 1000 \\(this machine's: 64\\)"),
        ({"ulimits": "memlock=1024"}, {"ulimits": "memlock=2048"}, "raises ulimit memlock to 2048 \\(at most 1024"),
        ({"ulimits": "nproc=100"}, {"ulimits": "nofile=64"}, "leaves out ulimits this machine sets \\(nproc\\)"),
    ],
)
def test_the_repository_cannot_undo_this_machines_narrowing(invoker, machine, repo, why) -> None:
    with pytest.raises(SettingError, match=why):
        check(settings(repo, machine=machine), "train", invoker)


@pytest.mark.parametrize(
    ("repo", "machine"),
    [
        ({"cap_drop": "ALL", "read_only": "true", "pids_limit": "32", "ulimits": "nofile=64, core=0"}, None),
        ({"cap_drop": "NET_RAW, MKNOD"}, {"cap_drop": "NET_RAW"}),
        ({"cap_drop": "ALL"}, {"cap_drop": "NET_RAW"}),
        ({"pids_limit": "10"}, {"pids_limit": "64"}),
        ({"ulimits": "memlock=1024"}, {"ulimits": "memlock=-1"}),
        ({"ipc": "private", "platform": "linux/arm64", "tmpfs": "/scratch:size=1g"}, None),
        # exactly what this machine configures is not a widening
        ({"cap_add": "SYS_ADMIN", "devices": "/dev/fuse"}, {"cap_add": "SYS_ADMIN", "devices": "/dev/fuse"}),
    ],
)
def test_the_repository_may_narrow(invoker, repo, machine) -> None:
    check(settings(repo, machine=machine), "train", invoker)


def test_a_ulimit_is_judged_against_the_invoking_process(invoker) -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    check(settings({"ulimits": f"nofile={hard}"}), "train", invoker)
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(SettingError, match=f"raises ulimit nofile to {hard + 1} \\(at most {hard} here\\)"):
            check(settings({"ulimits": f"nofile={hard + 1}"}), "train", invoker)


@pytest.mark.parametrize("level", ["local", "global", "system"])
def test_machine_levels_may_set_every_container_option(invoker, level) -> None:
    options = {"devices": "/dev/fuse", "cap_add": "SYS_ADMIN", "ipc": "host", "ulimits": "memlock=-1",
               "extra_hosts": "db:10.0.0.1", "runtime": "runsc"}
    check(DockerSettings.from_levels([(level, {"image": "busybox", **options})]), "train", invoker)


def test_allowed_repository_may_widen_with_container_options(invoker) -> None:
    allowed = settings({}, {"cap_add": "SYS_ADMIN", "devices": "/dev/fuse"}, machine={"allow_repo_settings": "true"})
    check(allowed, "train", invoker)

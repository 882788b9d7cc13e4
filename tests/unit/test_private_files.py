"""private_files (issue 16, P6): the plugin's own writes are never redirected by what a stage planted."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dvc_docker_exec.boundary import private_files as pf


def test_replace_file_replaces_a_planted_link_and_leaves_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    target = tmp_path / "dvc.docker.lock"
    target.symlink_to(victim)
    pf.replace_file(str(target), b"record\n", staging=str(tmp_path / "priv"))
    assert not target.is_symlink() and target.read_text() == "record\n"
    assert victim.read_text() == "mine"
    assert os.listdir(tmp_path / "priv") == []  # the private folder is removed after use


def test_replace_file_ignores_links_and_fifos_at_the_old_temp_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    target = tmp_path / "dvc.docker.lock"
    (tmp_path / f"dvc.docker.lock.{os.getpid()}.tmp").symlink_to(victim)
    os.mkfifo(tmp_path / f".dvc.docker.lock.{os.getpid()}.tmp")
    pf.replace_file(str(target), b"record\n")  # no staging: next to the target, random name
    assert target.read_text() == "record\n" and victim.read_text() == "mine"


def test_replace_file_honours_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        pf.replace_file(str(tmp_path / "f"), b"x", staging=str(tmp_path / "priv"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "f").st_mode) == 0o640


def test_read_own_file_refuses_a_link_and_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "victim").write_text("secret")
    (tmp_path / "link").symlink_to(tmp_path / "victim")
    os.mkfifo(tmp_path / "fifo")
    assert pf.read_own_file(str(tmp_path / "absent")) is None
    with pytest.raises(pf.UnsafePathError, match="a symlink to"):
        pf.read_own_file(str(tmp_path / "link"))
    with pytest.raises(pf.UnsafePathError, match="a special file"):
        pf.read_own_file(str(tmp_path / "fifo"))  # would block without O_NONBLOCK


def test_private_folder_refuses_a_planted_link_and_writes_nothing_there(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "docker-exec").symlink_to(elsewhere)
    with pytest.raises(pf.UnsafePathError, match="symlink"):
        with pf.private_folder(str(tmp_path / "docker-exec")):
            pass
    assert os.listdir(elsewhere) == []


def test_the_lease_folder_refuses_a_planted_link_too(tmp_path: Path) -> None:
    """The lease and the config copies share one locked-folder maker (LockedFolder): P6 holds for both."""
    from dvc_docker_exec.backends import lease

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "docker-exec").symlink_to(elsewhere)
    with pytest.raises(pf.UnsafePathError, match="symlink"):
        lease.hold(str(tmp_path / "docker-exec"))
    assert os.listdir(elsewhere) == []


def test_a_locked_folder_is_removed_once(tmp_path: Path) -> None:
    folder = pf.LockedFolder(str(tmp_path / "docker-exec"), "lease-")
    assert os.path.basename(folder.path).startswith(f"{os.getpid()}-lease-") and os.path.isdir(folder.path)
    folder.remove()
    folder.remove()  # atexit and a re-made lease may both release it
    assert os.listdir(tmp_path / "docker-exec") == []


def test_private_folder_closes_a_folder_others_may_write(tmp_path: Path) -> None:
    shared = tmp_path / "docker-exec"
    shared.mkdir()
    shared.chmod(0o777)
    with pf.private_folder(str(shared)) as folder:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755


def test_reaper_never_follows_a_linked_parent(tmp_path: Path) -> None:
    """A stage that links .dvc/tmp/docker-exec to ~ must not get the next run to remove ~'s folders."""
    home = tmp_path / "home"
    (home / "projects").mkdir(parents=True)
    (tmp_path / "docker-exec").symlink_to(home)
    pf.reap_stale_overlays(str(tmp_path / "docker-exec"))
    assert (home / "projects").is_dir()

"""tamper (issue 16, P4): the pure snapshot/compare of what later host dvc/git processes read."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dvc_docker_exec.boundary import tamper


def git_dir(tmp_path: Path) -> Path:
    git = tmp_path / ".git"
    (git / "hooks").mkdir(parents=True)
    (git / "info").mkdir()
    (git / "refs").mkdir()
    (git / "config").write_text("[core]\n\tbare = false\n")
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "index").write_bytes(b"DIRC")
    (git / "hooks" / "pre-commit.sample").write_text("#!/bin/sh\n")
    (git / "info" / "exclude").write_text("# nothing\n")
    return git


def test_nothing_changed_is_no_difference(tmp_path):
    git = git_dir(tmp_path)
    before = tamper.snapshot([str(git), str(tmp_path / "absent")])
    assert tamper.check(before, [str(git), str(tmp_path / "absent")]) is None


def test_git_activity_inside_is_not_tampering(tmp_path):
    """index, HEAD, refs and objects change in normal operation; a folder's mtime changes with its content."""
    git = git_dir(tmp_path)
    before = tamper.snapshot([str(git)])
    (git / "index").write_bytes(b"DIRC2")
    (git / "HEAD").write_text("ref: refs/heads/other\n")
    (git / "refs" / "x").write_text("0" * 40)
    (git / "FETCH_HEAD").write_text("")
    assert tamper.check(before, [str(git)]) is None


def test_rename_and_copy_of_the_folder_is_caught_as_the_folder(tmp_path):
    git = git_dir(tmp_path)
    before = tamper.snapshot([str(git)])
    os.rename(git, tmp_path / ".git.orig")
    shutil.copytree(tmp_path / ".git.orig", git, copy_function=shutil.copy2)  # cp -a: same sizes and mtimes
    found = tamper.check(before, [str(git)])
    assert found is not None and found.startswith(f"'{git}' replaced"), found
    assert "more" not in found  # the copy's files are not listed one by one


def test_new_hook_commondir_and_config_local_are_caught(tmp_path):
    git = git_dir(tmp_path)
    dvc = tmp_path / ".dvc"
    dvc.mkdir()
    (dvc / "config").write_text("[core]\n")
    watched = [str(git), str(dvc)]
    for plant, where in [
        (lambda: (git / "hooks" / "pre-commit").write_text("#!/bin/sh\nid\n"), git / "hooks" / "pre-commit"),
        (lambda: (git / "commondir").write_text("/tmp/evil\n"), git / "commondir"),
        (lambda: (dvc / "config.local").write_text("[docker]\nuser = 0:0\n"), dvc / "config.local"),
    ]:
        before = tamper.snapshot(watched)
        plant()
        found = tamper.check(before, watched)
        assert found == f"'{where}' appeared (a file)", found


def test_same_size_rewrite_within_one_mtime_tick_is_caught_by_the_hash(tmp_path):
    config = tmp_path / "config"
    config.write_text("[core]\n\tx = 1\n")
    stamp = os.stat(config).st_mtime_ns
    before = tamper.snapshot([str(config)])
    with open(config, "r+") as fobj:  # in place: same inode, same size
        fobj.write("[core]\n\tx = 2\n")
    os.utime(config, ns=(stamp, stamp))
    assert tamper.check(before, [str(config)]) == f"'{config}' content changed"


def test_a_link_planted_for_a_file_and_a_changed_target(tmp_path):
    target = tmp_path / "gitconfig"
    target.write_text("[user]\n")
    before = tamper.snapshot([str(target)])
    target.unlink()
    target.symlink_to("/etc/passwd")
    assert tamper.check(before, [str(target)]) == f"'{target}' a file replaced by a symlink"
    before = tamper.snapshot([str(target)])
    target.unlink()
    target.symlink_to("/etc/group")
    assert tamper.check(before, [str(target)]) == f"'{target}' now points to /etc/group"


def test_user_config_folder_that_appears_is_caught(tmp_path):
    folder = tmp_path / ".config" / "dvc"
    before = tamper.snapshot([str(folder)])
    folder.mkdir(parents=True)
    (folder / "config").write_text("[docker]\nuser = 0:0\n")
    assert tamper.check(before, [str(folder)]) == f"'{folder}' appeared (a folder)"


def test_several_changes_name_the_shallowest_first(tmp_path):
    git = git_dir(tmp_path)
    before = tamper.snapshot([str(git)])
    (git / "config").write_text("[core]\n\tfsmonitor = id\n")
    (git / "hooks" / "post-checkout").write_text("x")
    found = tamper.check(before, [str(git)])
    assert found.startswith(f"'{git / 'config'}' content changed (and 1 more: {git / 'hooks' / 'post-checkout'}")


def test_a_fifo_is_not_read(tmp_path):
    fifo = tmp_path / "config.local"
    os.mkfifo(fifo)
    assert tamper.snapshot([str(tmp_path)])[str(fifo)].kind == "other"  # an open for reading would block


# --- what dvc_glue watches around each container ----------------------------------------------------


def fake_stage(tmp_path: Path):
    import types

    files = {"global": str(tmp_path / "dvc-global" / "config"), "system": str(tmp_path / "dvc-system" / "config")}
    return types.SimpleNamespace(addressing="s", repo=types.SimpleNamespace(config=types.SimpleNamespace(files=files)))


def test_watch_list_comes_from_the_covers_and_the_users_config(tmp_path, monkeypatch):
    from dvc_docker_exec.stage import mounts as stage_mounts
    from dvc_docker_exec.boundary import tamper

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    repo = tmp_path / "repo"
    covers = (
        (str(repo / ".dvc"), True),
        (str(repo / ".dvc" / "tmp"), False),
        (str(repo / ".dvc" / "tmp" / "exps"), True),  # inside a watched .dvc: not watched again
        (str(repo / ".git" / "hooks"), True),
        (str(repo / ".git" / "config"), True),
        (str(repo / "sub" / ".dvc"), True),
    )
    user_places = [path for path, _ in stage_mounts.user_config_places(fake_stage(tmp_path))]
    watched = tamper.watch_list(covers, user_places)
    home = tmp_path / "home"
    assert watched[:3] == [str(repo / ".dvc"), str(repo / ".git"), str(repo / "sub" / ".dvc")]
    for expected in (tmp_path / "dvc-global", tmp_path / "dvc-system", home / ".config" / "dvc", home / ".gitconfig", home / ".config" / "git"):
        assert str(expected) in watched
    assert str(repo / ".dvc" / "tmp" / "exps") not in watched


def test_a_tampering_stage_stops_the_rest_of_the_run(tmp_path, monkeypatch):
    from dvc_docker_exec import dvc_glue
    from dvc_docker_exec.errors import DockerExecError

    monkeypatch.setattr(dvc_glue, "_state", {})
    stage = fake_stage(tmp_path)
    git = git_dir(tmp_path)
    with pytest.raises(DockerExecError, match=r"'.*/\.git/commondir' appeared \(a file\) while its container ran; nothing was recorded"):
        with dvc_glue.watching(stage, [str(git)]):
            (git / "commondir").write_text("/elsewhere\n")
    with pytest.raises(DockerExecError, match="not run: '.*commondir' appeared"):
        dvc_glue._refuse_after_tampering(stage)


def test_the_tamper_report_replaces_the_stages_own_failure(tmp_path, monkeypatch):
    from dvc_docker_exec import dvc_glue
    from dvc_docker_exec.errors import DockerExecError

    monkeypatch.setattr(dvc_glue, "_state", {})
    git = git_dir(tmp_path)
    with pytest.raises(DockerExecError, match="hooks/post-commit' appeared"):
        with dvc_glue.watching(fake_stage(tmp_path), [str(git)]):
            (git / "hooks" / "post-commit").write_text("#!/bin/sh\n")
            raise RuntimeError("the command failed")

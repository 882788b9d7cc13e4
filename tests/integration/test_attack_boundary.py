"""Attacks on the boundary's properties (issue 16: P1, P2, P3, P5; breaks 1-8).

Each break of the issue has its regression test here, with siblings that
take another road to the same outcome (another spelling, another level,
`exp run --temp`). Real `dvc repro` against the real engine; the outcome
checked is the one the attacker wanted (a host file planted, a root run, a
folder mounted), not the error text alone.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import refused

pytestmark = pytest.mark.docker

FOREIGN_USER = "0:0" if os.getuid() != 0 else "4343:4343"


def write_dvc_yaml(repo, stages: dict, where: str = "dvc.yaml") -> None:
    repo.write(where, yaml.safe_dump({"stages": stages}, sort_keys=False))


def commit_all(repo) -> None:
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "hostile change")


# --- P1 / break 1: a config file Git tracks is the repository's, whatever its name ----------------


@pytest.mark.parametrize(
    ("key", "value"),
    [("user", FOREIGN_USER), ("volumes", "/etc:/hostetc"), ("allow_repo_settings", "true")],
)
def test_committed_config_local_is_repository_supplied(repo, key, value):
    repo.config(f"docker.{key}", value, local=True)
    repo.run("git", "add", "-f", ".dvc/config.local")
    write_dvc_yaml(repo, {"s": {"cmd": "id > seen.txt; ls /hostetc >> seen.txt"}})
    commit_all(repo)
    error = refused(repo)
    assert f"docker.{key} from '{repo.path}/.dvc/config.local', which Git tracks" in error, error


def test_victims_clone_of_a_committed_config_local(repo, tmp_path):
    """The attack as a victim meets it: `git clone … && dvc repro` must not run as root."""
    repo.config("docker.user", FOREIGN_USER, local=True)
    repo.run("git", "add", "-f", ".dvc/config.local")
    write_dvc_yaml(repo, {"s": {"cmd": "id > seen.txt"}})
    commit_all(repo)
    clone = tmp_path / "victim"
    repo.run("git", "clone", "-q", str(repo.path), str(clone))
    assert (clone / ".dvc" / "config.local").exists()
    proc = repo.dvc("repro", cwd=clone, check=False)
    assert proc.returncode != 0 and not (clone / "seen.txt").exists()
    assert "which Git tracks" in proc.stderr


def test_committed_config_local_of_a_subdir_project(make_repo, busybox_image, no_leftovers):
    """`dvc init --subdir`: the project's tracked config.local is the repository's too."""
    top = make_repo()
    sub = top.path / "proj"
    sub.mkdir()
    top.dvc("init", "--subdir", "-q", cwd=sub)
    top.dvc("config", "docker.image", busybox_image, cwd=sub)
    top.dvc("config", "docker.pull", "never", cwd=sub)
    top.dvc("config", "--local", "docker.user", FOREIGN_USER, cwd=sub)
    top.run("git", "add", "-f", "proj/.dvc/config.local")
    write_dvc_yaml(top, {"s": {"cmd": "id > seen.txt"}}, "proj/dvc.yaml")
    commit_all(top)
    proc = top.dvc("repro", cwd=sub, check=False)
    assert proc.returncode != 0 and not (sub / "seen.txt").exists(), proc.stdout + proc.stderr
    assert f"from '{sub}/.dvc/config.local', which Git tracks" in proc.stderr


def test_untracked_config_local_stays_this_machines(repo, tmp_path):
    outside = tmp_path / "data"
    outside.mkdir()
    (outside / "in.txt").write_text("machine\n")
    repo.config("docker.volumes", f"{outside}:/o:ro", local=True)
    write_dvc_yaml(repo, {"s": {"cmd": "cat /o/in.txt > seen.txt"}})
    repo.dvc("repro")
    assert repo.read("seen.txt") == "machine\n"


# --- P3 / break 2: an alias of a protected folder gets the same covers ---------------------------


PLANT = (
    "for f in {files}; do (echo '[docker]' > $f) 2>/dev/null && echo \"WROTE $f\"; done >> seen.txt; echo done >> seen.txt"
)


def planted(repo, *relative: str) -> list:
    return [name for name in relative if (repo.path / name).exists()]


@pytest.mark.parametrize(
    ("volumes", "files", "host"),
    [
        (".dvc:/d,.git/hooks:/h", "/d/config.local /h/pre-commit", [".dvc/config.local", ".git/hooks/pre-commit"]),
        (".:/alias", "/alias/.dvc/config.local /alias/.git/hooks/pre-commit", [".dvc/config.local", ".git/hooks/pre-commit"]),
        (".git:/g", "/g/hooks/post-checkout /g/commondir", [".git/hooks/post-checkout", ".git/commondir"]),
        (".dvc/tmp:/t", "/t/exps/x /t/docker-exec/x", [".dvc/tmp/exps/x", ".dvc/tmp/docker-exec/x"]),
    ],
    ids=["break2-dvc-and-hooks", "whole-repo-alias", "git-folder", "inside-dvc-tmp"],
)
def test_alias_of_a_protected_folder_is_read_only(repo, volumes, files, host):
    write_dvc_yaml(repo, {"s": {"cmd": PLANT.format(files=files), "meta": {"docker": {"volumes": volumes}}}})
    commit_all(repo)
    repo.dvc("repro")
    assert "WROTE" not in repo.read("seen.txt") and planted(repo, *host) == []


# --- P3 / break 3: renaming the parent does not defeat the covers ---------------------------------


@pytest.mark.parametrize(
    "cmd",
    [
        "mv .git .git.orig && mkdir .git && cp -a .git.orig/. .git/ && printf '[core]\\n\\tfsmonitor = touch PWNED\\n' >> .git/config",
        "mv .dvc .dvc.orig && mkdir .dvc && cp -a .dvc.orig/. .dvc/ && printf '[docker]\\n user = 0:0\\n' > .dvc/config.local",
        "mv sub sub.orig && mkdir sub && cp -a sub.orig/. sub/ && printf '[docker]\\n user = 0:0\\n' > sub/.dvc/config.local",
    ],
    ids=["break3-git", "dvc", "break3-subproject"],
)
def test_rename_and_copy_back_is_refused(repo, cmd):
    sub = repo.path / "sub"
    sub.mkdir()
    repo.dvc("init", "--subdir", "-q", cwd=sub)
    write_dvc_yaml(repo, {"s": {"cmd": f"({cmd}) 2> err.txt; echo $? > seen.txt"}})
    commit_all(repo)
    repo.dvc("repro")
    assert repo.read("seen.txt").strip() != "0", repo.read("err.txt")
    assert "busy" in repo.read("err.txt").lower(), repo.read("err.txt")
    assert planted(repo, ".git.orig", ".dvc.orig", "sub.orig", ".dvc/config.local", "sub/.dvc/config.local") == []
    status = repo.run("git", "status", "--porcelain")
    assert not (repo.path / "PWNED").exists(), status.stdout


# --- P3 / break 4: .git/commondir and gitdir indirections -----------------------------------------


def test_commondir_cannot_be_planted(repo, tmp_path):
    cmd = (
        "mkdir -p evil && printf '[core]\\n\\tfsmonitor = touch PWNED\\n' > evil/config; "
        "(echo \"$PWD/evil\" > .git/commondir) 2> err.txt; echo $? > seen.txt"
    )
    write_dvc_yaml(repo, {"s": {"cmd": cmd}})
    commit_all(repo)
    repo.dvc("repro")
    assert repo.read("seen.txt").strip() != "0" and not (repo.path / ".git" / "commondir").exists()
    repo.run("git", "status", "--porcelain")
    assert not (repo.path / "PWNED").exists()


def test_gitdir_file_of_a_worktree_and_its_commondir_are_covered(repo, tmp_path):
    """A `git worktree`: `.git` is a file pointing into the main repo; neither can be redirected."""
    write_dvc_yaml(repo, {"s": {"cmd": "echo > seen.txt"}})
    commit_all(repo)
    tree = tmp_path / "tree"
    repo.run("git", "worktree", "add", "-q", str(tree))
    main_git = repo.path / ".git"
    cmd = (
        f"(echo 'gitdir: /tmp' > .git) 2>> err.txt; (echo /tmp > {main_git}/worktrees/tree/commondir) 2>> err.txt; "
        f"(echo x > {main_git}/hooks/pre-commit) 2>> err.txt; echo > seen2.txt"
    )
    (tree / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"s": {"cmd": cmd, "deps": [str(main_git)]}}}))
    repo.dvc("repro", cwd=tree)
    assert (tree / ".git").read_text().startswith("gitdir: " + str(main_git))
    assert (main_git / "worktrees" / "tree" / "commondir").read_text().strip() != "/tmp"
    assert not (main_git / "hooks" / "pre-commit").exists()


# --- P3 / break 5: the user's DVC and Git config are never writable -------------------------------


def _home(repo) -> Path:
    return Path(repo.env["HOME"])


@pytest.mark.parametrize("road", ["dep-config-dvc", "dep-config-missing-dvc", "committed-link", "dvc-global-dir", "gitconfig"])
def test_user_config_is_never_writable(repo, road):
    home = _home(repo)
    (home / ".config").mkdir(exist_ok=True)
    target = home / ".config" / "dvc"
    if road == "dep-config-dvc":
        target.mkdir()
        dep, victim = str(target), target / "config"
    elif road == "dep-config-missing-dvc":  # the folder DVC would read does not exist yet
        dep, victim = str(home / ".config"), target / "config"
    elif road == "committed-link":
        target.mkdir()
        os.symlink(target, repo.path / "cfg")
        dep, victim = "cfg", target / "config"
    elif road == "dvc-global-dir":  # where DVC_GLOBAL_CONFIG_DIR points (the test env sets it)
        glob = Path(repo.env["DVC_GLOBAL_CONFIG_DIR"])
        glob.mkdir(exist_ok=True)
        dep, victim = str(glob), glob / "config"
    else:
        (home / "notes.txt").write_text("x\n")
        dep, victim = str(home), home / ".gitconfig"
    cmd = f"(mkdir -p {victim.parent} && printf '[docker]\\n user = 0:0\\n' >> {victim}) 2> err.txt; echo $? > seen.txt"
    write_dvc_yaml(repo, {"s": {"cmd": cmd, "deps": [dep]}})
    commit_all(repo)
    repo.dvc("repro")
    assert repo.read("seen.txt").strip() != "0"
    assert not victim.exists() or "user = 0:0" not in victim.read_text()


# --- P2 / break 6: the plan is made for each command ----------------------------------------------


def test_volume_swapped_between_commands_is_judged_again(repo):
    (repo.path / "data").mkdir()
    (repo.path / "data" / "keep").write_text("x\n")
    write_dvc_yaml(
        repo,
        {"s": {"cmd": ["rm -rf data && ln -s /etc data", "head -3 /d/passwd > seen.txt"], "meta": {"docker": {"volumes": "data:/d"}}}},
    )
    commit_all(repo)
    error = refused(repo)
    assert "docker.volumes from dvc.yaml (meta.docker) mounts 'data' (on the host: '/etc')" in error, error


def test_machine_volume_swapped_to_the_socket_folder_between_commands(repo):
    (repo.path / "data").mkdir()
    repo.config("docker.volumes", "data:/d", local=True)
    write_dvc_yaml(repo, {"s": {"cmd": ["rm -rf data && ln -s /run data", "ls /d > seen.txt"]}})
    assert "daemon socket" in refused(repo)


def test_dep_link_swapped_to_user_config_between_commands(repo):
    home = _home(repo)
    (home / ".config" / "dvc").mkdir(parents=True)
    (repo.path / "cfg").mkdir()
    write_dvc_yaml(
        repo,
        {
            "s": {
                "cmd": [f"rm -rf cfg && ln -s {home}/.config/dvc cfg", "(echo '[docker]' > cfg/config) 2> err.txt; echo $? > seen.txt"],
                "outs": ["cfg"],
            }
        },
    )
    commit_all(repo)
    repo.dvc("repro", check=False)
    assert not (home / ".config" / "dvc" / "config").exists()


# --- P5 / break 7: every engine socket, by kind ---------------------------------------------------


ENGINE_STATE = "/var/run/docker/containerd"


@pytest.fixture
def engine_state():
    if not os.path.exists(f"{ENGINE_STATE}/containerd.sock"):
        pytest.skip(f"no Docker-managed containerd at {ENGINE_STATE} (a containerd of its own, or another engine)")
    return ENGINE_STATE


@pytest.mark.parametrize("road", ["wdir-link", "machine-volume", "out-behind-link"])
def test_dockers_own_containerd_is_refused(repo, engine_state, road):
    os.symlink(engine_state, repo.path / "ctd")
    if road == "wdir-link":  # break 7
        stage = {"cmd": "ls -la > $DVC_ROOT/seen.txt", "wdir": "ctd"}
    elif road == "machine-volume":
        repo.config("docker.volumes", f"{os.path.dirname(engine_state)}:/c", local=True)
        stage = {"cmd": "ls -la /c > seen.txt"}
    else:
        stage = {"cmd": "ls ctd > seen.txt; echo > ctd/x", "outs": ["ctd/x"]}
    write_dvc_yaml(repo, {"s": stage})
    commit_all(repo)
    error = refused(repo)
    assert "daemon socket" in error and "containerd" in error, error


# --- P2 / break 8: environment values never create mounts -----------------------------------------


@pytest.mark.parametrize("level", ["repo-config", "meta"])
def test_dvc_root_from_env_mounts_nothing(repo, tmp_path, level):
    outside = tmp_path / "outside"
    outside.mkdir()
    cmd = f"(echo x > {outside}/planted.txt) 2>/dev/null; ls {outside} > seen.txt 2>&1; echo \"$DVC_ROOT\" >> seen.txt"
    stage = {"cmd": cmd}
    if level == "repo-config":
        repo.config("docker.env", f"DVC_ROOT={outside}")
    else:
        stage["meta"] = {"docker": {"env": f"DVC_ROOT={outside}"}}
    write_dvc_yaml(repo, {"s": stage})
    commit_all(repo)
    repo.dvc("repro")
    assert not (outside / "planted.txt").exists()
    assert "No such file" in repo.read("seen.txt") or "can't" in repo.read("seen.txt")


# --- the same properties under `exp run --temp` (the parent repo is mounted) ----------------------


def test_temp_experiment_cannot_plant_in_the_parent(repo):
    cmd = (
        "p=$(cd $DVC_ROOT && pwd); for f in $p/.dvc/config.local $p/.git/hooks/pre-commit .dvc/config.local; do "
        "(echo '[docker]' > $f) 2>/dev/null && echo \"WROTE $f\"; done > out.txt; echo ok >> out.txt"
    )
    write_dvc_yaml(repo, {"s": {"cmd": cmd, "outs": ["out.txt"]}})
    commit_all(repo)
    repo.dvc("exp", "run", "--temp", timeout=300)
    assert planted(repo, ".dvc/config.local", ".git/hooks/pre-commit") == []
    shown = repo.run("git", "log", "--all", "-p", "--", "out.txt").stdout
    assert "WROTE" not in shown


def test_legitimate_writes_still_work(repo):
    """DVC in the stage writes .dvc/tmp; the cache stays writable; deps outside from this machine's config."""
    write_dvc_yaml(
        repo,
        {"s": {"cmd": "mkdir -p .dvc/tmp/mine && echo x > .dvc/tmp/mine/f && echo y > .dvc/cache/probe && echo ok > seen.txt"}},
    )
    repo.dvc("repro")
    assert repo.read("seen.txt") == "ok\n" and (repo.path / ".dvc" / "cache" / "probe").exists()
    subprocess.run(["rm", "-f", str(repo.path / ".dvc" / "cache" / "probe")], check=True)


def test_experiment_git_folder_is_pinned_with_what_git_runs_read_only(repo):
    """`exp run`: dvclive may stage files (objects, index), but hooks, config and a rename stay out of reach."""
    cmd = (
        "for f in .git/hooks/pre-commit .git/config .git/info/attributes; do (echo x >> $f) 2>/dev/null && "
        "echo \"WROTE $f\"; done > out.txt; (mv .git .git.orig) 2>/dev/null && echo MOVED >> out.txt; echo ok >> out.txt"
    )
    write_dvc_yaml(repo, {"s": {"cmd": cmd, "outs": ["out.txt"]}})
    commit_all(repo)
    before = (repo.path / ".git" / "config").read_text()
    repo.dvc("exp", "run", timeout=300)
    assert repo.read("out.txt") == "ok\n"
    assert (repo.path / ".git" / "config").read_text() == before and planted(repo, ".git/hooks/pre-commit", ".git.orig") == []

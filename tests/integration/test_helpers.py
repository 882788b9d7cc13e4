"""The shared shortcuts of tests/conftest.py stand for the real commands: what they write is what those write.

Why: most integration tests build their repo with `make_repo` (a copy of a session template) and their
stages with `DvcRepo.stage_add` (dvc.yaml written directly), and set most config with `DvcRepo.config`
(DVC's own Config.edit, in the test process). Had a shortcut drifted from DVC, every test
built on it would test something no user has; these compare each with the real thing, side by side.
"""

from __future__ import annotations

from tests.conftest import BUSYBOX, init_repo

STAGES = [
    ("-n", "a", "-d", "in.txt", "-d", "other.yaml", "-o", "a.txt", "echo a > a.txt"),
    ("-n", "b", "-p", "tag", "-p", "x,y", "-p", "other.yaml:k", "-O", "nc.txt", "-m", "m.json", "-M", "mm.json",
     "-o", "sub/dir", "echo b"),
    ("-n", "c", "echo $$ > pid.txt; exit 5"),
    ("-n", "ext", "-d", "in.txt", "-O", "/tmp/elsewhere/copy.txt", "cp in.txt /tmp/elsewhere/copy.txt"),
    ("-f", "-n", "a", "-o", "a.txt", "echo aa > a.txt"),
]


def test_stage_add_shortcut_writes_what_dvc_stage_add_writes(make_repo):
    real, short = make_repo(None, "real"), make_repo(None, "short")
    for repo in (real, short):
        repo.write("in.txt", "in\n")
        repo.write("params.yaml", "tag: 1\nx: 1\ny: 2\n")
        repo.write("other.yaml", "k: 1\n")
        (repo.path / "sub").mkdir()
    for argv in STAGES:
        real.dvc("stage", "add", *argv)
        short.stage_add(*argv)
    for name in ("dvc.yaml", ".gitignore", "sub/.gitignore"):
        assert short.read(name) == real.read(name), name


CONFIG = [
    ("docker.pull", "missing", False),
    ("docker.image", "registry.example:5000/team/img:1.2", False),
    ("docker.env", "KEEP_ME,FIXED=yes", False),  # a comma: configobj quotes it
    ("docker.volumes", "/srv/data:/data:ro", True),
    ("docker.network", "none", True),
    ("docker.memory", "64m", False),
    ("docker.pull", None, False),  # --unset
    ("core.autostage", "false", False),
    ("docker.network", None, True),
]


def test_config_shortcut_writes_what_dvc_config_writes(make_repo):
    real, short = make_repo(None, "real"), make_repo(None, "short")
    for key, value, local in CONFIG:
        level = ["--local"] if local else []
        real.dvc("config", *level, *(["--unset", key] if value is None else [key, value]))
        short.config(key, value, local=local)
    for name in (".dvc/config", ".dvc/config.local"):
        assert short.read(name) == real.read(name), name
    assert short.dvc("config", "-l").stdout == real.dvc("config", "-l").stdout


def test_a_copied_template_is_the_repo_init_makes(make_repo, tmp_path):
    copy, made = make_repo(BUSYBOX, "copy"), init_repo(tmp_path / "made", tmp_path / "made-home", BUSYBOX)
    for repo in (copy, made):
        assert repo.run("git", "status", "--porcelain").stdout == ""
        assert repo.run("git", "log", "--format=%s").stdout == "init\n"
    assert copy.dvc("config", "-l").stdout == made.dvc("config", "-l").stdout
    assert copy.read(".dvc/config") == made.read(".dvc/config")
    assert not (copy.path / ".dvc" / "tmp" / "btime").exists()  # a new repo to DVC (its site-cache key)

"""Tamper evidence (P4) and the plugin's own writes (P6) of issue 16, against the real engine.

P4 tests plant what a later host `git`/`dvc` would act on by a road around the
read-only covers (a rename-and-copy of `.git` or of a subproject, an alias
volume). Whatever the first wall does with a road, the outcome must be one
of two: the plant is not there, or the stage failed with ONE line naming the
changed path, and nothing was recorded for it (no dvc.lock entry: the image
record is one of its deps).

P6 tests plant links and FIFOs where earlier versions wrote dvc.docker.lock
(the record is in dvc.lock now, which DVC writes): the file the link points
to must stay untouched, nothing may hang, and the record lands in dvc.lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import DvcRepo

pytestmark = pytest.mark.docker

TAMPER = "nothing was recorded"


def hostile_stage(repo: DvcRepo, script: str, meta: dict = None, name: str = "s") -> None:
    """A committed stage running `script` (as attack.sh) that writes out.txt."""
    repo.write("attack.sh", script + "\necho done > out.txt\n")
    stage = {"cmd": "sh attack.sh", "deps": ["attack.sh"], "outs": ["out.txt"]}
    if meta:
        stage["meta"] = {"docker": meta}
    repo.write("dvc.yaml", yaml.safe_dump({"stages": {name: stage}}, sort_keys=False))
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "hostile stage")


def error_lines(text: str) -> list:
    return [line for line in text.splitlines() if line.startswith("ERROR")]


def assert_tamper_failed(proc: subprocess.CompletedProcess, repo: DvcRepo, path: str, stage: str = "s") -> None:
    """The run failed with one line naming `path`; no record of the stage."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    errors = error_lines(proc.stderr)
    assert len(errors) == 1 and TAMPER in errors[0] and f"'{path}'" in errors[0], out
    assert "Traceback" not in out
    assert stage not in (yaml.safe_load(repo.lock() or "{}") or {}).get("stages", {}), repo.lock()


def assert_no_plant_or_failed(proc, repo: DvcRepo, planted: Path, path: str) -> None:
    """Either the first wall held (the plant is absent) or the second one caught it."""
    if planted.exists():
        assert_tamper_failed(proc, repo, path)


# --- P4: tamper evidence --------------------------------------------------------------------------


RENAME_AND_COPY = "mv {d} {d}.orig && mkdir {d} && cp -a {d}.orig/. {d}/"


def test_git_renamed_and_copied_back_fails_the_stage(repo):
    """Break 3: a fresh copy of .git escapes the covers of .git/hooks and .git/config."""
    marker = repo.path.parent / "hook-ran"
    hostile_stage(repo, RENAME_AND_COPY.format(d=".git") + f" && printf '#!/bin/sh\\ntouch {marker}\\n' > .git/hooks/post-commit && chmod +x .git/hooks/post-commit")
    proc = repo.dvc("repro", check=False)
    assert_no_plant_or_failed(proc, repo, repo.path / ".git" / "hooks" / "post-commit", f"{repo.path}/.git")


def test_subprojects_config_local_through_a_renamed_parent_fails_the_stage(repo):
    """Break 3, subproject: `mv sub sub.orig`, copy back, a new sub/.dvc/config.local (the next run as root)."""
    sub = repo.path / "sub"
    sub.mkdir()
    DvcRepo(sub, repo.env).dvc("init", "--subdir", "-q")
    hostile_stage(repo, RENAME_AND_COPY.format(d="sub") + " && printf '[docker]\\nuser = 0:0\\n' > sub/.dvc/config.local")
    proc = repo.dvc("repro", check=False)
    assert_no_plant_or_failed(proc, repo, sub / ".dvc" / "config.local", f"{sub}/.dvc")


def test_hook_planted_through_a_volume_alias_fails_the_stage(repo):
    """Break 2: `volumes: .git/hooks:/h` from dvc.yaml; the stage writes /h/pre-commit."""
    hostile_stage(repo, "printf '#!/bin/sh\\nid\\n' > /h/pre-commit; true", meta={"volumes": ".git/hooks:/h"})
    proc = repo.dvc("repro", check=False)
    assert_no_plant_or_failed(proc, repo, repo.path / ".git" / "hooks" / "pre-commit", f"{repo.path}/.git/hooks/pre-commit")


def test_commondir_written_through_a_volume_alias_fails_the_stage(repo):
    """Break 4: a new .git/commondir pointing at a folder the stage made (core.fsmonitor in its config)."""
    hostile_stage(
        repo,
        "mkdir -p evil && printf '[core]\\n\\tfsmonitor = id\\n' > evil/config && echo \"$PWD/evil\" > /g/commondir; true",
        meta={"volumes": ".git:/g"},
    )
    proc = repo.dvc("repro", check=False)
    assert_no_plant_or_failed(proc, repo, repo.path / ".git" / "commondir", f"{repo.path}/.git/commondir")


def test_later_stages_of_the_run_are_refused_after_tampering(repo):
    """`--keep-going` must not run the next stage against the changed config."""
    repo.write("attack.sh", RENAME_AND_COPY.format(d=".git") + "\necho done > out.txt\n")
    stages = {
        "s": {"cmd": "sh attack.sh", "deps": ["attack.sh"], "outs": ["out.txt"]},
        "t": {"cmd": "echo t > t.txt", "outs": ["t.txt"]},
    }
    repo.write("dvc.yaml", yaml.safe_dump({"stages": stages}, sort_keys=False))
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "hostile stage")
    proc = repo.dvc("repro", "--keep-going", check=False)
    if (repo.path / ".git.orig").exists():  # the rename worked: both stages must have been stopped
        assert proc.returncode != 0
        assert not (repo.path / "t.txt").exists(), proc.stdout + proc.stderr
        assert f"stage 't': not run: '{repo.path}/.git' replaced" in proc.stderr, proc.stderr
        assert repo.lock() is None or "t.txt" not in repo.lock()


def test_temp_experiment_renaming_the_parents_git_fails(repo):
    """`exp run --temp`: the parent repo (DVC_ROOT) is mounted; its .git is watched too."""
    repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])
    hostile_stage(repo, "(cd \"$DVC_ROOT\" && " + RENAME_AND_COPY.format(d=".git") + ")")
    proc = repo.dvc("exp", "run", "--temp", check=False)
    if (repo.path / ".git.orig").exists():
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and TAMPER in out and f"'{repo.path}/.git'" in out, out
        assert not repo.dvc("exp", "list", check=False).stdout.strip(), "the experiment was recorded"


def test_queued_experiment_renaming_the_parents_git_fails(repo):
    """`exp run --queue` + `--run-all`: a worker's stage renames the parent's .git away and copies it back."""
    repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])
    hostile_stage(repo, "(cd \"$DVC_ROOT\" && " + RENAME_AND_COPY.format(d=".git") + " && printf 'x' > .git/hooks/pre-commit)")
    repo.dvc("exp", "run", "--queue", "-n", "q1")
    log = repo.path.parent / "run-all.log"
    try:
        with open(log, "wb") as out:  # --run-all starts queue workers: never a pipe (they inherit it)
            subprocess.run(
                [sys.executable, "-m", "dvc", "exp", "run", "--run-all"], cwd=repo.path, env=repo.env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=180,
            )
    finally:
        repo.dvc("queue", "stop", "--kill", check=False)
    if (repo.path / ".git.orig").exists():
        text = log.read_text()
        assert TAMPER in text and f"'{repo.path}/.git'" in text, text
        assert "Failed" in repo.dvc("queue", "status").stdout, text


# --- P6: the plugin's own writes -------------------------------------------------------------------


PID_OF_DVC = "pid=$(ls .dvc/tmp/docker-exec | grep -v '^[.]' | head -1 | cut -d- -f1)"


def victim_of(repo: DvcRepo) -> Path:
    victim = Path(repo.env["HOME"]) / "victim.txt"
    victim.write_text("the victim's own text\n")
    return victim


def recorded_in_dvc_lock(repo: DvcRepo) -> bool:
    deps = (yaml.safe_load(repo.lock() or "{}") or {}).get("stages", {}).get("s", {}).get("deps", [])
    return any(str(dep.get("path", "")).startswith("docker:") and dep.get("dataset") for dep in deps)


@pytest.mark.parametrize(
    "plant",
    [
        "{pid}; ln -s {victim} dvc.docker.lock.$pid.tmp",  # break 9 of the file earlier versions wrote
        "{pid}; mkfifo dvc.docker.lock.$pid.tmp",  # the old code hung
        "rm -f dvc.docker.lock; ln -s {victim} dvc.docker.lock",
        "rm -f dvc.docker.lock; mkfifo dvc.docker.lock",
    ],
)
def test_links_and_fifos_where_the_record_file_was_are_never_written_through(repo, plant):
    """The plugin writes no side file: what a stage plants there is inert; the record is in dvc.lock."""
    victim = victim_of(repo)
    victim.write_text("")  # an empty file reads as an empty record: the old code wrote through it
    hostile_stage(repo, plant.format(pid=PID_OF_DVC, victim=victim))
    repo.dvc("repro", timeout=90)
    assert victim.read_text() == ""
    assert recorded_in_dvc_lock(repo), repo.lock()

"""Attacks on what a stage container may reach (issue 7, holes 2, 3, 8, 9, 10).

Each test plays the attacker (a hostile dvc.yaml, a hostile committed
.dvc/config, a symlink committed in the repo) or the unlucky user, with real
`dvc repro` against the real engine. A refused attempt must stop before any
container starts: the stage's marker file must not appear.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import made_first, in_container_probe, refused

pytestmark = pytest.mark.docker


def write_dvc_yaml(repo, stages: dict) -> None:
    repo.write("dvc.yaml", yaml.safe_dump({"stages": stages}, sort_keys=False))


def commit_all(repo) -> None:
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "hostile change")


# --- hole 2: the socket is refused by identity, whatever the path says ---------------------------


@pytest.mark.parametrize(
    ("link", "volume"),
    [
        (None, "/proc/self/root/run:/hr"),
        (("rootlink", "/"), "rootlink:/v"),  # a symlink committed in the repo
        (("vrlink", "/var/run"), "vrlink:/v"),
        (None, "/var/run/../run:/v"),
    ],
    ids=["proc-self-root", "rootlink", "vrlink", "dotdot"],
)
def test_socket_behind_an_alias_is_refused(repo, link, volume):
    # machine-level config (--local): the trust model allows it, only the socket check stands
    if link:
        os.symlink(link[1], repo.path / link[0])
        commit_all(repo)
    repo.config("docker.volumes", volume, local=True)
    write_dvc_yaml(repo, {"s": {"cmd": "ls -la /v /hr > seen.txt 2>&1; true"}})
    error = refused(repo)
    assert "refusing to mount" in error and "daemon socket" in error


@pytest.fixture
def relay(tmp_path, socket_relay) -> Path:
    """A daemon socket at another path, in a folder of its own: /some/dir/d.sock."""
    folder = tmp_path / "some" / "dir"
    folder.mkdir(parents=True)
    return socket_relay(folder / "d.sock").path


def test_folder_of_the_configured_endpoint_socket_is_refused(repo, relay):
    """DOCKER_HOST=unix:///some/dir/d.sock: /some/dir is refused, though no list names it."""
    env = {"DOCKER_HOST": f"unix://{relay}"}
    repo.config("docker.volumes", f"{relay.parent}:/x", local=True)
    write_dvc_yaml(repo, {"s": {"cmd": "ls -la /x > seen.txt"}})
    error = refused(repo, env=env)
    assert f"contains the daemon socket '{relay}'" in error
    # the endpoint itself works: without the volume the stage runs through the relay
    repo.config("docker.volumes", local=True)
    write_dvc_yaml(repo, {"s": {"cmd": "echo ok > seen.txt"}})
    repo.dvc("repro", env=env)
    assert (repo.path / "seen.txt").exists()


@pytest.mark.parametrize(
    "stage",
    [
        # (a dep folder holding the socket is refused by DVC itself: it cannot hash a socket)
        {"cmd": "ls runlink/ > seen.txt; echo > runlink/x.txt", "outs": ["runlink/x.txt"]},
        {"cmd": "ls > $DVC_ROOT/seen.txt", "wdir": "/run"},
        {"cmd": "ls > $DVC_ROOT/seen.txt", "wdir": "runlink"},
    ],
    ids=["out-behind-link", "absolute-wdir", "wdir-behind-link"],
)
def test_stage_path_that_resolves_to_the_socket_folder_is_refused(repo, stage):
    os.symlink("/run", repo.path / "runlink")
    commit_all(repo)
    write_dvc_yaml(repo, {"s": stage})
    assert "daemon socket" in refused(repo)


# --- hole 3: settings that come with the repository may not widen host access --------------------


FOREIGN_USER = "0:0" if os.getuid() != 0 else "4343:4343"


@pytest.mark.parametrize(
    ("meta", "key"),
    [
        ({"user": FOREIGN_USER}, "user"),
        ({"volumes": "/proc/self/root:/host"}, "volumes"),
        ({"volumes": "..:/up"}, "volumes"),
        ({"network": "container:dvc-docker-exec-i7b-nonexistent"}, "network"),
    ],
    ids=["user", "proc-root", "dotdot", "network"],
)
def test_hostile_dvc_yaml_cannot_widen(repo, meta, key):
    write_dvc_yaml(repo, {"evil": {"cmd": "id > seen.txt; ls /host /up >> seen.txt", "meta": {"docker": meta}}})
    commit_all(repo)
    error = refused(repo)
    assert f"stage 'evil': docker.{key} from dvc.yaml (meta.docker)" in error, error
    assert "dvc config --local docker.allow_repo_settings true" in error


@pytest.mark.parametrize(
    ("key", "value"),
    [("volumes", "/etc:/x:ro"), ("host_root", "/"), ("user", FOREIGN_USER), ("allow_repo_settings", "true")],
)
def test_hostile_committed_config_cannot_widen(repo, key, value):
    repo.config(f"docker.{key}", value)  # the repo level: .dvc/config, committed
    commit_all(repo)
    write_dvc_yaml(repo, {"s": {"cmd": "id > seen.txt"}})
    error = refused(repo)
    assert f"docker.{key} from the repository's .dvc/config" in error, error


def test_committed_symlink_volume_is_judged_by_its_target(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host file\n")
    os.symlink(outside, repo.path / "outlink")
    write_dvc_yaml(repo, {"s": {"cmd": "cat /o/secret.txt > seen.txt", "meta": {"docker": {"volumes": "outlink:/o"}}}})
    commit_all(repo)
    assert f"(on the host: '{outside}') from outside the repository" in refused(repo)


def test_machine_config_may_widen_and_may_allow_the_repository(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "in.txt").write_text("host file\n")
    write_dvc_yaml(repo, {"s": {"cmd": "cat /o/in.txt > seen.txt", "meta": {"docker": {"volumes": f"{outside}:/o"}}}})
    refused(repo)
    repo.config("docker.allow_repo_settings", "true", local=True)
    repo.dvc("repro")
    assert repo.read("seen.txt") == "host file\n"

    # the same volume from this machine's own config needs no allowance
    repo.config("docker.allow_repo_settings", local=True)
    repo.config("docker.volumes", f"{outside}:/o", local=True)
    write_dvc_yaml(repo, {"s": {"cmd": "cat /o/in.txt > seen2.txt"}})
    repo.dvc("repro")
    assert repo.read("seen2.txt") == "host file\n"


def test_config_appended_mid_run_does_not_take_effect_mid_run(repo):
    """One snapshot per dvc process: stage 1 writes .dvc/config.local, stage 2 of the same run ignores it."""
    write_dvc_yaml(
        repo,
        {
            "writer": {
                # a host stage, so this test does not depend on stages being able to write the config
                "cmd": "printf '[docker]\\n    env = MIDRUN=yes\\n' >> .dvc/config.local && echo > step1.txt",
                "outs": ["step1.txt"],
                "meta": {"docker": False},
            },
            "reader": {"cmd": "env > env.txt", "deps": ["step1.txt"]},
        },
    )
    repo.dvc("repro")
    assert "MIDRUN" in repo.read(".dvc/config.local")
    assert "MIDRUN=yes" not in repo.read("env.txt")
    repo.dvc("repro", "-s", "-f", "reader")  # the next dvc command reads it
    assert "MIDRUN=yes" in repo.read("env.txt")


# --- hole 8: what a stage's paths resolve to is mounted -----------------------------------------


def test_dep_symlinked_to_a_file_outside_the_repo(repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "in.txt").write_text("outside data\n")
    os.symlink(outside / "in.txt", repo.path / "in_link.txt")
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.txt").write_text("chained\n")
    os.symlink(tmp_path / "real", tmp_path / "alias")  # a link to a link
    os.symlink(tmp_path / "alias", repo.path / "data")
    write_dvc_yaml(
        repo,
        {
            "s": {
                "cmd": f"cat in_link.txt data/x.txt > out.txt; {in_container_probe()} > where.txt",
                "deps": ["in_link.txt", "data/x.txt"],
                "outs": ["out.txt"],
            }
        },
    )
    repo.dvc("repro")
    assert repo.read("out.txt") == "outside data\nchained\n"
    assert "docker-init" in repo.read("where.txt")


def test_absolute_wdir_outside_the_repo(repo, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.txt").write_text("in the wdir\n")
    write_dvc_yaml(repo, {"s": {"cmd": "cat input.txt > result.txt; pwd >> result.txt", "wdir": str(work)}})
    repo.dvc("repro")
    assert (work / "result.txt").read_text() == f"in the wdir\n{work}\n"


def test_missing_wdir_is_an_error_not_an_empty_folder(repo):
    write_dvc_yaml(repo, {"s": {"cmd": "echo > seen.txt", "wdir": "nowhere"}})
    assert "its wdir" in refused(repo) and not (repo.path / "nowhere").exists()


# --- hole 9: the `docker run` line is what runs -------------------------------------------------


def test_docker_run_line_pasted_runs_the_same(make_repo, busybox_image, no_leftovers, tmp_path):
    repo = make_repo(busybox_image, name="re,po\nline")  # a comma and a newline in the repo path
    repo.dvc("config", "--local", "docker.env", "FIXED=yes,FROM_HOST")
    write_dvc_yaml(repo, {"s": {"cmd": 'echo "$DVC_STAGE $FIXED $FROM_HOST $HOME" > out.txt', "outs": ["out.txt"]}})
    dry = repo.dvc("repro", "--dry", env={"FROM_HOST": "h"}).stdout
    line = dry[dry.index("docker run ") :]
    line = line[: line.index("\n", line.index(" -c "))]
    assert "-e DVC_STAGE=s" in line and "-e FIXED=yes" in line and "-e FROM_HOST " in line
    assert not (repo.path / "out.txt").exists()
    # pasted into a shell that has none of DVC's variables
    made_first(dry, repo.path)  # --dry makes nothing on disk; the folders a run makes first, it names
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    subprocess.run(["sh", "-c", line], env={**clean, "FROM_HOST": "h"}, check=True, timeout=120)
    pasted = repo.read("out.txt")
    (repo.path / "out.txt").unlink()
    repo.dvc("repro", env={"FROM_HOST": "h"})
    assert pasted == repo.read("out.txt")
    assert pasted.startswith("s yes h ")


# --- hole 10: values Docker cannot use are refused when written ----------------------------------


@pytest.mark.parametrize(("key", "value"), [("image", "-v"), ("image", "Python:3.12"), ("image", "x" * 256), ("cpus", "1e-12")])
def test_config_refuses_values_docker_cannot_use(repo, key, value):
    before = repo.read(".dvc/config")
    proc = repo.dvc("config", f"docker.{key}", "--", value, check=False)
    assert proc.returncode != 0 and f"docker.{key}" in proc.stderr, proc.stderr
    assert repo.read(".dvc/config") == before


def test_meta_cpus_true_is_refused(repo):
    write_dvc_yaml(repo, {"s": {"cmd": "echo > seen.txt", "meta": {"docker": {"cpus": True}}}})
    assert "stage 's' meta.docker.cpus" in refused(repo)


"""Attacks on the stage lifecycle (issue 7): hostile stage commands, another local user, signals at every step.

Each test names the promise it attacks. The stage containers run as root
here (the suite runs as root): the strongest stage attacker short of a
privileged container.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List

import pytest

from tests.conftest import (
    HANG_GUARD, SESSION_ROOTS, DvcRepo, SocketRelay, anonymous_volume, assert_volume_removed, local_user, our_containers,
    setpriv, start_dvc, wait_until,
)

pytestmark = pytest.mark.docker

ATTACKER = "dde-attacker"

# Every way a stage could leave a DVC config behind for later stages: append,
# overwrite, replace, create. `$1`: the config file, `$2`: where to log.
HOSTILE_SH = r"""f="$1"; log="$2"
d=$(dirname "$f")
try() { if sh -c "$1" 2>/dev/null; then echo "WROTE: $1" >> "$log"; else echo "refused: $1" >> "$log"; fi; }
try "printf '\n[docker]\n  env = MARK=pwned\n' >> '$f'"
try "printf '[docker]\n  env = MARK=pwned\n' > '$f'"
try "rm -f '$f' && printf '[docker]\n  env = MARK=pwned\n' > '$f'"
try "mkdir -p '$d' && printf '[docker]\n  env = MARK=pwned\n' > '$d/.x' && mv '$d/.x' '$f'"
try "chmod 666 '$f'"
true
"""


def two_stage_pipeline(repo: DvcRepo, targets: List[str]) -> None:
    """`attack` writes every config in `targets`; `victim` (after it) shows what it was given."""
    repo.write("hostile.sh", HOSTILE_SH)
    attack = "; ".join(f'sh hostile.sh "{t}" attack.log' for t in targets) + "; cat attack.log; echo done > attacked.txt"
    repo.stage_add("-n", "attack", "-d", "hostile.sh", "-o", "attacked.txt", attack)
    repo.stage_add("-n", "victim", "-d", "attacked.txt", "-o", "victim.txt", 'echo "MARK=[$MARK]" > victim.txt; cat victim.txt')


def assert_refused(repo: DvcRepo, log: str = "attack.log") -> None:
    text = repo.read(log)
    assert "refused" in text and "WROTE" not in text, text


# --- hole 1: a stage must not reconfigure later stages ------------------------------------------------


@pytest.mark.parametrize("local", ["absent", "with-docker-section", "without-docker-section"])
def test_stage_cannot_write_dvc_config_of_its_repo(repo, local):
    config_local = repo.path / ".dvc" / "config.local"
    if local == "with-docker-section":
        repo.config("docker.network", "none", local=True)
    elif local == "without-docker-section":
        repo.config("core.autostage", "false", local=True)
    before = {p: p.read_bytes() for p in (repo.path / ".dvc").glob("config*")}
    two_stage_pipeline(repo, [".dvc/config.local", ".dvc/config", ".dvc/newfile"])
    repo.dvc("repro")
    assert_refused(repo)
    assert repo.read("victim.txt") == "MARK=[]\n"
    after = {p: p.read_bytes() for p in (repo.path / ".dvc").glob("config*")}
    assert after == before  # unchanged, and no empty config.local left behind when there was none
    assert config_local.exists() == (local != "absent")
    assert not (repo.path / ".dvc" / "newfile").exists()


def test_stage_cannot_write_config_through_another_mount_of_the_repo(repo):
    """`docker.volumes = .:/alias` shows the repo a second time: the config stays read-only there too."""
    repo.config("docker.volumes", ".:/alias", local=True)
    two_stage_pipeline(repo, ["/alias/.dvc/config.local", "/alias/.dvc/config"])
    repo.dvc("repro")
    assert_refused(repo)
    assert repo.read("victim.txt") == "MARK=[]\n"
    assert not (repo.path / ".dvc" / "config.local").read_text().count("pwned")


def test_stage_cannot_write_global_config_inside_a_mount(repo):
    """DVC's global config folder reachable through the repo mount: read-only, even before it exists."""
    (repo.path / "conf").mkdir()
    global_dir = repo.path / "conf" / "dvc"  # does not exist yet
    two_stage_pipeline(repo, [f"{global_dir}/config"])
    repo.dvc("repro", env={"DVC_GLOBAL_CONFIG_DIR": str(global_dir)})
    assert_refused(repo)
    # made empty by the plugin and covered read-only (issue 16, P3): the stage could not put a config in it
    assert not (global_dir / "config").exists() and not os.listdir(global_dir)
    assert repo.read("victim.txt") == "MARK=[]\n"


def test_stage_cannot_write_the_git_roots_project(make_repo, busybox_image, no_leftovers):
    """A subdir project mounts the whole Git root: the other DVC projects there stay read-only."""
    repo = make_repo(busybox_image)  # the Git root is itself a DVC project
    sub = repo.path / "sub"
    sub.mkdir()
    subrepo = DvcRepo(sub, repo.env)
    subrepo.dvc("init", "--subdir", "-q")
    subrepo.config("docker.image", busybox_image)
    subrepo.config("docker.pull", "never")
    neighbour = repo.path / "neighbour"  # another project of the monorepo, committed
    neighbour.mkdir()
    DvcRepo(neighbour, repo.env).dvc("init", "--subdir", "-q")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "projects")
    targets = [f"{repo.path}/.dvc/config.local", f"{sub}/.dvc/config.local", f"{neighbour}/.dvc/config.local"]
    two_stage_pipeline(subrepo, targets)
    subrepo.dvc("repro")
    assert_refused(subrepo)
    for target in targets:
        assert not Path(target).exists(), target


def test_temp_experiment_cannot_write_parent_config_or_queue(make_repo, busybox_image, no_leftovers):
    """`exp run --temp` mounts the parent repo (DVC_ROOT): its .dvc and the queue's folders stay read-only."""
    repo = make_repo(busybox_image)
    repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])
    two_stage_pipeline(repo, ['$DVC_ROOT/.dvc/config.local', '$DVC_ROOT/.dvc/tmp/exps/celery/broker/in/planted', ".dvc/config.local"])
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "hostile")
    proc = repo.dvc("exp", "run", "--temp")
    assert "refused" in proc.stdout and "WROTE" not in proc.stdout, proc.stdout
    assert not (repo.path / ".dvc" / "config.local").exists()
    assert not list((repo.path / ".dvc" / "tmp" / "exps").rglob("planted"))
    assert "MARK=[]" in proc.stdout, proc.stdout


def test_stage_cannot_plant_git_hooks_or_config(repo):
    """Git runs hooks and core.* commands on the host: a stage must not plant them (a sibling of hole 1)."""
    marker = repo.path.parent / "hook-ran"
    hook = f"#!/bin/sh\ntouch {marker}\n"
    repo.write("plant.sh", (
        "log=plant.log\n"
        f"if printf '{hook}' > .git/hooks/post-commit && chmod +x .git/hooks/post-commit; "
        "then echo WROTE hook >> $log; else echo refused hook >> $log; fi\n"
        f"if printf '[core]\\n  fsmonitor = touch {marker}\\n' >> .git/config; "
        "then echo WROTE config >> $log; else echo refused config >> $log; fi\n"
    ))
    repo.stage_add("-n", "plant", "-d", "plant.sh", "sh plant.sh")
    repo.dvc("repro")
    assert_refused(repo, "plant.log")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "after the stage")
    repo.run("git", "status")
    assert not marker.exists(), "a hook planted by the stage ran on the host"


def test_dvc_in_the_stage_still_works_with_read_only_config(make_repo, python_dvc_image, no_leftovers):
    """DVC inside the stage reads its (filtered) config and writes .dvc/tmp; changing the config is refused."""
    repo = make_repo(python_dvc_image)
    repo.config("docker.network", "none", local=True)
    repo.stage_add("-n", "inner",
             "dvc config -l > inner.txt; dvc status > status.txt 2>&1; echo status=$? >> inner.txt; "
             "touch .dvc/tmp/ok; dvc config --local core.autostage true 2> change.txt; echo change=$? >> inner.txt")
    repo.dvc("repro")
    inner = repo.read("inner.txt")
    assert "docker" not in inner and "status=0" in inner, (inner, repo.read("status.txt"))
    assert "change=0" not in inner and "Read-only file system" in repo.read("change.txt"), inner
    assert (repo.path / ".dvc" / "tmp" / "ok").exists()
    assert "autostage" not in (repo.path / ".dvc" / "config.local").read_text()


# --- hole 4: config copies are private, short-lived, and reaped ---------------------------------------


@pytest.fixture(scope="module")
def attacker():
    """A second local user: (pwd entry, setpriv prefix)."""
    entry = local_user(ATTACKER)
    return entry, setpriv(entry, "clear")


def secret_repo(repo: DvcRepo) -> None:
    repo.dvc("remote", "add", "--local", "store", "https://example.invalid/store")
    repo.dvc("remote", "modify", "--local", "store", "password", "s3cret")
    repo.config("docker.network", "none", local=True)
    os.chmod(repo.path / ".dvc" / "config.local", 0o600)


def copies(repo: DvcRepo) -> List[Path]:
    folder = repo.path / ".dvc" / "tmp" / "docker-exec"
    # not the lease folders (lease.py): they hold no copy, only the dvc process's pipe
    return sorted(p for p in folder.glob("*/*") if "-lease-" not in p.parent.name) if folder.is_dir() else []


WAIT_FOR_GO = "while [ ! -e go ]; do sleep 0.05; done; cat .dvc/config.local > seen.txt"


def test_config_copy_keeps_mode_and_others_cannot_read_it(repo, attacker):
    entry, as_attacker = attacker
    secret_repo(repo)
    repo.stage_add("-n", "wait", WAIT_FOR_GO)
    proc, _ = start_dvc(repo, "repro")
    try:
        local = wait_until(lambda: [c for c in copies(repo) if c.name == "config.local"], "the config copy", proc)[0]
        assert stat.S_IMODE(local.stat().st_mode) == 0o600
        assert stat.S_IMODE(local.parent.stat().st_mode) == 0o700
        peek = subprocess.run([*as_attacker, "cat", str(local)], capture_output=True, text=True)
        assert peek.returncode != 0 and "s3cret" not in peek.stdout
        (repo.path / "go").touch()
        assert proc.wait(timeout=HANG_GUARD) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    seen = repo.read("seen.txt")
    assert "s3cret" in seen and "docker" not in seen  # the stage got the filtered copy
    assert copies(repo) == []


def test_copies_of_a_killed_dvc_are_removed_by_the_next_run(repo, docker_client):
    secret_repo(repo)
    repo.stage_add("-n", "wait", WAIT_FOR_GO)
    proc, _ = start_dvc(repo, "repro", "wait")
    wait_until(lambda: copies(repo), "the config copies", proc)
    wait_until(lambda: our_containers(docker_client, str(repo.path)), "the container", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=HANG_GUARD)
    assert copies(repo), "the killed process left no copy: nothing to reap"
    repo.stage_add("-n", "quick", "true")
    repo.dvc("repro", "quick")
    assert copies(repo) == []
    assert not [p for p in (repo.path / ".dvc" / "tmp" / "docker-exec").iterdir()]


# --- holes 5 and 6: signals at every step of the lifecycle ---------------------------------------------


def assert_clean_interrupt(repo: DvcRepo, docker_client, proc: subprocess.Popen, err: Path) -> None:
    rc = proc.wait(timeout=HANG_GUARD)
    text = err.read_text()
    left = [c for c in docker_client.containers.list(all=True, filters={"label": "dvc-docker-exec"}, ignore_removed=True)
            if c.labels.get("dvc-docker-exec.repo", "").startswith(str(repo.path))]
    assert rc != 0, text
    assert not left, f"left behind: {[(c.name, c.status) for c in left]}"
    assert copies(repo) == []
    assert repo.lock() is None
    assert "Traceback" not in text, text


PHASES = ["overlays", "create", "created", "attached", "started", "exited"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
@pytest.mark.parametrize("phase", PHASES)
def test_signal_at_each_phase_leaves_nothing(repo, docker_client, phase, sig):
    repo.stage_add("-n", "s", "-o", "out.txt", "echo x > out.txt")
    proc, err = start_dvc(
        repo, "repro", env={"DVC_DOCKER_EXEC_TEST_PAUSE": phase},
        preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_until(lambda: f"paused at {phase}" in err.read_text(), f"pause at {phase}", proc)
    os.kill(proc.pid, sig)
    assert_clean_interrupt(repo, docker_client, proc, err)


def test_second_signal_during_cleanup_still_removes(repo, docker_client):
    repo.stage_add("-n", "s", "sleep 60")
    proc, err = start_dvc(repo, "repro", env={"DVC_DOCKER_EXEC_TEST_PAUSE": "stop"})
    wait_until(lambda: [c for c in our_containers(docker_client, str(repo.path)) if c.status == "running"],
               "a running container", proc)
    os.kill(proc.pid, signal.SIGTERM)
    wait_until(lambda: "paused at stop" in err.read_text(), "pause at stop", proc)
    os.kill(proc.pid, signal.SIGTERM)
    assert_clean_interrupt(repo, docker_client, proc, err)


def test_sighup_stops_a_running_stage(repo, docker_client):
    """Terminal closed / ssh dropped: like SIGTERM, the container goes and dvc records nothing."""
    repo.stage_add("-n", "s", "-o", "out.txt", "sleep 60; echo x > out.txt")
    proc, err = start_dvc(repo, "repro")
    wait_until(lambda: [c for c in our_containers(docker_client, str(repo.path)) if c.status == "running"],
               "a running container", proc)
    os.kill(proc.pid, signal.SIGHUP)
    assert_clean_interrupt(repo, docker_client, proc, err)
    assert "interrupted by SIGHUP" in err.read_text()
    assert not (repo.path / "out.txt").exists()


def test_sighup_ignored_under_nohup(repo, docker_client):
    """`nohup dvc repro`: the user asked to survive a hang-up, so the stage runs on."""
    repo.stage_add("-n", "s", "-o", "out.txt", "while [ ! -e go ]; do sleep 0.05; done; echo x > out.txt")
    proc, err = start_dvc(repo, "repro", preexec=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_until(lambda: [c for c in our_containers(docker_client, str(repo.path)) if c.status == "running"],
               "a running container", proc)
    os.kill(proc.pid, signal.SIGHUP)
    (repo.path / "go").touch()
    assert proc.wait(timeout=HANG_GUARD) == 0, err.read_text()
    assert repo.read("out.txt") == "x\n" and repo.lock()


# --- hole 7: the lock folder cannot be planted by another user ------------------------------------------


@pytest.fixture
def shared_tmp():
    """A /tmp-like folder (sticky, world-writable) of this test, so the real /tmp of others is untouched."""
    path = Path(tempfile.mkdtemp(prefix="dde-i7a-tmp-"))
    os.chmod(path, 0o1777)
    SESSION_ROOTS.append(str(path))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


PULLED = "localhost:1/absent:1"  # pulling fails fast: nothing listens there


def pull_attempt(repo: DvcRepo, shared_tmp: Path) -> subprocess.CompletedProcess:
    repo.config("docker.pull", "missing")
    repo.config("docker.image", PULLED)
    repo.stage_add("-n", "s", "true")
    env = {"TMPDIR": str(shared_tmp)}
    repo.env.pop("XDG_RUNTIME_DIR", None)
    return repo.dvc("repro", check=False, env=env, timeout=HANG_GUARD)


def test_planted_symlink_lock_folder_is_not_followed(repo, attacker, shared_tmp):
    _, as_attacker = attacker
    home = Path(repo.env["HOME"])
    planted = shared_tmp / f"dvc-docker-exec-{os.getuid()}"
    subprocess.run([*as_attacker, "ln", "-s", str(home), str(planted)], check=True)
    proc = pull_attempt(repo, shared_tmp)
    assert f"image '{PULLED}' is not present on this machine, and pulling it from" in proc.stderr, proc.stderr
    assert not list(home.glob("*.lock")), "followed the planted symlink into the victim's home"


def test_planted_lock_held_by_another_user_does_not_block(repo, attacker, shared_tmp):
    _, as_attacker = attacker
    planted = shared_tmp / f"dvc-docker-exec-{os.getuid()}"
    subprocess.run([*as_attacker, "mkdir", "-m", "777", str(planted)], check=True)
    lock = planted / (hashlib.sha1(f"pull:{PULLED}".encode()).hexdigest() + ".lock")
    holder = subprocess.Popen(
        [*as_attacker, sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o666); fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = pull_attempt(repo, shared_tmp)  # would wait forever on the attacker's lock
        assert f"image '{PULLED}' is not present on this machine, and pulling it from" in proc.stderr, proc.stderr
    finally:
        holder.kill()
        holder.wait()


# --- hole 10 (part): the daemon connection lost mid-stage ----------------------------------------------


@pytest.fixture
def proxy(tmp_path, socket_relay) -> SocketRelay:
    """A daemon socket whose connections the test can cut or stop."""
    return socket_relay(tmp_path / "d.sock")


def test_daemon_gone_mid_stage_is_one_clear_error(repo, docker_client, proxy):
    """The daemon stops answering while a stage runs (a connection that is only cut is resumed: streams.py)."""
    repo.stage_add("-n", "s", "-o", "out.txt", "sleep 60; echo x > out.txt")
    proc, err = start_dvc(repo, "repro", env={"DOCKER_HOST": f"unix://{proxy.path}"})
    running = wait_until(
        lambda: [c for c in our_containers(docker_client, str(repo.path)) if c.status == "running"],
        "a running container", proc,
    )
    proxy.stop()
    rc = proc.wait(timeout=HANG_GUARD)
    text = err.read_text().strip()
    short = running[0].id[:12]
    try:
        assert rc != 0
        assert f"lost the connection to the Docker daemon at 'unix://{proxy.path}'" in text, text
        assert "the stage's result is unknown" in text, text
        assert f"container {short} could not be removed" in text and f"docker rm -f {short}" in text, text
        assert len(text.splitlines()) == 1 and "Traceback" not in text and "http+docker" not in text, text
        assert copies(repo) == [] and repo.lock() is None
    finally:
        for container in our_containers(docker_client, str(repo.path)):
            container.remove(force=True)


def test_lost_connection_leaves_no_anonymous_volume(make_repo, volume_image, docker_client, proxy, no_leftovers):
    """P7: the daemon stops answering mid-stage; dvc exits with one line, the container's lease then stops it
    (a lost connection is not a dead dvc, but dvc exiting is) and AutoRemove takes its volume."""
    repo = make_repo(volume_image)
    repo.stage_add("-n", "v", "sleep 60")
    proc, err = start_dvc(repo, "repro", env={"DOCKER_HOST": f"unix://{proxy.path}"})
    volume = anonymous_volume(docker_client, repo)
    proxy.stop()
    assert proc.wait(timeout=HANG_GUARD) != 0
    assert "lost the connection" in err.read_text()
    wait_until(lambda: not our_containers(docker_client, str(repo.path)), "the container's removal")
    assert_volume_removed(docker_client, volume)

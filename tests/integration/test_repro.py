"""`dvc repro` in temporary Git+DVC repos against the real Docker Engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import yaml

from dvc_docker_exec.types.spec import HOME_IN_CONTAINER
from tests.conftest import (
    LABEL,
    container_events,
    containers_created,
    in_container_probe,
    our_containers,
    start_dvc,
    wait_until,
)

pytestmark = pytest.mark.docker


def add_stage(repo, name: str, cmd: str, *extra: str) -> None:
    repo.stage_add("-n", name, *extra, cmd)


def test_stage_runs_in_container_and_lock_equals_host_run(repo):
    cmd = f"{in_container_probe()} > where.txt; echo \"$DVC_STAGE\" > out.txt"
    add_stage(repo, "hello", cmd, "-o", "out.txt")
    # where.txt is not an out: it only tells us where the command ran
    proc = repo.dvc("repro")
    assert "docker-init" in repo.read("where.txt"), proc.stdout
    assert repo.read("out.txt") == "hello\n"
    in_container = repo.lock()

    repo.config("docker.enabled", "false")
    repo.dvc("repro", "-f")
    assert "docker-init" not in repo.read("where.txt")
    # the same lock but for the image identity (README "Provenance")
    recorded = yaml.safe_load(in_container)
    image_dep, *others = recorded["stages"]["hello"].pop("deps")  # the stage had no deps of its own
    assert image_dep["path"] == "docker:dvc-docker-exec-test/busybox:latest" and not others
    assert yaml.safe_load(repo.lock()) == recorded
    assert recorded["stages"]["hello"]["cmd"] == cmd


def test_quoting_pipes_env_and_shell(repo):
    repo.write("params.yaml", "x: 1\n")
    cmd = """A='a b'; echo "$A|$SHELL" | tr a-z A-Z > out.txt && printf '%s\\n' "it's" '$HOME' >> out.txt"""
    add_stage(repo, "q", cmd, "-o", "out.txt")
    repo.dvc("repro")
    assert repo.read("out.txt") == "A B|/BIN/SH\nit's\n$HOME\n"


def test_several_command_lines_stop_at_first_failure(repo):
    repo.write(
        "dvc.yaml",
        "stages:\n  multi:\n    cmd:\n    - echo one > a.txt\n    - exit 4\n    - echo three > c.txt\n",
    )
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert (repo.path / "a.txt").exists() and not (repo.path / "c.txt").exists()
    assert "failed to run: exit 4, exited with 4" in proc.stderr
    assert "dvc-docker-exec-test/busybox:latest" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert repo.lock() is None


def test_stdout_and_stderr_stay_apart(repo):
    # the command line is echoed by DVC; $((...)) keeps the printed words out of it
    add_stage(repo, "s", 'echo "out$((40+2))"; echo "err$((40+2))" >&2')
    proc = repo.dvc("repro")
    assert "out42" in proc.stdout and "out42" not in proc.stderr
    assert "err42" in proc.stderr and "err42" not in proc.stdout


def test_env_is_allow_listed_and_dvc_vars_passed(repo, docker_client, busybox_image):
    repo.dvc("config", "docker.env", "KEEP_ME,FIXED=yes")
    add_stage(repo, "e", "env | sort > env.txt")
    repo.dvc("repro", env={"KEEP_ME": "1", "DROP_ME": "1"})
    env = dict(line.split("=", 1) for line in repo.read("env.txt").splitlines() if "=" in line)
    assert env["KEEP_ME"] == "1" and env["FIXED"] == "yes"
    assert "DROP_ME" not in env
    assert env["DVC_ROOT"] == str(repo.path) and env["DVC_STAGE"] == "e"
    assert env["SHELL"] == "/bin/sh"
    # root keeps the HOME the image gives root (this busybox has no passwd: "/"); any
    # other uid gets the writable tmpfs HOME (test_non_root.py checks that as a
    # non-root user, also in CI, which runs as root)
    if os.getuid() == 0:
        plain = docker_client.containers.run(
            busybox_image, ["sh", "-c", "echo $HOME"], user="0:0", network_mode="none", remove=True
        )
        assert env["HOME"] == plain.decode().strip()
    else:
        assert env["HOME"] == HOME_IN_CONTAINER
    assert env["HOME"] != repo.env["HOME"]


def test_per_stage_opt_out_and_image_override(repo, busybox_image):
    repo.write(
        "dvc.yaml",
        f"""stages:
  host:
    cmd: {in_container_probe()} > host.txt
    meta: {{docker: false}}
  boxed:
    cmd: {in_container_probe()} > boxed.txt
    meta: {{docker: {busybox_image}}}
  mapped:
    cmd: {in_container_probe()} > mapped.txt
    meta:
      docker: {{image: {busybox_image}, network: none}}
""",
    )
    repo.dvc("repro")
    assert "docker-init" not in repo.read("host.txt")
    assert "docker-init" in repo.read("boxed.txt")
    assert "docker-init" in repo.read("mapped.txt")


def test_invalid_stage_meta_names_the_stage(repo):
    repo.write("dvc.yaml", "stages:\n  bad:\n    cmd: echo\n    meta: {docker: {memory: lots}}\n")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert "stage 'bad' meta.docker.memory" in proc.stderr and "'lots'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_dry_and_verbose_show_docker_run_line(repo):
    add_stage(repo, "d", "echo hi > out.txt", "-o", "out.txt")
    dry = repo.dvc("repro", "--dry")
    assert "docker run --rm --init" in dry.stdout
    assert f"target={repo.path}" in dry.stdout and "--entrypoint /bin/sh" in dry.stdout
    assert not (repo.path / "out.txt").exists()
    verbose = repo.dvc("repro", "-v")
    assert "docker run --rm --init" in verbose.stdout + verbose.stderr


def _mounts(line: str) -> list:
    import re
    import shlex

    args = shlex.split(line.splitlines()[0].split("docker run ", 1)[1])
    found = [args[i + 1] for i, arg in enumerate(args) if arg == "--mount"]
    return sorted(re.sub(r"/docker-exec/\d+-[0-9a-f]+/", "/docker-exec/<run>/", m) for m in found)


def test_dry_line_shows_the_mounts_of_the_run(make_repo, busybox_image, no_leftovers):
    """Issue 20, item 4: the same mounts as the run (covers, every .dvc of the Git repo, filtered config), placeholders for per-run paths."""
    top = make_repo(busybox_image)
    top.run("git", "rm", "-rq", "--cached", ".dvc")  # the Git root holds two DVC projects: top/proj and top/other
    for name in ("proj", "other"):
        (top.path / name).mkdir()
        top.run(*top.dvc_argv(), "init", "--subdir", "-q", cwd=top.path / name)
    proj = type(top)(top.path / "proj", top.env)
    proj.config("docker.image", busybox_image)
    proj.config("docker.pull", "never")
    top.run("git", "add", "-A")
    top.run("git", "commit", "-qm", "two projects")
    add_stage(proj, "d", "echo hi > out.txt", "-o", "out.txt")
    dry = proj.dvc("repro", "--dry", "-f")  # -f: no status, so --dry asks the daemon nothing
    assert not list(top.path.rglob("docker-exec")), "--dry made the folders a run makes"
    run = proj.dvc("repro", "-v")
    logged = next(line for line in (run.stdout + run.stderr).splitlines() if "DEBUG: docker run " in line)
    dry_line = next(line for line in dry.stdout.splitlines() if line.startswith("docker run "))
    assert _mounts(dry_line) == _mounts(logged)
    assert f"target={top.path}/other/.dvc,readonly" in dry_line  # the sibling project's config folder
    assert "/docker-exec/<run>/config,target=" in dry_line and "<run> is the folder each run makes" in dry.stdout
    assert "--dry did not ask the daemon" in dry.stdout


def test_run_cache_hit_starts_no_container(repo, docker_client):
    repo.write("in.txt", "x\n")  # the run cache only keeps stages with deps
    add_stage(repo, "c", "cat in.txt > /dev/null; echo cached > out.txt", "-d", "in.txt", "-o", "out.txt")
    with containers_created(docker_client, repo) as first:
        repo.dvc("repro")
    assert first == ["c"]  # positive control: the same method sees the first run's container
    (repo.path / "out.txt").unlink()
    (repo.path / "dvc.lock").unlink()
    with containers_created(docker_client, repo) as again:
        proc = repo.dvc("repro")
    assert repo.read("out.txt") == "cached\n"
    assert "restored" in proc.stdout.lower() or "Stage 'c' is cached" in proc.stdout
    assert again == []


def test_every_container_is_removed_after_success_and_failure(repo, docker_client):
    """The daemon reports each created container destroyed by the time dvc returns, also after a failure."""
    repo.write("dvc.yaml", "stages:\n  ok:\n    cmd: [echo one, echo two]\n  bad:\n    cmd: exit 3\n")
    since = int(time.time())
    repo.dvc("repro", "ok")
    assert repo.dvc("repro", "bad", check=False).returncode != 0
    created = {e["id"]: e["Actor"]["Attributes"][f"{LABEL}.stage"] for e in container_events(
        docker_client, "create", since, repo=str(repo.path))}
    assert sorted(created.values()) == ["bad", "ok", "ok"], created
    destroyed = {e["id"] for e in container_events(docker_client, "destroy", since, repo=str(repo.path))}
    assert destroyed == set(created), f"created {created}, destroyed {destroyed}"
    assert not our_containers(docker_client, str(repo.path))


def test_frozen_always_changed_single_item_downstream(repo):
    repo.write(
        "dvc.yaml",
        """stages:
  a:
    cmd: echo a >> a.log; echo a > a.txt
    outs: [a.txt]
  b:
    cmd: echo b >> b.log; cat a.txt > b.txt
    deps: [a.txt]
    outs: [b.txt]
  always:
    cmd: echo x >> always.log
    always_changed: true
  frozen:
    cmd: echo x >> frozen.log
    frozen: true
""",
    )
    repo.dvc("repro")
    repo.dvc("repro")
    assert repo.read("a.log") == "a\n" and repo.read("b.log") == "b\n"
    assert repo.read("always.log") == "x\nx\n"
    assert not (repo.path / "frozen.log").exists()
    repo.dvc("repro", "-f", "-s", "b")
    assert repo.read("a.log") == "a\n" and repo.read("b.log") == "b\nb\n"
    repo.dvc("repro", "-f", "--downstream", "a")
    assert repo.read("a.log") == "a\na\n" and repo.read("b.log") == "b\nb\nb\n"


def test_symlink_cache_outside_repo_and_external_out(repo, tmp_path):
    cache = tmp_path / "cache-outside"
    external = tmp_path / "external"
    external.mkdir()
    repo.dvc("cache", "dir", str(cache))
    repo.config("cache.type", "symlink")
    repo.write("data.txt", "payload\n")
    repo.dvc("add", "data.txt")
    assert (repo.path / "data.txt").is_symlink()
    add_stage(repo, "ext", f"cat data.txt > {external}/copy.txt", "-d", "data.txt", "-O", f"{external}/copy.txt")
    repo.dvc("repro")
    assert (external / "copy.txt").read_text() == "payload\n"


def test_dvc_inside_stage_image_sees_config_without_our_section(make_repo, python_dvc_image, no_leftovers):
    repo = make_repo(python_dvc_image)
    repo.config("docker.network", "none", local=True)
    repo.config("core.autostage", "false")
    add_stage(repo, "inner", "dvc config -l > inner.txt 2> inner.err; echo $? >> inner.txt")
    repo.dvc("repro")
    inner = repo.read("inner.txt")
    assert "core.autostage=false" in inner and "docker" not in inner, inner
    assert "extra keys" not in repo.read("inner.err")
    assert "[docker]" in repo.read(".dvc/config")  # the host file is untouched
    assert not list((repo.path / ".dvc" / "tmp").glob("docker-exec/*"))


def test_python_api_and_module_entry(repo):
    add_stage(repo, "api", f"{in_container_probe()} > api.txt")
    repo.run(sys.executable, "-c", "from dvc.repo import Repo; Repo('.').reproduce()")
    assert "docker-init" in repo.read("api.txt")
    (repo.path / "api.txt").unlink()
    repo.run(sys.executable, "-m", "dvc", "repro", "-f")
    assert "docker-init" in repo.read("api.txt")


def test_oom_kill_is_reported(repo):
    repo.config("docker.memory", "16m")
    add_stage(repo, "oom", "dd if=/dev/zero of=/dev/null bs=256M count=1")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert "out of memory" in proc.stderr, proc.stderr


def test_daemon_unreachable(repo, tmp_path):
    add_stage(repo, "x", "echo hi")
    sock = tmp_path / "nothing.sock"
    proc = repo.dvc("repro", check=False, env={"DOCKER_HOST": f"unix://{sock}"})
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert f"cannot reach the Docker daemon at 'unix://{sock}'" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert repo.lock() is None


def test_absent_image(repo):
    add_stage(repo, "x", "echo hi")
    repo.config("docker.image", "dvc-docker-exec-test/absent:1")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert "image 'dvc-docker-exec-test/absent:1' is not present locally and docker.pull is 'never'" in proc.stderr
    # pulling fails fast: nothing listens on localhost:1
    repo.config("docker.pull", "missing")
    repo.config("docker.image", "localhost:1/absent:1")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert "image 'localhost:1/absent:1' is not present on this machine, and pulling it from localhost:1 failed" in proc.stderr
    assert "connection refused" in proc.stderr and "Traceback" not in proc.stderr


def test_typo_in_the_image_name_leads_somewhere(repo, busybox_image):
    """Issue 20, item 2: not present here, why the pull failed, the close local name, the recorded image, how to build."""
    add_stage(repo, "x", "echo hi > out.txt", "-o", "out.txt")
    typo = busybox_image.replace("busybox", "busybx")
    repo.config("docker.image", typo)
    repo.config("docker.pull", "missing")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert f"image '{typo}' is not present on this machine, and pulling it from docker.io failed (" in error, error
    # Docker Hub could have that name: the pull failed before a registry answered
    assert f"did you mean '{busybox_image}'?" in error and "`dvc docker pull` once docker.io is reachable" in error
    # after a run under the right name, the recorded image is found under it
    repo.config("docker.image", busybox_image)
    repo.dvc("repro")
    repo.config("docker.image", typo)
    for command in (["status"], ["repro", "--dry"]):
        proc = repo.dvc(*command)
        assert f"image '{typo}' is not on this machine" in proc.stdout + proc.stderr, (command, proc.stdout)
        assert f"`docker tag {busybox_image} {typo}`" in proc.stderr
    proc = repo.dvc("repro", check=False)
    assert proc.stderr.strip().splitlines()[-1].endswith(f"`docker tag {busybox_image} {typo}`"), proc.stderr


def test_status_reports_an_absent_image_as_changed(repo, busybox_image):
    """What ran is not here: like a deleted file dependency, the stage is changed, never "up to date"."""
    add_stage(repo, "x", "echo hi > out.txt", "-o", "out.txt")
    repo.dvc("repro")
    absent = "dvc-docker-exec-test/absent-status:nope"
    repo.config("docker.image", absent)
    change = f"image '{absent}' is not on this machine"
    proc = repo.dvc("status")
    assert proc.returncode == 0 and "up to date" not in proc.stdout, proc.stdout
    assert [line.strip() for line in proc.stdout.splitlines()] == [
        "x:", "changed deps:", f"docker:{absent}:", f"deleted:            {change}"
    ], proc.stdout
    assert repo.dvc("status", "-q", check=False).returncode == 1  # DVC's "something changed"
    assert json.loads(repo.dvc("status", "--json").stdout) == {
        "x": [{"changed deps": {f"docker:{absent}": {change: "deleted"}}}]
    }
    dry = repo.dvc("repro", "--dry")
    assert "Running stage 'x'" in dry.stdout and "up to date" not in dry.stdout, dry.stdout
    # the image back: as recorded
    repo.config("docker.image", busybox_image)
    assert "Data and pipelines are up to date." in repo.dvc("status").stdout


def test_absent_image_error_is_one_short_line(repo, busybox_image, docker_client):
    """What is missing and the fixes that apply here: `dvc docker pull` only where a registry could have it."""
    add_stage(repo, "x", "echo hi > out.txt", "-o", "out.txt")
    family = f"dvc-docker-exec-test/trial-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(busybox_image).tag(family, "v1")  # built here: no registry digest of its repository
    try:
        repo.config("docker.image", f"{family}:nope")
        for policy in ("never", "missing"):  # missing: the pull fails, no registry is reachable here
            repo.config("docker.pull", policy)
            proc = repo.dvc("repro", check=False)
            assert proc.returncode != 0 and "Traceback" not in proc.stderr
            (error,) = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
            assert "dvc docker pull" not in error, error  # no registry has a tag made here
            assert f"did you mean '{family}:v1'?" in error and f"`docker build -t {family}:nope .`" in error, error
            # about 200 characters besides DVC's prefix and the image's names (each said once per use)
            message = error.split("': ", 1)[1].replace(f"{family}:nope", "IMG").replace(f"{family}:v1", "IMG")
            assert len(message) < 210, (len(message), error)
    finally:
        docker_client.images.remove(f"{family}:v1")
    # nothing says where this one comes from: a registry could have it
    repo.config("docker.pull", "never")
    repo.config("docker.image", "qzx-absent-image:1")
    (error,) = [line for line in repo.dvc("repro", check=False).stderr.splitlines() if line.startswith("ERROR")]
    assert error == (
        "ERROR: failed to reproduce 'x': image 'qzx-absent-image:1' is not present locally and docker.pull "
        "is 'never'; `dvc docker pull` (or `dvc config docker.pull missing`); "
        "`docker build -t qzx-absent-image:1 .` or `docker load -i FILE`"
    ), error
    assert len(error.split("': ", 1)[1]) < 200  # besides DVC's prefix


def test_unknown_key_refused(repo):
    before = repo.read(".dvc/config")
    proc = repo.dvc("config", "docker.no_such_key", "1", check=False)
    assert proc.returncode != 0
    assert "extra keys not allowed" in proc.stderr and "no_such_key" in proc.stderr
    assert repo.read(".dvc/config") == before
    proc = repo.dvc("config", "docker.memory", "lots", check=False)
    assert proc.returncode != 0 and "'lots'" in proc.stderr
    assert repo.read(".dvc/config") == before


# The stage reports the signal it receives (into sig.txt, not an out) unless told to
# ignore signals; `wait` lets the shell's trap run at once while `sleep` is running.
SLEEPY = (
    "{traps}; echo started > started.txt; sleep 600 & wait $!; echo never > out.txt"
)
REPORT = "trap 'echo INT > sig.txt; exit 130' INT; trap 'echo TERM > sig.txt; exit 143' TERM"
IGNORE = "trap '' INT TERM"
GONE_WITHIN = 60  # seconds: generous on a loaded machine; "gone within 2 s" is measured by benchmarks/stop_bench.py


def _start_sleeping_stage(repo, docker_client, name: str, traps: str = REPORT):
    """`dvc repro` of a stage that sleeps, once its command has set its traps: (proc, stderr file)."""
    add_stage(repo, name, SLEEPY.format(traps=traps), "-o", "out.txt")
    # own process group, like a shell job; SIGINT reset (background jobs inherit SIG_IGN)
    proc, err = start_dvc(repo, "repro", preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # the command has set its traps once it wrote started.txt
    wait_until(lambda: (repo.path / "started.txt").exists(), "the stage's traps set", proc)
    assert [c for c in our_containers(docker_client, str(repo.path)) if c.status == "running"]
    return proc, err


def _wait_gone(docker_client, repo) -> None:
    deadline = time.monotonic() + GONE_WITHIN
    while our_containers(docker_client, str(repo.path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not our_containers(docker_client, str(repo.path)), f"container still there {GONE_WITHIN}s after the signal"


@pytest.mark.parametrize("sig", ["SIGINT-group", "SIGTERM"])
def test_signal_stops_and_removes_container(repo, docker_client, sig):
    """The container receives the signal dvc got, stops and is removed; no out, no lock."""
    proc, stderr = _start_sleeping_stage(repo, docker_client, "sleepy")
    if sig == "SIGINT-group":
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: SIGINT to the foreground process group
    else:
        proc.send_signal(signal.SIGTERM)
    _wait_gone(docker_client, repo)
    proc.wait(timeout=GONE_WITHIN)
    err = stderr.read_text()
    got = repo.read("sig.txt") if (repo.path / "sig.txt").exists() else "no signal\n"
    assert got == sig.split("-")[0][3:] + "\n", "the command in the container did not get the signal dvc got"
    assert proc.returncode != 0
    assert "Traceback" not in err, err
    assert not (repo.path / "out.txt").exists()
    assert repo.lock() is None


def test_signal_ignored_by_the_command_still_stops_and_removes_it(repo, docker_client):
    """A command that ignores SIGTERM is killed after the grace period, then removed."""
    proc, stderr = _start_sleeping_stage(repo, docker_client, "stubborn", traps=IGNORE)
    since = int(time.time())
    proc.send_signal(signal.SIGTERM)
    _wait_gone(docker_client, repo)
    proc.wait(timeout=GONE_WITHIN)
    err = stderr.read_text()
    assert proc.returncode != 0 and "Traceback" not in err, err
    kills = [e["Actor"]["Attributes"]["signal"] for e in container_events(docker_client, "kill", since, repo=str(repo.path))]
    # the daemon was asked for SIGTERM first, then for SIGKILL (or a forced removal, which kills)
    assert kills[:1] == ["15"], kills
    dies = container_events(docker_client, "die", since, repo=str(repo.path))
    assert [e["Actor"]["Attributes"]["exitCode"] for e in dies] == ["137"], dies
    assert not (repo.path / "out.txt").exists() and repo.lock() is None


def test_console_script_entry(repo):
    add_stage(repo, "script", f"{in_container_probe()} > script.txt")
    dvc_script = os.path.join(os.path.dirname(sys.executable), "dvc")
    repo.run(dvc_script, "repro")
    assert "docker-init" in repo.read("script.txt")


def test_tty_when_stdout_is_a_terminal(repo):
    import pty

    add_stage(repo, "tty", "if [ -t 1 ]; then echo yes > tty.txt; else echo no > tty.txt; fi")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dvc", "repro"], cwd=repo.path, env=repo.env, stdout=slave, stderr=slave
        )
        os.close(slave)
        output = b""
        while True:  # drain the terminal so the command never blocks on it
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(timeout=60) == 0, output.decode(errors="replace")
    finally:
        os.close(master)
    assert repo.read("tty.txt") == "yes\n"
    repo.dvc("repro", "-f")  # captured stdout: no TTY
    assert repo.read("tty.txt") == "no\n"


def test_gpus_reach_the_daemon_as_a_device_request(repo, docker_client):
    """The created container carries the device request (read from the daemon, on any host); then the
    run either succeeds (a host with NVIDIA's toolkit) or fails as one clear line (a host without)."""
    repo.config("docker.gpus", "all")
    add_stage(repo, "gpu", "echo ran > gpu.txt", "-o", "gpu.txt")
    proc, err = start_dvc(repo, "repro", env={"DVC_DOCKER_EXEC_TEST_PAUSE": "created"})
    wait_until(lambda: "paused at created" in err.read_text(), "the pause after the create", proc)
    (created,) = our_containers(docker_client, str(repo.path))
    requests = created.attrs["HostConfig"].get("DeviceRequests") or []
    assert [(r["Count"], r["Capabilities"]) for r in requests] == [(-1, [["gpu"]])], requests
    proc.send_signal(signal.SIGUSR1)  # resume: start it
    assert proc.wait(timeout=120) is not None
    text = err.read_text().strip()
    assert "Traceback" not in text, text
    if proc.returncode == 0:  # a host whose daemon has NVIDIA's driver: the stage ran and is recorded
        assert repo.read("gpu.txt") == "ran\n" and "gpu.txt" in (repo.lock() or "")
        return
    errors = [line for line in text.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, text
    assert "could not select device driver" in errors[0] and "NVIDIA Container Toolkit" in errors[0], text
    assert repo.lock() is None and not (repo.path / "gpu.txt").exists()


def test_subdir_project_and_wdir(make_repo, busybox_image, no_leftovers):
    """`dvc init --subdir`: the Git root is mounted too; a stage's wdir is its working directory."""
    top = make_repo(None, name="top")
    top.write("shared.txt", "from the git root\n")
    project = top.path / "project"
    project.mkdir()
    top.dvc("init", "--subdir", "-q", cwd=project)
    top.dvc("config", "docker.image", busybox_image, cwd=project)
    top.dvc("config", "docker.pull", "never", cwd=project)
    (project / "sub").mkdir()
    (project / "dvc.yaml").write_text(
        f"stages:\n  s:\n    wdir: sub\n    cmd: pwd > here.txt; cat ../../shared.txt > copy.txt; {in_container_probe()} > where.txt\n"
    )
    top.dvc("repro", cwd=project)
    assert (project / "sub" / "here.txt").read_text() == f"{project}/sub\n"
    assert (project / "sub" / "copy.txt").read_text() == "from the git root\n"
    assert "docker-init" in (project / "sub" / "where.txt").read_text()


def test_image_as_param_reruns_stage_on_change(repo, busybox_image, docker_client):
    """The README's recipe: the image as a param, templated into meta.docker."""
    second = "dvc-docker-exec-test/busybox:second"
    docker_client.images.get(busybox_image).tag("dvc-docker-exec-test/busybox", "second")
    repo.write("params.yaml", f"image: {busybox_image}\n")
    repo.write(
        "dvc.yaml",
        'stages:\n  s:\n    cmd: echo "$DVC_STAGE" >> runs.txt\n    params: [image]\n    meta: {docker: "${image}"}\n',
    )
    since = int(time.time())
    assert "in a container of image 'dvc-docker-exec-test/busybox:latest'" in repo.dvc("repro").stdout
    assert "didn't change" in repo.dvc("repro").stdout
    repo.write("params.yaml", f"image: {second}\n")
    assert f"in a container of image '{second}'" in repo.dvc("repro").stdout
    assert repo.read("runs.txt") == "s\ns\n"
    # the daemon's record, not our log line: one container of each image
    created = container_events(docker_client, "create", since, repo=str(repo.path))
    assert [e["Actor"]["Attributes"]["dvc-docker-exec.image"] for e in created] == [busybox_image, second]


def test_machine_enabled_false_wins_over_meta_docker(repo, busybox_image, tmp_path):
    """Issue 20, item 1: `dvc config --local docker.enabled false` runs a `meta.docker: ${image}` stage on the host."""
    repo.write("params.yaml", f"image: {busybox_image}\n")
    repo.write(
        "dvc.yaml",
        "stages:\n  a:\n    cmd: echo host > out.txt\n"
        "    outs: [out.txt]\n    params: [image]\n    meta: {docker: '${image}'}\n",
    )
    repo.config("docker.enabled", "false", local=True)
    missing = {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc = repo.dvc("repro", env=missing)
    assert "in a container" not in proc.stdout and repo.read("out.txt") == "host\n"
    assert "Running stage 'a':" in proc.stdout


@pytest.mark.parametrize("fault", ["no daemon", "absent image", "bad setting"])
def test_outputs_survive_when_the_stage_cannot_start(repo, tmp_path, fault):
    """Issue 20, item 3: the daemon, the image and the settings are checked before DVC deletes the outputs."""
    add_stage(repo, "x", "echo new > out.txt", "-o", "out.txt")
    repo.dvc("repro")
    env = {}
    if fault == "no daemon":
        env = {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    elif fault == "absent image":
        repo.config("docker.image", "dvc-docker-exec-test/absent:1")
    else:
        repo.config("docker.memory", "1g")
        data = yaml.safe_load(repo.read("dvc.yaml"))
        data["stages"]["x"]["meta"] = {"docker": {"memory": "lots"}}
        repo.write("dvc.yaml", yaml.safe_dump(data))
    (repo.path / "out.txt").chmod(0o644)
    repo.write("out.txt", "old\n")
    proc = repo.dvc("repro", "-f", check=False, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert repo.read("out.txt") == "old\n", proc.stderr


def test_cache_dir_that_does_not_exist_yet_is_made_like_dvc_does(repo, tmp_path):
    """Issue 18 (2): `dvc cache dir --local /new/dir` then repro: Docker refused the missing mount source."""
    cache = tmp_path / "not-yet" / "cache"
    repo.dvc("cache", "dir", "--local", str(cache))
    repo.stage_add("-n", "s", "-o", "o.txt", "echo hi > o.txt")
    repo.dvc("repro")
    assert repo.read("o.txt") == "hi\n"
    assert [p for p in cache.rglob("*") if p.is_file()], "the output was not cached in the new cache dir"

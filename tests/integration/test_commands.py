"""`dvc docker doctor|images|pull|ps|prune` through DVC's own CLI, against the real engine."""

from __future__ import annotations

import json
import os
import signal
import sys

import docker
import pytest

from tests.conftest import LABEL, our_containers, push_test_image, recorded_pulls, remove_repository, setpriv, start_dvc, wait_running, wait_until
from tests.helpers import doctor

pytestmark = pytest.mark.docker

SUBCOMMANDS = ("doctor", "images", "pull", "ps", "prune")
ABSENT = "dvc-docker-exec-test/absent:10"


def lines_of(text: str, prefix: str) -> list:
    return [line for line in text.splitlines() if line.startswith(prefix)]


# --- registration, DVC's options and errors --------------------------------------------------------


def test_listed_by_dvc_help(make_repo, tmp_path):
    repo = make_repo()
    top = repo.dvc("--help").stdout
    assert any(line.split()[:1] == ["docker"] for line in top.splitlines()), top
    group = repo.dvc("docker", "--help").stdout
    assert all(name in group for name in SUBCOMMANDS), group
    # the old console script is a thin alias of `dvc docker`
    alias = repo.run(sys.executable, "-m", "dvc_docker_exec.cli", "--help").stdout
    assert alias.startswith("usage: dvc docker")


def test_cd_quiet_verbose_and_not_a_repo(make_repo, busybox_image, tmp_path):
    repo = make_repo(busybox_image)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = repo.dvc("--cd", str(repo.path), "docker", "ps", cwd=elsewhere)
    assert proc.stdout.strip() == "No containers of dvc-docker-exec for this repo."
    assert repo.dvc("docker", "ps", "-q").stdout == ""
    verbose = repo.dvc("docker", "ps", "-v")
    assert "DEBUG: Docker endpoint 'unix:///var/run/docker.sock'" in verbose.stderr + verbose.stdout
    for name in SUBCOMMANDS:
        proc = repo.dvc("docker", name, check=False, cwd=elsewhere)
        assert proc.returncode == 253, (name, proc.stderr)
        assert proc.stderr.strip() == "ERROR: you are not inside of a DVC repository (checked up to mount point '/')"


def test_unreachable_daemon_is_one_line(make_repo, busybox_image, tmp_path):
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "s", "echo hi")
    sock = tmp_path / "no-daemon.sock"
    env = {"DOCKER_HOST": f"unix://{sock}"}
    for name in ("images", "pull", "ps", "prune"):
        proc = repo.dvc("docker", name, check=False, env=env)
        assert proc.returncode == 255, (name, proc.stderr)
        err = proc.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith(
            f"ERROR: cannot reach the Docker daemon at 'unix://{sock}' (from DOCKER_HOST) (No such file or directory): start Docker"
        ), (name, err)
    report = doctor(repo, env=env)
    assert report["rc"] == 1 and report["ok"] is False
    assert report["by_name"]["endpoint"]["level"] == "ok" and "DOCKER_HOST" in report["by_name"]["endpoint"]["message"]
    assert report["by_name"]["socket"]["level"] == "error" and report["by_name"]["socket"]["fix"]
    assert report["by_name"]["daemon"]["level"] == "error" and "cannot reach" in report["by_name"]["daemon"]["message"]
    text = repo.dvc("docker", "doctor", check=False, env=env)
    assert text.returncode == 1
    assert lines_of(text.stdout, "error   daemon: cannot reach the Docker daemon") and " -> fix: start Docker" in text.stdout
    assert text.stdout.splitlines()[-1] == "2 errors, 0 warnings."


def test_permission_denied_is_one_line(tester, make_user_repo, busybox_image):
    entry, _ = tester
    repo = make_user_repo(entry, setpriv(entry, "clear"), busybox_image)  # not in the socket's group
    repo.dvc("stage", "add", "-n", "s", "echo hi")
    for name in ("images", "ps"):
        proc = repo.dvc("docker", name, check=False)
        err = proc.stderr.strip()
        assert proc.returncode == 255 and len(err.splitlines()) == 1, err
        assert err.startswith("ERROR: permission denied on the Docker socket 'unix:///var/run/docker.sock'"), err
    proc = repo.dvc("docker", "doctor", check=False)
    assert proc.returncode == 1
    assert lines_of(proc.stdout, f"error   socket: uid {entry.pw_uid} may not read and write /var/run/docker.sock")
    assert lines_of(proc.stdout, "error   daemon: permission denied on the Docker socket")


# --- doctor ------------------------------------------------------------------------------------------


def test_doctor_healthy(make_repo, busybox_image):
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "hello", "echo hi")
    repo.stage_add("-n", "host", "echo on the host")
    repo.config("docker.memory", "64m")
    with open(repo.path / "dvc.yaml") as fobj:
        text = fobj.read()
    (repo.path / "dvc.yaml").write_text(text.replace("cmd: echo on the host", "cmd: echo on the host\n    meta:\n      docker: false"))
    report = doctor(repo)
    assert report["rc"] == 0 and report["ok"] is True, report
    by_name = report["by_name"]
    for name in ("endpoint", "socket", "daemon", "engine", "limits", "stage 'hello'"):
        assert by_name[name]["level"] == "ok", by_name[name]
    assert by_name["stage 'hello'"]["message"].startswith(f"image '{busybox_image}' is present, identity sha256:")
    assert "stage 'host'" not in by_name  # runs on the host
    assert by_name["paths"]["level"] == "ok", by_name["paths"]  # see test_doctor_daemon_beside_dvc
    text = repo.dvc("docker", "doctor").stdout
    assert lines_of(text, "ok      daemon: Docker Engine")


def test_doctor_daemon_beside_dvc(make_repo, busybox_image):
    """/.dockerenv, and the daemon runs in the same container (this machine): no path warning to chase."""
    from dvc_docker_exec.boundary.paths import in_container

    repo = make_repo(busybox_image)
    repo.dvc("stage", "add", "-n", "hello", "echo hi")
    text = repo.dvc("docker", "doctor").stdout
    line = lines_of(text, "ok      paths: ")
    assert line and not lines_of(text, "warning paths"), text
    if in_container():  # this machine: the daemon is a process here, found from /proc
        assert "runs beside DVC, on the same filesystem" in line[0], line
        pid = line[0].split("pid ", 1)[1].split(")", 1)[0]
        with open(f"/proc/{pid}/comm") as fobj:
            assert fobj.read().strip() in ("dockerd", "podman"), line
        assert f"{repo.path} is mounted at the same path" in line[0] or "no translation" in line[0]
    else:
        assert "DVC runs on the Docker host" in line[0], line
    repo.dvc("repro")  # and what doctor says holds: the stage runs with its paths as they are


def test_doctor_missing_image_and_impossible_settings(make_repo, tmp_path):
    repo = make_repo(ABSENT)  # docker.pull never
    repo.stage_add("-n", "train", "echo hi")
    report = doctor(repo)
    assert report["rc"] == 1
    stage = report["by_name"]["stage 'train'"]
    assert stage["level"] == "error" and "is not present and docker.pull is 'never'" in stage["message"]
    assert stage["fix"].startswith("`dvc docker pull train`")

    repo.config("docker.pull", "missing")
    report = doctor(repo)
    assert report["rc"] == 0 and report["by_name"]["stage 'train'"]["level"] == "warning"

    repo.stage_add("-n", "bad", "echo bad")
    text = (repo.path / "dvc.yaml").read_text().replace("cmd: echo bad", "cmd: echo bad\n    meta:\n      docker: {network: 'no such'}")
    (repo.path / "dvc.yaml").write_text(text)
    report = doctor(repo)
    assert report["rc"] == 1 and report["by_name"]["stage 'bad'"]["message"].startswith(
        "meta.docker.network: expected a network name"
    ), report["by_name"]["stage 'bad'"]
    # fixed (DVC's `stage add -f` keeps meta, so remove the stage instead)
    (repo.path / "dvc.yaml").write_text(text.replace("    meta:\n      docker: {network: 'no such'}\n", ""))
    repo.dvc("remove", "bad")

    # machine-level: a repository may not mount host paths outside itself (trust model)
    repo.config("docker.volumes", f"{tmp_path}/not-there:/data", local=True)
    repo.config("docker.gpus", "all")
    proc = repo.dvc("docker", "doctor", check=False)
    assert proc.returncode == 1
    assert lines_of(proc.stdout, f"error   stage 'train': docker.volumes source '{tmp_path}/not-there' does not exist")
    assert lines_of(proc.stdout, "error   gpus: 'train' request GPUs (docker.gpus) but the daemon has no GPU runtime")


# --- images / pull against a registry on loopback ---------------------------------------------------


LAYER = 2_000_000  # bytes: a layer the daemon does not have, large enough for pull progress


@pytest.fixture
def new_layer_image(registry, docker_client, busybox_image):
    """An image in the registry with a layer (2 MB) that the daemon does not have."""
    import uuid

    reference = f"{registry}/dde-i10-{uuid.uuid4().hex[:8]}:1"
    push_test_image(docker_client, busybox_image, reference, size=LAYER)
    yield reference
    remove_repository(docker_client, reference.rsplit(":", 1)[0])


def test_images_and_pull(make_repo, new_layer_image, docker_client, no_leftovers):
    remote_image = new_layer_image
    repo = make_repo(remote_image)
    repo.config("docker.pull", "missing")
    repo.stage_add("-n", "a", "echo a")
    repo.stage_add("-n", "b", "echo b")
    rows = json.loads(repo.dvc("docker", "images", "--json").stdout)
    assert [(r["stage"], r["image"], r["recorded"], r["current"], r["present"]) for r in rows] == [
        ("a", remote_image, None, None, False),
        ("b", remote_image, None, None, False),
    ]

    with recorded_pulls(docker_client, remote_image) as pulls:
        proc = repo.dvc("docker", "pull", "-j", "2")
    assert len(pulls) == 1  # once, though two stages use it
    # not a terminal: one line per layer, then one line for the image
    layer_lines = lines_of(proc.stderr, f"{remote_image}: ")
    assert any(line.endswith(": Pull complete (2.0 MB)") for line in layer_lines), proc.stderr
    assert any(line.endswith(": Already exists") for line in layer_lines), proc.stderr  # busybox's layer
    assert layer_lines[-1].startswith(f"{remote_image}: Downloaded newer image for {remote_image}")
    assert proc.stdout.strip() == f"Pulled {remote_image}"

    table = repo.dvc("docker", "images").stdout.splitlines()
    assert table[0].split() == ["Stage", "Image", "Recorded", "Now", "Present"]
    assert [line.split() for line in table[1:]] == [
        [stage, remote_image, "none", line.split()[3], "yes"] for stage, line in zip("ab", table[1:])
    ], table


def test_pull_by_recorded_digest(make_repo, new_layer_image, registry, docker_client, busybox_image, no_leftovers):
    """A new machine gets what dvc.lock records, not what the tag names today."""
    reference = new_layer_image
    repo = make_repo(reference)
    repo.config("docker.pull", "missing")
    # a stage with an output: DVC reruns stages without deps/outs every time (no identity to track)
    repo.stage_add("-n", "train", "-o", "t.txt", "echo trained > t.txt")
    repo.dvc("repro")
    first = json.loads(repo.dvc("docker", "images", "--json").stdout)[0]
    assert first["recorded"] and "@sha256:" in first["recorded"] and first["recorded"] == first["current"]

    moved = push_test_image(docker_client, busybox_image, reference, size=LAYER)  # the tag now names another image
    assert moved not in first["recorded"]
    remove_repository(docker_client, reference.rsplit(":", 1)[0])  # "a new machine"
    row = json.loads(repo.dvc("docker", "images", "--json").stdout)[0]
    assert (row["recorded"], row["current"], row["present"]) == (first["recorded"], None, False)
    doctor_line = lines_of(repo.dvc("docker", "doctor").stdout, "warning stage 'train': ")
    assert doctor_line and f"dvc.lock records {first['recorded'].split(':')[0]}" in doctor_line[0]

    proc = repo.dvc("docker", "pull")
    assert proc.stdout.strip() == f"Pulled {first['recorded']} as {reference}"
    row = json.loads(repo.dvc("docker", "images", "--json").stdout)[0]
    assert (row["current"], row["changed"]) == (first["recorded"], False)
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout  # nothing to rerun

    docker_client.api.pull(reference.rsplit(":", 1)[0], tag="1")  # what the tag names today
    row = json.loads(repo.dvc("docker", "images", "--json").stdout)[0]
    assert row["changed"] is True and moved in row["current"]
    proc = repo.dvc("docker", "doctor")
    assert proc.returncode == 0
    changed = lines_of(proc.stdout, f"warning stage 'train': image '{reference}' is ")
    assert changed and "`dvc repro` reruns the stage -> fix: `dvc docker pull train`" in changed[0], proc.stdout


def test_pull_progress_on_a_terminal(make_repo, new_layer_image, docker_client):
    remote_image = new_layer_image
    repo = make_repo(remote_image)
    repo.stage_add("-n", "a", "echo a")
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # child: dvc with a terminal on stdout and stderr
        # a new pty has 0 columns, and tqdm draws empty bars on it
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        os.chdir(repo.path)
        os.execve(sys.executable, [sys.executable, "-m", "dvc", "docker", "pull"], repo.env)
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    # DVC's Tqdm bar, redrawn in place. (Its "layers n/m" text shows only in the redraws between
    # events, which a fast loopback pull may not get: DVC's Tqdm.close clears it, so not asserted.)
    assert "\r" in text and f"100% {remote_image}|" in text and "B/s]" in text, text
    assert ": Pull complete" not in text
    docker_client.images.get(remote_image)


def test_pull_skips_an_image_built_here(make_repo, busybox_image, docker_client):
    """The test images are built locally (scripts/build-images.sh): no registry has them."""
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "a", "echo a")
    with recorded_pulls(docker_client, busybox_image) as pulls:
        proc = repo.dvc("docker", "pull")
    assert proc.stdout.strip() == f"Skipped {busybox_image}: built here (no registry digest), present"
    assert pulls == []


def test_pull_tags_the_recorded_image_present_under_another_name(make_repo, busybox_image, docker_client):
    """Issue 20, item 2: the recorded local ID is here under another tag: `dvc docker pull` tags it, no registry."""
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "a", "-o", "out.txt", "echo a > out.txt")
    repo.dvc("repro")
    other = f"{busybox_image.split(':')[0]}-i20-retag-{os.getpid()}:1"
    repo.config("docker.image", other)
    try:
        proc = repo.dvc("docker", "pull")
        here = proc.stdout.split("(here as ", 1)[1].split(")", 1)[0].split(", ")
        assert busybox_image in here, proc.stdout  # other tests (and other sessions) may add tags of it
        assert f"as {other}: the image dvc.lock records" in proc.stdout, proc.stdout
        assert docker_client.images.get(other).id == docker_client.images.get(busybox_image).id
        assert repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."
    finally:
        try:
            docker_client.images.remove(other)  # only the tag this test made
        except Exception:  # noqa: BLE001
            pass


def test_pull_failure_names_image_and_registry(make_repo, registry):
    missing = f"{registry}/dde-never-pushed:1"
    repo = make_repo(missing)
    repo.stage_add("-n", "a", "echo a")
    proc = repo.dvc("docker", "pull", check=False)
    assert proc.returncode == 255
    errors = lines_of(proc.stderr, "ERROR: ")
    assert errors[0].startswith(f"ERROR: image '{missing}' is not present on this machine, and pulling it from {registry} failed ("), proc.stderr
    assert "no such image or tag" in errors[0] and "docker build -t" in errors[0]
    assert errors[-1] == f"ERROR: 1 of 1 images could not be pulled: {missing}"


def test_repro_pull_shows_the_same_progress(make_repo, new_layer_image, no_leftovers):
    remote_image = new_layer_image
    repo = make_repo(remote_image)
    repo.config("docker.pull", "missing")
    repo.stage_add("-n", "p", "echo pulled")
    proc = repo.dvc("repro")
    assert lines_of(proc.stderr, f"{remote_image}: ") and ": Pull complete (2.0 MB)" in proc.stderr, proc.stderr


def test_pull_quiet_and_targets(make_repo, new_layer_image, registry, docker_client, busybox_image):
    other = f"{registry}/dde-i10-other:1"
    push_test_image(docker_client, busybox_image, other, size=LAYER)
    try:
        repo = make_repo(new_layer_image)
        repo.stage_add("-n", "a", "-o", "a.txt", "echo a > a.txt")
        repo.stage_add("-n", "b", "-d", "a.txt", "echo b")
        repo.stage_add("-n", "c", "echo c")
        text = (repo.path / "dvc.yaml").read_text().replace("cmd: echo c", f"cmd: echo c\n    meta:\n      docker: {other}")
        (repo.path / "dvc.yaml").write_text(text)
        rows = json.loads(repo.dvc("docker", "images", "--json", "b").stdout)
        assert [(r["stage"], r["image"]) for r in rows] == [("a", new_layer_image), ("b", new_layer_image)]  # b and upstream

        proc = repo.dvc("docker", "pull", "-q", "c")
        assert (proc.stdout, proc.stderr) == ("", "")
        docker_client.images.get(other)
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(new_layer_image)  # not a target, not upstream of one
        proc = repo.dvc("docker", "pull", "-j", "2")  # both, at once
        assert sorted(proc.stdout.split("\n")[:-1]) == sorted([f"Pulled {new_layer_image}", f"Pulled {other}"])
    finally:
        remove_repository(docker_client, other.rsplit(":", 1)[0])


# --- ps / prune with an orphan of a SIGKILLed dvc ---------------------------------------------------


def test_ps_and_prune_an_orphan_of_sigkill(make_repo, busybox_image, docker_client, tmp_path, no_leftovers):
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "slow", "sleep 300")
    dvc, _ = start_dvc(repo, "repro")
    killed = wait_running(docker_client, repo, dvc)
    dvc.send_signal(signal.SIGKILL)
    dvc.wait()
    # its lease stops it (issue 18); an orphan the lease could not stop is made by hand, with the dead pid
    wait_until(lambda: killed.id not in {c.id for c in our_containers(docker_client, str(repo.path))}, "the lease's stop")
    labels = {LABEL: "1", f"{LABEL}.stage": "slow", f"{LABEL}.repo": str(repo.path), f"{LABEL}.host": os.uname().nodename, f"{LABEL}.pid": str(dvc.pid)}
    orphan = docker_client.containers.run(busybox_image, "sleep 300", labels=labels, detach=True)
    # a container of a live dvc process of this repo, and one of another repo
    labels = {**labels, f"{LABEL}.stage": "live", f"{LABEL}.pid": str(os.getpid())}
    live = docker_client.containers.create(busybox_image, "true", labels=labels)
    other = docker_client.containers.create(busybox_image, "true", labels={**labels, f"{LABEL}.repo": str(tmp_path / "other"), f"{LABEL}.pid": str(dvc.pid)})
    try:
        rows = {r["id"]: r for r in json.loads(repo.dvc("docker", "ps", "--json").stdout)}
        assert set(rows) == {orphan.id, live.id}
        assert (rows[orphan.id]["stage"], rows[orphan.id]["state"], rows[orphan.id]["dvc_process"]) == ("slow", "running", "gone")
        assert rows[live.id]["dvc_process"] == "alive"
        assert other.id in {r["id"] for r in json.loads(repo.dvc("docker", "ps", "--all-repos", "--json").stdout)}
        table = repo.dvc("docker", "ps").stdout
        assert [line.split()[:3] + [line.split()[4]] for line in table.splitlines() if line.startswith(orphan.short_id)] == [
            [orphan.short_id, "slow", "running", "gone"]
        ], table

        dry = repo.dvc("docker", "prune", "--dry").stdout
        assert dry.strip() == f"Would remove container {orphan.short_id} of stage 'slow' (dvc process gone)"
        orphan.reload()  # still there

        proc = repo.dvc("docker", "prune")
        assert proc.stdout.strip() == f"Removed container {orphan.short_id} of stage 'slow' (dvc process gone)"
        remaining = {c.id for c in our_containers(docker_client, under=str(tmp_path))}
        assert remaining == {live.id, other.id}

        proc = repo.dvc("docker", "prune", "--all")
        assert proc.stdout.strip() == f"Removed container {live.short_id} of stage 'live' (dvc process alive)"
        assert {c.id for c in our_containers(docker_client, under=str(tmp_path))} == {other.id}
    finally:
        for c in (orphan, live, other):
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001
                pass


def test_doctor_names_a_runtime_the_engine_lacks(make_repo, busybox_image):
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "train", "echo hi")
    repo.config("docker.runtime", "dde-no-such-runtime", local=True)
    report = doctor(repo)
    runtime = report["by_name"]["runtime"]
    assert report["rc"] == 1 and runtime["level"] == "error", report
    assert "'train' (dde-no-such-runtime)" in runtime["message"] and "runc" in runtime["message"]
    repo.config("docker.runtime", "runc", local=True)
    assert doctor(repo)["by_name"]["runtime"]["level"] == "ok"

"""The socket pattern end to end: `dvc repro` in the runner image (built from
the repo's Dockerfile, started through the repo's docker-compose.yml); each
stage runs in a sibling container created through the host's Docker socket."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import LABEL, container_events
from tests.integration.socket.conftest import CONTAINER_ID, STAGE, STAGE_OUTS, in_volume, ok_output, runner_id_of

pytestmark = pytest.mark.docker

HEX64 = re.compile(r"[0-9a-f]{64}")
# The runner prints its own container id first, then runs DVC.
RUNNER_REPRO = f'echo "runner-id=$({CONTAINER_ID})"; echo "runner-uid=$(id -u)"; exec dvc repro'


def assert_locked(lock_text, stage: str) -> None:
    """dvc.lock records the stage with the user's command and its out `out` (a directory, hashed)."""
    assert lock_text, "no dvc.lock"
    locked = yaml.safe_load(lock_text)["stages"][stage]
    assert locked["cmd"] == STAGE, locked
    (out,) = locked["outs"]
    assert out["path"] == "out" and out["md5"].endswith(".dir") and out["nfiles"] == 1, locked


def test_bind_mount_at_another_path(runner, make_repo, busybox_image, docker_client, token):
    """Host dir -> /workspace/project-*: stage mounts are translated back to the host dir."""
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "sib", *STAGE_OUTS, STAGE)
    workdir = f"/workspace/project-{token}"
    assert not os.path.exists(workdir)
    since = int(time.time())

    out = ok_output(runner.run(RUNNER_REPRO, env={"DVC_PROJECT": str(repo.path), "DVC_WORKDIR": workdir}))

    assert repo.read("out/data.txt") == "payload\n"
    assert_locked(repo.lock(), "sib")
    stage_id = repo.read("stage-id.txt").strip()
    assert HEX64.fullmatch(stage_id), stage_id
    assert stage_id != runner_id_of(out)  # a sibling, not the runner itself
    assert stage_id in {e["id"] for e in container_events(docker_client, "create", since)}
    assert repo.read("socket.txt") == "no\n"  # the socket stays with the runner
    # the daemon got host paths: nothing was created at the runner-side path
    assert not os.path.exists(workdir)


def test_named_volume(runner, make_repo, busybox_image, docker_client, volume, tmp_path):
    """Project in a named volume: stages get the whole volume at the same place."""
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "vol", *STAGE_OUTS, STAGE)
    in_volume(
        docker_client,
        volume,
        "mkdir -p /workspace/project && cp -a /src/. /workspace/project/",
        image=busybox_image,
        binds={str(repo.path): {"bind": "/src", "mode": "ro"}},
    )
    unused = tmp_path / "unused"
    unused.mkdir()
    since = int(time.time())

    # compose v1 wants named volumes declared in the file; `run -v` does not
    out = ok_output(
        runner.run(
            RUNNER_REPRO,
            "-v",
            f"{volume}:/workspace",
            "-w",
            "/workspace/project",
            env={"DVC_PROJECT": str(unused), "DVC_WORKDIR": "/mnt/unused"},
        )
    )

    seen = in_volume(
        docker_client,
        volume,
        "cd /workspace/project && cat out/data.txt stage-id.txt socket.txt",
        image=busybox_image,
    ).split()
    assert seen[0] == "payload" and seen[2] == "no", seen
    assert_locked(in_volume(docker_client, volume, "cat /workspace/project/dvc.lock", image=busybox_image), "vol")
    assert HEX64.fullmatch(seen[1]) and seen[1] != runner_id_of(out)
    assert seen[1] in {e["id"] for e in container_events(docker_client, "create", since)}
    assert not (repo.path / "out").exists()  # the host copy was not touched
    assert not list(unused.iterdir())


def test_non_root_runner_owns_outputs(runner, make_repo, busybox_image, token):
    """DVC as uid 4242 (no passwd entry) with the socket's group: outputs are 4242's."""
    uid = gid = 4242
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "own", *STAGE_OUTS, STAGE)
    for path in [repo.path, *repo.path.rglob("*")]:
        os.lchown(path, uid, gid)
    sock_gid = os.stat("/var/run/docker.sock").st_gid

    out = ok_output(
        runner.run(
            RUNNER_REPRO,
            env={
                "DVC_PROJECT": str(repo.path),
                "DVC_WORKDIR": f"/workspace/project-{token}",
                "DVC_RUNNER_USER": f"{uid}:{gid}",
                "DOCKER_GID": str(sock_gid),
            },
        )
    )

    assert f"runner-uid={uid}" in out
    assert repo.read("uid.txt") == f"{uid}\n"
    for name in ("out", "out/data.txt", "uid.txt", "dvc.lock"):
        st = (repo.path / name).stat()
        assert (st.st_uid, st.st_gid) == (uid, gid), name


def test_project_on_no_mount_fails_clearly(runner, busybox_image, tmp_path):
    """A repo in the runner's own filesystem cannot be shared: one clear error line."""
    script = (
        "set -e; mkdir /tmp/r && cd /tmp/r && git init -q && dvc init -q; "
        f"dvc config docker.image {busybox_image}; dvc config docker.pull never; "
        "dvc stage add -q -n s 'echo hi > hi.txt'; "
        'set +e; dvc repro > /tmp/out 2> /tmp/err; echo "rc=$?"; sed "s/^/err: /" /tmp/err'
    )
    proc = runner.run(script, env={"DVC_PROJECT": str(tmp_path), "DVC_WORKDIR": "/workspace"})
    out = ok_output(proc)
    assert "rc=0" not in out and re.search(r"^rc=\d+$", out, re.M), out
    errors = [line[len("err: ") :] for line in out.splitlines() if line.startswith("err: ")]
    errors = [line for line in errors if line.strip()]
    assert len(errors) == 1, out
    assert "'/tmp/r' is inside the DVC container's own filesystem" in errors[0]
    assert "mount the project into the DVC container" in errors[0]
    assert not list(Path(tmp_path).iterdir())


def test_build_in_the_socket_pattern(runner, make_repo, busybox_image, docker_client, token):
    """docker.build from DVC in a container: the context is sent by the API, no host path translated."""
    repo = make_repo(busybox_image)
    repo.write("env/Dockerfile", f"FROM {busybox_image}\nLABEL dde-test-token={token}\nCOPY m /m\n")
    repo.write("env/m", token)
    repo.config("docker.build", "env")
    repo.config("docker.image", f"dde-i19-test/socket:{token}")
    repo.stage_add("-n", "s", "-o", "o.txt", "cat /m > o.txt")
    workdir = f"/workspace/project-{token}"
    try:
        out = ok_output(runner.run(RUNNER_REPRO, env={"DVC_PROJECT": str(repo.path), "DVC_WORKDIR": workdir}))
        assert repo.read("o.txt") == token, out
        assert "build: env/Dockerfile" in repo.read("dvc.lock")
        assert "up to date" in repo.dvc("status").stdout  # the host's dvc agrees with the runner's hash
    finally:
        for image in docker_client.images.list(filters={"label": f"dde-test-token={token}"}):
            docker_client.images.remove(image.id, force=True)
def test_sigkill_of_dvc_in_the_runner_stops_the_stage_container(runner, make_repo, busybox_image, docker_client, token):
    """Issue 18: dvc in the runner is killed (SIGKILL) while its sibling stage runs: the sibling stops too.

    The lease pipe lives in the project's .dvc/tmp, which both containers see
    (the runner at its path, the sibling at the translated one): one inode, one pipe.
    """
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "orphan", "touch started; sleep 30; echo late > late.txt")
    workdir = f"/workspace/project-{token}"
    script = (
        "dvc repro & p=$!; while [ ! -e started ]; do sleep 0.1; done; sleep 0.5; "
        "kill -9 $p; echo killed-at=$(date +%s.%N)"
    )
    proc = runner.run(script, env={"DVC_PROJECT": str(repo.path), "DVC_WORKDIR": workdir})
    assert "killed-at=" in proc.stdout, proc.stdout + proc.stderr
    killed = float(proc.stdout.split("killed-at=")[1].split()[0])
    deadline = time.monotonic() + 60
    while [c for c in docker_client.containers.list(filters={"label": LABEL}, ignore_removed=True)
           if c.labels.get(f"{LABEL}.repo") == workdir]:
        assert time.monotonic() < deadline, "the stage container outlived dvc in the runner"
        time.sleep(0.05)
    stopped = time.time() - killed
    assert stopped < 15, stopped
    print(f"stop time after SIGKILL (socket pattern): at most {stopped:.2f} s")
    time.sleep(1)
    assert not (repo.path / "late.txt").exists()

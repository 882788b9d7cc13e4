"""`dvc docker doctor` inside a runner container of the socket pattern: it names the translation in use."""

from __future__ import annotations

import pytest

from tests.integration.socket.conftest import CONTAINER_ID, in_volume, ok_output, runner_id_of

pytestmark = pytest.mark.docker


def test_doctor_in_a_runner_container(runner, make_repo, busybox_image, token):
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "sib", "echo hi")
    workdir = f"/workspace/project-{token}"
    script = f'echo "runner-id=$({CONTAINER_ID})"; dvc docker doctor; echo "doctor-rc=$?"'
    out = ok_output(runner.run(script, env={"DVC_PROJECT": str(repo.path), "DVC_WORKDIR": workdir}))
    runner_id = runner_id_of(out)
    assert "doctor-rc=0" in out, out
    paths = [line for line in out.splitlines() if line.startswith("ok      paths: ")]
    # the socket and the project: the project's path in the runner -> its host source
    assert paths == [f"ok      paths: runner container {runner_id[:12]}: 2 mounts; {workdir} -> bind {repo.path}"], out
    assert f"ok      stage 'sib': image '{busybox_image}' is present" in out


def test_doctor_names_a_named_volume(runner, make_repo, busybox_image, docker_client, volume, tmp_path):
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "vol", "echo hi")
    in_volume(
        docker_client,
        volume,
        "mkdir -p /workspace/project && cp -a /src/. /workspace/project/",
        image=busybox_image,
        binds={str(repo.path): {"bind": "/src", "mode": "ro"}},
    )
    unused = tmp_path / "unused"
    unused.mkdir()
    script = f'echo "runner-id=$({CONTAINER_ID})"; dvc docker doctor; echo "doctor-rc=$?"'
    out = ok_output(
        runner.run(
            script,
            "-v",
            f"{volume}:/workspace",
            "-w",
            "/workspace/project",
            env={"DVC_PROJECT": str(unused), "DVC_WORKDIR": "/mnt/unused"},
        )
    )
    runner_id = runner_id_of(out)
    assert "doctor-rc=0" in out, out
    paths = [line for line in out.splitlines() if line.startswith("ok      paths: ")]
    # the whole volume is mounted where the runner has it
    assert paths == [
        f"ok      paths: runner container {runner_id[:12]}: 3 mounts; /workspace/project -> volume {volume} at /workspace"
    ], out

"""`dvc docker doctor` inside a runner container of the socket pattern: it names the translation in use."""

from __future__ import annotations

import pytest

from tests.integration.socket.conftest import CONTAINER_ID
from tests.integration.socket.test_socket_pattern import _ok, _runner_id

pytestmark = pytest.mark.docker


def test_doctor_in_a_runner_container(runner, make_repo, busybox_image, token):
    repo = make_repo(busybox_image)
    repo.dvc("stage", "add", "-n", "sib", "echo hi")
    workdir = f"/workspace/project-{token}"
    script = f'echo "runner-id=$({CONTAINER_ID})"; dvc docker doctor; echo "doctor-rc=$?"'
    out = _ok(runner.run(script, env={"DVC_PROJECT": str(repo.path), "DVC_WORKDIR": workdir}))
    runner_id = _runner_id(out)
    assert "doctor-rc=0" in out, out
    paths = [line for line in out.splitlines() if line.startswith("ok      paths: ")]
    # the socket and the project: the project's path in the runner -> its host source
    assert paths == [f"ok      paths: runner container {runner_id[:12]}: 2 mounts; {workdir} -> bind {repo.path}"], out
    assert f"ok      stage 'sib': image '{busybox_image}' is present" in out

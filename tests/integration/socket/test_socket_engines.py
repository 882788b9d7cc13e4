"""The socket pattern with another endpoint mounted into the runner (issue 9).

Behind a socket proxy: the runner gets the proxy's socket (HAProxy with
Tecnativa's rules and a 1 s inactivity timeout, scripts/engines/proxy.sh)
instead of the daemon's; it must still find its own container (GET
/containers/<id>/json is allowed), run a stage silent for longer than the
timeout, and keep the proxy's socket away from the stage.
"""

from __future__ import annotations

import pytest

from tests.integration.engines.conftest import start_engine, start_proxy
from tests.integration.socket.conftest import STAGE, STAGE_OUTS, ok_output

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.proxy]


def test_runner_behind_a_proxy_with_a_short_timeout(runner, make_repo, busybox_image, token):
    url = start_proxy("short", PROXY_TIMEOUT="1s")
    proxy_socket = url[len("unix://") :]
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "sib", *STAGE_OUTS, f"echo before; sleep 3.5; echo after; {STAGE}; exit 0")
    out = ok_output(
        runner.run(
            "exec dvc repro",
            env={"DVC_PROJECT": str(repo.path), "DVC_WORKDIR": f"/workspace/p-{token}", "DOCKER_SOCKET": proxy_socket},
        )
    )
    assert [line for line in out.splitlines() if line in ("before", "after")] == ["before", "after"]
    assert repo.read("out/data.txt") == "payload\n"
    assert "out" in (repo.lock() or "")
    assert repo.read("socket.txt") == "no\n"


@pytest.mark.rootless
def test_runner_on_rootless_docker(compose, runner_image, busybox_image, token, make_user_repo):
    """The runner on a rootless daemon with that daemon's socket: outputs belong to its user."""
    import pwd
    import subprocess

    from tests.conftest import setpriv
    from tests.integration.engines.conftest import assert_no_leftovers, engine_client

    url = start_engine("rootless.sh", env={"DDE_ROOTLESS_IMAGES": f"{busybox_image} {runner_image}"})
    client = engine_client(url)
    user = pwd.getpwnam("dde-rootless")
    repo = make_user_repo(user, setpriv(user, "init"), busybox_image)  # the user's daemon must reach it
    repo.dvc("stage", "add", "-n", "sib", *STAGE_OUTS, STAGE)
    socket = url[len("unix://") :]
    env = {"DOCKER_HOST": url, "DOCKER_SOCKET": socket, "DVC_PROJECT": str(repo.path), "DVC_WORKDIR": f"/workspace/p-{token}"}
    try:
        ok_output(compose.run("exec dvc repro", env=env))
        assert repo.read("uid.txt") == "0\n"  # root inside the user namespace ...
        for name in ("out", "out/data.txt", "uid.txt", "dvc.lock"):
            assert (repo.path / name).stat().st_uid == user.pw_uid, name  # ... is the user outside
        assert repo.read("socket.txt") == "no\n"
        assert_no_leftovers(client, str(repo.path))
    finally:
        subprocess.run(
            [*compose.command, "-f", compose.file, "-p", compose.project, "down", "--remove-orphans"],
            env=compose.env(DOCKER_HOST=url), capture_output=True, timeout=120,
        )


@pytest.mark.podman
def test_runner_under_podman(compose, runner_image, make_repo, busybox_image, token):
    """The runner as a Podman container (/run/.containerenv) with Podman's socket mounted."""
    import subprocess

    from tests.integration.engines.conftest import assert_no_leftovers, engine_client

    url = start_engine("podman.sh", env={"DDE_PODMAN_IMAGES": f"{busybox_image} {runner_image}"})
    client = engine_client(url)
    repo = make_repo(busybox_image)
    repo.stage_add("-n", "sib", *STAGE_OUTS, f"test -e /run/.containerenv; {STAGE}")
    env = {
        "DOCKER_HOST": url,
        "DOCKER_SOCKET": url[len("unix://") :],
        "DVC_PROJECT": str(repo.path),
        "DVC_WORKDIR": f"/workspace/p-{token}",
    }
    script = "test -e /run/.containerenv && echo runner-in-podman; exec dvc repro -v"
    try:
        out = ok_output(compose.run(script, env=env))
        assert "runner-in-podman" in out
        assert repo.read("out/data.txt") == "payload\n" and repo.read("socket.txt") == "no\n"
        assert "out" in (repo.lock() or "")
        assert_no_leftovers(client, str(repo.path))
    finally:
        subprocess.run(
            [*compose.command, "-f", compose.file, "-p", compose.project, "down", "--remove-orphans"],
            env=compose.env(DOCKER_HOST=url), capture_output=True, timeout=120,
        )

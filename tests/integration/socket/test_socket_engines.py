"""The socket pattern with another endpoint mounted into the runner (issue 9).

Behind a socket proxy: the runner gets the proxy's socket (HAProxy with
Tecnativa's rules and a 3 s inactivity timeout, scripts/engines/proxy.sh)
instead of the daemon's; it must still find its own container (GET
/containers/<id>/json is allowed), run a stage silent for longer than the
timeout, and keep the proxy's socket away from the stage.
"""

from __future__ import annotations

import pytest

from tests.integration.engines.conftest import start_engine
from tests.integration.socket.test_socket_pattern import STAGE, STAGE_OUTS, _ok

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.proxy]


def test_runner_behind_a_proxy_with_a_short_timeout(runner, make_repo, busybox_image, token):
    url = start_engine("proxy.sh", "dde-i9-short", env={"PROXY_TIMEOUT": "3s"})
    proxy_socket = url[len("unix://") :]
    repo = make_repo(busybox_image)
    repo.dvc("stage", "add", "-n", "sib", *STAGE_OUTS, f"echo before; sleep 7; echo after; {STAGE}; exit 0")
    out = _ok(
        runner.run(
            "exec dvc repro",
            env={"DVC_PROJECT": str(repo.path), "DVC_WORKDIR": f"/workspace/p-{token}", "DOCKER_SOCKET": proxy_socket},
        )
    )
    assert [line for line in out.splitlines() if line in ("before", "after")] == ["before", "after"]
    assert repo.read("out/data.txt") == "payload\n"
    assert "out" in (repo.lock() or "")
    assert repo.read("socket.txt") == "no\n"

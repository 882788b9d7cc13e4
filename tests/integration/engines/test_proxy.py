"""Through an API-filtering socket proxy (HAProxy with Tecnativa's rules, scripts/engines/proxy.sh).

The proxy's inactivity timeout is 3 s here (Tecnativa: 10 min): a stage silent
for longer must still end with its real exit status and all of its output,
once. Proxies are named per branch so parallel sessions do not share one.
"""

from __future__ import annotations

import pytest

from tests.integration.engines import scenarios
from tests.integration.engines.conftest import engine_client, start_engine

pytestmark = [pytest.mark.docker, pytest.mark.engines, pytest.mark.proxy]

TIMEOUT = 3  # seconds of silence after which the proxy cuts a connection


@pytest.fixture(scope="module")
def engine_url() -> str:
    return start_engine("proxy.sh", "dde-i9-short", env={"PROXY_TIMEOUT": f"{TIMEOUT}s"})


@pytest.fixture(scope="module")
def engine(docker_client):
    return docker_client  # the containers live on the Docker Engine behind the proxy


def test_silent_stage_keeps_exit_status_and_later_output(engine_repo):
    cmd = (
        f"echo out-before; echo err-before >&2; sleep {3 * TIMEOUT}; "
        "echo out-after; echo err-after >&2; echo done > o.txt; exit 3"
    )
    scenarios.add_stage(engine_repo, "quiet", cmd, "-o", "o.txt")
    proc = engine_repo.dvc("repro", check=False, timeout=120)
    assert "exited with 3" in proc.stderr, proc.stderr
    assert "Connection broken" not in proc.stderr and "IncompleteRead" not in proc.stderr
    out = [line for line in proc.stdout.splitlines() if line.startswith("out-")]
    err = [line for line in proc.stderr.splitlines() if line.startswith("err-")]
    assert out == ["out-before", "out-after"]  # each once, in order, on its own stream
    assert err == ["err-before", "err-after"]
    assert engine_repo.lock() is None


def test_silent_stage_succeeds_and_output_is_exact(engine_repo):
    # 2 x 20000 lines around a silence: nothing lost or written twice across the reconnects
    cmd = f"seq 1 20000; sleep {2 * TIMEOUT}; seq 20001 40000; seq 1 3 > o.txt"
    scenarios.add_stage(engine_repo, "big", cmd, "-o", "o.txt")
    proc = engine_repo.dvc("repro", timeout=120)
    numbers = [line for line in proc.stdout.splitlines() if line.isdigit()]
    assert numbers == [str(i) for i in range(1, 40001)]
    assert "o.txt" in (engine_repo.lock() or "")


def test_exit_status_is_exact_and_nothing_recorded(engine_repo):
    scenarios.failed_stage_records_nothing(engine_repo)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_stops_and_removes_the_container(engine_repo, engine, sig):
    scenarios.signal_stops_and_removes(engine_repo, engine, sig)


@pytest.mark.parametrize(
    ("name", "denied", "needed"),
    [("dde-i9-noimages", {"IMAGES": "0"}, "IMAGES=1"), ("dde-i9-nopost", {"POST": "0"}, "CONTAINERS=1 and POST=1")],
)
def test_denied_call_names_the_missing_permission(make_repo, busybox_image, name, denied, needed):
    url = start_engine("proxy.sh", name, env=denied)
    repo = make_repo(busybox_image)
    repo.env["DOCKER_HOST"] = url
    scenarios.add_stage(repo, "s", "echo hi > o.txt", "-o", "o.txt")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert f"the Docker endpoint '{url}' (from DOCKER_HOST) refused" in proc.stderr, proc.stderr
    assert f"({needed} in docker-socket-proxy terms)" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and repo.lock() is None

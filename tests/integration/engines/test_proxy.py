"""Through an API-filtering socket proxy (HAProxy with Tecnativa's rules, scripts/engines/proxy.sh),
in front of rootful Docker and of Podman.

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
# Silences are not multiples of TIMEOUT: output written at the very moment of
# a cut by a command that then exits (and is auto-removed) at once can be lost
# (README, Engines); the tests check the ordinary case, output well after a cut.


@pytest.fixture(scope="module", params=["docker", "podman"])
def upstream(request, docker_client):
    """(socket behind the proxy, a direct client of that engine for the leftovers check)."""
    if request.param == "docker":
        return "/var/run/docker.sock", docker_client
    url = start_engine("podman.sh")
    return url[len("unix://") :], engine_client(url)


@pytest.fixture(scope="module")
def engine_url(upstream) -> str:
    name = "dde-i9-short" if upstream[0] == "/var/run/docker.sock" else "dde-i9-podman-short"
    return start_engine("proxy.sh", name, env={"PROXY_TIMEOUT": f"{TIMEOUT}s", "DOCKER_SOCKET": upstream[0]})


@pytest.fixture(scope="module")
def engine(upstream):
    return upstream[1]  # the containers live on the engine behind the proxy


def test_silent_stage_keeps_exit_status_and_later_output(engine_repo, upstream, request):
    if upstream[0] != "/var/run/docker.sock":
        # measured in a CI run (1 of 3): behind the proxy, Podman 4.3 had removed the
        # container and its events did not carry the exit, so the run failed safely with
        # "lost the exit status ... nothing was recorded" instead of "exited with 3"
        request.applymarker(
            pytest.mark.xfail(strict=False, reason="Podman 4.3 behind a proxy: exit status sometimes unknowable")
        )
    cmd = (
        f"echo out-before; echo err-before >&2; sleep {2 * TIMEOUT + 2}; "
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


def test_silent_stage_succeeds_and_output_is_exact(engine_repo, upstream, request):
    if upstream[0] != "/var/run/docker.sock":
        # measured: Podman 4.3's followed log sometimes ends when the container exits,
        # before its last lines, and drops a line while following (not every run)
        request.applymarker(pytest.mark.xfail(strict=False, reason="Podman 4.3 log follow may lose lines"))
    # 2 x 20000 lines around a silence: nothing lost or written twice across the reconnects
    cmd = f"seq 1 20000; sleep {2 * TIMEOUT + 1}; seq 20001 40000; seq 1 3 > o.txt"
    scenarios.add_stage(engine_repo, "big", cmd, "-o", "o.txt")
    proc = engine_repo.dvc("repro", timeout=120)
    numbers = [int(line) for line in proc.stdout.splitlines() if line.isdigit()]
    first_wrong = next((i for i, n in enumerate(numbers, 1) if n != i), None)
    assert numbers == list(range(1, 40001)), f"{len(numbers)} lines, first wrong at line {first_wrong}"
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


def test_sigkill_of_dvc_stops_and_removes_the_container(engine_repo, engine, upstream):
    """Behind a proxy that cuts idle connections: the lease, not the connection, tells that dvc is gone."""
    stopped = scenarios.sigkill_stops_the_container(engine_repo, engine)
    print(f"stop time after SIGKILL (proxy in front of {upstream[0]}): {stopped:.2f} s")


def test_a_cut_connection_does_not_stop_a_live_runs_stage(engine_repo):
    """The proxy cuts every silent connection after 3 s: the stage (silent for 3 x that) must go on and succeed."""
    scenarios.add_stage(engine_repo, "quiet", f"echo begin; sleep {3 * TIMEOUT + 1}; echo done > o.txt", "-o", "o.txt")
    engine_repo.dvc("repro", timeout=120)
    assert engine_repo.read("o.txt") == "done\n"


def test_next_run_removes_an_orphan_and_status_names_it(engine_repo, engine, tmp_path):
    scenarios.second_wall_removes_an_orphan(engine_repo, engine, tmp_path)

"""`docker.backend swarm` against a real 3-node swarm (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import DvcRepo

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


@pytest.fixture
def swarm_repo(make_repo, busybox_image, swarm_clean):
    repo = make_repo(busybox_image)
    repo.dvc("config", "docker.backend", "swarm")
    repo.env["DOCKER_HOST"] = swarm_clean.host
    repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])
    return repo


def write_pipeline(repo: DvcRepo, stages: dict) -> None:
    repo.write("dvc.yaml", yaml.safe_dump({"stages": stages}))
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "pipeline")


def test_stages_run_as_jobs_on_the_nodes_they_are_placed_on(swarm_repo, swarm_clean):
    stages = {
        f"s{i}": {
            "cmd": f'echo "$DVC_DOCKER_NODE" > s{i}.txt; id -u >> s{i}.txt; echo out-{i}; echo err-{i} >&2',
            "outs": [f"s{i}.txt"],
            "meta": {"docker": {"constraints": f"node.labels.dde==n{i}"}},
        }
        for i in (1, 2, 3)
    }
    write_pipeline(swarm_repo, stages)
    proc = swarm_repo.dvc("repro")
    for i in (1, 2, 3):
        node, uid = swarm_repo.read(f"s{i}.txt").split()
        assert node == swarm_clean.nodes[f"n{i}"], f"s{i} ran on {node}"
        assert uid == str(os.getuid())
        # lines, not substrings: DVC echoes the command itself on stdout
        assert f"out-{i}" in proc.stdout.splitlines() and f"out-{i}" not in proc.stderr.splitlines()
        assert f"err-{i}" in proc.stderr.splitlines() and f"err-{i}" not in proc.stdout.splitlines()
    # a clean removal says nothing (it once warned "still being removed" on every stage)
    assert "WARNING" not in proc.stderr, proc.stderr
    lock = yaml.safe_load(swarm_repo.lock())
    assert lock["stages"]["s1"]["cmd"] == stages["s1"]["cmd"]
    assert {n for n in (swarm_repo.read(f"s{i}.txt").split()[0] for i in (1, 2, 3))} == set(swarm_clean.nodes.values())


def test_failing_stage_reports_exit_code_image_and_node(swarm_repo, swarm_clean):
    write_pipeline(
        swarm_repo,
        {
            "bad": {
                "cmd": "echo partial > o.txt; exit 7",
                "outs": ["o.txt"],
                "meta": {"docker": {"constraints": "node.labels.dde==n2"}},
            }
        },
    )
    proc = swarm_repo.dvc("repro", check=False)
    assert proc.returncode != 0
    assert "exited with 7" in proc.stderr
    assert "dvc-docker-exec-test/busybox" in proc.stderr
    assert swarm_clean.nodes["n2"][:12] in proc.stderr
    assert swarm_repo.lock() is None


def test_path_missing_on_the_node_is_one_error_naming_the_node(swarm_repo, swarm_clean):
    from tests.integration.swarm.conftest import HIDDEN_DATA

    # machine-level config: a path outside the repo (the trust model refuses it from the repo)
    swarm_repo.dvc("config", "--local", "docker.volumes", f"{HIDDEN_DATA}:/data")
    write_pipeline(
        swarm_repo,
        {
            "fine": {"cmd": "ls /data > fine.txt", "outs": ["fine.txt"], "meta": {"docker": {"constraints": "node.labels.dde==n1"}}},
            "lost": {"cmd": "ls /data", "meta": {"docker": {"constraints": "node.labels.dde==n3"}}},
        },
    )
    swarm_repo.dvc("repro", "fine")
    proc = swarm_repo.dvc("repro", "lost", check=False, timeout=120)
    assert proc.returncode != 0
    error = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(error) == 1, proc.stderr
    assert swarm_clean.nodes["n3"][:12] in error[0]
    assert "bind source path does not exist" in error[0] and HIDDEN_DATA in error[0]
    assert "same path on every node" in error[0]


def test_unplaceable_stage_fails_with_the_schedulers_reason(swarm_repo):
    write_pipeline(
        swarm_repo, {"gpu": {"cmd": "echo never", "meta": {"docker": {"constraints": "node.labels.gpu==true"}}}}
    )
    proc = swarm_repo.dvc("repro", check=False, timeout=120)
    assert proc.returncode != 0
    assert "Swarm cannot place the task" in proc.stderr and "no suitable node" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_reservation_larger_than_any_node_fails(swarm_repo):
    write_pipeline(swarm_repo, {"big": {"cmd": "echo never", "meta": {"docker": {"cpus": 512}}}})
    proc = swarm_repo.dvc("repro", check=False, timeout=120)
    assert proc.returncode != 0
    assert "insufficient resources" in proc.stderr


def test_image_missing_on_the_node_fails_with_its_reason(swarm_repo):
    write_pipeline(swarm_repo, {"s": {"cmd": "true", "meta": {"docker": "dvc-docker-exec-test/absent-everywhere:1"}}})
    proc = swarm_repo.dvc("repro", check=False, timeout=180)
    assert proc.returncode != 0
    assert "Swarm rejected the task" in proc.stderr and "on node" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_interrupt_removes_the_service_everywhere(swarm_repo, swarm_clean, sig):
    write_pipeline(swarm_repo, {"slow": {"cmd": "echo started; sleep 120"}})
    proc = subprocess.Popen(
        [*DvcRepo.dvc_argv(), "repro"],
        cwd=swarm_repo.path,
        env=swarm_repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # background children start with SIGINT ignored: reset it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    api = swarm_clean.client.api
    deadline = time.monotonic() + 120
    running = False
    while time.monotonic() < deadline and not running:
        for service in swarm_clean.services():
            if service["Spec"]["Labels"].get("dvc-docker-exec.repo") == str(swarm_repo.path):
                running = any(t["Status"]["State"] == "running" for t in api.tasks(filters={"service": service["ID"]}))
        time.sleep(0.3)
    assert running, "the stage's task never ran"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, out + err
    assert swarm_repo.lock() is None
    # swarm_clean asserts that no service and no container is left on any node


def test_queue_spreads_experiments_over_the_nodes(swarm_repo, swarm_clean):
    from tests.integration.test_experiments import experiments, queue, start_workers, stop_workers, wait_for_queue

    swarm_repo.write("params.yaml", "x: 0\n")
    write_pipeline(
        swarm_repo,
        {
            "probe": {
                # 1.5 of each node's 2 CPUs: at most one experiment per node at a time. A
                # rendezvous on the shared filesystem (DVC_ROOT is the workspace repo) makes
                # the first three overlap, whatever the load: they must be on three nodes.
                "cmd": 'mkdir -p "$DVC_ROOT/rdv" && touch "$DVC_ROOT/rdv/${x}"; n=0; '
                'while [ "$(ls "$DVC_ROOT/rdv" | wc -l)" -lt 3 ] && [ $n -lt 600 ]; do sleep 0.2; n=$((n+1)); done; '
                'printf "{\\"x\\": ${x}, \\"node\\": \\"%s\\"}" "$DVC_DOCKER_NODE" > m.json',
                "params": ["x"],
                "metrics": [{"m.json": {"cache": False}}],
                "meta": {"docker": {"cpus": 1.5}},
            }
        },
    )
    names = [f"e{i}" for i in range(6)]
    for i, name in enumerate(names):
        queue(swarm_repo, name, f"x={i}")
    try:
        start_workers(swarm_repo, 6, env={"DOCKER_HOST": swarm_clean.host})
        status = wait_for_queue(swarm_repo, names, timeout=600)
    finally:
        stop_workers(swarm_repo)
    assert all(status[n] == "Success" for n in names), status
    found = experiments(swarm_repo)
    nodes = set()
    for i, name in enumerate(names):
        metrics = found[name]["metrics"]["m.json"]
        assert metrics["x"] == i
        nodes.add(metrics["node"])
    assert nodes == set(swarm_clean.nodes.values()), nodes


def test_ps_and_prune_cover_services_of_a_killed_dvc(swarm_repo, swarm_clean):
    """SIGKILL cannot be caught: the service outlives dvc; `dvc docker ps`/`prune` find and remove it."""
    write_pipeline(swarm_repo, {"slow": {"cmd": "sleep 300"}})
    proc = subprocess.Popen(
        [*DvcRepo.dvc_argv(), "repro"], cwd=swarm_repo.path, env=swarm_repo.env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    ours = []
    while time.monotonic() < deadline and not ours:
        ours = [s for s in swarm_clean.services() if s["Spec"]["Labels"].get("dvc-docker-exec.repo") == str(swarm_repo.path)]
        time.sleep(0.3)
    assert ours, "the stage's service never appeared"
    proc.kill()
    proc.wait(timeout=60)
    service_id = ours[0]["ID"]
    listed = json.loads(swarm_repo.dvc("docker", "ps", "--json").stdout)
    row = [r for r in listed if r["id"] == service_id]
    assert row and row[0]["kind"] == "service" and row[0]["stage"] == "slow" and row[0]["dvc_process"] == "gone", listed
    pruned = swarm_repo.dvc("docker", "prune").stdout
    assert f"Removed service {service_id[:12]} of stage 'slow' (dvc process gone)" in pruned
    assert service_id not in {s["ID"] for s in swarm_clean.services()}
    # swarm_clean asserts the task's container is gone from every node too


def test_logs_stream_live_while_the_task_runs(swarm_repo, swarm_clean):
    """The stage waits for a file that the test creates only after reading the stage's first lines.

    Had the logs come only at the end, the stage would give up (exit 9) and fail.
    """
    write_pipeline(
        swarm_repo,
        {
            "chatty": {
                "cmd": "echo live-out; echo live-err >&2; n=0; "
                "while [ ! -e go ] && [ $n -lt 600 ]; do sleep 0.2; n=$((n+1)); done; "
                "[ -e go ] || exit 9; echo after-out",
                "meta": {"docker": {"constraints": "node.labels.dde==n2"}},
            }
        },
    )
    proc = subprocess.Popen(
        [*DvcRepo.dvc_argv(), "repro"], cwd=swarm_repo.path, env=swarm_repo.env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen = []
    for line in proc.stdout:  # blocks until DVC writes the stage's line
        seen.append(line.rstrip("\n"))
        if line.rstrip("\n") == "live-out":
            break
    assert "live-out" in seen, seen
    (swarm_repo.path / "go").touch()
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, rest + err
    assert "after-out" in rest.splitlines()
    assert "live-err" in err.splitlines()

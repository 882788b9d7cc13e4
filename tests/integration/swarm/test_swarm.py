"""`docker.backend swarm` against a real 3-node swarm (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import yaml

from dvc_docker_exec.backends.swarm import GPU_IDS_VAR, GPU_RESOURCE
from tests.conftest import DvcRepo, start_dvc, wait_until
from tests.integration.swarm.conftest import running_tasks, services_of, write_pipeline

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


def write_experiment(repo: DvcRepo, cmd: str, **docker) -> None:
    """One stage `probe` with param x (0 in params.yaml) and metrics m.json, for queued experiments."""
    repo.write("params.yaml", "x: 0\n")
    stage = {"cmd": cmd, "params": ["x"], "metrics": [{"m.json": {"cache": False}}]}
    if docker:
        stage["meta"] = {"docker": docker}
    write_pipeline(repo, {"probe": stage})


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
    swarm_repo.config("docker.volumes", f"{HIDDEN_DATA}:/data", local=True)
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


def gpu_probe(name: str) -> str:
    """A stage command that writes its node and the GPU ids Swarm assigned it.

    Read from the first process's /proc/1/environ (docker-init: services run with
    --init): the variable's name has a '-', which dash and busybox sh drop from the
    environment of their children, and the stage's shell is the lease watcher's child.
    """
    return f'echo "$DVC_DOCKER_NODE" > {name}; tr "\\0" "\\n" < /proc/1/environ | grep "^{GPU_IDS_VAR}=" >> {name}'


def test_gpu_stages_land_on_the_gpu_node_and_get_its_gpus(swarm_repo, swarm_clean):
    """Node n2 alone advertises two (fake) GPUs: `docker.gpus N` places there and hands over N ids."""
    swarm_repo.config("docker.gpus", "1")
    write_pipeline(
        swarm_repo,
        {
            "one": {"cmd": gpu_probe("one.txt"), "outs": ["one.txt"]},
            "two": {"cmd": gpu_probe("two.txt"), "outs": ["two.txt"], "meta": {"docker": {"gpus": 2}}},
        },
    )
    swarm_repo.dvc("repro")
    advertised = swarm_clean.gpus["n2"]
    for name, count in (("one.txt", 1), ("two.txt", 2)):
        node, assigned = swarm_repo.read(name).split()
        assert node == swarm_clean.nodes["n2"], f"{name}: ran on {node}, not on the GPU node"
        var, ids = assigned.split("=", 1)
        assert var == GPU_IDS_VAR
        assert len(ids.split(",")) == count and set(ids.split(",")) <= set(advertised), (ids, advertised)


def test_more_gpus_than_any_node_fails_at_once(swarm_repo):
    write_pipeline(swarm_repo, {"greedy": {"cmd": "echo never", "meta": {"docker": {"gpus": 3}}}})
    proc = swarm_repo.dvc("repro", check=False, timeout=120)
    assert proc.returncode != 0
    error = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(error) == 1, proc.stderr
    assert "Swarm cannot place the task for 'echo never'" in error[0]
    assert f"reserves 3 {GPU_RESOURCE} (the most a node has is 2 {GPU_RESOURCE})" in error[0]
    assert swarm_repo.lock() is None


def test_gpus_only_on_a_node_the_constraints_exclude_fail_at_once(swarm_repo, swarm_clean):
    """Swarm says "insufficient resources" here too, and would wait forever: only allowed nodes count."""
    write_pipeline(
        swarm_repo,
        {"elsewhere": {"cmd": "echo never", "meta": {"docker": {"gpus": 1, "constraints": "node.labels.dde!=n2"}}}},
    )
    proc = swarm_repo.dvc("repro", check=False, timeout=120)
    assert proc.returncode != 0
    error = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(error) == 1, proc.stderr
    assert f"reserves 1 {GPU_RESOURCE} (the most a node has is 0 {GPU_RESOURCE})" in error[0]
    assert "on the nodes that docker.constraints allows" in error[0]
    assert swarm_repo.lock() is None


def test_doctor_checks_the_gpus_of_the_nodes_not_of_the_manager(swarm_repo):
    """The manager has no NVIDIA runtime; node n2 advertises 2 GPUs: what matters on Swarm is the latter."""
    from tests.helpers import doctor

    write_pipeline(swarm_repo, {"fits": {"cmd": "true", "meta": {"docker": {"gpus": 2}}}})
    report = doctor(swarm_repo)
    gpus = [c for c in report["checks"] if c["name"] == "gpus"]
    assert [c["level"] for c in gpus] == ["ok"], report["checks"]
    assert f"1 of 3 Swarm nodes advertise {GPU_RESOURCE} (up to 2 per node)" in gpus[0]["message"]
    write_pipeline(swarm_repo, {"greedy": {"cmd": "true", "meta": {"docker": {"gpus": 3}}}})
    report = doctor(swarm_repo)
    gpus = [c for c in report["checks"] if c["name"] == "gpus"]
    assert [c["message"] for c in gpus] == [f"'greedy' reserves 3 {GPU_RESOURCE} but the most a Swarm node has is 2"]
    assert report["rc"] != 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_interrupt_removes_the_service_everywhere(swarm_repo, swarm_clean, sig):
    write_pipeline(swarm_repo, {"slow": {"cmd": "echo started; sleep 120"}})
    stdout = swarm_repo.path.parent / "repro-stdout.txt"
    # background children start with SIGINT ignored: reset it
    proc, stderr = start_dvc(swarm_repo, "repro", stdout=stdout, preexec=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    api = swarm_clean.client.api
    service_id = wait_until(lambda: running_tasks(swarm_clean, swarm_repo), "the stage's task running", proc)[0]["ServiceID"]
    proc.send_signal(sig)
    proc.wait(timeout=120)
    out, err = stdout.read_text(), stderr.read_text()
    assert proc.returncode != 0, out + err
    assert swarm_repo.lock() is None
    # dvc returned once the manager had no task of the service left (its node had stopped it)
    assert not [t["ID"] for t in api.tasks() if t["ServiceID"] == service_id]
    assert "still being removed" not in err, err
    # swarm_clean asserts that no service and no container is left on any node


def test_queue_spreads_experiments_over_the_nodes(swarm_repo, swarm_clean):
    from tests.helpers import experiments, queue, start_workers, stop_workers, wait_for_queue

    # 1.5 of each node's 2 CPUs: at most one experiment per node at a time. A
    # rendezvous on the shared filesystem (DVC_ROOT is the workspace repo) makes
    # the first three overlap, whatever the load: they must be on three nodes.
    write_experiment(
        swarm_repo,
        'mkdir -p "$DVC_ROOT/rdv" && touch "$DVC_ROOT/rdv/${x}"; n=0; '
        'while [ "$(ls "$DVC_ROOT/rdv" | wc -l)" -lt 3 ] && [ $n -lt 600 ]; do sleep 0.2; n=$((n+1)); done; '
        'printf "{\\"x\\": ${x}, \\"node\\": \\"%s\\"}" "$DVC_DOCKER_NODE" > m.json',
        cpus=1.5,
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


def test_queue_kill_removes_the_service_everywhere(swarm_repo, swarm_clean):
    """`dvc queue kill victim` ends the victim's service on its node; the other experiment runs on."""
    from tests.helpers import experiments, queue, start_workers, stop_workers, wait_for_queue

    # both say they started (the workspace is shared); the victim (x=1) sleeps,
    # the survivor waits for the test's go after the kill
    write_experiment(
        swarm_repo,
        'touch "$DVC_ROOT/started-${x}"; if [ ${x} = 1 ]; then sleep 600; fi; n=0; '
        'while [ ! -e "$DVC_ROOT/go" ] && [ $n -lt 1200 ]; do sleep 0.1; n=$((n+1)); done; '
        'printf "{\\"x\\": ${x}}" > m.json',
    )
    queue(swarm_repo, "victim", "x=1")
    queue(swarm_repo, "survivor", "x=2")

    def counts():
        return len(services_of(swarm_clean, swarm_repo)), len(swarm_clean.node_containers())

    try:
        start_workers(swarm_repo, 2, env={"DOCKER_HOST": swarm_clean.host})
        started = [swarm_repo.path / f"started-{x}" for x in (1, 2)]
        wait_until(lambda: all(f.exists() for f in started), "both experiments' stages running", timeout=300)
        assert counts() == (2, 2)
        swarm_repo.dvc("queue", "kill", "victim")
        # generous: the plugin removes the service within a few seconds; then the victim's service and
        # its container on the node are gone, the survivor's are not
        wait_until(lambda: counts() == (1, 1), "one service and one container left after `dvc queue kill`", timeout=60)
        (swarm_repo.path / "go").touch()
        status = wait_for_queue(swarm_repo, ["victim", "survivor"])
        logs = swarm_repo.dvc("queue", "logs", "victim").stdout
    finally:
        stop_workers(swarm_repo)
    assert status["victim"] == "Failed" and status["survivor"] == "Success", status
    assert "Traceback" not in logs, logs
    found = experiments(swarm_repo)
    assert found["victim"]["state"] == "failed" and not found["victim"]["metrics"].get("m.json"), found["victim"]
    assert found["survivor"]["metrics"]["m.json"] == {"x": 2}, found["survivor"]
    # swarm_clean asserts that no service and no container is left on any node


@pytest.mark.parametrize(
    "node, verdict",
    # the manager's own node: its `oom` event says so; another node: inferred from exit 137 under a limit
    [("n1", "killed, out of memory"), ("n2", "killed, probably out of memory")],
)
def test_oom_kill_is_reported_with_the_limit_and_the_node(swarm_repo, swarm_clean, node, verdict):
    write_pipeline(
        swarm_repo,
        {
            "hog": {
                "cmd": "echo partial > o.txt; dd if=/dev/zero bs=64M count=1 of=/dev/null",  # a 64 MiB buffer
                "outs": ["o.txt"],
                "meta": {"docker": {"memory": "16m", "constraints": f"node.labels.dde=={node}"}},
            }
        },
    )
    proc = swarm_repo.dvc("repro", check=False, timeout=120)
    assert proc.returncode != 0
    error = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(error) == 1, proc.stderr
    assert "exited with 137" in error[0] and f"{verdict} (docker.memory = {16 << 20} bytes)" in error[0], error[0]
    assert swarm_clean.nodes[node][:12] in error[0]
    assert swarm_repo.lock() is None


def test_kill_9_on_the_manager_node_is_not_called_out_of_memory(swarm_repo, swarm_clean):
    """Exit 137 under a memory limit without an `oom` event: the node's event log decides, not the code."""
    write_pipeline(
        swarm_repo,
        {"k": {"cmd": "kill -9 $$", "meta": {"docker": {"memory": "16m", "constraints": "node.labels.dde==n1"}}}},
    )
    proc = swarm_repo.dvc("repro", check=False, timeout=120)
    assert proc.returncode != 0
    assert "exited with 137" in proc.stderr and "out of memory" not in proc.stderr, proc.stderr


def test_ps_and_prune_cover_services_of_a_killed_dvc(swarm_repo, swarm_clean):
    """SIGKILL cannot be caught: the service outlives dvc (its task ends by its lease); `dvc docker ps`/`prune` find and remove it."""
    write_pipeline(swarm_repo, {"slow": {"cmd": "sleep 300"}})
    proc, _ = start_dvc(swarm_repo, "repro")
    ours = wait_until(lambda: services_of(swarm_clean, swarm_repo), "the stage's service", proc)
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
    stdout = swarm_repo.path.parent / "repro-stdout.txt"
    proc, stderr = start_dvc(swarm_repo, "repro", stdout=stdout)
    wait_until(lambda: "live-out" in stdout.read_text().splitlines(), "the stage's first line on dvc's stdout", proc)
    (swarm_repo.path / "go").touch()
    proc.wait(timeout=120)
    out, err = stdout.read_text(), stderr.read_text()
    assert proc.returncode == 0, out + err
    assert "after-out" in out.splitlines()
    assert "live-err" in err.splitlines()


def test_sigkill_of_dvc_ends_the_task_and_the_next_run_removes_the_service(swarm_repo, swarm_clean):
    """Issue 18 on Swarm: the task of a SIGKILLed dvc ends within 30 s (its lease file stops being renewed);
    the service it leaves is named by `dvc status` and removed by the next run before it starts anything."""
    write_pipeline(swarm_repo, {"slow": {"cmd": "sleep 300"}, "quick": {"cmd": "echo q > q.txt", "outs": ["q.txt"]}})
    proc, _ = start_dvc(swarm_repo, "repro", "slow")
    service_id = wait_until(lambda: running_tasks(swarm_clean, swarm_repo), "the stage's task running", proc)[0]["ServiceID"]
    ours = services_of(swarm_clean, swarm_repo)
    proc.kill()
    proc.wait(timeout=60)
    killed = time.monotonic()

    def states():
        return [t["Status"]["State"] for t in swarm_clean.client.api.tasks(filters={"service": service_id})]

    wait_until(lambda: "running" not in states(), "the orphaned task end", timeout=90)
    ended = time.monotonic() - killed
    print(f"an orphaned Swarm task ended {ended:.1f} s after SIGKILL of dvc")
    assert ended < 45, f"the orphaned task ran {ended:.0f} s after its dvc was killed"  # promise: 30 s
    status = swarm_repo.dvc("status")
    assert f"service {ours[0]['Spec']['Name']} of stage 'slow'" in status.stderr, status.stderr
    rerun = swarm_repo.dvc("repro", "quick")
    assert f"removed service {ours[0]['Spec']['Name']} of stage 'slow'" in rerun.stderr, rerun.stderr
    assert service_id not in {s["ID"] for s in swarm_clean.services()}

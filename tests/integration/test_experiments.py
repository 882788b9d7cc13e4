"""`dvc exp run` in every mode (workspace, --temp, queue, run-all) with stages in containers.

Each stage writes where it ran (PID 1 is docker-init inside our containers),
the experiment variables it saw and, via /proc/uptime (one clock for the host
and every container), when it started and ended, so parallel queue runs can
be checked. With `sleep: peer` a stage waits (up to a minute) until another
stage of the repo has started, so parallel runs are proven without racing a
clock. A stage reports the signal it receives into the parent repo's .dvc/tmp
(the temporary copy it ran in is gone by then). Queue workers are DVC's celery daemons: they spawn `dvc` from
PATH, so the venv's bin directory goes first on PATH; they are always stopped
in `finally`, and `dvc queue start` never writes to a pipe (the daemon would
keep it open and the caller would block until the worker exits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

import pytest

from tests.conftest import LABEL, DvcRepo, container_events, our_containers
from tests.helpers import (
    QUEUE_TIMEOUT,
    experiments,
    git_show,
    queue,
    queue_diagnostics,
    queue_status,
    start_workers,
    stop_workers,
    wait_for_queue,
)

pytestmark = pytest.mark.docker


STAGE_SH = r"""set -e
X=$(sed -n 's/^x: //p' params.yaml)
S=$(sed -n 's/^sleep: //p' params.yaml)
trap 'echo INT > "$DVC_ROOT/.dvc/tmp/signal-$X"; exit 130' INT
trap 'echo TERM > "$DVC_ROOT/.dvc/tmp/signal-$X"; exit 143' TERM
start=$(cut -d' ' -f1 /proc/uptime)
echo "stage-output x=$X"
{
  echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
  echo "container=$(sed -n 's|.*/containers/\([0-9a-f]*\)/hostname .*|\1|p' /proc/self/mountinfo)"
  echo "pwd=$(pwd)"
  echo "root=$DVC_ROOT"
  echo "name=$DVC_EXP_NAME"
  echo "baseline=$DVC_EXP_BASELINE_REV"
  echo "extra=${EXTRA_VAR-unset}"
  if test -r "$DVC_ROOT/dvc.yaml"; then echo "root_visible=yes"; fi
} > where.txt
touch "$DVC_ROOT/.dvc/tmp/started-$X"  # its traps are set
if [ "$S" = peer ]; then
  R="$DVC_ROOT/.dvc/tmp/rendezvous"
  mkdir -p "$R" && touch "$R/$X"
  i=0
  while [ "$(ls "$R" | wc -l)" -lt 2 ] && [ "$i" -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
  sleep 1
else
  sleep "$S" & wait $!  # `wait`: a trapped signal is handled at once
fi
end=$(cut -d' ' -f1 /proc/uptime)
echo "{\"x\": $X, \"start\": $start, \"end\": $end}" > metrics.json
"""

DVC_YAML = """stages:
  s:
    cmd: sh stage.sh
    deps: [stage.sh]
    params: [x, sleep]
    outs: [{where.txt: {cache: false}}]
    metrics: [{metrics.json: {cache: false}}]
"""

TRAIN_PY = """import os
import yaml
from dvclive import Live

params = yaml.safe_load(open("params.yaml"))
print("seen", " ".join(f"{k}={os.environ.get(k)}" for k in ("DVC_ROOT", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")))
with Live() as live:
    live.log_param("lr", params["lr"])
    live.log_metric("acc", params["lr"] * 2)
with open("/proc/1/cmdline") as fobj:
    open("where.txt", "w").write(fobj.read().replace("\\0", " "))
"""

TRAIN_YAML = """stages:
  train:
    cmd: python train.py
    deps: [train.py]
    params: [lr]
    outs: [{where.txt: {cache: false}}]
    metrics: [{dvclive/metrics.json: {cache: false}}]
"""


# --- helpers ------------------------------------------------------------------


@pytest.fixture
def exp_repo(make_repo, busybox_image, no_leftovers):
    """make(image, config) -> committed repo with the probing stage; `dvc` of this venv on PATH."""

    def make(
        image: str = busybox_image, config: Dict[str, str] = {}, files: Optional[Dict[str, str]] = None  # noqa: B006
    ) -> DvcRepo:
        repo = make_repo(image)
        repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])
        for key, value in config.items():
            repo.config(key, value)
        if files is None:
            files = {"params.yaml": "x: 1\nsleep: 0\n", "stage.sh": STAGE_SH, "dvc.yaml": DVC_YAML}
        for name, text in files.items():
            repo.write(name, text)
        repo.run("git", "add", "-A")
        repo.run("git", "commit", "-qm", "pipeline")
        return repo

    return make


def where(text: str) -> Dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def head(repo: DvcRepo) -> str:
    return repo.run("git", "rev-parse", "HEAD").stdout.strip()


def repo_containers(client, repo: DvcRepo, running: bool = False) -> List:
    """Our containers started for this repo (or one of its temporary copies under .dvc/tmp/exps)."""
    root = str(repo.path)
    return [
        c
        for c in our_containers(client)
        if c.labels.get(f"{LABEL}.repo", "").startswith(root) and (not running or c.status == "running")
    ]


def wait_for_running_container(client, repo: DvcRepo, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        running = repo_containers(client, repo, running=True)
        if running:
            return running[0]
        assert time.monotonic() < deadline, f"no container started: {queue_status(repo)}"
        time.sleep(0.2)


# --- tests --------------------------------------------------------------------


def test_workspace_exp_run_with_param_overrides(exp_repo):
    repo = exp_repo()
    baseline = head(repo)
    first = repo.dvc("exp", "run", "-S", "x=5")
    repo.dvc("exp", "run", "-n", "six", "-S", "x=6")
    assert "in a container of image" in first.stdout
    # the workspace holds the last run
    seen = where(repo.read("where.txt"))
    assert "docker-init" in seen["pid1"]
    assert seen["name"] == "six" and seen["baseline"] == baseline and seen["root"] == str(repo.path)
    assert seen["pwd"] == str(repo.path)
    assert json.loads(repo.read("metrics.json"))["x"] == 6

    exps = experiments(repo)
    assert exps["six"]["metrics"]["metrics.json"]["x"] == 6
    assert exps["six"]["params"]["params.yaml"]["x"] == 6
    (other,) = [name for name in exps if name != "six"]
    assert exps[other]["metrics"]["metrics.json"]["x"] == 5
    committed = where(git_show(repo, exps[other]["rev"], "where.txt"))
    assert "docker-init" in committed["pid1"] and committed["name"] == other


def test_temp_exp_run_mounts_temp_dir_and_dvc_root(exp_repo):
    repo = exp_repo()
    # untracked .dvc/config.local reaches DVC's temporary copy too
    repo.config("docker.env", "EXTRA_VAR=from-config-local", local=True)
    proc = repo.dvc("exp", "run", "--temp", "-n", "tmpexp", "-S", "x=7")
    assert "in a container of image" in proc.stdout
    # the workspace is untouched
    assert repo.read("params.yaml") == "x: 1\nsleep: 0\n"
    assert not (repo.path / "metrics.json").exists()

    exp = experiments(repo)["tmpexp"]
    assert exp["metrics"]["metrics.json"]["x"] == 7
    seen = where(git_show(repo, exp["rev"], "where.txt"))
    assert "docker-init" in seen["pid1"]
    # ran in DVC's temporary copy, with DVC_ROOT pointing at (and mounted from) the parent repo
    assert seen["pwd"].startswith(str(repo.path / ".dvc" / "tmp" / "exps") + "/"), seen
    assert seen["root"] == str(repo.path) and seen["root_visible"] == "yes"
    assert seen["name"] == "tmpexp" and seen["baseline"] == head(repo)
    assert seen["extra"] == "from-config-local"


def test_queue_runs_experiments_in_parallel_containers(exp_repo):
    # docker.env passes EXTRA_VAR: its value comes from the shell that ran `dvc queue start`
    repo = exp_repo(config={"docker.env": "EXTRA_VAR"})
    names = ["q1", "q2", "q3"]
    for i, name in enumerate(names, start=1):
        queue(repo, name, f"x={10 + i}", "sleep=peer")
    status = queue_status(repo)
    assert all(status[n] == "Queued" for n in names), status
    try:
        start_workers(repo, 2, env={"EXTRA_VAR": "from-queue-start"})
        status = wait_for_queue(repo, names)
        assert all(status[n] == "Success" for n in names), status
        logs = repo.dvc("queue", "logs", "q2").stdout
    finally:
        stop_workers(repo)

    assert "stage-output x=12" in logs and "in a container of image" in logs, logs
    exps = experiments(repo)
    runs = []
    for i, name in enumerate(names, start=1):
        assert exps[name]["state"] == "success"
        metrics = exps[name]["metrics"]["metrics.json"]
        assert metrics["x"] == 10 + i
        seen = where(git_show(repo, exps[name]["rev"], "where.txt"))
        # each `dvc exp exec-run` process ran its stage through the plugin
        assert "docker-init" in seen["pid1"], seen
        assert seen["name"] == name and seen["root"] == str(repo.path) and seen["root_visible"] == "yes"
        assert seen["pwd"].startswith(str(repo.path / ".dvc" / "tmp" / "exps") + "/")
        assert seen["extra"] == "from-queue-start"
        runs.append((metrics["start"], metrics["end"], seen["container"], seen["pwd"]))
    assert len({r[2] for r in runs}) == 3 and len({r[3] for r in runs}) == 3  # own container, own copy
    runs.sort()
    # the first stage waited for a peer to start (or gave up after a minute): their times overlap
    overlaps = [b[0] < a[1] for a, b in zip(runs, runs[1:])]
    assert any(overlaps), f"no two containers ran at the same time: {runs}"


def test_queue_kill_stops_and_removes_container(exp_repo, docker_client):
    repo = exp_repo()
    queue(repo, "victim", "x=21", "sleep=600")
    try:
        start_workers(repo, 1)
        wait_for_running_container(docker_client, repo)
        started = repo.path / ".dvc" / "tmp" / "started-21"
        deadline = time.monotonic() + 60
        while not started.exists():  # the stage's traps are set
            assert time.monotonic() < deadline, "the stage never started"
            time.sleep(0.1)
        repo.dvc("queue", "kill", "victim")  # SIGINT to the exec-run process group
        # generous: `benchmarks/stop_bench.py --queue` measures how fast it goes
        deadline = time.monotonic() + 60
        while repo_containers(docker_client, repo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not repo_containers(docker_client, repo), "container survived `dvc queue kill`"
        # the stage's command itself received the Ctrl-C
        reported = repo.path / ".dvc" / "tmp" / "signal-21"
        assert (reported.read_text() if reported.exists() else "no signal\n") == "INT\n"
        # DVC sends SIGINT to the whole process group, its worker included: it
        # shuts down (warm) with or without the plugin; queued experiments wait
        status = wait_for_queue(repo, ["victim"])
        assert status["victim"] == "Failed", status
        logs = repo.dvc("queue", "logs", "victim").stdout
    finally:
        stop_workers(repo)
    assert "Traceback" not in logs, logs
    victim = experiments(repo)["victim"]
    assert victim["state"] == "failed" and not victim["metrics"].get("metrics.json"), victim


def test_sigkill_of_exec_run_stops_and_removes_the_container(exp_repo, docker_client):
    """`dvc queue kill --force` and `dvc queue stop --kill` both send SIGKILL to `dvc exp exec-run`: nobody is
    left in dvc to stop the container, so its lease does (issue 18): it stops and the daemon removes it
    (AutoRemove) within seconds. One repo and one worker for both: it runs "forced", then "stopped"."""
    repo = exp_repo()
    kills = {"forced": ("queue", "kill", "--force", "forced"), "stopped": ("queue", "stop", "--kill")}
    # each stage would run for 10 minutes: only the lease can end it within the bound below (a shorter
    # stage, once the queue was slow to start it, could end by itself and pass without the lease)
    queue(repo, "forced", "x=22", "sleep=600")
    queue(repo, "stopped", "x=25", "sleep=600")
    try:
        start_workers(repo, 1)
        for name, kill in kills.items():
            container = wait_for_running_container(docker_client, repo)
            since = int(time.time())
            repo.dvc(*kill)
            killed = time.monotonic()
            # generous bound (the promise is 2 s; benchmarks/chaos_bench.py measures it)
            def alive() -> bool:
                return container.id in {c.id for c in repo_containers(docker_client, repo)}

            while alive() and time.monotonic() < killed + 30:
                time.sleep(0.1)
            stopped = time.monotonic() - killed
            assert not alive(), f"the container outlived its dvc process ({' '.join(kill)})"
            assert stopped < 15, (kill, stopped)
            destroyed = [e["id"] for e in container_events(docker_client, "destroy", since) if e["id"] == container.id]
            assert destroyed == [container.id], kill
            died = [
                e["Actor"]["Attributes"]["exitCode"] for e in container_events(docker_client, "die", since) if e["id"] == container.id
            ]
            assert len(died) == 1 and died[0] != "0", f"the command was not stopped ({' '.join(kill)}: exit codes {died})"
            status = wait_for_queue(repo, [name])
            assert status[name] == "Failed", (kill, status)
    finally:
        stop_workers(repo)
    assert not repo_containers(docker_client, repo), "a container outlived its dvc process"


def test_container_of_an_experiment_killed_before_its_start_is_removed_by_the_next_run(exp_repo, docker_client):
    """Chaos benchmark finding: exec-run SIGKILLed between the create and the start leaves a Created container
    in a temp copy DVC then deletes; the next run in the project still finds it (the lease lives in the project)."""
    repo = exp_repo()
    queue(repo, "early", "x=23")
    try:
        start_workers(repo, 1, env={"DVC_DOCKER_EXEC_TEST_PAUSE": "created"})
        deadline = time.monotonic() + QUEUE_TIMEOUT
        while not repo_containers(docker_client, repo):
            assert time.monotonic() < deadline, queue_diagnostics(repo)
            time.sleep(0.2)
        orphan = repo_containers(docker_client, repo)[0]
        repo.dvc("queue", "kill", "--force", "early")
        assert wait_for_queue(repo, ["early"])["early"] == "Failed"
    finally:
        stop_workers(repo)
    assert [c.id for c in repo_containers(docker_client, repo)] == [orphan.id]  # never started: no lease watches it
    proc = repo.dvc("exp", "run", "-S", "x=24")
    assert f"removed container {orphan.name}" in proc.stderr, proc.stderr
    assert not repo_containers(docker_client, repo)


def test_dvclive_in_container_logs_to_the_experiment(exp_repo, python_dvc_image):
    repo = exp_repo(python_dvc_image, files={"params.yaml": "lr: 0.1\n", "train.py": TRAIN_PY, "dvc.yaml": TRAIN_YAML})
    baseline = head(repo)
    proc = repo.dvc("exp", "run", "-n", "myexp", "-S", "lr=0.3")
    output = proc.stdout + proc.stderr
    assert f"seen DVC_ROOT={repo.path} DVC_EXP_NAME=myexp DVC_EXP_BASELINE_REV={baseline}" in output, output
    for complaint in ("config file error", "extra keys not allowed", "Can't save", "Traceback", "WARNING"):
        assert complaint not in output, output
    assert "docker-init" in repo.read("where.txt")

    exp = experiments(repo)["myexp"]
    assert exp["metrics"]["dvclive/metrics.json"]["acc"] == pytest.approx(0.6)
    assert exp["params"]["params.yaml"]["lr"] == 0.3
    shown = json.loads(repo.dvc("metrics", "show", "--json").stdout)
    assert shown[""]["data"]["dvclive/metrics.json"]["data"]["acc"] == pytest.approx(0.6)


def test_run_all_then_apply_and_branch(exp_repo):
    repo = exp_repo()
    queue(repo, "ra1", "x=31")
    queue(repo, "ra2", "x=32")
    log = repo.path.parent / "run-all.log"
    try:
        with open(log, "wb") as out:  # --run-all starts queue workers: no pipe, see start_workers
            proc = subprocess.run(
                [sys.executable, "-m", "dvc", "exp", "run", "--run-all", "-j", "2"],
                cwd=repo.path,
                env=repo.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=QUEUE_TIMEOUT,
            )
        assert proc.returncode == 0, log.read_text()
        status = wait_for_queue(repo, ["ra1", "ra2"])
        assert status["ra1"] == status["ra2"] == "Success", status
    finally:
        stop_workers(repo)
    exps = experiments(repo)
    assert exps["ra1"]["metrics"]["metrics.json"]["x"] == 31
    assert exps["ra2"]["metrics"]["metrics.json"]["x"] == 32

    repo.dvc("exp", "apply", "ra2")
    assert "x: 32" in repo.read("params.yaml")
    assert json.loads(repo.read("metrics.json"))["x"] == 32
    assert "docker-init" in where(repo.read("where.txt"))["pid1"]

    repo.dvc("exp", "branch", "ra1", "from-ra1")
    assert json.loads(git_show(repo, "from-ra1", "metrics.json"))["x"] == 31
    assert "docker-init" in where(git_show(repo, "from-ra1", "where.txt"))["pid1"]
    assert "x: 31" in git_show(repo, "from-ra1", "params.yaml")


def test_queue_logs_show_the_daemon_error_once(exp_repo, tmp_path):
    """Issue 20, item 5: the executor and DVC's main both logged the failed repro's exception."""
    repo = exp_repo()
    queue(repo, "nodaemon")
    try:
        start_workers(repo, 1, env={"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"})
        status = wait_for_queue(repo, ["nodaemon"])
        logs = repo.dvc("queue", "logs", "nodaemon").stdout
    finally:
        stop_workers(repo)
    assert status["nodaemon"] == "Failed"
    errors = [line for line in logs.splitlines() if "cannot reach the Docker daemon" in line]
    assert len(errors) == 1, logs

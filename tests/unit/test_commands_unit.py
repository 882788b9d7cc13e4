"""Pure parts of `dvc docker ...`: registration into DVC's parser, doctor's checks, pull progress, containers."""

from __future__ import annotations

import io
import os
import sys

import pytest

from dvc_docker_exec.commands import checks
from dvc_docker_exec import commands, dvc_glue
from dvc_docker_exec.commands.checks import ERROR, OK, WARNING
from dvc_docker_exec.backends.containers import PluginContainer, format_age, of_repo
from dvc_docker_exec.api.pulling import PullDisplay, PullState, human_size

SUBCOMMANDS = {"build", "doctor", "images", "pull", "ps", "prune"}


def _docker_subcommands(parser) -> set:
    top = next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict))
    docker = top.choices.get("docker")
    if docker is None:
        return set()
    sub = next(a for a in docker._actions if isinstance(getattr(a, "choices", None), dict))
    return set(sub.choices)


def test_parser_has_the_docker_group() -> None:
    from dvc.cli import parser

    assert commands in parser.COMMANDS
    assert _docker_subcommands(parser.get_main_parser()) == SUBCOMMANDS


def test_registration_drops_a_parser_built_before(monkeypatch) -> None:
    """The memoized parser was built without us (plugin imported late): registering rebuilds it."""
    from dvc.cli import parser

    monkeypatch.setattr(parser, "COMMANDS", [c for c in parser.COMMANDS if c is not commands])
    parser.get_main_parser.cache_clear()
    assert _docker_subcommands(parser.get_main_parser()) == set()
    dvc_glue.register_commands(parser)
    dvc_glue.register_commands(parser)  # twice: still one group
    assert parser.COMMANDS.count(commands) == 1
    assert _docker_subcommands(parser.get_main_parser()) == SUBCOMMANDS
    parser.get_main_parser.cache_clear()


def test_docker_args_parse_like_dvc() -> None:
    from dvc.cli import parse_args

    args = parse_args(["--cd", "/tmp", "docker", "pull", "-j", "2", "-v", "train", "test"])
    assert (args.cd, args.jobs, args.targets, args.verbose) == ("/tmp", 2, ["train", "test"], 1)
    assert parse_args(["docker", "prune", "--all", "--dry", "-q"]).quiet == 1


# --- doctor's checks from recorded /version and /info answers ------------------------------------

DOCKER_VERSION = {"Version": "20.10.24", "ApiVersion": "1.41", "Os": "linux", "Arch": "amd64", "Components": [{"Name": "Engine"}]}
PODMAN_VERSION = {"Version": "4.3.1", "ApiVersion": "1.41", "Components": [{"Name": "Podman Engine"}]}
ROOTFUL_INFO = {"CgroupDriver": "systemd", "CgroupVersion": "2", "MemoryLimit": True, "CpuCfsQuota": True, "SecurityOptions": ["name=seccomp,profile=default"], "Runtimes": {"runc": {}}}
ROOTLESS_V1_INFO = {"CgroupDriver": "none", "CgroupVersion": "1", "MemoryLimit": False, "CpuCfsQuota": False, "SecurityOptions": ["name=seccomp,profile=default", "name=rootless"], "Runtimes": {"runc": {}}}


def _engine(version, info):
    from dvc_docker_exec.api.engine import from_api

    return from_api(version, info)


def test_engine_kinds() -> None:
    rootful = checks.engine_check(_engine(DOCKER_VERSION, ROOTFUL_INFO), ROOTFUL_INFO)
    assert rootful.message == "Docker Engine, cgroup v2, driver systemd, runtime ?"
    rootless = checks.engine_check(_engine(DOCKER_VERSION, ROOTLESS_V1_INFO), ROOTLESS_V1_INFO)
    assert rootless.message.startswith("rootless Docker Engine, cgroup v1, driver none")
    podman = checks.engine_check(_engine(PODMAN_VERSION, {"CgroupDriver": "systemd"}), {"CgroupDriver": "systemd"})
    assert podman.message.startswith("Podman Engine, cgroup driver systemd")
    refused = checks.engine_check(_engine(DOCKER_VERSION, None), None)
    assert refused.level == WARNING and "GET /info refused" in refused.message
    assert checks.daemon_check(PODMAN_VERSION).message.startswith("Podman Engine 4.3.1 answers")


def test_limits_ignored_by_rootless_without_delegation() -> None:
    assert checks.limits_check(_engine(DOCKER_VERSION, ROOTFUL_INFO), ["train"]).level == OK
    rootless = _engine(DOCKER_VERSION, ROOTLESS_V1_INFO)
    unused = checks.limits_check(rootless, [])
    assert unused.level == WARNING and "driver none" in unused.message and unused.fix
    used = checks.limits_check(rootless, ["train"])
    assert used.level == ERROR and "'train'" in used.message and "docker.allow_unlimited" in used.fix
    assert checks.limits_check(_engine(DOCKER_VERSION, None), ["train"]).level == WARNING  # unknown


def test_gpus_need_a_gpu_runtime() -> None:
    assert checks.gpus_check(ROOTFUL_INFO, []) is None
    missing = checks.gpus_check(ROOTFUL_INFO, ["train"])
    assert missing is not None and missing.level == ERROR and "runtimes: runc" in missing.message
    present = checks.gpus_check({"Runtimes": {"runc": {}, "nvidia": {}}}, ["train"])
    assert present is not None and present.level == OK


def test_swarm_gpus_are_the_nodes_generic_resources() -> None:
    gpu_node = {"NanoCPUs": 2, "MemoryBytes": 1, "NVIDIA-GPU": 2}
    plain = {"NanoCPUs": 2, "MemoryBytes": 1}
    assert checks.swarm_gpus_checks([gpu_node, plain], []) == []
    fine = checks.swarm_gpus_checks([gpu_node, plain], [("train", 2)])
    assert [c.level for c in fine] == [OK] and "1 of 2 Swarm nodes advertise NVIDIA-GPU (up to 2 per node)" in fine[0].message
    assert 'swarm-resource = "DOCKER_RESOURCE_NVIDIA-GPU"' in fine[0].message
    none = checks.swarm_gpus_checks([plain, plain], [("train", 1)])
    assert [c.level for c in none] == [ERROR] and "no Swarm node advertises" in none[0].message
    assert "node-generic-resources" in none[0].fix
    bad = checks.swarm_gpus_checks([gpu_node, plain], [("big", 3), ("all", -1), ("dev", 0), ("ok", 1)])
    assert [c.message for c in bad] == [
        "'big' reserves 3 NVIDIA-GPU but the most a Swarm node has is 2",
        "'all' has docker.gpus all, which Swarm cannot reserve",
        "'dev' has docker.gpus device=..., which Swarm cannot reserve",
    ]


def test_socket_check(tmp_path) -> None:
    assert checks.socket_check(None) is None
    assert checks.socket_check(str(tmp_path / "nope.sock")).level == ERROR
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    assert checks.socket_check(str(sock)).level == OK


def test_socket_check_refuses_a_socket_its_user_may_not_write() -> None:
    """Root may write anything: the mode check is for other users, so it runs as the test user."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from tests.conftest import TESTER, local_user, need_python_for, setpriv

    if os.getuid() == 0:  # CI: as the test user
        entry = local_user(TESTER, home=True)
        prefix = setpriv(entry, "clear")
        need_python_for(prefix, TESTER)
    else:  # a laptop: as this user
        import pwd

        entry, prefix = pwd.getpwuid(os.getuid()), []
    folder = Path(tempfile.mkdtemp(prefix="dde-sockcheck-"))  # not pytest's tmp_path: private to root
    try:
        sock = folder / "docker.sock"
        sock.write_text("")
        os.chown(sock, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o755)
        code = "import sys; from dvc_docker_exec.commands import checks; c = checks.socket_check(sys.argv[1]); print(c.level, c.message)"
        levels = []
        for mode in (0o600, 0o400):
            sock.chmod(mode)
            proc = subprocess.run([*prefix, sys.executable, "-c", code, str(sock)], capture_output=True, text=True, check=True)
            levels.append(proc.stdout.split()[0])
        assert levels == [OK, ERROR], levels
        assert f"uid {entry.pw_uid} may not read and write {sock}" in proc.stdout, proc.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_volume_checks(tmp_path) -> None:
    found = checks.volume_checks("train", [str(tmp_path), str(tmp_path / "missing")])
    assert [c.message for c in found] == [f"docker.volumes source '{tmp_path / 'missing'}' does not exist"]
    assert found[0].level == ERROR and found[0].name == "stage 'train'"


def test_line_and_summary() -> None:
    ok = checks.Check("daemon", OK, "answers", "never shown")
    bad = checks.Check("socket", ERROR, "no socket", "start Docker")
    assert ok.line() == "ok      daemon: answers"
    assert bad.line() == "error   socket: no socket -> fix: start Docker"
    assert checks.summary([ok]) == "No problem found."
    assert checks.summary([ok, bad]) == "1 error, 0 warnings."


# --- pull progress ---------------------------------------------------------------------------------

EVENTS = [
    {"status": "Pulling from team/img", "id": "1"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
    {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
    {"status": "Downloading", "progressDetail": {"current": 500, "total": 2000}, "id": "aaa"},
    {"status": "Downloading", "progressDetail": {"current": 1000, "total": 3000}, "id": "bbb"},
    {"status": "Download complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Extracting", "progressDetail": {"current": 2000, "total": 2000}, "id": "aaa"},
    {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
    {"status": "Already exists", "progressDetail": {}, "id": "ccc"},
    {"status": "Download complete", "progressDetail": {}, "id": "bbb"},
    {"status": "Pull complete", "progressDetail": {}, "id": "bbb"},
    {"status": "Digest: sha256:" + "ab" * 32},
    {"status": "Status: Downloaded newer image for team/img:1"},
]


def test_pull_state_counts_layers_and_bytes() -> None:
    state = PullState()
    finished = [state.feed(e) for e in EVENTS[:5]]
    assert finished == [None] * 5 and (state.current_bytes, state.total_bytes) == (1500, 5000)
    finished = [state.feed(e) for e in EVENTS[5:]]
    assert [f for f in finished if f] == ["aaa", "ccc", "bbb"]
    assert (state.done_layers, len(state.layers), state.current_bytes) == (3, 3, 5000)
    assert state.digest == "sha256:" + "ab" * 32 and state.status == "Downloaded newer image for team/img:1"


def test_one_line_per_layer_when_not_a_terminal() -> None:
    out = io.StringIO()
    display = PullDisplay("team/img:1", out=out)
    for event in EVENTS:
        display.feed(event)
    display.close()
    assert out.getvalue().splitlines() == [
        "team/img:1: aaa: Pull complete (2.0 kB)",
        "team/img:1: ccc: Already exists",
        "team/img:1: bbb: Pull complete (3.0 kB)",
        f"team/img:1: Downloaded newer image for team/img:1 (3 layers, 2 downloaded, 5.0 kB); digest sha256:{'ab' * 32}",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_dvc_progress_bar_on_a_terminal(monkeypatch, capsys) -> None:
    monkeypatch.delenv("DVC_IGNORE_ISATTY", raising=False)
    out = _Terminal()
    display = PullDisplay("team/img:1", out=out)
    assert not display.lines
    for event in EVENTS:
        display.feed(event)
    display.close()
    # DVC's Tqdm decides by `file` but draws on sys.stderr (it does not pass `file` on to tqdm)
    text = out.getvalue() + capsys.readouterr().err
    assert "\r" in text and "100% team/img:1|" in text and "4.88k/4.88k" in text
    assert "Pull complete" not in text


def test_human_size() -> None:
    assert [human_size(n) for n in (12, 2000, 3_500_000, 7e9)] == ["12 B", "2.0 kB", "3.5 MB", "7.0 GB"]


# --- containers ------------------------------------------------------------------------------------


def _container(**labels: str) -> PluginContainer:
    return PluginContainer.from_api(
        {"Id": "f" * 64, "Names": ["/dvc-x"], "State": "running", "Created": 100, "Labels": {"dvc-docker-exec": "1", **labels}}
    )


def test_dvc_process_state() -> None:
    host = os.uname().nodename
    assert _container(**{"dvc-docker-exec.pid": str(os.getpid()), "dvc-docker-exec.host": host}).dvc_process() == "alive"
    import subprocess

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = _container(**{"dvc-docker-exec.pid": str(dead.pid), "dvc-docker-exec.host": host})
    assert gone.dvc_process() == "gone" and gone.orphaned
    elsewhere = _container(**{"dvc-docker-exec.pid": str(dead.pid), "dvc-docker-exec.host": "other-runner"})
    assert elsewhere.dvc_process() == "unknown" and not elsewhere.orphaned
    assert _container().dvc_process() == "unknown"


def test_of_repo_whole_components() -> None:
    assert of_repo(_container(**{"dvc-docker-exec.repo": "/w/p"}), "/w/p")
    assert of_repo(_container(**{"dvc-docker-exec.repo": "/w/p/.dvc/tmp/exps/tmp1"}), "/w/p")
    assert not of_repo(_container(**{"dvc-docker-exec.repo": "/w/project"}), "/w/p")
    assert not of_repo(_container(), "/w/p")


@pytest.mark.parametrize("seconds,text", [(5, "5s"), (61, "1m"), (7200, "2h"), (200000, "2d"), (-3, "0s")])
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


# --- pull plan: by the recorded digest -------------------------------------------------------------


def _row(stage: str, image: str, recorded=None, current=None):
    from dvc_docker_exec.dependency.image_rows import ImageRow

    return ImageRow(stage, image, "missing", recorded, current)


def test_pull_plan_by_recorded_digest() -> None:
    from dvc_docker_exec.dependency.image_rows import Pull, pull_plan

    d1, d2 = "reg/app@sha256:" + "1" * 64, "reg/app@sha256:" + "2" * 64
    rows = [
        _row("a", "reg/app:1", d1),
        _row("b", "reg/app:1", d1),  # same image: pulled once
        _row("c", "py:3", None),  # nothing recorded: the reference
        _row("d", "local:1", "sha256:" + "3" * 64),  # a local ID cannot be pulled
        _row("e", "reg/app:2", d1),
        _row("f", "reg/app:2", d2),  # two digests for one reference: both, no tag
        _row("g", "built:1", "sha256:" + "4" * 64, "sha256:" + "5" * 64),  # built here, present: nowhere to pull from
        _row("h", "built:2", None, "sha256:" + "6" * 64),
        _row("i", "pulled:1", None, "pulled@sha256:" + "7" * 64),  # present, from a registry: pulled again
    ]
    assert pull_plan(rows) == (
        # local:1: its recorded ID is tagged if present here (under another name), else the reference is pulled
        [Pull(d1, "reg/app:1"), Pull("py:3"), Pull("local:1", recorded_id="sha256:" + "3" * 64), Pull(d2), Pull("pulled:1")],
        ["built:1", "built:2"],
    )


def test_pull_plan_pulls_for_the_stages_platform() -> None:
    from dvc_docker_exec.dependency.image_rows import ImageRow, Pull, pull_plan

    digest = "reg/app@sha256:" + "1" * 64
    rows = [ImageRow("a", "reg/app:1", "missing", digest, None, "linux/arm64"), ImageRow("b", "py:3", "missing", None, None)]
    assert pull_plan(rows)[0] == [Pull(digest, "reg/app:1", "linux/arm64"), Pull("py:3")]


def test_runtime_check() -> None:
    info = {"Runtimes": {"runc": {}, "io.containerd.runc.v2": {}}}
    assert checks.runtime_check(info, []) is None
    assert checks.runtime_check(info, [("train", "runc")]).level == checks.OK
    missing = checks.runtime_check(info, [("train", "runsc"), ("eval", "runc")])
    assert missing.level == checks.ERROR
    assert missing.message == (
        "docker.runtime of 'train' (runsc) is not a runtime of this engine (it has: io.containerd.runc.v2, runc)"
    )
    assert "daemon.json" in missing.fix

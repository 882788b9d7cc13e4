"""Unit tests for dvc_docker_exec.types.spec: settings + stage facts + cmd -> container.

The rendered kwargs are fed to docker-py's own pure builders
(``create_host_config``, and ``create_container`` up to the HTTP request), so
a kwarg docker-py does not know fails here, without a daemon.
"""

from __future__ import annotations

import os
import pty
import shlex
import sys
import tempfile
from typing import Any, Dict, Optional

import docker
import pytest
from docker.types import DeviceRequest, Mount

from dvc_docker_exec import dvc_glue
from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.types.spec import HOME_IN_CONTAINER, LABEL, ContainerSpec, StageFacts, build_spec, container_env, container_name, resolve_user
from dvc_docker_exec.types.mounts import dedupe_mounts

REPO = "/home/me/proj"
CMD = """python train.py --name "it's" && echo '$HOME' | tr a-z A-Z > out.txt; echo $VAR ${OTHER:-x}"""


def identity(path: str, ro: bool) -> Mount:
    return Mount(target=path, source=path, type="bind", read_only=ro)


def settings(**raw: Any) -> DockerSettings:
    return DockerSettings.from_mapping({"image": "busybox", **raw})


FACTS = StageFacts(
    addressing="dvc.yaml:train@1",
    wdir=f"{REPO}/src",
    repo_root=REPO,
    mount_paths=(REPO, f"{REPO}/.dvc/cache"),
)


def spec_for(
    s: Optional[DockerSettings] = None,
    facts: StageFacts = FACTS,
    cmd: str = CMD,
    env: Optional[Dict[str, str]] = None,
    mount_for=identity,
    **kwargs: Any,
) -> ContainerSpec:
    options: Dict[str, Any] = dict(uid=1000, gid=1001, pid=4242, tty=False)
    options.update(kwargs)
    return build_spec(s or settings(), facts, cmd, env if env is not None else {"DVC_ROOT": REPO}, mount_for, **options)


def targets(spec: ContainerSpec) -> Dict[str, Mount]:
    return {m["Target"]: m for m in spec.mounts}


# --- command ----------------------------------------------------------------------------


def test_command_is_one_shell_argv_element_kept_verbatim() -> None:
    spec = spec_for()
    assert spec.image == "busybox"
    assert spec.entrypoint == ("/bin/sh",)
    assert spec.command == ("-c", CMD)
    assert spec.working_dir == f"{REPO}/src"
    assert spec.tty is False


def test_shell_setting_is_the_entrypoint() -> None:
    spec = spec_for(settings(shell="/bin/bash"))
    assert spec.entrypoint == ("/bin/bash",)
    assert spec.command == ("-c", CMD)


def test_needs_an_image() -> None:
    with pytest.raises(AssertionError):
        spec_for(DockerSettings())


# --- user and HOME ----------------------------------------------------------------------


def test_default_user_is_the_caller_with_a_tmpfs_home() -> None:
    spec = spec_for()
    assert spec.user == "1000:1001"
    assert spec.environment["HOME"] == HOME_IN_CONTAINER
    # the uid has no passwd entry in the image: USER/LOGNAME name it
    assert spec.environment["USER"] == spec.environment["LOGNAME"] == "dvc"
    home = targets(spec)[HOME_IN_CONTAINER]
    assert home["Type"] == "tmpfs"
    assert home["TmpfsOptions"] == {"Mode": 0o1777}


@pytest.mark.parametrize("user", ["root", "0", "0:0", "root:root"])
def test_root_gets_no_home(user: str) -> None:
    spec = spec_for(settings(user=user))
    assert spec.user == user
    assert not {"HOME", "USER", "LOGNAME"} & set(spec.environment)
    assert HOME_IN_CONTAINER not in targets(spec)


def test_user_name_and_given_values_kept() -> None:
    assert spec_for(user_name="me").environment["USER"] == "me"
    spec = spec_for(env={"USER": "u", "LOGNAME": "l"}, user_name="me")
    assert (spec.environment["USER"], spec.environment["LOGNAME"]) == ("u", "l")


def test_root_as_the_caller() -> None:
    spec = spec_for(uid=0, gid=0)
    assert spec.user == "0:0"
    assert HOME_IN_CONTAINER not in targets(spec)


def test_configured_non_root_user_gets_a_home() -> None:
    spec = spec_for(settings(user="app"))
    assert spec.user == "app"
    assert spec.environment["HOME"] == HOME_IN_CONTAINER


def test_home_from_the_env_is_kept() -> None:
    spec = spec_for(env={"HOME": "/custom"})
    assert spec.environment["HOME"] == "/custom"


def test_resolve_user() -> None:
    assert resolve_user(DockerSettings(), 1000, 1000) == ("1000:1000", True)
    assert resolve_user(DockerSettings(user="0"), 1000, 1000) == ("0", False)
    assert resolve_user(DockerSettings(), 0, 0) == ("0:0", False)


# --- environment ------------------------------------------------------------------------


def test_container_env() -> None:
    dvc_env = {"DVC_ROOT": REPO, "DVC_STAGE": "train", "PATH": "/usr/bin", "SECRET": "no", "DVC_OTHER": "x"}
    run_env = {"DVC_EXP_NAME": "exp1", "DVC_EXP_BASELINE_REV": "abc", "UNSET": None}
    host = {"HF_TOKEN": "tok", "PATH": "/host/bin", "SECRET": "no"}
    env = container_env(dvc_env, run_env, settings(env="HF_TOKEN, MODE=fast, ABSENT"), host, home=None)
    assert env == {
        "DVC_ROOT": REPO,
        "DVC_STAGE": "train",
        "DVC_EXP_NAME": "exp1",
        "DVC_EXP_BASELINE_REV": "abc",
        "HF_TOKEN": "tok",
        "MODE": "fast",
        "SHELL": "/bin/sh",
    }


def test_container_env_home_and_shell() -> None:
    env = container_env({}, None, settings(shell="/bin/bash"), {}, home="/h")
    assert env == {"SHELL": "/bin/bash", "HOME": "/h"}


def test_spec_environment_is_the_given_env_plus_home() -> None:
    env = {"DVC_ROOT": REPO, "A": "1"}
    spec = spec_for(env=env)
    assert spec.environment == {**env, "HOME": HOME_IN_CONTAINER, "USER": "dvc", "LOGNAME": "dvc"}
    assert env == {"DVC_ROOT": REPO, "A": "1"}  # not modified in place


# --- labels, names, resources -----------------------------------------------------------


def test_labels() -> None:
    assert spec_for().labels == {
        LABEL: "1",
        f"{LABEL}.stage": "dvc.yaml:train@1",
        f"{LABEL}.repo": REPO,
        f"{LABEL}.pid": "4242",
        f"{LABEL}.host": "",
        f"{LABEL}.image": "busybox",
    }
    assert spec_for(host="box").labels[f"{LABEL}.host"] == "box"


def test_created_from_the_image_id_tag_in_label() -> None:
    """Issue 19 item 6: create by the ID read with the recorded identity; the tag stays visible."""
    spec = spec_for(image_id="sha256:" + "a" * 64)
    assert spec.create_kwargs(None)["image"] == "sha256:" + "a" * 64
    assert spec.labels[f"{LABEL}.image"] == "busybox" and spec.image == "busybox"
    assert spec_for().create_kwargs(None)["image"] == "busybox"


def test_names_are_unique_per_call() -> None:
    names = {spec_for().name for _ in range(20)}
    assert len(names) == 20
    assert all(name.startswith("dvc-dvc.yaml-train-1-4242-") for name in names)


def test_container_name() -> None:
    assert container_name("dvc.yaml:train@1", 7, "abc") == "dvc-dvc.yaml-train-1-7-abc"
    assert container_name("///", 7, "abc") == "dvc-stage-7-abc"
    assert len(container_name("x" * 200, 7, "abc")) == len("dvc-") + 40 + len("-7-abc")
    assert spec_for(name_token="tok").name.endswith("-4242-tok")


def test_network_default_host_and_configurable() -> None:
    assert spec_for().network_mode == "host"
    assert spec_for(settings(network="none")).network_mode == "none"


@pytest.mark.parametrize("tty", [True, False])
def test_tty_reaches_the_daemon_and_the_run_line(tty: bool) -> None:
    """A terminal on dvc's stdout asks the daemon for a TTY (`-t`), else none."""
    spec = spec_for(tty=tty)
    assert spec.create_kwargs(host_config={})["tty"] is tty
    assert spec.create_kwargs(host_config={})["stdin_open"] is False
    assert ("-t" in shlex.split(spec.docker_run_line())) is tty


def test_tty_follows_dvcs_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(os.dup(slave), "w") as terminal, tempfile.TemporaryFile("w") as plain:
            monkeypatch.setattr(sys, "stdout", terminal)
            assert dvc_glue._tty() is True
            monkeypatch.setattr(sys, "stdout", plain)
            assert dvc_glue._tty() is False
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(
    ("gpus", "count", "device_ids", "cli"),
    [
        ("all", -1, None, "all"),
        ("2", 2, None, "2"),
        ("device=0,2", None, ["0", "2"], '"device=0,2"'),
    ],
)
def test_gpus(gpus: str, count: Optional[int], device_ids: Optional[list], cli: str) -> None:
    spec = spec_for(settings(gpus=gpus))
    assert spec.device_requests == (DeviceRequest(count=count, device_ids=device_ids, capabilities=[["gpu"]]),)
    assert spec.gpus_cli == cli
    assert spec.host_config_kwargs()["device_requests"] == list(spec.device_requests)


def test_no_gpus_no_limits_by_default() -> None:
    spec = spec_for()
    assert spec.device_requests == () and spec.gpus_cli is None
    assert spec.nano_cpus is None and spec.mem_limit is None and spec.shm_size is None
    kwargs = spec.host_config_kwargs()
    assert not {"device_requests", "nano_cpus", "mem_limit", "shm_size"} & set(kwargs)


def test_cpus_memory_shm() -> None:
    spec = spec_for(settings(cpus="1.5", memory="512m", shm_size="1g"))
    assert spec.nano_cpus == 1_500_000_000
    assert spec.mem_limit == 512 * 1024**2
    assert spec.shm_size == 1024**3
    kwargs = spec.host_config_kwargs()
    assert (kwargs["nano_cpus"], kwargs["mem_limit"], kwargs["shm_size"]) == (1_500_000_000, 512 * 1024**2, 1024**3)


# --- mounts -------------------------------------------------------------------------------


def test_stage_paths_are_mounted_at_the_same_path() -> None:
    spec = spec_for(uid=0, gid=0)
    # the cache inside the repo is covered by the repo mount
    assert spec.mounts == (identity(REPO, False),)


def test_extra_volumes() -> None:
    s = settings(volumes=["/data/ds:/ds:ro", "models:/models", "/scratch:/scratch"])
    mounts = targets(spec_for(s, uid=0, gid=0))
    assert mounts["/ds"] == Mount(target="/ds", source="/data/ds", type="bind", read_only=True)
    # a relative source is resolved against the repo root
    assert mounts["/models"] == Mount(target="/models", source=f"{REPO}/models", type="bind", read_only=False)
    assert mounts["/scratch"]["ReadOnly"] is False


def test_extra_volume_relative_source_normalized() -> None:
    s = settings(volumes="./a/../b:/b")
    assert targets(spec_for(s))["/b"]["Source"] == f"{REPO}/b"


def test_extra_volume_in_a_named_volume_mounts_the_whole_volume() -> None:
    def in_volume(path: str, ro: bool) -> Mount:
        return Mount(target=path, source="shared-vol", type="volume", read_only=ro)

    mounts = targets(spec_for(settings(volumes="/x/y:/y:ro"), mount_for=in_volume))
    assert mounts["/y"] == Mount(target="/y", source="shared-vol", type="volume", read_only=True, no_copy=True)


def test_extra_volume_from_a_read_only_source_stays_read_only() -> None:
    def read_only_data(path: str, ro: bool) -> Mount:
        return Mount(target=path, source=path, type="bind", read_only=ro or path.startswith("/ro"))

    mounts = targets(spec_for(settings(volumes="/ro/ds:/ds"), mount_for=read_only_data))
    assert mounts["/ds"]["ReadOnly"] is True


def test_config_overlays_mounted_read_only_over_the_originals() -> None:
    facts = StageFacts(
        addressing="train",
        wdir=REPO,
        repo_root=REPO,
        mount_paths=(REPO,),
        config_overlays=(
            (f"{REPO}/.dvc/tmp/docker-exec/1/config", f"{REPO}/.dvc/config"),
            (f"{REPO}/.dvc/tmp/docker-exec/1/config.local", f"{REPO}/.dvc/config.local"),
        ),
    )
    spec = spec_for(facts=facts, uid=0, gid=0)
    assert spec.mounts == (
        Mount(target=REPO, source=REPO, type="bind"),
        Mount(target=f"{REPO}/.dvc/config", source=f"{REPO}/.dvc/tmp/docker-exec/1/config", type="bind", read_only=True),
        Mount(
            target=f"{REPO}/.dvc/config.local",
            source=f"{REPO}/.dvc/tmp/docker-exec/1/config.local",
            type="bind",
            read_only=True,
        ),
    )


def test_config_overlays_skipped_inside_a_named_volume() -> None:
    def in_volume(path: str, ro: bool) -> Mount:
        return Mount(target=path, source="ws", type="volume", read_only=ro)

    facts = StageFacts("train", REPO, REPO, (REPO,), ((f"{REPO}/.dvc/tmp/c", f"{REPO}/.dvc/config"),))
    spec = spec_for(facts=facts, mount_for=in_volume, uid=0, gid=0)
    assert spec.mounts == (Mount(target=REPO, source="ws", type="volume"),)


def test_overlays_survive_dedupe() -> None:
    # an overlay's target lies inside the repo mount: it must not be dropped
    facts = StageFacts("train", REPO, REPO, (REPO,), ((f"{REPO}/.dvc/config", f"{REPO}/.dvc/config"),))
    spec = spec_for(facts=facts, uid=0, gid=0)
    assert f"{REPO}/.dvc/config" in targets(spec)


def bind(target: str, source: Optional[str] = None, ro: bool = False) -> Mount:
    return Mount(target=target, source=source or target, type="bind", read_only=ro)


def volume(target: str, source: str, ro: bool = False) -> Mount:
    return Mount(target=target, source=source, type="volume", read_only=ro)


@pytest.mark.parametrize(
    ("mounts", "kept"),
    [
        pytest.param([bind("/r"), bind("/r/sub")], [bind("/r")], id="nested-same-source-dropped"),
        pytest.param([bind("/r/sub"), bind("/r")], [bind("/r")], id="order-does-not-matter"),
        pytest.param([bind("/r"), bind("/r")], [bind("/r")], id="duplicate"),
        pytest.param([bind("/r"), bind("/r/", "/r")], [bind("/r")], id="trailing-slash"),
        pytest.param(
            [bind("/r"), bind("/r/cache", "/elsewhere")],
            [bind("/r"), bind("/r/cache", "/elsewhere")],
            id="nested-different-source-kept",
        ),
        pytest.param(
            [bind("/r", ro=True), bind("/r/out")],
            [bind("/r", ro=True), bind("/r/out")],
            id="rw-inside-ro-kept",
        ),
        pytest.param(
            [volume("/ws", "vol", ro=True), volume("/ws/out", "vol")],
            [volume("/ws", "vol", ro=True), volume("/ws/out", "vol")],
            id="volume-rw-inside-ro-kept",
        ),
        pytest.param(
            [bind("/r"), bind("/r/in", ro=True)], [bind("/r"), bind("/r/in", ro=True)], id="ro-inside-rw-same-source-kept"
        ),
        pytest.param([bind("/work"), bind("/workspace")], [bind("/work"), bind("/workspace")], id="prefix-not-nested"),
        pytest.param(
            [volume("/ws", "vol"), volume("/ws/a", "vol")],
            [volume("/ws", "vol")],
            id="volume-same-volume-nested-dropped",
        ),
        pytest.param(
            [volume("/ws", "vol"), volume("/ws/cache", "cache-vol")],
            [volume("/ws", "vol"), volume("/ws/cache", "cache-vol")],
            id="volume-other-volume-kept",
        ),
        pytest.param(
            [volume("/ws", "vol"), bind("/ws/x", "/host/x")],
            [volume("/ws", "vol"), bind("/ws/x", "/host/x")],
            id="bind-inside-volume-kept",
        ),
        pytest.param(
            [bind("/ws", "/host/ws"), volume("/ws/x", "vol")],
            [bind("/ws", "/host/ws"), volume("/ws/x", "vol")],
            id="volume-inside-bind-kept",
        ),
        pytest.param(
            [bind("/repo", "/host/repo"), bind("/repo/data", "/host/repo/data")],
            [bind("/repo", "/host/repo")],
            id="translated-same-storage-dropped",
        ),
        pytest.param(
            [bind("/repo", "/host/repo"), bind("/repo/data", "/host/other/data")],
            [bind("/repo", "/host/repo"), bind("/repo/data", "/host/other/data")],
            id="translated-other-storage-kept",
        ),
        pytest.param([bind("/"), bind("/x")], [bind("/")], id="root-covers-all"),
    ],
)
def test_dedupe_mounts(mounts: list, kept: list) -> None:
    assert list(dedupe_mounts(mounts)) == kept


def test_dedupe_keeps_outer_first_order() -> None:
    mounts = [bind("/b/c"), bind("/a"), bind("/b", "/other")]
    assert list(dedupe_mounts(mounts)) == [bind("/a"), bind("/b", "/other"), bind("/b/c")]


# --- docker run line ----------------------------------------------------------------------


def test_docker_run_line() -> None:
    s = settings(volumes="/data/ds:/ds:ro", gpus="device=0,1", cpus="0.5", memory="1g", shm_size="64m", network="none")
    spec = spec_for(s, env={"DVC_ROOT": REPO, "TOKEN": "s3cr3t"})
    line = spec.docker_run_line()
    args = shlex.split(line)
    assert args[:3] == ["docker", "run", "--rm"]
    assert "--init" in args
    assert "s3cr3t" not in line  # a secret-looking name: `-e NAME`, the value from the pasting shell

    def after(flag: str) -> list:
        return [args[i + 1] for i, a in enumerate(args) if a == flag]

    assert after("--user") == ["1000:1001"]
    assert after("--workdir") == [f"{REPO}/src"]
    assert after("--network") == ["none"]
    assert sorted(after("-e")) == [f"DVC_ROOT={REPO}", f"HOME={HOME_IN_CONTAINER}", "LOGNAME=dvc", "TOKEN", "USER=dvc"]
    assert "TOKEN take their value from your shell" in spec.run_line_differences()[0]
    assert after("--gpus") == ['"device=0,1"']
    assert after("--cpus") == ["0.5"]
    assert after("--memory") == [str(1024**3)]
    assert after("--shm-size") == [str(64 * 1024**2)]
    assert after("--security-opt") == ["no-new-privileges"]
    assert sorted(after("--mount")) == [
        "type=bind,source=/data/ds,target=/ds,readonly",
        f"type=bind,source={REPO},target={REPO}",
        f"type=tmpfs,target={HOME_IN_CONTAINER},tmpfs-mode=1777",
    ]
    # --entrypoint SHELL IMAGE -c CMD, the command one argument, as given
    i = args.index("--entrypoint")
    assert args[i:] == ["--entrypoint", "/bin/sh", "busybox", "-c", CMD]


def test_docker_run_line_quotes_mount_fields_as_csv() -> None:
    """The CLI reads `--mount` as one CSV record: a comma, quote or newline in a path is quoted (hole 9)."""
    import csv
    import io

    weird = '/home/me/a,b "c"\nd'
    line = spec_for(settings(volumes=[f"{weird}:/w"])).docker_run_line()
    mounts = [a for i, a in enumerate(shlex.split(line)) if i and shlex.split(line)[i - 1] == "--mount"]
    fields = [next(csv.reader(io.StringIO(m))) for m in mounts]
    assert ["type=bind", f"source={weird}", "target=/w"] in fields


def test_docker_run_line_env_values_and_cpus_exact() -> None:
    s = settings(env="FIXED=a b,FROM_HOST,HF_TOKEN", cpus="0.333333333")
    spec = spec_for(s, env={"FIXED": "a b", "FROM_HOST": "h", "HF_TOKEN": "t", "DVC_STAGE": "train"})
    args = shlex.split(spec.docker_run_line())
    env = [args[i + 1] for i, a in enumerate(args) if a == "-e"]
    assert "FIXED=a b" in env and "DVC_STAGE=train" in env
    assert "FROM_HOST" in env and "HF_TOKEN" in env  # passed from the host: never printed
    assert args[args.index("--cpus") + 1] == "0.333333333"
    assert spec.nano_cpus == 333333333


def test_docker_run_line_volume_nocopy() -> None:
    from dvc_docker_exec.types.spec import _mount_cli

    mount = Mount(target="/w", source="vol", type="volume", no_copy=True, read_only=True)
    assert _mount_cli(mount) == "type=volume,source=vol,target=/w,readonly,volume-nocopy"


def test_docker_run_line_minimal() -> None:
    args = shlex.split(spec_for(tty=True, uid=0, gid=0).docker_run_line())
    assert "-t" in args
    assert "--gpus" not in args and "--cpus" not in args and "--memory" not in args
    assert ["--network", "host"] == args[args.index("--network") : args.index("--network") + 2]


def test_docker_run_line_all_gpus() -> None:
    args = shlex.split(spec_for(settings(gpus="all")).docker_run_line())
    assert args[args.index("--gpus") + 1] == "all"


# --- docker-py accepts what we render ----------------------------------------------------


@pytest.fixture
def api() -> docker.APIClient:
    # an explicit version: no request is made, no daemon needed
    return docker.APIClient(base_url="unix:///nonexistent", version="1.41")


def full_spec() -> ContainerSpec:
    s = settings(volumes="/data:/data:ro", gpus="device=0", cpus="2", memory="1g", shm_size="256m")
    return spec_for(s, env={"DVC_ROOT": REPO, "A": "1"})


def test_host_config_kwargs_fixed_values() -> None:
    kwargs = full_spec().host_config_kwargs()
    assert kwargs["init"] is True
    assert kwargs["auto_remove"] is True
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["network_mode"] == "host"


def test_docker_py_accepts_the_host_config(api: docker.APIClient) -> None:
    spec = full_spec()
    host_config = api.create_host_config(**spec.host_config_kwargs())
    assert host_config["Init"] is True
    assert host_config["AutoRemove"] is True
    assert host_config["NetworkMode"] == "host"
    assert host_config["SecurityOpt"] == ["no-new-privileges"]
    assert host_config["NanoCpus"] == 2_000_000_000
    assert host_config["Memory"] == 1024**3
    assert host_config["ShmSize"] == 256 * 1024**2
    assert host_config["DeviceRequests"] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["0"], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert sorted(m["Target"] for m in host_config["Mounts"]) == sorted([REPO, "/data", HOME_IN_CONTAINER])


def test_docker_py_accepts_the_create_kwargs(api: docker.APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real `create_container` down to the request, which is captured."""
    spec = full_spec()
    sent: dict = {}

    def capture(config: dict, name: Optional[str] = None, platform: Optional[str] = None) -> dict:
        sent.update(config=config, name=name)
        return {"Id": "abc"}

    monkeypatch.setattr(api, "create_container_from_config", capture)
    host_config = api.create_host_config(**spec.host_config_kwargs())
    assert api.create_container(**spec.create_kwargs(host_config)) == {"Id": "abc"}
    config = sent["config"]
    assert sent["name"] == spec.name
    assert config["Image"] == "busybox"
    assert config["Entrypoint"] == ["/bin/sh"]
    assert config["Cmd"] == ["-c", CMD]
    assert config["WorkingDir"] == f"{REPO}/src"
    assert config["User"] == "1000:1001"
    # (docker-py may add proxy variables from ~/.docker/config.json)
    assert {f"{k}={v}" for k, v in spec.environment.items()} <= set(config["Env"])
    assert f"DVC_ROOT={REPO}" in config["Env"] and "A=1" in config["Env"]
    assert config["Labels"] == dict(spec.labels)
    assert config["Tty"] is False and config["OpenStdin"] is False
    assert config["AttachStdout"] is True and config["AttachStderr"] is True
    assert config["HostConfig"] is host_config


def test_create_container_config_directly(api: docker.APIClient) -> None:
    # the same check through the pure builder, for docker-py versions that build it elsewhere
    spec = full_spec()
    kwargs = spec.create_kwargs(api.create_host_config(**spec.host_config_kwargs()))
    kwargs.pop("name")
    kwargs["environment"] = docker.utils.utils.format_environment(kwargs["environment"])
    config = api.create_container_config(**kwargs)
    assert config["Cmd"] == ["-c", CMD]


# --- container options (issue 21) ----------------------------------------------------------

OPTIONS = dict(
    platform="linux/amd64",
    devices="/dev/fuse, /dev/sda:/dev/xvda:r",
    cap_add="SYS_ADMIN",
    cap_drop="NET_RAW, MKNOD",
    ipc="host",
    ulimits="memlock=-1, nofile=1024:4096",
    tmpfs="/scratch:size=64m,mode=700",
    extra_hosts="db:10.0.0.5, gw:host-gateway",
    pids_limit="128",
    runtime="runc",
    read_only="true",
)


def options_spec(**raw: Any) -> ContainerSpec:
    checked: list = []
    spec = build_spec(
        settings(**{**OPTIONS, **raw}), FACTS, CMD, {}, identity, uid=1000, gid=1001, pid=42, tty=False,
        check_device=checked.append,
    )
    assert [d.source for d in checked] == [d.source for d in spec.devices]  # every device went through the rule
    return spec


def test_container_options_reach_docker_py(api: docker.APIClient) -> None:
    host_config = api.create_host_config(**options_spec().host_config_kwargs())
    assert host_config["Devices"] == [
        {"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
        {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/xvda", "CgroupPermissions": "r"},
    ]
    assert host_config["CapAdd"] == ["SYS_ADMIN"] and host_config["CapDrop"] == ["NET_RAW", "MKNOD"]
    assert host_config["IpcMode"] == "host"
    assert host_config["Ulimits"] == [
        {"Name": "memlock", "Soft": -1, "Hard": -1}, {"Name": "nofile", "Soft": 1024, "Hard": 4096}
    ]
    assert host_config["ExtraHosts"] == ["db:10.0.0.5", "gw:host-gateway"]
    assert host_config["PidsLimit"] == 128
    assert host_config["Runtime"] == "runc"
    assert host_config["ReadonlyRootfs"] is True
    tmpfs = {m["Target"]: m for m in host_config["Mounts"] if m["Type"] == "tmpfs"}
    assert tmpfs["/scratch"]["TmpfsOptions"] == {"SizeBytes": 64 * 1024**2, "Mode": 0o700}
    assert tmpfs["/tmp"]["TmpfsOptions"] == {"Mode": 0o1777}  # read_only: a writable /tmp and HOME
    assert HOME_IN_CONTAINER in tmpfs


def test_platform_reaches_create(api: docker.APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: dict = {}
    monkeypatch.setattr(api, "create_container_from_config", lambda config, name=None, platform=None: sent.update(
        platform=platform) or {"Id": "x"})
    spec = options_spec()
    api.create_container(**spec.create_kwargs(api.create_host_config(**spec.host_config_kwargs())))
    assert sent["platform"] == "linux/amd64"
    assert "platform" not in spec_for().create_kwargs(None)


def test_container_options_in_the_docker_run_line() -> None:
    args = shlex.split(options_spec().docker_run_line())
    for flag, value in [
        ("--platform", "linux/amd64"),
        ("--device", "/dev/fuse:/dev/fuse:rwm"),
        ("--device", "/dev/sda:/dev/xvda:r"),
        ("--cap-add", "SYS_ADMIN"),
        ("--cap-drop", "NET_RAW"),
        ("--cap-drop", "MKNOD"),
        ("--ipc", "host"),
        ("--ulimit", "memlock=-1:-1"),
        ("--ulimit", "nofile=1024:4096"),
        ("--add-host", "db:10.0.0.5"),
        ("--add-host", "gw:host-gateway"),
        ("--pids-limit", "128"),
        ("--runtime", "runc"),
        ("--mount", f"type=tmpfs,target=/scratch,tmpfs-size={64 * 1024**2},tmpfs-mode=700"),
        ("--mount", "type=tmpfs,target=/tmp,tmpfs-mode=1777"),
    ]:
        assert any(args[i : i + 2] == [flag, value] for i in range(len(args))), (flag, value, args)
    assert "--read-only" in args
    assert args.index("--read-only") < args.index("--entrypoint")


def test_read_only_root_gets_a_home_too() -> None:
    spec = build_spec(settings(read_only="true", user="0:0"), FACTS, CMD, {}, identity, uid=0, gid=0, pid=1, tty=False)
    assert spec.environment["HOME"] == HOME_IN_CONTAINER and "USER" not in spec.environment
    assert {HOME_IN_CONTAINER, "/tmp"} <= set(targets(spec))


def test_no_container_options_by_default() -> None:
    spec = spec_for()
    kwargs = spec.host_config_kwargs()
    for key in ("devices", "cap_add", "cap_drop", "ipc_mode", "ulimits", "extra_hosts", "pids_limit", "runtime", "read_only"):
        assert key not in kwargs
    assert "/tmp" not in targets(spec)


def test_a_tmpfs_where_a_stage_path_is_mounted_is_refused() -> None:
    with pytest.raises(DockerExecError, match=rf"docker.tmpfs '{REPO}': the stage already has a mount there"):
        options_spec(tmpfs=REPO)


def test_a_user_tmpfs_at_tmp_replaces_the_read_only_one() -> None:
    tmp = [m for m in options_spec(tmpfs="/tmp:size=1m").mounts if m["Target"] == "/tmp"]
    assert len(tmp) == 1 and tmp[0]["TmpfsOptions"]["SizeBytes"] == 1024**2


def test_socket_devices_are_refused(tmp_path) -> None:
    import socket as socketlib

    from dvc_docker_exec.config import Device
    from dvc_docker_exec.types.options import refuse_socket_device
    from dvc_docker_exec.boundary.sockets import SocketGuard

    path = str(tmp_path / "fake.sock")
    with socketlib.socket(socketlib.AF_UNIX) as server:
        server.bind(path)
        with pytest.raises(DockerExecError, match=r"refusing docker.devices .*is a Unix socket, not a device node"):
            refuse_socket_device(Device(path, "/dev/x"), SocketGuard(socket_paths=()))
        # a folder holding a daemon socket (by identity)
        with pytest.raises(DockerExecError, match=r"contains the daemon socket"):
            refuse_socket_device(Device(str(tmp_path), "/dev/x"), SocketGuard(socket_paths=[path]))
    # by name, where this process cannot see the path (the daemon's host)
    with pytest.raises(DockerExecError, match=r"'/var/run' is or contains the daemon socket '/var/run/"):
        refuse_socket_device(Device("/var/run", "/dev/x"), SocketGuard(socket_paths=()))
    refuse_socket_device(Device("/dev/null", "/dev/null"), SocketGuard(socket_paths=()))

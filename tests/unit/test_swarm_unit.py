"""Pure parts of the Swarm backend: spec -> service kwargs, log demultiplexing."""

from __future__ import annotations

import os

import pytest
from docker.types import DeviceRequest, Mount

from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.types.spec import ContainerSpec
from dvc_docker_exec.api.streams import Output
from dvc_docker_exec.backends.swarm import GPU_RESOURCE, NODE_VAR, SwarmRunner, _hint, never_fits, node_matches, node_capacity, reservation, service_create_kwargs


def make_spec(**changes) -> ContainerSpec:
    base = dict(
        image="img:1",
        entrypoint=("/bin/sh",),
        command=("-c", "echo hi"),
        working_dir="/repo",
        user="1000:1000",
        environment={"DVC_STAGE": "s", "HOME": "/tmp/h"},
        mounts=(Mount(target="/repo", source="/repo", type="bind"),),
        labels={"dvc-docker-exec": "1"},
        name="dvc-s-1-abc",
        network_mode="host",
        tty=False,
    )
    base.update(changes)
    return ContainerSpec(**base)


def test_service_mirrors_the_container_spec() -> None:
    kwargs = service_create_kwargs(make_spec(constraints=("node.labels.gpu==true",)))
    template = kwargs["task_template"]
    container = template["ContainerSpec"]
    assert container["Image"] == "img:1"
    assert container["Command"] == ["/bin/sh"] and container["Args"] == ["-c", "echo hi"]
    assert container["Dir"] == "/repo" and container["User"] == "1000:1000"
    assert "DVC_STAGE=s" in container["Env"] and "HOME=/tmp/h" in container["Env"]
    assert f"{NODE_VAR}={{{{.Node.ID}}}}" in container["Env"]
    assert container["Mounts"][0]["Source"] == "/repo"
    assert container["Init"] is True
    assert container["Labels"] == {"dvc-docker-exec": "1"} and kwargs["labels"] == {"dvc-docker-exec": "1"}
    assert template["RestartPolicy"]["Condition"] == "none"
    assert template["Placement"]["Constraints"] == ["node.labels.gpu==true"]
    assert template["Networks"] == [{"Target": "host"}]
    assert kwargs["mode"] == {"replicated": {"Replicas": 1}}
    assert kwargs["name"] == "dvc-s-1-abc"


def test_resources_are_reservations_and_limits() -> None:
    spec = make_spec(nano_cpus=1_500_000_000, mem_limit=512 << 20, device_requests=(DeviceRequest(count=2, capabilities=[["gpu"]]),))
    resources = service_create_kwargs(spec)["task_template"]["Resources"]
    assert resources["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 512 << 20}
    assert resources["Reservations"]["NanoCPUs"] == 1_500_000_000
    assert resources["Reservations"]["MemoryBytes"] == 512 << 20
    assert resources["Reservations"]["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": GPU_RESOURCE, "Value": 2}}
    ]


def test_shm_size_becomes_a_sized_tmpfs() -> None:
    mounts = service_create_kwargs(make_spec(shm_size=1 << 30))["task_template"]["ContainerSpec"]["Mounts"]
    shm = [m for m in mounts if m["Target"] == "/dev/shm"]
    assert shm and shm[0]["Type"] == "tmpfs" and shm[0]["TmpfsOptions"]["SizeBytes"] == 1 << 30


@pytest.mark.parametrize("network", ["bridge", "default"])
def test_local_networks_are_refused(network: str) -> None:
    with pytest.raises(DockerExecError, match="cannot be used by Swarm services"):
        service_create_kwargs(make_spec(network_mode=network))


def test_gpu_device_ids_are_refused() -> None:
    spec = make_spec(device_requests=(DeviceRequest(device_ids=["0"], capabilities=[["gpu"]]),))
    with pytest.raises(DockerExecError, match="cannot select devices"):
        service_create_kwargs(spec)


def test_gpus_all_is_refused() -> None:
    """A reservation is a number: one GPU in place of "all" would be a silent slowdown."""
    spec = make_spec(device_requests=(DeviceRequest(count=-1, capabilities=[["gpu"]]),))
    with pytest.raises(DockerExecError, match="'all' cannot be reserved on Swarm: ask for a number of GPUs"):
        service_create_kwargs(spec)


GPU_NODE = {
    "Description": {
        "Resources": {
            "NanoCPUs": 2_000_000_000,
            "MemoryBytes": 8 << 30,
            "GenericResources": [
                {"NamedResourceSpec": {"Kind": GPU_RESOURCE, "Value": "GPU-1"}},
                {"NamedResourceSpec": {"Kind": GPU_RESOURCE, "Value": "GPU-2"}},
                {"DiscreteResourceSpec": {"Kind": "SSD", "Value": 3}},
            ],
        }
    }
}
PLAIN_NODE = {"Description": {"Resources": {"NanoCPUs": 4_000_000_000, "MemoryBytes": 16 << 30}}}


def test_node_capacity_counts_named_and_discrete_generic_resources() -> None:
    assert node_capacity(GPU_NODE) == {"NanoCPUs": 2_000_000_000, "MemoryBytes": 8 << 30, GPU_RESOURCE: 2, "SSD": 3}
    assert node_capacity({"Description": {}}) == {"NanoCPUs": 0, "MemoryBytes": 0}


def test_reservation_of_a_service() -> None:
    spec = make_spec(nano_cpus=1_000_000_000, device_requests=(DeviceRequest(count=3, capabilities=[["gpu"]]),))
    assert reservation(service_create_kwargs(spec)) == {"NanoCPUs": 1_000_000_000, GPU_RESOURCE: 3}
    assert reservation(service_create_kwargs(make_spec())) == {}


@pytest.mark.parametrize(
    "wanted, why",
    [
        ({GPU_RESOURCE: 2}, None),  # the GPU node, once free
        ({GPU_RESOURCE: 1, "NanoCPUs": 2_000_000_000}, None),
        ({}, None),
        ({GPU_RESOURCE: 3}, f"the task reserves 3 {GPU_RESOURCE} (the most a node has is 2 {GPU_RESOURCE})"),
        ({"NanoCPUs": 512_000_000_000}, "the task reserves 512 CPUs (the most a node has is 4 CPUs)"),
        ({"MemoryBytes": 32 << 30}, "the task reserves 32768 MiB of memory (the most a node has is 16384 MiB of memory)"),
        # each alone fits a node, together none
        ({GPU_RESOURCE: 1, "NanoCPUs": 3_000_000_000}, f"no node has 1 {GPU_RESOURCE} and 3 CPUs at once"),
    ],
)
def test_never_fits(wanted, why) -> None:
    assert never_fits(wanted, [node_capacity(GPU_NODE), node_capacity(PLAIN_NODE)]) == why


class PendingAPI:
    """A task the scheduler keeps pending with `err`; fails the test if polled as if forever."""

    def __init__(self, err: str):
        self.err, self.polls = err, 0

    def tasks(self, filters: dict) -> list:
        self.polls += 1
        assert self.polls < 5, "the runner would wait forever"
        return [{"ID": "t1", "Status": {"State": "pending", "Err": self.err}}]

    def nodes(self) -> list:
        return [GPU_NODE, PLAIN_NODE]


def runner_of(api) -> SwarmRunner:
    import types

    return SwarmRunner(types.SimpleNamespace(api=api))


def test_more_gpus_than_any_node_fails_fast(monkeypatch) -> None:
    monkeypatch.setattr("dvc_docker_exec.backends.swarm.POLL", 0)
    err = "no suitable node (insufficient resources on 2 nodes)"
    with pytest.raises(DockerExecError) as info:
        runner_of(PendingAPI(err))._wait("svc", "train", {GPU_RESOURCE: 4})
    assert str(info.value) == (
        f"Swarm cannot place the task for 'train': {err}: the task reserves 4 {GPU_RESOURCE} (the most a node has is 2 {GPU_RESOURCE})"
    )


def test_busy_gpu_node_is_waited_for(monkeypatch) -> None:
    monkeypatch.setattr("dvc_docker_exec.backends.swarm.POLL", 0)
    with pytest.raises(AssertionError, match="wait forever"):  # it keeps polling: a free GPU may come
        runner_of(PendingAPI("no suitable node (insufficient resources on 2 nodes)"))._wait("svc", "train", {GPU_RESOURCE: 2})


class OomAPI:
    """The manager is node "mgr"; its event log has an `oom` event for container "c-oom"."""

    def info(self) -> dict:
        return {"Swarm": {"NodeID": "mgr"}}

    def events(self, since, until, filters, decode):
        return [{"Action": "die"}] + ([{"Action": "oom"}] if filters["container"] == "c-oom" else [])


def task_on(node: str, cid: str) -> dict:
    return {"ID": "t", "NodeID": node, "Status": {"State": "failed", "ContainerStatus": {"ContainerID": cid, "ExitCode": 137}}}


@pytest.mark.parametrize(
    "task, status, memory, verdict",
    [
        (task_on("mgr", "c-oom"), 137, 16 << 20, "yes"),  # the manager's own node: its event decides
        (task_on("mgr", "c-kill9"), 137, 16 << 20, ""),
        (task_on("worker", "c-any"), 137, 16 << 20, "probably"),  # another node: an inference
        (task_on("worker", "c-any"), 137, None, ""),  # no limit: no OOM kill by the limit
        (task_on("mgr", "c-oom"), 1, 16 << 20, ""),
    ],
)
def test_oom_verdict(task, status, memory, verdict) -> None:
    assert runner_of(OomAPI())._oom(task, status, memory, since=0) == verdict


def test_hints() -> None:
    assert "same path on every node" in _hint('invalid mount config for type "bind": bind source path does not exist: /x')
    assert "registry" in _hint("No such image: a:b")
    assert _hint("something else") == ""


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def read_pipe(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""


def test_final_log_read_writes_only_what_the_live_stream_missed() -> None:
    """The Swarm follower's two reads: live (cut when the task is final), then whole, skipping."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    output = Output(tty=False, out_fd=out_w, err_fd=err_w)
    whole = frame(1, b"out1\n") + frame(2, b"err1\n") + frame(1, b"out2\n") + frame(2, b"err2\n")
    output.feed(whole[:27])  # the live stream got out1, err1 and part of the out2 frame
    output.replay()
    output.feed(whole)
    assert read_pipe(out_r) == b"out1\nout2\n"
    assert read_pipe(err_r) == b"err1\nerr2\n"


def test_swarm_stages_run_the_recorded_registry_digest() -> None:
    import types
    from dataclasses import dataclass, replace

    from dvc_docker_exec.config import DockerSettings
    from dvc_docker_exec.backends.swarm import SwarmRunner

    @dataclass
    class Identities:
        known: dict

        def identity(self, reference: str):
            return self.known.get(reference)

    class Images:
        def __init__(self, known: dict):
            self.identities = Identities(known)

    settings = DockerSettings(image="reg:5000/team/train:1", backend="swarm")
    digest = "reg:5000/team/train@sha256:" + "a" * 64
    swarm = SwarmRunner(types.SimpleNamespace(api=None))
    assert swarm.pulled(settings, Images({"reg:5000/team/train:1": digest})) == (replace(settings, image=digest), None)
    # built here (an image ID, no registry digest) or absent on the manager: the reference as configured
    assert swarm.pulled(settings, Images({"reg:5000/team/train:1": "sha256:" + "b" * 64})) == (settings, None)
    assert swarm.pulled(settings, Images({})) == (settings, None)


def test_services_listed_like_containers() -> None:
    from dvc_docker_exec.backends.containers import PluginContainer

    service = PluginContainer.from_service(
        {
            "ID": "abcdef0123456789",
            "CreatedAt": "2026-11-29T17:00:00.123456789Z",
            "Spec": {"Name": "dvc-s-1-x", "Labels": {"dvc-docker-exec.stage": "s", "dvc-docker-exec.pid": "1"}},
        }
    )
    assert (service.kind, service.state, service.stage, service.short_id) == ("service", "service", "s", "abcdef012345")
    assert service.created == 1795971600


class FakeManager:
    """A manager's answers around `service rm`: the service filter 404s once the service is gone,
    its task stays listed by name until its node has shut it down."""

    def __init__(self, polls_until_gone: int):
        self.removed = False
        self.polls_left = polls_until_gone
        self.name_polls = 0

    def tasks(self, filters: dict) -> list:
        from docker.errors import NotFound

        if "service" in filters:
            if self.removed:
                raise NotFound("service s1 not found")
            return [{"ID": "t1", "ServiceID": "s1"}]
        assert filters == {"name": "dvc-s-1-abc"}
        self.name_polls += 1
        self.polls_left -= 1
        other = {"ID": "t0", "ServiceID": "s0"}  # the name filter may match another service's task
        return [other] + ([{"ID": "t1", "ServiceID": "s1"}] if self.polls_left > 0 else [])

    def remove_service(self, service_id: str) -> None:
        self.removed = True


def test_remove_waits_for_the_tasks_not_the_removed_service(monkeypatch, caplog) -> None:
    from dvc_docker_exec.backends import swarm

    monkeypatch.setattr(swarm, "POLL", 0)
    manager = FakeManager(polls_until_gone=3)
    runner = swarm.SwarmRunner.__new__(swarm.SwarmRunner)
    runner.api = manager
    with caplog.at_level("WARNING"):
        assert runner._remove("s1", "dvc-s-1-abc") == "Swarm service s1 was removed"
    assert manager.name_polls == 3  # waited until the manager forgot the task
    assert not caplog.records  # no "still being removed" warning on a clean removal


LABELLED = {
    "ID": "abc123",
    "Spec": {"Role": "worker", "Labels": {"gpu": "true", "zone": "A"}},
    "Description": {
        "Hostname": "gpu-1",
        "Platform": {"OS": "linux", "Architecture": "x86_64"},
        "Engine": {"Labels": {"disk": "ssd"}},
    },
}


@pytest.mark.parametrize(
    "constraints, matches",
    [
        ([], True),
        (["node.labels.gpu==true"], True),
        (["node.labels.gpu == TRUE"], True),  # values compare case-insensitively, as in swarmkit
        (["node.labels.gpu!=true"], False),
        (["node.labels.missing==x"], False),  # a missing label reads ""
        (["node.labels.missing!=x"], True),
        (["node.role==manager"], False),
        (["node.hostname==gpu-1", "node.id==abc123", "node.platform.os==linux"], True),
        (["node.platform.arch!=x86_64"], False),
        (["engine.labels.disk==ssd"], True),
        (["node.labels.zone==A", "node.role==worker"], True),
        (["something.unknown==1"], True),  # cannot judge: never fails a stage early
    ],
)
def test_node_matches_placement_constraints(constraints, matches) -> None:
    assert node_matches(LABELLED, constraints) is matches


def test_a_reservation_only_an_excluded_node_could_hold_fails_at_once() -> None:
    """Swarm says "insufficient resources" and waits; the runner compares with the allowed nodes only."""
    from dvc_docker_exec.backends.swarm import SwarmRunner

    gpu = {**GPU_NODE, "Spec": {"Labels": {"gpu": "true"}}}
    plain = {**PLAIN_NODE, "Spec": {"Labels": {}}}

    class Api:
        def nodes(self):
            return [gpu, plain]

    runner = SwarmRunner.__new__(SwarmRunner)
    runner.api, runner._nodes_seen = Api(), None
    err = "no suitable node (scheduling constraints not satisfied on 1 node; insufficient resources on 1 node)"
    assert runner._never_fits(err, {GPU_RESOURCE: 1}, ["node.labels.gpu==true"]) is None  # busy: wait
    assert runner._never_fits(err, {GPU_RESOURCE: 1}, ["node.labels.gpu!=true"]) == (
        f": the task reserves 1 {GPU_RESOURCE} (the most a node has is 0 {GPU_RESOURCE})"
        " on the nodes that docker.constraints allows"
    )


def test_container_options_a_service_takes() -> None:
    from dvc_docker_exec.config import Device  # noqa: F401 - only the supported ones below

    kwargs = service_create_kwargs(make_spec(
        cap_add=("SYS_ADMIN",), cap_drop=("NET_RAW",), read_only=True, extra_hosts=(("db", "10.0.0.5"),),
        platform="linux/arm64/v8",
    ))
    container = kwargs["task_template"]["ContainerSpec"]
    assert container["CapabilityAdd"] == ["SYS_ADMIN"] and container["CapabilityDrop"] == ["NET_RAW"]
    assert container["ReadOnly"] is True
    assert container["Hosts"] == ["10.0.0.5 db"]
    assert kwargs["task_template"]["Placement"] == {"Platforms": [{"Architecture": "arm64", "OS": "linux"}]}
    plain = service_create_kwargs(make_spec())["task_template"]
    assert "Placement" not in plain and "ReadOnly" not in plain["ContainerSpec"]


@pytest.mark.parametrize(
    ("changes", "keys"),
    [
        ({"pids_limit": 10}, "docker.pids_limit"),
        ({"ipc_mode": "host", "runtime": "runsc"}, "docker.ipc, docker.runtime"),
        ({"ulimits": ("x",), "devices": ("y",)}, "docker.devices, docker.ulimits"),
    ],
)
def test_container_options_a_service_cannot_take_are_refused(changes, keys) -> None:
    with pytest.raises(DockerExecError) as info:
        service_create_kwargs(make_spec(**changes))
    assert str(info.value).startswith(f"{keys} cannot be used with docker.backend swarm")
    assert "\n" not in str(info.value)


def test_a_refused_option_creates_no_service() -> None:
    class NoCalls:
        def __getattr__(self, name):
            raise AssertionError(f"the daemon was called: {name}")

    class Client:
        api = NoCalls()

    with pytest.raises(DockerExecError, match=r"^docker.runtime cannot be used with docker.backend swarm"):
        SwarmRunner(Client()).run(make_spec(runtime="runsc"), "echo hi")

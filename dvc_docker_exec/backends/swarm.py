"""Swarm backend: one stage command as a one-shot Swarm service.

`docker.backend swarm` sends each command line to a Swarm manager instead of
starting a container on one engine. The same ``ContainerSpec`` that the
engine backend runs (image, shell + command, user, workdir, environment,
labels, mounts) becomes a service of one task with restart condition
``none`` (why: a failed task is restarted otherwise, so a failing stage
would run again and again).

Why a ``replicated`` service of one replica and not a ``replicated-job``
(Engine 20.10 / API 1.41): removing a job service leaves its finished task
and the task's exited container on the node for good (moby/moby#42789,
#44312; measured here on 20.10.24: the container was still there minutes
after `docker service rm`), so "nothing left on any node" cannot hold with
jobs. A replicated service with restart condition ``none`` runs its task once
as well, and `service rm` removes its container on the node. ``docker.cpus``/``memory``/
``gpus`` become reservations *and* limits, so the scheduler places a stage on
a node that has room; ``docker.constraints`` become placement constraints.

Lifecycle (the engine backend's promises, kept): logs are streamed live with
stdout and stderr apart; the exit code is the task's
``Status.ContainerStatus.ExitCode`` (read only for a ``failed``/``complete``
task: a rejected task reads 0); a task the scheduler cannot place ("no
suitable node") or a node rejects (missing image, missing bind source) fails
the stage with the scheduler's reason and the node; SIGINT/SIGTERM/SIGHUP
and every error remove the service in ``finally`` and wait until its tasks
are gone, so nothing is left on any node.

Like the engine backend, `run(spec, cmd)` is the whole interface (see
``backend.Backend``): a Kubernetes Job backend would be a sibling module.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from docker.errors import APIError, NotFound
from docker.types import (
    ContainerSpec as SwarmContainerSpec,
    Mount,
    Placement,
    Resources,
    RestartPolicy,
    ServiceMode,
    TaskTemplate,
)

from dvc_docker_exec.api import streams
from dvc_docker_exec.config import DockerSettings, split_constraint
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.backends.runner import CONNECTION_LOST, StageSignals, short_reason, lost_connection, with_signals
from dvc_docker_exec.types.spec import ContainerSpec
from dvc_docker_exec.api.streams import Output

logger = logging.getLogger(f"dvc.{__name__}")

NODE_VAR = "DVC_DOCKER_NODE"  # the stage sees the id of the Swarm node it runs on
POLL = 0.25  # seconds between task inspections
STOP_GRACE_NS = 1_000_000_000  # the container's stop grace after `service rm`, as the engine backend's STOP_GRACE
GONE_TIMEOUT = 30.0  # seconds to wait for the tasks of a removed service to disappear
FINAL = ("complete", "failed", "rejected", "shutdown", "orphaned", "remove")
# Swarm's generic resource that NVIDIA's docs and the daemon's
# `node-generic-resources` use for GPUs (docs/scale-out.md).
GPU_RESOURCE = "NVIDIA-GPU"
# Where a task finds the ids of the generic resources Swarm assigned it: swarmkit's
# DOCKER_RESOURCE_<KIND in upper case> (measured on 20.10.24: "DOCKER_RESOURCE_NVIDIA-GPU=GPU-a,GPU-b").
# Not a valid shell name: dash and busybox sh drop it from their children, bash keeps it; the
# NVIDIA runtime reads it from the container's config (its `swarm-resource` setting, docs/scale-out.md).
GPU_IDS_VAR = f"DOCKER_RESOURCE_{GPU_RESOURCE.upper()}"
# Local-scope networks cannot carry a service; "host" and "none" are swarm-wide.
_LOCAL_ONLY_NETWORKS = ("bridge", "default")


# Container options a Swarm service cannot take (docker-py's ContainerSpec/Resources for
# API 1.41 have no devices, ulimits, IPC mode, pids limit or runtime): refused before any
# service exists rather than dropped. cap_add/cap_drop, read_only, extra_hosts (Hosts),
# tmpfs (a mount) and platform (a placement) are carried over.
_NOT_ON_SWARM = (
    ("devices", "devices"),
    ("ulimits", "ulimits"),
    ("ipc_mode", "ipc"),
    ("pids_limit", "pids_limit"),
    ("runtime", "runtime"),
)


def unsupported_on_swarm(spec: ContainerSpec) -> List[str]:
    """Pure: the docker.* keys of `spec` that a Swarm service cannot honour."""
    return [f"docker.{key}" for attr, key in _NOT_ON_SWARM if getattr(spec, attr)]


def _platforms(platform: Optional[str]) -> Optional[List[tuple]]:
    """docker.platform as Swarm placement: (architecture, os) pairs (a variant cannot be placed on)."""
    if not platform:
        return None
    os_name, _, rest = platform.partition("/")
    return [(rest.split("/")[0], os_name)] if rest else None


def service_create_kwargs(spec: ContainerSpec) -> Dict[str, Any]:
    """Pure: the engine backend's ContainerSpec -> kwargs of docker-py `APIClient.create_service`."""
    refused = unsupported_on_swarm(spec)
    if refused:
        raise DockerExecError(
            f"{', '.join(refused)} cannot be used with docker.backend swarm (a Swarm service has no such "
            "option): unset it for this stage, or run it on one engine with `docker.backend engine`"
        )
    if spec.network_mode in _LOCAL_ONLY_NETWORKS:
        raise DockerExecError(
            f"docker.network '{spec.network_mode}' cannot be used by Swarm services: "
            "use host (the default), none or an overlay network"
        )
    if spec.device_requests and any(r.get("DeviceIDs") for r in spec.device_requests):
        raise DockerExecError(
            "docker.gpus 'device=...' cannot select devices on Swarm: ask for a count of GPUs "
            f"(generic resource {GPU_RESOURCE}) and place with docker.constraints"
        )
    if any(r.get("Count") in (None, -1) for r in spec.device_requests):
        # why refused: a reservation is a number, and one GPU in place of "all" would be a silent slowdown
        raise DockerExecError(
            "docker.gpus 'all' cannot be reserved on Swarm: ask for a number of GPUs "
            f"(generic resource {GPU_RESOURCE}), e.g. `dvc config docker.gpus 2`"
        )
    mounts: List[Mount] = list(spec.mounts)
    if spec.shm_size:
        # Swarm's ContainerSpec has no ShmSize (API 1.41): a sized tmpfs does the same
        mounts.append(Mount(target="/dev/shm", source=None, type="tmpfs", tmpfs_size=spec.shm_size))
    container = SwarmContainerSpec(
        image=spec.image,
        command=list(spec.entrypoint),
        args=list(spec.argv()),
        # NODE: which node ran the stage (a Swarm template, filled in per task)
        env=[f"{name}={value}" for name, value in sorted(spec.environment.items())] + [f"{NODE_VAR}={{{{.Node.ID}}}}"],
        workdir=spec.working_dir,
        user=spec.user or None,
        labels=dict(spec.labels),
        mounts=mounts,
        stop_grace_period=STOP_GRACE_NS,
        tty=spec.tty,
        init=True,
        read_only=spec.read_only or None,
        cap_add=list(spec.cap_add) or None,
        cap_drop=list(spec.cap_drop) or None,
        # a mapping: docker-py writes it in the task format "IP name"
        hosts=dict(spec.extra_hosts) or None,
    )
    generic = None
    for request in spec.device_requests:
        generic = {GPU_RESOURCE: int(request["Count"])}
    resources = Resources(
        cpu_limit=spec.nano_cpus,
        cpu_reservation=spec.nano_cpus,
        mem_limit=spec.mem_limit,
        mem_reservation=spec.mem_limit,
        generic_resources=generic,
    )
    template = TaskTemplate(
        container_spec=container,
        resources=resources,
        restart_policy=RestartPolicy(condition="none"),
        placement=(
            Placement(constraints=list(spec.constraints) or None, platforms=_platforms(spec.platform))
            if spec.constraints or _platforms(spec.platform)
            else None
        ),
        networks=[spec.network_mode],
    )
    return {
        "task_template": template,
        "name": spec.name,
        "labels": dict(spec.labels),
        "mode": ServiceMode("replicated", replicas=1),
    }


def reservation(kwargs: Dict[str, Any]) -> Dict[str, int]:
    """Pure: what a service of `service_create_kwargs` reserves, by resource (NanoCPUs, MemoryBytes, a generic kind)."""
    reserved = (kwargs["task_template"].get("Resources") or {}).get("Reservations") or {}
    wanted = {key: int(reserved.get(key) or 0) for key in ("NanoCPUs", "MemoryBytes")}
    for generic in reserved.get("GenericResources") or []:
        discrete = generic.get("DiscreteResourceSpec") or {}
        if discrete:
            wanted[discrete["Kind"]] = wanted.get(discrete["Kind"], 0) + int(discrete["Value"])
    return {key: value for key, value in wanted.items() if value}


def node_capacity(node: Dict[str, Any]) -> Dict[str, int]:
    """Pure: what a node of `GET /nodes` offers, by resource; a named generic resource (a GPU's id) counts 1."""
    offered = (node.get("Description") or {}).get("Resources") or {}
    capacity = {key: int(offered.get(key) or 0) for key in ("NanoCPUs", "MemoryBytes")}
    for generic in offered.get("GenericResources") or []:
        named, discrete = generic.get("NamedResourceSpec"), generic.get("DiscreteResourceSpec")
        if named:
            capacity[named["Kind"]] = capacity.get(named["Kind"], 0) + 1
        elif discrete:
            capacity[discrete["Kind"]] = capacity.get(discrete["Kind"], 0) + int(discrete["Value"])
    return capacity


def node_matches(node: Dict[str, Any], constraints: Sequence[str]) -> bool:
    """Pure: could Swarm place a task with these placement constraints on this node of `GET /nodes`?

    Why: a reservation only a node excluded by the constraints could hold is as
    unplaceable as one larger than every node, but Swarm says "insufficient
    resources" for it and waits forever. Values compare case-insensitively, a
    missing label reads "" (swarmkit's constraint.Match); a key we do not know
    counts as a match, so an unknown constraint never fails a stage early.
    """
    description = node.get("Description") or {}
    spec = node.get("Spec") or {}
    for constraint in constraints:
        parsed = split_constraint(constraint)  # the syntax docker.constraints was checked against
        if parsed is None:
            continue
        key, op, value = parsed
        lowered = key.lower()
        if lowered == "node.id":
            actual = node.get("ID", "")
        elif lowered == "node.hostname":
            actual = description.get("Hostname", "")
        elif lowered == "node.role":
            actual = spec.get("Role", "")
        elif lowered == "node.platform.os":
            actual = (description.get("Platform") or {}).get("OS", "")
        elif lowered == "node.platform.arch":
            actual = (description.get("Platform") or {}).get("Architecture", "")
        elif lowered.startswith("node.labels."):
            actual = (spec.get("Labels") or {}).get(key[len("node.labels."):], "")
        elif lowered.startswith("engine.labels."):
            actual = ((description.get("Engine") or {}).get("Labels") or {}).get(key[len("engine.labels."):], "")
        else:
            continue
        if (str(actual).lower() == value.lower()) != (op == "=="):
            return False
    return True


def never_fits(wanted: Dict[str, int], capacities: List[Dict[str, int]]) -> Optional[str]:
    """Pure: None if some node could hold `wanted` once it is free; else why not, for the error."""
    if any(all(capacity.get(key, 0) >= value for key, value in wanted.items()) for capacity in capacities):
        return None
    too_big = [
        f"{_amount(key, value)} (the most a node has is {_amount(key, max((c.get(key, 0) for c in capacities), default=0))})"
        for key, value in wanted.items()
        if all(c.get(key, 0) < value for c in capacities)
    ]
    if too_big:
        return "the task reserves " + ", ".join(too_big)
    return "no node has " + " and ".join(_amount(key, value) for key, value in wanted.items()) + " at once"


def _amount(key: str, value: int) -> str:
    if key == "NanoCPUs":
        return f"{value / 1e9:g} CPUs"
    if key == "MemoryBytes":
        return f"{value / 2**20:g} MiB of memory"
    return f"{value} {key}"


def _stage_failed(cmd: str, status: int, image: str, node: str, memory: Optional[int], oom: str) -> Exception:
    """`oom`: "" (not an OOM kill), "yes" (the node said so), "probably" (inferred, see SwarmRunner._oom)."""
    from dvc_docker_exec.backends.runner import ContainerCmdFailedError

    exc = ContainerCmdFailedError(cmd, status, image, oom=bool(oom), memory=memory, probable=oom == "probably")
    exc.args = (exc.args[0] + f" on Swarm node {node}",)
    exc.node = node  # type: ignore[attr-defined]
    return exc


class SwarmRunner:
    """Runs one command line as a Swarm job service on the manager `client` talks to."""

    LEASE = "beat"  # a task may run on another machine: a renewed file, not a pipe (lease.py)
    KIND = "service"  # what it leaves on the manager (containers.clear_orphans)
    RUNS_HERE = False  # on the nodes: the manager's GPUs, runtimes and limits say nothing of them

    def __init__(self, client: Any, endpoint: Any = None, engine: Any = None):
        # `engine`: the manager's (session passes it to every backend); the nodes' are not known here
        self.client = client
        self.api = client.api
        self.endpoint = endpoint
        self._nodes: Dict[str, str] = {}
        self._nodes_seen: Optional[List[Dict[str, Any]]] = None
        self._manager_node: Optional[str] = None

    @property
    def image_place(self) -> Optional[str]:
        # the pull policy applies to the manager's engine: it tells the identity (recorded for provenance)
        return f"the Swarm manager {self.endpoint.describe()}" if self.endpoint is not None else "the Swarm manager"

    def pulled(self, settings: DockerSettings, images: Any) -> Tuple[DockerSettings, Optional[str]]:
        """The nodes pull the image themselves from a registry they reach, by its registry digest where
        the manager knows one, so every node runs the same bytes (no ID to create from: None)."""
        identity = images.identities.identity(settings.image)
        if identity and "@sha256:" in identity:
            logger.debug("image '%s' pinned for the Swarm nodes as '%s'", settings.image, identity)
            return replace(settings, image=identity), None
        return settings, None

    def built(self, stage: str, settings: DockerSettings, builder: Any, spec: Any) -> Tuple[DockerSettings, Optional[str]]:
        """A built image exists only on the manager: pushed to the machine's docker.registry and the nodes
        pinned to its digest; without a registry, one error before any build or service."""
        if not settings.registry:
            raise DockerExecError(
                f"stage '{stage}': an image built here (docker.build) must reach the Swarm nodes: "
                "set a registry they all reach on this machine, `dvc config --local docker.registry HOST:PORT`"
            )
        identity, image_id = builder.ensure(spec)
        pinned = builder.push(spec, identity, image_id, str(settings.registry))
        logger.debug("built image '%s' pinned for the Swarm nodes as '%s'", settings.image, pinned)
        return replace(settings, image=pinned), None

    def check_limits(self, spec: ContainerSpec, allow_unlimited: bool) -> None:
        """Swarm nodes enforce limits themselves; the manager's engine says nothing of them."""

    def run(self, spec: ContainerSpec, cmd: str, signals: Optional[StageSignals] = None) -> None:
        with_signals(signals, self._run, spec, cmd)

    def _run(self, spec: ContainerSpec, cmd: str, signals: StageSignals) -> None:
        signals.check()
        kwargs = service_create_kwargs(spec)
        wanted = reservation(kwargs)
        service_id: Optional[str] = None
        follower: Optional[_LogFollower] = None
        lost: Optional[BaseException] = None
        cleaned = "nothing was created"
        try:
            # a signal during the create waits for its answer: the service is then known and removed
            created = time.time()
            try:
                service_id = self.api.create_service(**kwargs)["ID"]
            except APIError as exc:
                raise DockerExecError(f"cannot create the Swarm service for '{cmd}': {exc.explanation or exc}") from None
            signals.check()
            follower = _LogFollower(self.api, service_id, spec.tty)
            follower.start()
            with signals.interruptible():
                task = self._wait(service_id, cmd, wanted, spec.constraints)
                follower.finish()
            status = int(((task["Status"].get("ContainerStatus") or {}).get("ExitCode")) or 0)
            if task["Status"]["State"] == "failed" and status == 0:
                status = 1  # failed without an exit code (e.g. the container could not start)
            if status:
                oom = self._oom(task, status, spec.mem_limit, created)
                raise _stage_failed(cmd, status, spec.image, self._node(task), spec.mem_limit, oom)
        except CONNECTION_LOST as exc:
            lost = exc
        finally:
            if follower is not None:
                follower.close()
            if service_id is not None:
                cleaned = self._remove(service_id, spec.name, report=lost is not None)
        if lost is not None:
            raise lost_connection(self.endpoint, cmd, cleaned) from None

    def _wait(self, service_id: str, cmd: str, wanted: Dict[str, int], constraints: Sequence[str] = ()) -> dict:
        """Poll the job's task until it is final; fail early on an unplaceable task."""
        while True:
            tasks = self.api.tasks(filters={"service": service_id})
            for task in tasks:
                state = task["Status"]["State"]
                err = task["Status"].get("Err") or ""
                if state in ("complete", "failed"):
                    return task
                if state in FINAL:
                    raise DockerExecError(
                        f"Swarm {state} the task for '{cmd}' on node {self._node(task)}: {err or state}"
                        + _hint(err)
                    )
                if state == "pending" and "no suitable node" in err:
                    never = self._never_fits(err, wanted, constraints)
                    if never is not None:  # the scheduler would wait forever for a node that fits
                        raise DockerExecError(f"Swarm cannot place the task for '{cmd}': {err}{never}" + _hint(err))
            time.sleep(POLL)

    def _never_fits(self, err: str, wanted: Dict[str, int], constraints: Sequence[str] = ()) -> Optional[str]:
        """None while the task may fit later (busy nodes free up: queue -j N); else what to add to the error.

        Swarm says "no suitable node (insufficient resources on 3 nodes)" both
        for busy nodes and for a reservation larger than every node (CPUs,
        memory, GPUs), and "scheduling constraints not satisfied" when no
        node matches the placement constraints at all.
        """
        if "insufficient resources" not in err:
            return ""
        if self._nodes_seen is None:  # one nodes call per dvc process
            self._nodes_seen = self.api.nodes()
        # only the nodes the stage's constraints allow (each stage may have its own)
        why = never_fits(wanted, [node_capacity(n) for n in self._nodes_seen if node_matches(n, constraints)])
        if why is None:
            return None
        return f": {why}" + (" on the nodes that docker.constraints allows" if constraints else "")

    def _oom(self, task: dict, status: int, memory: Optional[int], since: float) -> str:
        """Was the task's container OOM-killed? "yes", "probably" or "".

        Swarm keeps no OOMKilled flag in the task (its Err reads "task:
        non-zero exit (137)"); the node's engine has it, and its `oom` event,
        but the manager's API shows a node's containers and events only for
        the manager's own node (measured on 20.10.24). So: on the manager's
        node the event decides; elsewhere exit 137 under docker.memory is the
        OOM killer's signature, an inference (a `kill -9` reads the same).
        """
        if status != 137 or not memory:
            return ""
        cid = (task["Status"].get("ContainerStatus") or {}).get("ContainerID")
        try:
            if self._manager_node is None:
                self._manager_node = self.api.info()["Swarm"]["NodeID"]
            if cid and task.get("NodeID") == self._manager_node:
                return "yes" if streams.container_events(self.api, cid, since, "oom") else ""
        except Exception as exc:  # noqa: BLE001 - a diagnosis, never a new failure
            logger.debug("oom events of task %s: %s", task.get("ID"), exc)
        return "probably"

    def _node(self, task: dict) -> str:
        node_id = task.get("NodeID") or ""
        if not node_id:
            return "(none)"
        if node_id not in self._nodes:
            try:
                name = self.api.inspect_node(node_id)["Description"]["Hostname"]
            except (APIError, KeyError):
                name = "?"
            self._nodes[node_id] = f"'{name}' ({node_id[:12]})"
        return self._nodes[node_id]

    def _remove(self, service_id: str, name: str, report: bool = False) -> str:
        """Remove the service and wait until no task of it is left on any node; say what happened.

        With `report` the caller puts the outcome into its error instead of a warning.
        Why the tasks are found by the service's name: once the service is
        removed, `tasks?filters=service=ID` answers 404, and ids listed before
        the removal would make the removal depend on one more call (and miss a
        task created meanwhile). A removed service's task stays listed (desired state "remove") until
        its node has stopped the container (measured on 20.10.24: 4-5 s for a
        running `sleep`; the node's engine deletes the exited container 1-2 s
        later, which the manager's API cannot see). Waiting matters: DVC must
        not go on (and unlock) while the stage may still write its outputs.
        """
        short = service_id[:12]
        try:
            self.api.remove_service(service_id)
        except NotFound:
            return f"Swarm service {short} was already gone"
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the stage's own error
            reason = short_reason(exc)
            if not report:
                logger.warning(
                    "could not remove Swarm service %s (%s); remove it with `docker service rm %s`", short, reason, short
                )
            return f"Swarm service {short} could not be removed ({reason}): remove it with `docker service rm {short}`"
        deadline = time.monotonic() + GONE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                # the manager forgets a task once its node has shut it down; the name
                # filter may match other services' tasks too: keep this one's
                if not [t for t in self.api.tasks(filters={"name": name}) if t.get("ServiceID") == service_id]:
                    return f"Swarm service {short} was removed"
            except Exception:  # noqa: BLE001
                break
            time.sleep(POLL)
        if not report:
            logger.warning("tasks of Swarm service %s are still being removed", short)
        return f"Swarm service {short} was removed (its tasks may still be stopping)"


def _hint(err: str) -> str:
    if "bind source path does not exist" in err:
        return (
            " (the repo, the DVC cache and .dvc/tmp must be at the same path on every node: "
            "see docs/scale-out.md)"
        )
    if "No such image" in err:
        return " (the node cannot get the image: push it to a registry the nodes reach)"
    return ""


class _LogFollower:
    """Streams a service's logs live; at the end, fetches the rest so nothing is lost.

    Why two reads: `GET /services/{id}/logs?follow=1` never ends for a job
    service, so it is cut once the task is final; what it had not delivered
    yet is taken from one non-following read, skipping the bytes already
    written per stream (stdout/stderr keep their order).
    """

    def __init__(self, api: Any, service_id: str, tty: bool):
        self.api = api
        self.service_id = service_id
        self.output = Output(tty)
        self._response = None
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._lock = threading.Lock()

    def _get(self, follow: bool):
        params = {"follow": int(follow), "stdout": 1, "stderr": 1}
        return self.api._get(self.api._url("/services/{0}/logs", self.service_id), params=params, stream=True)

    def start(self) -> None:
        self._response = self._get(follow=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for chunk in self._response.iter_content(1 << 16):
                with self._lock:
                    self.output.feed(chunk)
        except Exception:  # noqa: BLE001 - the socket is closed under us by finish()
            pass

    def finish(self) -> None:
        """The task is final: stop following and write what is still missing."""
        self.close()
        self._thread.join(5)
        with self._lock:
            self.output.replay()  # skip what the live stream wrote, per stream
            response = self._get(follow=False)
            for chunk in response.iter_content(1 << 16):
                self.output.feed(chunk)
            response.close()

    def close(self) -> None:
        if self._response is not None:
            try:  # wake the reader thread, blocked in a read
                sock = self.api._get_raw_response_socket(self._response)
                getattr(sock, "_sock", sock).shutdown(socket.SHUT_RDWR)
            except Exception:  # noqa: BLE001 - already closed
                pass
            self._response.close()

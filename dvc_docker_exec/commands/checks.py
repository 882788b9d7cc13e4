"""The checks of `dvc docker doctor`: one line each, ok / warning / error, with a fix.

The parts that only read the daemon's `/version` and `/info` answers are pure
functions (unit-tested with recorded answers); the command gathers those
answers once and adds the checks that need the repo or the file system.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from dvc_docker_exec.api.engine import Engine

OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass(frozen=True)
class Check:
    name: str  # "endpoint", "daemon", "stage 'train'"...
    level: str  # ok / warning / error
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> fix: {self.fix}" if self.fix and self.level != OK else ""
        return f"{self.level:<8}{self.name}: {self.message}{fix}"

    def as_dict(self) -> dict:
        return asdict(self)


def socket_check(socket_path: Optional[str], uid: Optional[int] = None) -> Optional[Check]:
    """Can this process read and write the endpoint's unix socket? None for a remote endpoint."""
    if socket_path is None:
        return None
    uid = os.getuid() if uid is None else uid
    if not os.path.exists(socket_path):
        return Check(
            "socket",
            ERROR,
            f"no socket at {socket_path}",
            "start Docker (e.g. `sudo systemctl start docker`), or point DOCKER_HOST / `docker context use` at a running engine",
        )
    if not os.access(socket_path, os.R_OK | os.W_OK):
        return Check(
            "socket",
            ERROR,
            f"uid {uid} may not read and write {socket_path}",
            "add your user to the 'docker' group (then log in again), or use rootless Docker or Podman's socket",
        )
    return Check("socket", OK, f"{socket_path} is readable and writable by uid {uid}")


def daemon_check(version: Mapping[str, Any]) -> Check:
    from dvc_docker_exec.api.engine import from_api

    return Check(
        "daemon",
        OK,
        f"{from_api(version, None).name} {version.get('Version', '?')} answers (API {version.get('ApiVersion', '?')}, "
        f"{version.get('Os', '?')}/{version.get('Arch', '?')})",
    )


def engine_check(engine: "Engine", info: Optional[Mapping[str, Any]]) -> Check:
    """The engine kind (engine.from_api: Docker, rootless Docker, Podman) and its cgroups."""
    if info is None:
        return Check("engine", WARNING, f"{engine.name}; GET /info refused (a socket proxy?): rootless and cgroups unknown",
                     "allow INFO in the socket proxy to have them checked")
    kind = f"rootless {engine.name}" if engine.rootless else engine.name
    cgroup = info.get("CgroupVersion")
    cgroups = f"cgroup v{cgroup}, driver {engine.cgroup_driver}" if cgroup else f"cgroup driver {engine.cgroup_driver}"
    return Check("engine", OK, f"{kind}, {cgroups}, runtime {info.get('DefaultRuntime', '?')}")


def limits_check(engine: "Engine", used_by: Sequence[str]) -> Check:
    """`used_by`: the stages that set docker.memory or docker.cpus without docker.allow_unlimited."""
    if engine.enforces_limits:
        return Check("limits", OK, "memory and CPU limits are enforced by this engine")
    if engine.enforces_limits is None:
        return Check("limits", WARNING, "whether memory and CPU limits are enforced is unknown (GET /info refused)",
                     "allow INFO in the socket proxy")
    fix = (
        "enable cgroup v2 and systemd delegation for the daemon's user "
        "(https://docs.docker.com/engine/security/rootless/#limiting-resources)"
    )
    why = f"cgroup driver {engine.cgroup_driver}"
    if used_by:
        stages = ", ".join(f"'{s}'" for s in used_by)
        return Check("limits", ERROR, f"this engine would ignore docker.memory / docker.cpus of {stages} ({why}): they fail",
                     fix + ", unset them, or `dvc config docker.allow_unlimited true`")
    return Check("limits", WARNING, f"memory and CPU limits would be ignored by this engine ({why})", fix)


def runtime_check(info: Mapping[str, Any], used_by: Sequence[Tuple[str, str]]) -> Optional[Check]:
    """`used_by`: (stage, docker.runtime) pairs; a runtime the engine does not list fails at create."""
    if not used_by:
        return None
    known = sorted(info.get("Runtimes") or {})
    missing = [(stage, runtime) for stage, runtime in used_by if runtime not in known]
    if not missing:
        return Check("runtime", OK, f"{', '.join(sorted({r for _, r in used_by}))} available on this engine")
    stages = ", ".join(f"'{stage}' ({runtime})" for stage, runtime in missing)
    return Check(
        "runtime", ERROR, f"docker.runtime of {stages} is not a runtime of this engine (it has: {', '.join(known)})",
        "register the runtime in the daemon's daemon.json (\"runtimes\"), or unset docker.runtime",
    )


def gpu_runtime(info: Mapping[str, Any]) -> bool:
    return any("nvidia" in name.lower() for name in (info.get("Runtimes") or {}))


def gpus_check(info: Mapping[str, Any], used_by: Sequence[str]) -> Optional[Check]:
    if not used_by:
        return None
    stages = ", ".join(f"'{s}'" for s in used_by)
    if gpu_runtime(info):
        return Check("gpus", OK, f"the daemon has an NVIDIA runtime for the GPUs of {stages}")
    return Check(
        "gpus",
        ERROR,
        f"{stages} request GPUs (docker.gpus) but the daemon has no GPU runtime "
        f"(runtimes: {', '.join(info.get('Runtimes') or {}) or 'none'})",
        "install the NVIDIA Container Toolkit on the Docker host (`nvidia-ctk runtime configure`), "
        "or unset docker.gpus",
    )


def swarm_gpus_checks(capacities: Sequence[Mapping[str, int]], used_by: Sequence[Tuple[str, int]]) -> List[Check]:
    """Swarm backend: GPUs are the nodes' generic resource, not a runtime of the manager.

    `capacities`: `swarm.node_capacity` of every node; `used_by`: (stage, docker.gpus count; -1: all, 0: device=...).
    """
    from dvc_docker_exec.backends.swarm import GPU_RESOURCE

    if not used_by:
        return []
    most = max((c.get(GPU_RESOURCE, 0) for c in capacities), default=0)
    guide = "docs/scale-out.md, GPUs"
    if not most:
        stages = ", ".join(f"'{s}'" for s, _ in used_by)
        return [
            Check(
                "gpus",
                ERROR,
                f"{stages} reserve GPUs (docker.gpus) but no Swarm node advertises the generic resource {GPU_RESOURCE}",
                f"list each GPU in its node's daemon.json `node-generic-resources` ({guide})",
            )
        ]
    found = []
    for stage, count in used_by:
        if count <= 0:
            what = "all" if count == -1 else "device=..."
            found.append(Check("gpus", ERROR, f"'{stage}' has docker.gpus {what}, which Swarm cannot reserve", "set a number of GPUs"))
        elif count > most:
            found.append(
                Check(
                    "gpus",
                    ERROR,
                    f"'{stage}' reserves {count} {GPU_RESOURCE} but the most a Swarm node has is {most}",
                    "lower docker.gpus for the stage, or add GPUs to a node",
                )
            )
    if found:
        return found
    nodes = sum(1 for c in capacities if c.get(GPU_RESOURCE))
    stages = ", ".join(f"'{s}'" for s, _ in used_by)
    return [
        Check(
            "gpus",
            OK,
            f"{nodes} of {len(capacities)} Swarm nodes advertise {GPU_RESOURCE} (up to {most} per node) for {stages}"
            f" (their NVIDIA runtime needs swarm-resource = \"DOCKER_RESOURCE_{GPU_RESOURCE}\": {guide})",
        )
    ]


def volume_checks(stage: str, sources: Iterable[str]) -> List[Check]:
    """A docker.volumes source that does not exist where DVC runs cannot be mounted."""
    return [
        Check(
            f"stage '{stage}'",
            ERROR,
            f"docker.volumes source '{source}' does not exist",
            f"create it, or fix the volume in `dvc config docker.volumes` / meta.docker of '{stage}'",
        )
        for source in sources
        if not os.path.exists(source)
    ]


def summary(checks: Sequence[Check]) -> str:
    errors = sum(c.level == ERROR for c in checks)
    warnings = sum(c.level == WARNING for c in checks)
    if not errors and not warnings:
        return "No problem found."
    return f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}."

"""The one interface every execution backend implements.

A backend runs one command line of a stage, described by a ``spec.ContainerSpec``,
streams its output to our stdout/stderr, returns on exit status 0 and raises
``runner.ContainerCmdFailedError`` (a DVC ``StageCmdFailedError``) otherwise,
``DockerExecError`` for faults of the engine, and cleans up whatever it created
in every case (Ctrl-C, SIGTERM, SIGHUP, errors).

Backends today: ``engine`` (``runner.ContainerRunner``: one Docker Engine or a
Docker-compatible API) and ``swarm`` (``swarm.SwarmRunner``: job services on a
Swarm cluster). A Kubernetes Job backend would be a third sibling
(docs/scale-out.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

from dvc_docker_exec.types.spec import ContainerSpec

if TYPE_CHECKING:
    from dvc_docker_exec.backends.runner import StageSignals


class Backend(Protocol):
    LEASE: str  # "fifo" or "beat": how its containers learn that dvc is gone (lease.py)
    KIND: str  # "container" or "service": what a killed run may leave (containers.clear_orphans)

    def run(self, spec: ContainerSpec, cmd: str, signals: "Optional[StageSignals]" = None) -> None:
        """`signals`: the caller's `runner.StageSignals` (it has more to clean up); None: install its own."""


def make_backend(kind: str, client: Any, engine: Any = None, endpoint: Any = None) -> Backend:
    """`engine`: what `engine.probe` found at the endpoint (the engine backend adapts to it);
    `endpoint`: where it is, named in errors."""
    if kind == "swarm":
        from dvc_docker_exec.backends.swarm import SwarmRunner

        return SwarmRunner(client, endpoint)
    from dvc_docker_exec.backends.runner import ContainerRunner

    return ContainerRunner(client, engine, endpoint)

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

from typing import Any, Protocol

from .spec import ContainerSpec

BACKENDS = ("engine", "swarm")


class Backend(Protocol):
    def run(self, spec: ContainerSpec, cmd: str) -> None: ...


def make_backend(kind: str, client: Any, engine: Any = None) -> Backend:
    """`engine`: what `engine.probe` found at the endpoint (the engine backend adapts to it)."""
    if kind == "swarm":
        from .swarm import SwarmRunner

        return SwarmRunner(client)
    from .runner import ContainerRunner

    return ContainerRunner(client, engine)

"""The one interface every execution backend implements.

A backend runs one command line of a stage, described by a ``spec.ContainerSpec``,
streams its output to our stdout/stderr, returns on exit status 0 and raises
``runner.ContainerCmdFailedError`` (a DVC ``StageCmdFailedError``) otherwise,
``DockerExecError`` for faults of the engine, and cleans up whatever it created
in every case (Ctrl-C, SIGTERM, SIGHUP, errors).

Backends today: ``engine`` (``runner.ContainerRunner``: one Docker Engine or a
Docker-compatible API) and ``swarm`` (``swarm.SwarmRunner``: job services on a
Swarm cluster). A Kubernetes Job backend would be a third sibling
(docs/scale-out.md). `session.make_backend` builds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol, Tuple

from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.types.spec import ContainerSpec

if TYPE_CHECKING:
    from dvc_docker_exec.backends.runner import StageSignals


class Backend(Protocol):
    """What orchestration (dvc_glue) may ask of a backend: every difference between them is one of these."""

    LEASE: str  # "fifo" or "beat": how its containers learn that dvc is gone (lease.py)
    KIND: str  # "container" or "service": what a killed run may leave (containers.clear_orphans)
    # True: the stage runs on the endpoint's own engine (its GPUs, runtimes, limits are the stage's);
    # False: elsewhere (Swarm nodes), the endpoint only places it
    RUNS_HERE: bool

    @property
    def image_place(self) -> Optional[str]:
        """Where images are looked up and pulled when that is not where the stage runs (ImageManager.ensure's `on`)."""

    def pulled(self, settings: DockerSettings, images: Any) -> Tuple[DockerSettings, Optional[str]]:
        """After the pull policy made the image present: (settings to run with, image ID to create from or None)."""

    def built(self, stage: str, settings: DockerSettings, builder: Any, spec: Any) -> Tuple[DockerSettings, Optional[str]]:
        """The same for an image built here (docker.build) from the build spec `spec`; `stage` names it in errors."""

    def check_limits(self, spec: ContainerSpec, allow_unlimited: bool) -> None:
        """Refuse memory/cpu limits the engine that runs the stage cannot enforce (docker.allow_unlimited)."""

    def run(self, spec: ContainerSpec, cmd: str, signals: "Optional[StageSignals]" = None) -> None:
        """`signals`: the caller's `runner.StageSignals` (it has more to clean up); None: install its own."""

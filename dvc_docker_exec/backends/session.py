"""This dvc process's connection: endpoint, client, engine facts, image manager and backends.

One of each per process, made on first use (a `dvc status` that needs no
daemon never connects). The host paths of each repo (path translation) are cached here too.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

if TYPE_CHECKING:
    from dvc_docker_exec.backends.base import Backend

logger = logging.getLogger(f"dvc.{__name__}")

state: dict = {}  # per process: docker client, image manager, backends, host paths


def endpoint() -> Any:
    """The daemon this process talks to (`endpoint.discover`), found once."""
    if "endpoint" not in state:
        from dvc_docker_exec.api.endpoint import discover

        state["endpoint"] = discover()
    return state["endpoint"]


def client(host_run_hint: Union[bool, Callable[[], bool]] = True) -> Any:
    """A pinged client of `endpoint()`, or the one-line error naming it (unreachable, permission).

    `host_run_hint` False: the error does not suggest `docker.enabled false` (already in force).
    """
    if "client" not in state:
        from dvc_docker_exec.backends.runner import connect

        logger.debug("Docker endpoint %s", endpoint().describe())
        state["client"] = connect(endpoint(), host_run_hint=host_run_hint)
    return state["client"]


def session(backend: str = "engine"):
    """The client, image manager and backend of this dvc process (one connection each)."""
    if "engine" not in state:
        from dvc_docker_exec.api.engine import probe
        from dvc_docker_exec.backends.runner import ImageManager

        state["engine"] = probe(client().api)
        state["images"] = ImageManager(client())
    if ("backend", backend) not in state:
        state[("backend", backend)] = make_backend(backend, state["client"], state["engine"], state["endpoint"])
    return state[("backend", backend)], state["images"]


def builder() -> Any:
    """The builds of this dvc process (`builder.Builder`), on the same connection and image manager."""
    if "builder" not in state:
        from dvc_docker_exec.backends.builder import Builder

        session()
        state["builder"] = Builder(state["client"], state["images"])
    return state["builder"]


def backend_class(kind: str) -> type:
    """The class of the backend docker.backend names (its class attributes: LEASE, KIND, RUNS_HERE)."""
    if kind == "swarm":
        from dvc_docker_exec.backends.swarm import SwarmRunner

        return SwarmRunner
    from dvc_docker_exec.backends.runner import ContainerRunner

    return ContainerRunner


def make_backend(kind: str, client: Any, engine: Any = None, endpoint: Any = None) -> "Backend":
    """`engine`: what `engine.probe` found at the endpoint (the engine backend adapts to it);
    `endpoint`: where it is, named in errors."""
    return backend_class(kind)(client, engine=engine, endpoint=endpoint)


def image_place(backend: str) -> Optional[str]:
    """Where the image is looked up and pulled when that is not where the stage runs (ImageManager.ensure's `on`)."""
    return session(backend)[0].image_place


def mount_for(repo_root: str, git_root: str, host_root: Optional[str], dry: bool = False) -> Callable:
    """path -> Mount at the same path; translated when DVC runs in a container (found once per repo).

    `dry` (--dry) does not need the daemon: without a connection already made,
    paths are shown as DVC sees them (not cached, so a later real run in this
    process still detects the socket pattern).
    """
    key = ("paths", repo_root, host_root)
    if key not in state:
        if dry and "client" not in state:
            from dvc_docker_exec.boundary.paths import IdentityPaths

            return _positional(IdentityPaths("dry run"))
        from dvc_docker_exec.boundary.paths import detect_host_paths

        session()
        host_paths = detect_host_paths(state["client"], repo_root=git_root, host_root=host_root, endpoint=state["endpoint"])
        logger.debug("host paths: %s", host_paths.describe())
        state[key] = host_paths
    return _positional(state[key])


def _positional(host_paths: Any) -> Callable:
    # spec.build_spec calls mount_for(path, read_only)
    return lambda path, read_only=False: host_paths.mount(path, read_only=read_only)


def engine_ids() -> dict:
    """uid/gid for the stage's default user, as the engine maps them (rootless: root inside = you)."""
    session()
    uid, gid = state["engine"].stage_ids(os.getuid(), os.getgid())
    return {"uid": uid, "gid": gid}

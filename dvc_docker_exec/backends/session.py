"""This dvc process's connection: endpoint, client, engine facts, image manager and backends.

One of each per process, made on first use (a `dvc status` that needs no
daemon never connects). `dvc_glue` adds what it caches per repo (host paths).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional, Union

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
        from dvc_docker_exec.backends.base import make_backend

        state[("backend", backend)] = make_backend(backend, state["client"], state["engine"], state["endpoint"])
    return state[("backend", backend)], state["images"]


def builder() -> Any:
    """The builds of this dvc process (`builder.Builder`), on the same connection and image manager."""
    if "builder" not in state:
        from dvc_docker_exec.backends.builder import Builder

        session()
        state["builder"] = Builder(state["client"], state["images"])
    return state["builder"]


def image_place(backend: str) -> Optional[str]:
    """Where the image is looked up and pulled when that is not where the stage runs (ImageManager.ensure's `on`)."""
    if backend != "swarm":
        return None
    session()
    return f"the Swarm manager {state['endpoint'].describe()}"


def engine_ids() -> dict:
    """uid/gid for the stage's default user, as the engine maps them (rootless: root inside = you)."""
    session()
    uid, gid = state["engine"].stage_ids(os.getuid(), os.getgid())
    return {"uid": uid, "gid": gid}

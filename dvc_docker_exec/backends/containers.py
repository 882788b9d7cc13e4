"""The plugin's containers on the daemon: found by label, judged orphaned by their dvc pid.

The runner removes its container whatever happens; when the dvc process
itself is killed with SIGKILL (`dvc queue kill --force`, the OOM killer) the
container's lease watcher stops it within seconds (lease.py) and the daemon
removes it. Should one still be there (the watcher could not act: a dvc that
died between start and the watcher's first read, a node that lost the lease
file), it is an orphan: every container carries the label `dvc-docker-exec`
and the pid and host of the dvc process that started it, so the next run of
the repository removes it before starting anything (`clear_orphans`, the
second wall), `dvc status` mentions it, and `dvc docker ps` / `prune` list and
remove it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from dvc_docker_exec.boundary.paths import is_within

logger = logging.getLogger(f"dvc.{__name__}")
from dvc_docker_exec.types.spec import LABEL


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class PluginContainer:
    id: str
    name: str
    state: str  # running, exited, created... ("service" for a Swarm service)
    created: int  # epoch seconds
    labels: Mapping[str, str]
    kind: str = "container"  # or "service" (docker.backend swarm)

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> "PluginContainer":
        """From one item of GET /containers/json (docker-py `api.containers()`)."""
        names = data.get("Names") or ["?"]
        return cls(
            id=data["Id"],
            name=names[0].lstrip("/"),
            state=data.get("State", "?"),
            created=int(data.get("Created", 0)),
            labels=data.get("Labels") or {},
        )

    @classmethod
    def from_service(cls, data: Mapping[str, Any]) -> "PluginContainer":
        """From one item of GET /services (docker-py `api.services()`): a stage of the Swarm backend."""
        spec = data.get("Spec") or {}
        return cls(
            id=data["ID"],
            name=spec.get("Name", "?"),
            state="service",
            created=_epoch(data.get("CreatedAt", "")),
            labels=spec.get("Labels") or {},
            kind="service",
        )

    def remove(self, client: Any) -> None:
        """Remove it with its anonymous volumes (a service: with its task's container on whichever node)."""
        if self.kind == "service":
            client.api.remove_service(self.id)
        else:
            client.api.remove_container(self.id, force=True, v=True)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def stage(self) -> str:
        return self.labels.get(f"{LABEL}.stage", "?")

    @property
    def repo(self) -> str:
        return self.labels.get(f"{LABEL}.repo", "?")

    @property
    def pid(self) -> Optional[int]:
        try:
            return int(self.labels.get(f"{LABEL}.pid", ""))
        except ValueError:
            return None

    def dvc_process(self, hostname: Optional[str] = None) -> str:
        """'alive', 'gone' or 'unknown' (started on another host or runner container: its pid means nothing here)."""
        if self.labels.get(f"{LABEL}.host") != (hostname or os.uname().nodename) or self.pid is None:
            return "unknown"
        return "alive" if _pid_alive(self.pid) else "gone"

    @property
    def orphaned(self) -> bool:
        return self.dvc_process() == "gone"

    def age(self, now: Optional[float] = None) -> str:
        return format_age((now or time.time()) - self.created)


def _epoch(timestamp: str) -> int:
    """Swarm's `2026-11-29T17:00:00.123456789Z` -> epoch seconds (0 if unreadable)."""
    import calendar

    try:
        return calendar.timegm(time.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return 0


def format_age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _services(client: Any) -> List[Mapping[str, Any]]:
    """The plugin's services when the daemon is a Swarm manager (else none: not an error)."""
    from docker.errors import APIError

    from dvc_docker_exec.errors import DockerExecError

    try:
        return client.api.services(filters={"label": LABEL})
    except APIError:  # 503: not a swarm manager
        return []
    except DockerExecError:  # a socket proxy that denies SERVICES: then no service of ours runs there either
        return []


def of_repo(container: PluginContainer, repo_root: str) -> bool:
    """Started for this repo: its root, or an `exp run --temp` copy under .dvc/tmp/exps."""
    return os.path.isabs(container.repo) and is_within(os.path.normpath(container.repo), os.path.normpath(repo_root))


def list_containers(
    client: Any, repo_root: Optional[str] = None, kinds: Tuple[str, ...] = ("container", "service")
) -> List[PluginContainer]:
    """Every container of the plugin, and its Swarm services on a manager, oldest first; only this repo's with repo_root."""
    found = []
    if "container" in kinds:
        found += [PluginContainer.from_api(d) for d in client.api.containers(all=True, filters={"label": LABEL})]
    if "service" in kinds:
        found += [PluginContainer.from_service(d) for d in _services(client)]
    if repo_root is not None:
        found = [c for c in found if of_repo(c, repo_root)]
    return sorted(found, key=lambda c: c.created)


def clear_orphans(client: Any, repo_root: str, kind: str = "container") -> List[PluginContainer]:
    """The second wall: remove this repo's `kind`s whose dvc process is gone, one warning each; returns them.

    Called before each stage starts, so that a stage never runs alongside a
    container of a killed run that may still write its outputs. Only orphans
    judged on this host (pid and host known) are touched: a container of
    another machine or runner container may belong to a live dvc.
    """
    from docker.errors import NotFound

    removed = []
    for found in list_containers(client, repo_root, (kind,)):
        if not found.orphaned:
            continue
        try:
            found.remove(client)
        except NotFound:
            continue  # its watcher stopped it and the daemon removed it meanwhile
        logger.warning(
            "removed %s %s of stage '%s' (%s): its dvc process %s is gone",
            found.kind, found.name, found.stage, found.state, found.pid,
        )
        removed.append(found)
    return removed

"""What kind of engine answers at the endpoint, and what that changes for a stage.

Probed once per dvc process from ``GET /version`` (allowed by every socket
proxy) and ``GET /info`` (often denied by one: then its facts stay unknown).
Differences handled here, each measured on this project's test machines:

* **Podman** (4.3, Docker-compatible API): a wait with condition
  ``removed`` answers ``StatusCode: 0`` once an AutoRemove container is gone,
  whatever its exit status was (issue 9, finding a: a failed stage was recorded
  as a success); ``not-running`` registered before start answers ``-1`` at
  once (a created container is "not running"). ``next-exit`` is exact, with or
  without AutoRemove, so Podman gets that.
* **Podman**: a container that AutoRemove is removing can answer
  ``500 ... does not exist in database: no such container`` instead of
  Docker's 404 (measured: 1 inspect in 40 right after a quick command ended,
  under load; a stage failed with that text). ``gone_is_not_found`` makes it
  the 404 every caller already treats as "gone" (docker-py's ``NotFound``).
* **Rootless** engines (Docker's ``dockerd-rootless.sh``, rootless Podman):
  uid 0 in the container is the user who runs the daemon, any other uid maps
  to a subordinate id outside; so stages run as root inside, and their files
  belong to that user on the host (finding d).
* **cgroup driver ``none``** (rootless Docker without cgroup v2 delegation):
  the daemon accepts ``--memory``/``--cpus`` and silently ignores them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from dvc_docker_exec.errors import DockerExecError

logger = logging.getLogger(f"dvc.{__name__}")


@dataclass(frozen=True)
class Engine:
    name: str  # "Docker Engine", "Podman Engine", ...
    version: str
    rootless: Optional[bool] = None  # None: /info was not readable
    cgroup_driver: Optional[str] = None
    cgroup_version: Optional[str] = None

    @property
    def is_podman(self) -> bool:
        return "podman" in self.name.lower()

    @property
    def wait_condition(self) -> str:
        """The condition of the wait registered before start (see module docstring)."""
        return "next-exit" if self.is_podman else "removed"

    @property
    def enforces_limits(self) -> Optional[bool]:
        """Whether --memory/--cpus take effect; None when unknown."""
        if self.cgroup_driver == "none":
            return False
        if self.rootless and self.cgroup_version == "1":
            return False  # rootless Podman on cgroup v1 ignores them too ("not supported and ignored")
        if self.cgroup_driver is None:
            return None
        return True

    def stage_ids(self, uid: int, gid: int) -> Tuple[int, int]:
        """uid:gid a stage runs as by default so that its outputs belong to the invoking user.

        Rootless: root inside the user namespace *is* the user outside
        (measured: files written as 0:0 belong to the daemon's user on the
        host; as 4545 they belong to a subordinate id and the write fails).
        """
        return (0, 0) if self.rootless else (uid, gid)

    def describe(self) -> str:
        extra = [x for x in ("rootless" if self.rootless else "", f"cgroup driver {self.cgroup_driver}"
                             if self.cgroup_driver else "") if x]
        return f"{self.name} {self.version}" + (f" ({', '.join(extra)})" if extra else "")


def gone_is_not_found(response: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ARG001
    """A requests response hook: Podman's 500 for a container it no longer has becomes Docker's 404."""
    if response.status_code == 500 and b"no such container" in (response.content or b"").lower():
        response.status_code = 404
    return response


def from_api(
    version: Mapping[str, Any], info: Optional[Mapping[str, Any]], libpod_info: Optional[Mapping[str, Any]] = None
) -> Engine:
    """Pure: an Engine from the /version and /info answers (info None when denied).

    Podman's compatible /info does not say "name=rootless"; its own
    ``/libpod/info`` does (``host.security.rootless``).
    """
    components = version.get("Components") or []
    name = components[0].get("Name") if components and isinstance(components[0], dict) else None
    name = "Docker Engine" if name in (None, "", "Engine") else name
    rootless = cgroup = cgroup_version = None
    if info is not None:
        options = [str(o) for o in info.get("SecurityOptions") or []]
        rootless = any("name=rootless" in o for o in options)
        cgroup = info.get("CgroupDriver") or None
        cgroup_version = str(info["CgroupVersion"]) if info.get("CgroupVersion") else None
    security = ((libpod_info or {}).get("host") or {}).get("security") or {}
    if "rootless" in security:
        rootless = bool(security["rootless"])
    return Engine(
        name=name,
        version=str(version.get("Version") or "?"),
        rootless=rootless,
        cgroup_driver=cgroup,
        cgroup_version=cgroup_version,
    )


def probe(api: Any) -> Engine:
    """The engine behind a docker-py APIClient; /info may be refused (socket proxies)."""
    version = api.version()
    info = _get(api, lambda: api.info(), "/info")
    libpod = None
    if from_api(version, None).is_podman:
        url = api.base_url + "/v4.0.0/libpod/info"
        libpod = _get(api, lambda: api._result(api._get(url), True), "/libpod/info")
    engine = from_api(version, info, libpod)
    logger.debug("engine: %s", engine.describe())
    return engine


def _get(api: Any, call: Any, what: str) -> Optional[Mapping[str, Any]]:
    from docker.errors import APIError

    try:
        return call()
    except (APIError, DockerExecError) as exc:
        logger.debug("engine: GET %s refused (%s): rootless and cgroups unknown", what, exc)
        return None


def check_limits(engine: Engine, memory: Optional[int], nano_cpus: Optional[int], allow_unlimited: bool) -> None:
    """Refuse limits the engine would silently ignore, unless the user allows running unlimited."""
    asked = [k for k, v in (("docker.memory", memory), ("docker.cpus", nano_cpus)) if v]
    if not asked or engine.enforces_limits is not False:
        return
    what = " and ".join(asked)
    why = (
        f"the engine ({engine.describe()}) cannot enforce {what}: it would run the stage unlimited "
        "(rootless Docker needs cgroup v2 with systemd delegation for resource limits)"
    )
    if not allow_unlimited:
        raise DockerExecError(f"{why}; unset {what}, or `dvc config docker.allow_unlimited true` to run anyway")
    logger.warning("%s; running anyway (docker.allow_unlimited)", why)

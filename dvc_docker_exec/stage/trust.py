"""Which settings may widen host access: the machine's, not the repository's.

GitLab Runner's model: a job chooses its image; the runner's owner chooses
volumes, privileges and networks. Here the "job" is what comes with the
repository (a clone, a branch, a merge request): the committed `.dvc/config`
(DVC's ``repo`` level) and ``meta.docker`` in dvc.yaml. The "runner's owner" is
whoever runs dvc on this machine: ``dvc config --local`` (.dvc/config.local,
never committed), ``--global`` and ``--system``.

Settings from the repository may narrow what a stage gets (network none,
limits, another image) but not widen it beyond a host run of the same command
by the same user: no host path outside the repository (or its Git root), no
other user (root or foreign), no network but host/bridge/none, no
``host_root``, no devices, added capabilities, other runtime, extra hosts or
the host's IPC namespace; and what narrows (cap_drop, read_only, pids_limit,
ulimits) may not undo this machine's narrowing nor raise a ulimit above the
invoking process's own hard limit. ``docker.allow_repo_settings true`` at a machine level lifts
this for repositories the owner trusts; the repository cannot set it itself.

Pure apart from ``os.path.realpath`` (volume sources are judged by what they
resolve to, as the daemon will mount them: a committed symlink ``data -> /``
is outside the repository).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Sequence, Set, Tuple

from dvc_docker_exec.config import META, REPO_LEVEL, SHARED, TRACKED, UNLIMITED, DockerSettings, SettingError, parse_bool
from dvc_docker_exec.boundary.paths import is_within

ALLOW_KEY = "allow_repo_settings"
REPO_ORIGINS = (REPO_LEVEL, SHARED, META)
# host: what a host run of the command sees (the default); bridge/none narrow it.
# Any other network (or `container:<id>`) reaches services a host run may not.
REPO_NETWORKS = ("host", "bridge", "none")
WHERE = {REPO_LEVEL: "the repository's .dvc/config", SHARED: "the repository's .dvc/docker.yaml", META: "dvc.yaml (meta.docker)"}
logger = logging.getLogger(f"dvc.{__name__}")
_track_warned: Set[str] = set()
ALLOW_HINT = "`dvc config --local docker.allow_repo_settings true` (or --global, --system)"


@dataclass(frozen=True)
class Invoker:
    """Who runs dvc, and the folders a host run of the stage works in."""

    uid: int
    gid: int
    roots: Tuple[str, ...]  # repo root first, then the Git root


def check(settings: DockerSettings, stage: str, invoker: Invoker) -> None:
    """Raise SettingError (one line) for a repository-supplied setting that widens host access."""
    origin = settings.origins.get(ALLOW_KEY)
    if from_repository(origin):
        raise SettingError(
            f"stage '{stage}': docker.{ALLOW_KEY} from {where(origin)}: a repository cannot allow itself "
            f"more host access; only this machine's config can: {ALLOW_HINT}"
        )
    if settings.allow_repo_settings:
        return
    for key in sorted(settings.origins):
        origin = settings.origins[key]
        problem = widening(key, settings, invoker) if from_repository(origin) else None
        if problem:
            raise SettingError(
                f"stage '{stage}': docker.{key} from {where(origin)} {problem}; settings that come with the "
                f"repository may not widen host access: set it on this machine (`dvc config --local "
                f"docker.{key} ...`) or allow repository settings with {ALLOW_HINT}"
            )


def from_repository(origin: Optional[str]) -> bool:
    """The value comes with the repository: .dvc/config, meta.docker, or any config file Git tracks."""
    return origin in REPO_ORIGINS or bool(origin and origin.startswith(TRACKED))


def where(origin: str) -> str:
    if origin.startswith(TRACKED):
        return f"'{origin[len(TRACKED):]}', which Git tracks (a tracked file comes with the repository, whatever its name)"
    return WHERE[origin]


def widening(key: str, settings: DockerSettings, invoker: Invoker) -> Optional[str]:
    """Why this key's value gives a stage more than a host run would have, or None."""
    if key == "volumes":
        roots = [os.path.realpath(root) for root in invoker.roots]
        for volume in settings.volumes:
            source = os.path.join(invoker.roots[0], volume.source)  # an absolute source stays as is
            real = os.path.realpath(source)
            if not any(is_within(real, root) for root in roots):
                return f"mounts '{volume.source}' (on the host: '{real}') from outside the repository"
    elif key == "user" and not same_user(settings.user, invoker.uid, invoker.gid):
        return f"runs the stage as '{settings.user}', not as you ({invoker.uid}:{invoker.gid})"
    elif key == "network" and settings.network not in REPO_NETWORKS:
        return f"joins network '{settings.network}' (a repository may choose {', '.join(REPO_NETWORKS)})"
    elif key == "host_root" and settings.host_root:
        return f"chooses the host folder mounted as the repository ('{settings.host_root}')"
    elif key == "registry" and settings.registry:
        # images built from the repository's files would be pushed wherever it says
        return f"chooses where built images are pushed ('{settings.registry}')"
    elif key in WIDENING_OPTIONS:
        return _widening_option(key, settings)
    elif key in NARROWING_OPTIONS:
        return _loosened(key, settings)
    return None


# Container options that reach beyond a host run (issue 21), and what each one hands the stage.
WIDENING_OPTIONS = {
    "devices": "host devices",
    "cap_add": "capabilities",
    "runtime": "another container runtime",
    "extra_hosts": "host names that shadow DNS",
    "ipc": "the host's IPC namespace",
}
# Options a repository may use to narrow what a stage gets, never to undo this machine's narrowing.
NARROWING_OPTIONS = ("cap_drop", "read_only", "pids_limit", "ulimits")


def _widening_option(key: str, settings: DockerSettings) -> Optional[str]:
    value = getattr(settings, key)
    if not value or value == settings.machine.get(key):
        return None  # nothing asked, or exactly what this machine's config says
    if key == "ipc" and value != "host":
        return None  # private and shareable narrow the default
    shown = ", ".join(_shown(item) for item in value) if isinstance(value, tuple) else value
    return f"gives the stage {WIDENING_OPTIONS[key]} ('{shown}')"


def _shown(item: object) -> str:
    if isinstance(item, tuple):  # an extra host (name, address)
        return ":".join(item)
    return item.cli() if hasattr(item, "cli") else str(item)


def _loosened(key: str, settings: DockerSettings) -> Optional[str]:
    """Why the repository's value undoes a narrowing this machine set (or the invoking process has), or None."""
    machine = settings.machine
    if key == "cap_drop" and key in machine:
        kept = [cap for cap in machine[key] if cap not in settings.cap_drop and "ALL" not in settings.cap_drop]
        if kept:
            return f"keeps capabilities this machine drops ({', '.join(kept)})"
    elif key == "read_only" and machine.get(key) and not settings.read_only:
        return "makes the root file system writable (this machine sets docker.read_only)"
    elif key == "pids_limit" and machine.get(key) and (settings.pids_limit or 0) > machine[key]:
        return f"raises the process limit to {settings.pids_limit} (this machine's: {machine[key]})"
    elif key == "ulimits":
        ceilings = {u.name: u.hard for u in machine.get(key, ())}
        dropped = sorted(set(ceilings) - {u.name for u in settings.ulimits})
        if dropped:  # the repository's list replaces this machine's: a name left out is no longer limited
            return f"leaves out ulimits this machine sets ({', '.join(dropped)})"
        for ulimit in settings.ulimits:
            ceiling = ceilings.get(ulimit.name, _process_hard_limit(ulimit.name))
            if ceiling is not None and _above(ulimit.hard, ceiling):
                return f"raises ulimit {ulimit.name} to {_limit_text(ulimit.hard)} (at most {_limit_text(ceiling)} here)"
    return None


def _process_hard_limit(name: str) -> Optional[int]:
    """The hard limit of this dvc process: what a host run of the stage would get (None: unknown)."""
    import resource

    which = getattr(resource, f"RLIMIT_{name.upper()}", None)
    if which is None:
        return None
    hard = resource.getrlimit(which)[1]
    return UNLIMITED if hard == resource.RLIM_INFINITY else hard


def _above(value: int, ceiling: int) -> bool:
    if ceiling == UNLIMITED:
        return False
    return value == UNLIMITED or value > ceiling


def _limit_text(value: int) -> str:
    return "unlimited" if value == UNLIMITED else str(value)


def same_user(user: Optional[str], uid: int, gid: int) -> bool:
    """`user` is exactly the invoking uid:gid (a missing group is 0 in most images: not the same)."""
    if user is None:
        return True
    name, _, group = user.partition(":")

    def same(value: str, number: int) -> bool:
        return value == str(number) or (number == 0 and value == "root")

    return same(name, uid) and (same(group, gid) if group else gid == 0)


def machine_track(
    settings: DockerSettings, levels: Sequence[Tuple[str, Mapping[str, Any]]], stage: str
) -> DockerSettings:
    """`settings` with `track` on when this machine's config says `docker.track true` (issue 16, P8).

    Provenance is the machine owner's to insist on: `track: false` from the
    repository (its .dvc/config or meta.docker) narrows nothing a host run
    has, but it would let a repository run unrecorded where the owner wants a
    record. The repository's value is ignored, with one warning per stage.
    """
    origin = settings.origins.get("track")
    if settings.track or origin not in REPO_ORIGINS:
        return settings
    machine = [(level, section["track"]) for level, section in levels if level not in (REPO_LEVEL, SHARED) and "track" in section]
    if not machine:
        return settings
    level, value = machine[-1]  # the machine level DVC gives precedence to
    try:
        if not parse_bool(value):
            return settings
    except (SettingError, ValueError):
        return settings
    if stage not in _track_warned:
        _track_warned.add(stage)
        logger.warning(
            "stage '%s': docker.track false from %s is ignored: this machine's %s config sets docker.track true",
            stage, WHERE[origin], level,
        )
    return replace(settings, track=True, origins={**settings.origins, "track": level})

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
``host_root``. ``docker.allow_repo_settings true`` at a machine level lifts
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

from .config import META, REPO_LEVEL, DockerSettings, SettingError, parse_bool
from .paths import is_within

ALLOW_KEY = "allow_repo_settings"
REPO_ORIGINS = (REPO_LEVEL, META)
# host: what a host run of the command sees (the default); bridge/none narrow it.
# Any other network (or `container:<id>`) reaches services a host run may not.
REPO_NETWORKS = ("host", "bridge", "none")
WHERE = {REPO_LEVEL: "the repository's .dvc/config", META: "dvc.yaml (meta.docker)"}
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
    if origin in REPO_ORIGINS:
        raise SettingError(
            f"stage '{stage}': docker.{ALLOW_KEY} from {WHERE[origin]}: a repository cannot allow itself "
            f"more host access; only this machine's config can: {ALLOW_HINT}"
        )
    if settings.allow_repo_settings:
        return
    for key in sorted(settings.origins):
        origin = settings.origins[key]
        problem = widening(key, settings, invoker) if origin in REPO_ORIGINS else None
        if problem:
            raise SettingError(
                f"stage '{stage}': docker.{key} from {WHERE[origin]} {problem}; settings that come with the "
                f"repository may not widen host access: set it on this machine (`dvc config --local "
                f"docker.{key} ...`) or allow repository settings with {ALLOW_HINT}"
            )


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
    return None


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
    machine = [(level, section["track"]) for level, section in levels if level != REPO_LEVEL and "track" in section]
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

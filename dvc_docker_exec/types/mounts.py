"""The one mount plan: every mount of a stage container, computed and checked in one place.

Input: `StageFacts` (paths as DVC sees them, gathered per command by
`stage/mounts.py`), the settings' volumes and `mount_for(path, read_only)`,
which resolves a path as the daemon will (symlinks, `..`, the socket
pattern's translation), refuses a daemon socket and returns the Mount. No
other module adds a mount to a container: `spec.build_spec` takes its mounts
from `plan_mounts`, and what other parts of the plugin need mounted (a lease
file, a tmpfs) comes in through `StageFacts.extra_binds` / `StageFacts.tmpfs`.

Protection is a list of rules `(path, read_only)`, outermost first: a `.git`
or `.dvc` folder read-only, `.dvc/tmp` and the cache writable beneath it, the
user's DVC/Git config read-only, and "pins" (a folder mounted over itself, so
that it is a mount point and cannot be renamed: EBUSY). The rules are
applied in host terms, to every mount of the same host folder (an alias):

* a mount whose source lies in (or is) a rule's path gets the mode of the
  deepest such rule (`docker.volumes: .git/hooks:/h` is read-only);
* every rule inside a mount's source is mounted again at the matching place
  under that mount's target (`docker.volumes: .:/alias` gets `/alias/.dvc`
  read-only, `/alias/.dvc/tmp` writable).

`check_plan` verifies the result against the rules right before a container
is created: a writable mount of a read-only place, or a read-only place under
a mount without its cover, is an error, whatever produced it.

Pure: no DVC objects, no daemon; `mount_for` does the resolving.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from docker.types import Mount

from dvc_docker_exec.errors import DockerExecError

MountFor = Callable[[str, bool], Mount]
Rule = Tuple[str, bool]  # (path as DVC sees it, read_only)


@dataclass(frozen=True)
class StageFacts:
    """What the plan needs to know about a stage (gathered by `stage/mounts.py`, per command)."""

    addressing: str
    wdir: str
    repo_root: str
    mount_paths: Tuple[str, ...]  # directories/files to make visible at the same path
    config_overlays: Tuple[Tuple[str, str], ...] = ()  # (filtered copy, path it hides)
    linked_paths: Tuple[Tuple[str, str], ...] = ()  # (where a symlink lookup leaves the mounts, its target)
    # protection rules (path, read_only), outermost first, see the module docstring
    protected: Tuple[Rule, ...] = ()
    # what other parts of the plugin need in the container: (path as DVC sees it, target, read_only)
    # binds (resolved, socket-checked and protected like any other) and (target, mode) tmpfs
    extra_binds: Tuple[Tuple[str, str, bool], ...] = ()
    tmpfs: Tuple[Tuple[str, int], ...] = ()


def plan_mounts(
    facts: StageFacts, volumes: Sequence, mount_for: MountFor, home: Optional[str] = None
) -> Tuple[Mount, ...]:
    """Every mount of the container for `facts`; `home`: a tmpfs HOME at that path."""
    wanted: List[Mount] = [mount_for(path, False) for path in facts.mount_paths]
    for target, real in facts.linked_paths:
        wanted.append(retarget(mount_for(real, False), target, False))
    for volume in volumes:
        source = volume.source if os.path.isabs(volume.source) else os.path.join(facts.repo_root, volume.source)
        wanted.append(retarget(mount_for(os.path.normpath(source), volume.read_only), volume.target, volume.read_only))
    for path, target, read_only in facts.extra_binds:
        wanted.append(retarget(mount_for(path, read_only), target, read_only))
    rules = host_rules(facts.protected, mount_for)
    base = list(dedupe_mounts(wanted))
    # aliases are judged with the modes that were asked for, before the rules changed them
    binds = [m for m in base if m["Type"] == "bind"]
    mounts = [_ruled(m, rules) for m in base]
    extra: List[Mount] = []
    for source, read_only in rules:
        extra += _at_every_alias(source, _bind(source, source, read_only), binds, read_only)
    for copy, hidden in facts.config_overlays:
        overlay, original = mount_for(copy, True), mount_for(hidden, True)
        # A file inside a named volume cannot be bind-mounted on its own; the
        # stage then sees the unfiltered config (docs/socket-pattern.md).
        if overlay["Type"] == "bind" and original["Type"] == "bind":
            extra += _at_every_alias(original["Source"], overlay, binds, True)
    taken = {os.path.normpath(m["Target"]) for m in mounts}
    for mount in extra:
        target = os.path.normpath(mount["Target"])
        if target not in taken:  # a volume of other storage at that very place wins; Docker refuses two
            taken.add(target)
            mounts.append(mount)
    for target, mode in facts.tmpfs:
        mounts.append(Mount(target=target, source=None, type="tmpfs", tmpfs_mode=mode))
    if home:
        mounts.append(Mount(target=home, source=None, type="tmpfs", tmpfs_mode=0o1777))
    return tuple(mounts)


def host_rules(protected: Sequence[Rule], mount_for: MountFor) -> List[Rule]:
    """The rules with host paths (a path inside a named volume cannot be mounted on its own: dropped)."""
    found = []
    for path, read_only in protected:
        mount = mount_for(path, read_only)
        if mount["Type"] == "bind":
            found.append((os.path.normpath(mount["Source"]), read_only))
    return found


def mode_at(source: str, rules: Sequence[Rule]) -> Optional[bool]:
    """read_only of the deepest rule whose path is or contains `source`; None if no rule applies.

    Paths are compared as given (callers pass normalised paths: this runs for every mount and rule).
    """
    mode = None
    depth = -1
    for path, read_only in rules:
        if (source == path or source.startswith(path + "/")) and len(path) > depth:
            mode, depth = read_only, len(path)
    return mode


def check_plan(mounts: Sequence[Mount], protected: Sequence[Rule], mount_for: MountFor) -> None:
    """Raise if a planned container could write where the rules say it must not.

    The second look, right before the container is created: whatever added
    a mount, a writable bind of a read-only place, or a read-only place under
    a writable bind without a read-only mount at its alias, stops the run.
    """
    rules = host_rules(protected, mount_for)
    by_target = {os.path.normpath(m["Target"]): m for m in mounts}
    for mount in mounts:
        if mount["Type"] != "bind":
            continue
        source, target = os.path.normpath(mount["Source"]), os.path.normpath(mount["Target"])
        if not mount.get("ReadOnly") and mode_at(source, rules):
            raise DockerExecError(f"refusing to mount '{target}' writable: on the host it is '{source}', which stages may only read")
        if mount.get("ReadOnly"):
            continue
        prefix = source.rstrip("/") + "/"
        for path, read_only in rules:
            if not read_only or not path.startswith(prefix):
                continue
            cover = by_target.get(os.path.normpath(os.path.join(target, path[len(prefix) :])))
            if cover is None or (cover["Type"] == "bind" and not cover.get("ReadOnly") and cover["Source"] == path):
                raise DockerExecError(
                    f"refusing to mount '{target}' writable: it would expose '{path}', which stages may only read"
                )


def _ruled(mount: Mount, rules: Sequence[Rule]) -> Mount:
    """`mount` read-only if it lies in a read-only place."""
    if mount["Type"] != "bind" or mount.get("ReadOnly") or not mode_at(os.path.normpath(mount["Source"]), rules):
        return mount
    return _bind(mount["Target"], mount["Source"], True)


def dedupe_mounts(mounts: Sequence[Mount]) -> Tuple[Mount, ...]:
    """Drop mounts that an outer mount already provides (same storage, same place).

    Kept: a nested mount with other storage (e.g. a cache volume inside the
    repo mount in the socket pattern) and file overlays. Docker refuses two
    mounts at one target: several paths on one named volume all become that
    whole volume at one target, so those merge (read-write wins); two kinds of
    storage for one target are a conflict.
    """
    by_target: Dict[str, Mount] = {}
    for mount in mounts:
        target = os.path.normpath(mount["Target"])
        seen = by_target.get(target)
        if seen is None:
            by_target[target] = mount
        elif (seen["Type"], seen.get("Source")) != (mount["Type"], mount.get("Source")):
            raise DockerExecError(
                f"conflicting mounts for '{target}' in the stage container: "
                f"'{seen.get('Source')}' and '{mount.get('Source')}'; mount them at different paths"
            )
        elif seen.get("ReadOnly") and not mount.get("ReadOnly"):
            by_target[target] = mount
    kept: List[Mount] = []
    for mount in sorted(by_target.values(), key=lambda m: (m["Target"].count("/"), m["Target"])):
        if not any(_covers(outer, mount) for outer in kept):
            kept.append(mount)
    return tuple(kept)


def _covers(outer: Mount, inner: Mount) -> bool:
    rel = _relative(inner["Target"], outer["Target"])
    if rel is None or outer["Type"] != inner["Type"]:
        return False
    # a read-only outer mount cannot stand in for a writable inner one, nor a
    # writable one for a read-only one (`docker.volumes: data:/repo/data:ro`)
    if bool(outer.get("ReadOnly", False)) != bool(inner.get("ReadOnly", False)):
        return False
    if inner["Type"] == "volume":
        return outer["Source"] == inner["Source"]
    return os.path.normpath(os.path.join(outer["Source"], rel)) == os.path.normpath(inner["Source"])


def _relative(path: str, parent: str) -> Optional[str]:
    path, parent = os.path.normpath(path), os.path.normpath(parent)
    if path == parent:
        return "."
    prefix = parent.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _at_every_alias(host_path: str, storage: Mount, binds: Sequence[Mount], read_only: bool) -> List[Mount]:
    """`storage` mounted wherever a bind mount shows `host_path` (the repo at its path, a volume `.:/work`).

    Why every alias: a config folder made read-only at one place must not
    stay writable through another mount of the same host folder.
    """
    found = []
    for bind in binds:
        rel = _relative(host_path, bind["Source"])
        if rel is not None:
            target = os.path.normpath(os.path.join(bind["Target"], rel))
            found.append(retarget(storage, target, read_only or bool(bind.get("ReadOnly"))))
    return found


def _bind(target: str, source: str, read_only: bool) -> Mount:
    return Mount(target=target, source=source, type="bind", read_only=read_only)


def retarget(mount: Mount, target: str, read_only: bool) -> Mount:
    """Same storage, other place in the container (extra volumes, config overlays).

    A read-only source stays read-only whatever was asked.
    """
    read_only = read_only or bool(mount.get("ReadOnly"))
    if mount["Type"] == "volume":
        # A path inside a named volume cannot be mounted on its own (no subpath
        # on Docker 20.10): mount the whole volume where asked.
        return Mount(target=target, source=mount["Source"], type="volume", read_only=read_only, no_copy=True)
    return _bind(target, mount["Source"], read_only)

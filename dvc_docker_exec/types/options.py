"""Mount-like container options, planned in one place: docker.devices, docker.tmpfs, docker.read_only.

``plan_option_mounts`` is the single entry: it returns the tmpfs mounts (the
user's, plus the writable ``/tmp`` a read-only root needs) and the device
mappings, after the socket rule. A mount plan that checks every mount
(issue 16) should route these through itself by calling this one function.

The socket rule for devices (``refuse_socket_device``): the daemon opens a
device's source on its own host, like a bind source, so a device that is a
Unix socket, or a path that is or contains a daemon socket (by identity where
this process can stat it, by name otherwise), is refused before anything is
created. tmpfs mounts have no source: they cannot carry a socket in, so they
are checked only against the other mounts' targets (Docker refuses two mounts
at one place with a raw 400).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Tuple

from docker.types import Mount

from dvc_docker_exec.config import Device, DockerSettings
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.boundary.sockets import WELL_KNOWN, SocketGuard

TMP = "/tmp"  # writable under docker.read_only, so that ordinary commands (mktemp, pip, matplotlib) work


@dataclass(frozen=True)
class OptionMounts:
    tmpfs: Tuple[Mount, ...]
    devices: Tuple[Device, ...]


def refuse_socket_device(device: Device, guard: Optional[SocketGuard] = None) -> None:
    """Raise if `device` would hand the stage a Unix socket, or a daemon socket, instead of a device node."""
    source = device.source
    why = None
    try:
        if stat.S_ISSOCK(os.stat(source).st_mode):
            why = "is a Unix socket, not a device node"
    except OSError:
        pass  # not visible here (the daemon's host, in the socket pattern): judged by name below
    if why is None:
        why = (guard or SocketGuard()).exposure(source)
        if why and why.startswith("cannot be checked"):
            why = None  # a device node we may not stat (e.g. mode 600 of another user): Docker decides
    if why is None:
        for sock in WELL_KNOWN:
            if sock == source or sock.startswith(source.rstrip("/") + "/"):
                why = f"is or contains the daemon socket '{sock}'"
    if why:
        raise DockerExecError(
            f"refusing docker.devices '{device.cli()}': '{source}' {why}, and a daemon socket gives root on "
            "the host; list device nodes such as /dev/fuse"
        )


def plan_option_mounts(
    settings: DockerSettings,
    taken: Iterable[str],
    check_device: Callable[[Device], None] = refuse_socket_device,
) -> OptionMounts:
    """The tmpfs mounts and devices of `settings`; `taken`: the targets of the stage's other mounts."""
    for device in settings.devices:
        check_device(device)
    taken_targets = {os.path.normpath(t) for t in taken}
    mounts = []
    for tmpfs in settings.tmpfs:
        if tmpfs.target in taken_targets:
            raise DockerExecError(
                f"docker.tmpfs '{tmpfs.target}': the stage already has a mount there (a stage path or "
                "docker.volumes); choose another path"
            )
        taken_targets.add(tmpfs.target)
        mounts.append(Mount(target=tmpfs.target, source=None, type="tmpfs", tmpfs_size=tmpfs.size, tmpfs_mode=tmpfs.mode))
    if settings.read_only and TMP not in taken_targets:
        mounts.append(Mount(target=TMP, source=None, type="tmpfs", tmpfs_mode=0o1777))
    return OptionMounts(tuple(mounts), settings.devices)

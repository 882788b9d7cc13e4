"""Translate paths for the Docker *socket pattern*.

DVC may itself run in a container (the "runner") that talks to the host's
Docker daemon through a mounted ``/var/run/docker.sock``. Stage containers are
then *siblings* of the runner, and the daemon resolves bind-mount sources on
the HOST, not in the runner. A path such as ``/workspace/repo`` only exists in
the runner's mount namespace, so we must translate it before mounting.

Policy: a stage container always sees a path at the SAME place the runner sees
it (the mount target is the runner-side path), backed by the host storage that
backs it in the runner:

* on a bind mount of the runner   -> bind ``host source + relative part``;
* on a named volume of the runner -> the whole volume at the same destination
  (Docker < 26 has no volume subpath), so callers must dedupe by target
  (``types.mounts.dedupe_mounts``);
* on the runner's own filesystem  -> error (the host daemon cannot reach it);
* not in a container              -> identity bind mount;
* in a container, with the daemon beside us (an engine process in our PID
  namespace, on our root filesystem, listening at the endpoint's socket:
  dockerd started inside the same container) -> identity bind mount;
* ``docker.host_root`` configured -> repo root prefix swap, no detection.

Paths are resolved here (``os.path.realpath``, in the process that sees
them: the runner in the socket pattern) and the resolved path is translated
and handed to the daemon, so what is checked is what is mounted; the mount
target stays the path as DVC names it. Every source is refused if it is, or
contains, a daemon socket: by identity where we can stat it
(``sockets.SocketGuard``), by name for host paths we cannot see.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import socket
import stat
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import docker.errors
from docker.types import Mount

from dvc_docker_exec.api.endpoint import Endpoint, discover
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.boundary.sockets import (
    API_DAEMONS,
    WELL_KNOWN,
    SocketGuard,
    engine_processes,
    engine_sockets,
    listening_sockets,
    socket_inodes,
    unescape_mountinfo,
)

# Under "dvc." so that `dvc -v` (which only configures the "dvc" logger tree)
# shows these messages.
logger = logging.getLogger("dvc." + __name__)

# Paths of daemon sockets on a host, for the lexical check of a HOST path we
# cannot stat (the socket pattern). Everything we can stat is checked by
# identity (sockets.SocketGuard).
KNOWN_SOCKETS: tuple[str, ...] = WELL_KNOWN

# Only these mount points carry per-container files whose host source path
# contains the container id (Docker: .../containers/<id>/hostname, Podman:
# .../overlay-containers/<id>/userdata/hostname). Other lines are ignored so a
# bind mount that happens to contain such a path cannot fool us.
_ID_FILES = frozenset({"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"})
_MOUNTINFO_ID = re.compile(r"(?:^|/)(?:overlay-)?containers/([0-9a-f]{64})(?:/|$)")
# One component of a cgroup path: "<id>", "docker-<id>.scope",
# "libpod-<id>.scope", ... but not "libpod-conmon-<id>.scope" (that is the
# Podman monitor process, not the container).
_CGROUP_COMPONENT = re.compile(
    r"^(?:docker-|libpod-|crio-|cri-containerd-)?([0-9a-f]{64})(?:\.scope)?$"
)
# Docker's default hostname is the 12-char short id. Anything else (a custom
# --hostname, or "vm" on a plain machine) must not be looked up: the API also
# accepts container *names*, which would be a false positive.
_HOSTNAME_ID = re.compile(r"^[0-9a-f]{12,64}$")


# --------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------


def normalize(path: str) -> str:
    """Normalise an absolute POSIX path lexically (no symlink resolution).

    Relative paths are a caller bug (they would depend on the cwd of
    whichever process runs this), so they raise ``ValueError``.
    """
    if not posixpath.isabs(path):
        raise ValueError(f"expected an absolute path, got {path!r}")
    norm = posixpath.normpath(path)
    # POSIX keeps a leading "//" as implementation-defined; Docker does not.
    return "/" + norm.lstrip("/")


def is_within(path: str, parent: str) -> bool:
    """True if ``path`` is ``parent`` or below it, comparing whole components.

    ``/work`` contains ``/work/x`` but not ``/workspace``.
    """
    path = normalize(path)
    parent = normalize(parent)
    if parent == "/":
        return True
    return path == parent or path.startswith(parent + "/")


def symlink_hops(path: str, limit: int = 40) -> list[str]:
    """The spellings of ``path`` as the kernel replaces its symlinks, leftmost first.

    ``/repo/in.txt -> /data/in.txt`` with ``/data -> /mnt/d/data`` gives
    ``['/data/in.txt', '/mnt/d/data/in.txt']``: the places a lookup passes through.
    """
    hops: list[str] = []
    current = normalize(path)
    while len(hops) < limit:
        parts = current.split("/")
        for i in range(2, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if os.path.islink(prefix):
                target = posixpath.join(posixpath.dirname(prefix), os.readlink(prefix), *parts[i:])
                current = normalize(target)
                hops.append(current)
                break
        else:
            break
    return hops


def linked_outside(path: str, mounted: Iterable[str]) -> tuple[str, str] | None:
    """(where a lookup of ``path`` first leaves ``mounted``, what it resolves to), or None.

    A stage looks ``path`` up in its container, where only ``mounted`` exist:
    mounting the resolved file or folder at that first outside hop makes the
    lookup end where it ends on the host (issue 7, hole 8).
    """
    roots = [normalize(m) for m in mounted]
    real = normalize(os.path.realpath(path))
    if real == normalize(path) or any(is_within(real, root) for root in roots):
        return None
    for hop in symlink_hops(path):
        if not any(is_within(hop, root) for root in roots):
            return hop, real
    return None


def container_id_from_mountinfo(text: str) -> str | None:
    """Our container id from ``/proc/self/mountinfo``, or None.

    Works on cgroup v1 and v2 and with a private cgroup namespace (where
    ``/proc/self/cgroup`` is just ``0::/``), which is why it is tried first.
    Fields: ``id parent major:minor root mountpoint ...``; ``root`` is the
    source path inside its filesystem.
    """
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or unescape_mountinfo(fields[4]) not in _ID_FILES:
            continue
        match = _MOUNTINFO_ID.search(unescape_mountinfo(fields[3]))
        if match:
            return match.group(1)
    return None


def container_id_from_cgroup(text: str) -> str | None:
    """Our container id from ``/proc/self/cgroup``, or None.

    Handles ``12:cpu:/docker/<id>``, ``/system.slice/docker-<id>.scope``,
    ``/machine.slice/libpod-<id>.scope/container``, kubepods/ECS forms and
    cgroup v2 ``0::/...``. The innermost (last) id of a line wins, as in nested
    Docker the path is ``/docker/<outer>/docker/<inner>``.
    """
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        for component in reversed(parts[2].split("/")):
            match = _CGROUP_COMPONENT.match(component)
            if match:
                return match.group(1)
    return None


def _host_path_exposes_socket(host_path: str, host_sockets: Iterable[str] = ()) -> str | None:
    """The known daemon socket that ``host_path`` is or contains, if any (by name)."""
    parent = normalize(host_path)
    prefix = parent.rstrip("/") + "/"
    # runs for every mount: the socket paths are absolute already, compared as strings
    for sock in (*KNOWN_SOCKETS, *engine_sockets(), *(normalize(s) for s in host_sockets)):
        if sock == parent or sock.startswith(prefix):
            return sock
    return None


def _resolve(root: str, path: str) -> str:
    """What the daemon will mount for ``path``: symlinks, ``/proc/*/root`` and ``..`` resolved.

    Resolved here, in the process that sees ``path`` (the runner in the socket
    pattern); the result is what we check and what we hand the daemon, so a
    symlink is not followed a second time on its side. With a test ``root``
    the paths are not real: lexical only.
    """
    return normalize(os.path.realpath(path)) if root == "/" else normalize(path)


def _default_guard(root: str) -> SocketGuard:
    return SocketGuard() if root == "/" else SocketGuard(socket_paths=())


def _endpoint_socket() -> str | None:
    """The socket of the endpoint in use (a rootless or Podman socket may be mounted anywhere)."""
    try:
        path = discover().socket_path
    except DockerExecError:
        return None
    return normalize(path) if path else None


def _is_socket_file(root: str, path: str) -> bool:
    """True if ``path`` (seen under ``root``) exists and is a Unix socket."""
    try:
        mode = os.stat(os.path.join(root, path.lstrip("/"))).st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode)


def _refuse_socket(
    requested: str,
    host_path: str | None,
    root: str,
    guard: SocketGuard,
    resolved: str | None = None,
    host_sockets: Iterable[str] = (),
) -> None:
    """Raise if mounting ``requested`` would hand a daemon socket to a stage.

    ``resolved`` is ``requested`` with symlinks resolved in this process: it
    is checked by identity; ``host_path`` (the daemon's source) by name.
    """
    guard.check(resolved or requested, shown=requested)
    if _is_socket_file(root, requested):
        raise DockerExecError(
            f"refusing to mount '{requested}' into a stage container: it is a "
            "Unix socket (a Docker socket gives root on the host); "
            "do not list sockets as stage paths"
        )
    sock = _host_path_exposes_socket(host_path, host_sockets) if host_path else None
    if sock:
        raise DockerExecError(
            f"refusing to mount '{requested}' into a stage container: on the "
            f"host it is or contains the daemon socket '{sock}', which gives "
            "root on the host; mount a narrower directory"
        )


def _bind(target: str, source: str, read_only: bool) -> Mount:
    return Mount(target=target, source=source, type="bind", read_only=read_only)


# --------------------------------------------------------------------------
# Translators
# --------------------------------------------------------------------------


class HostPaths(Protocol):
    """Maps a runner-side absolute path to the Mount a stage container needs."""

    def mount(self, path: str, *, read_only: bool = False) -> Mount:
        """A Mount whose target is ``path`` (normalised), backed by host data."""

    def describe(self) -> str:
        """One line for debug logs."""


class IdentityPaths:
    """Runner paths ARE host paths: DVC runs on the daemon's host."""

    def __init__(
        self,
        reason: str = "not in a container",
        *,
        root: str = "/",
        guard: SocketGuard | None = None,
        beside: bool = False,
    ):
        self.reason = reason
        # True: DVC is in a container, and the daemon runs in it too (found, not assumed)
        self.beside = beside
        self._root = root
        self._guard = guard or _default_guard(root)

    def mount(self, path: str, *, read_only: bool = False) -> Mount:
        path = normalize(path)
        source = _resolve(self._root, path)
        _refuse_socket(path, source, self._root, self._guard, source)
        return _bind(path, source, read_only)

    def describe(self) -> str:
        return f"identity ({self.reason})"


class HostRootPaths:
    """``docker.host_root`` override: swap the repo root prefix, nothing else.

    For setups where detection cannot work (remote daemon, daemon that hides
    the runner, DinD sidecar sharing a directory). Paths outside the repo are
    passed through unchanged.
    """

    def __init__(self, repo_root: str, host_root: str, *, root: str = "/", guard: SocketGuard | None = None):
        self.repo_root = normalize(repo_root)
        self.host_root = normalize(host_root)
        self._root = root
        self._guard = guard or _default_guard(root)

    def mount(self, path: str, *, read_only: bool = False) -> Mount:
        path = normalize(path)
        resolved = _resolve(self._root, path)
        if is_within(resolved, self.repo_root):
            rel = posixpath.relpath(resolved, self.repo_root)
            source = normalize(posixpath.join(self.host_root, rel))
        else:
            source = resolved
        _refuse_socket(path, source, self._root, self._guard, resolved)
        return _bind(path, source, read_only)

    def describe(self) -> str:
        return f"docker.host_root: {self.repo_root} -> {self.host_root} on the host"


class RunnerPaths:
    """DVC runs in a container of the daemon: translate via its mounts.

    ``mounts`` is ``inspect_container(id)["Mounts"]``: dicts with Type
    (bind/volume/tmpfs/...), Source (host path, "" for tmpfs), Destination,
    Name (volumes) and RW.
    """

    def __init__(
        self,
        container_id: str,
        mounts: Iterable[Mapping[str, Any]],
        *,
        root: str = "/",
        guard: SocketGuard | None = None,
    ):
        self.container_id = container_id
        self.mounts = [dict(m) for m in mounts]
        self._root = root
        sockets = [m for m in self.mounts if m.get("Destination") and self._is_socket_mount(m)]
        # the socket as the runner sees it (checked by identity) and its host path (by name)
        self._socket_dests = [normalize(m["Destination"]) for m in sockets]
        self._socket_sources = [m["Source"] for m in sockets if posixpath.isabs(m.get("Source") or "")]
        self._guard = guard or (SocketGuard(extra=lambda: self._socket_dests) if root == "/" else SocketGuard(()))

    def _find(self, path: str) -> Mapping[str, Any] | None:
        # Ancestors of one path are nested, so the longest matching
        # destination is the deepest (most specific) mount, as in the kernel.
        best: Mapping[str, Any] | None = None
        best_len = -1
        for m in self.mounts:
            dest = m.get("Destination")
            if not dest or not posixpath.isabs(dest):
                continue  # e.g. Windows npipe mounts
            dest = normalize(dest)
            if is_within(path, dest) and len(dest) > best_len:
                best, best_len = m, len(dest)
        return best

    def _is_socket_mount(self, m: Mapping[str, Any]) -> bool:
        if m.get("Type") != "bind":
            return False
        dest = normalize(m["Destination"])
        names = (posixpath.basename(dest), posixpath.basename(m.get("Source") or ""))
        return (
            any(n.endswith(".sock") for n in names)
            or dest in KNOWN_SOCKETS
            or dest == _endpoint_socket()
            or _is_socket_file(self._root, dest)
        )

    def mount(self, path: str, *, read_only: bool = False) -> Mount:
        requested = normalize(path)
        path = _resolve(self._root, requested)  # where the path really is, in the runner
        short = self.container_id[:12]
        m = self._find(path)
        if m is None:
            raise DockerExecError(
                f"'{path}' is inside the DVC container's own filesystem "
                f"(container {short}), which sibling stage containers cannot "
                "see; mount the project into the DVC container (e.g. "
                '`-v "$PWD:/workspace"` or a named volume) or set '
                "`dvc config docker.host_root HOST_PATH`"
            )
        dest = normalize(m["Destination"])
        if self._is_socket_mount(m):
            raise DockerExecError(
                f"refusing to mount '{path}' into a stage container: it is the "
                f"socket mounted at '{dest}' in the DVC container, and a Docker "
                "socket gives root on the host; remove it from the stage paths"
            )
        # Never give a stage more than the runner has: a read-only mount in
        # the runner stays read-only for the stage.
        ro = read_only or not m.get("RW", True)
        kind = m.get("Type")
        if kind == "bind":
            rel = posixpath.relpath(path, dest)
            source = normalize(posixpath.join(m["Source"], rel))
            _refuse_socket(requested, source, self._root, self._guard, path, self._socket_sources)
            return _bind(requested, source, ro)
        if kind == "volume" and m.get("Name"):
            # the whole volume is mounted: check all of it
            _refuse_socket(requested, None, self._root, self._guard, dest)
            # no_copy: never let Docker seed the volume from the stage image.
            return Mount(
                target=dest, source=m["Name"], type="volume", read_only=ro, no_copy=True
            )
        raise DockerExecError(
            f"'{path}' lies on a {kind or 'unknown'} mount at '{dest}' of the DVC "
            f"container (container {short}), which sibling stage containers "
            "cannot see; put it on a bind mount or a named volume instead"
        )

    def describe(self) -> str:
        return f"runner container {self.container_id[:12]}: {len(self.mounts)} mounts"


# --------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------


def _read(root: str, rel: str) -> str | None:
    try:
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def root_filesystem(mountinfo: str) -> tuple[str, str] | None:
    """(device, folder of it) mounted at ``/`` in a mount table, or None.

    Two processes with the same pair see the same files at the same paths
    (the root mount may be another namespace's copy: rootless dockerd has its
    own mount namespace over the same root). A container's root is its own
    overlay, another device. The last line wins: a later mount over ``/``
    hides the earlier ones.
    """
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            found = (fields[2], unescape_mountinfo(fields[3]))
    return found


def daemon_beside(socket_path: str, root: str = "/") -> tuple[str, str] | None:
    """(pid, program) of the daemon that answers at ``socket_path`` if it runs beside us, or None.

    Beside: a process of ours to see (our PID namespace), named like an engine,
    whose network namespace listens at that socket path (``/proc/<pid>/net/unix``,
    readable by any user, unlike its fds) and whose root filesystem is ours.
    Then it resolves bind sources on the files we see: no translation. In the
    socket pattern the daemon is not in our PID namespace, or (``--pid host``)
    its root is the host's, not our container's overlay.
    """
    proc = os.path.join(root, "proc")
    ours = root_filesystem(_read(root, "proc/self/mountinfo") or "")
    if ours is None:
        return None

    def spellings(path: str) -> set[str]:
        # /var/run/docker.sock and /run/docker.sock are one socket (with a test root: lexical only)
        return {normalize(path), normalize(os.path.realpath(path))} if root == "/" else {normalize(path)}

    wanted = spellings(socket_path)
    unconfirmed = []
    for pid, program in engine_processes(proc):
        if root_filesystem(_read(proc, f"{pid}/mountinfo") or "") != ours:
            continue
        listening = listening_sockets(os.path.join(proc, pid, "net", "unix")).items()
        bound = {inode for inode, path in listening if spellings(path) & wanted}
        if not bound:
            continue
        # net/unix is the network namespace's, shared by every process in it (containerd, and
        # rootlesskit's parent, sit in dockerd's): the one holding the socket is the daemon
        held = socket_inodes(proc, pid)
        if held is None:
            unconfirmed.append((pid, program))  # another user's fds: it may be the one
        elif held & bound:
            return pid, program
    # fds we may not read: a program that serves the API before its helpers
    unconfirmed.sort(key=lambda found: not API_DAEMONS.match(found[1]))
    return unconfirmed[0] if unconfirmed else None


def in_container(root: str = "/") -> bool:
    """Docker's ``/.dockerenv`` or Podman's ``/run/.containerenv`` exists.

    Only a hint: a machine can have /.dockerenv without being a container of
    the daemon we talk to (e.g. a VM image built from a container, or DinD).
    """
    return os.path.exists(os.path.join(root, ".dockerenv")) or os.path.exists(
        os.path.join(root, "run/.containerenv")
    )


def detect_host_paths(
    client: Any,
    *,
    repo_root: str,
    host_root: str | None = None,
    root: str = "/",
    hostname: str | None = None,
    endpoint: Endpoint | None = None,
) -> HostPaths:
    """Pick the translator for this process.

    ``client`` is a ``docker.DockerClient`` (only ``client.api.inspect_container``
    is used). ``root`` prefixes ``/.dockerenv`` and ``/proc`` files and
    ``hostname`` replaces ``socket.gethostname()``, for tests.

    Translation happens only if the daemon itself confirms that we are one of
    its containers; every other case is identity, because a wrong
    "translation" would silently mount the wrong host directories.

    ``endpoint``: the daemon ``client`` talks to, when the caller has it;
    its socket is refused like the ones ``sockets.sockets_in_use`` finds.
    """
    guard = None
    if endpoint is not None and endpoint.socket_path and root == "/":
        guard = SocketGuard(extra=lambda: [endpoint.socket_path])
    if host_root:
        if not posixpath.isabs(host_root):
            raise DockerExecError(
                f"docker.host_root '{host_root}' is not an absolute path; set it "
                "to the host path of the repo root, e.g. "
                "`dvc config docker.host_root /home/me/project`"
            )
        result: HostPaths = HostRootPaths(repo_root, host_root, root=root, guard=guard)
        logger.debug("docker paths: %s", result.describe())
        return result

    if not in_container(root):
        return IdentityPaths("not in a container", root=root, guard=guard)

    candidates: list[tuple[str, str]] = []
    mountinfo = _read(root, "proc/self/mountinfo")
    if mountinfo and (cid := container_id_from_mountinfo(mountinfo)):
        candidates.append(("/proc/self/mountinfo", cid))
    cgroup = _read(root, "proc/self/cgroup")
    if cgroup and (cid := container_id_from_cgroup(cgroup)):
        candidates.append(("/proc/self/cgroup", cid))
    name = socket.gethostname() if hostname is None else hostname
    if _HOSTNAME_ID.match(name):
        candidates.append(("hostname", name))

    tried: set[str] = set()
    for origin, cid in candidates:
        if cid in tried:
            continue
        tried.add(cid)
        try:
            info = client.api.inspect_container(cid)
        except docker.errors.NotFound:
            logger.debug("docker paths: %s id %s unknown to the daemon", origin, cid)
            continue
        except docker.errors.APIError as exc:
            if origin == "hostname":
                # Weakest evidence (could be an ambiguous prefix or a hex
                # --hostname): not worth failing the run for.
                logger.debug("docker paths: hostname %s: %s", cid, exc)
                continue
            raise DockerExecError(
                f"cannot inspect the DVC container '{cid}' to translate paths "
                f"for the stage containers ({exc.explanation or exc}); allow "
                "container inspection or set `dvc config docker.host_root HOST_PATH`"
            ) from exc
        full_id = info.get("Id") or ""
        # A short hostname is a prefix lookup: insist the daemon's answer is
        # really that id and not some other match.
        if not full_id.startswith(cid):
            logger.debug("docker paths: %s id %s resolved to %s", origin, cid, full_id)
            continue
        result = RunnerPaths(full_id, info.get("Mounts") or [], root=root)
        logger.debug("docker paths: %s (id from %s)", result.describe(), origin)
        return result

    sock = endpoint.socket_path if endpoint is not None else _endpoint_socket()
    beside = daemon_beside(sock, root) if sock else None
    if beside:
        pid, program = beside
        result = IdentityPaths(
            f"the daemon ({program}, pid {pid}) runs beside DVC, on the same filesystem",
            root=root, guard=guard, beside=True,
        )
        logger.debug("docker paths: %s", result.describe())
        return result
    reason = (
        "container marker present but the daemon does not know "
        + (", ".join(sorted(tried)) if tried else "any id of ours")
    )
    logger.debug("docker paths: identity: %s", reason)
    return IdentityPaths(reason, root=root, guard=guard)

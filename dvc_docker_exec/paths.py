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
  (``spec.dedupe_mounts``);
* on the runner's own filesystem  -> error (the host daemon cannot reach it);
* not in a container              -> identity bind mount;
* ``docker.host_root`` configured -> repo root prefix swap, no detection.

Paths are normalised with ``posixpath.normpath`` but never ``realpath``-ed
here: symlinks must be resolved (or not) by the caller, in the runner, where
they mean something.
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

from .endpoint import Endpoint, discover
from .errors import DockerExecError

# Under "dvc." so that `dvc -v` (which only configures the "dvc" logger tree)
# shows these messages.
logger = logging.getLogger("dvc." + __name__)

# Paths of daemon sockets on a host. A stage must never get one of these (or a
# directory containing one): access to the socket is root on the host.
KNOWN_SOCKETS: tuple[str, ...] = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
)

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
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


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


def _unescape_mountinfo(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def container_id_from_mountinfo(text: str) -> str | None:
    """Our container id from ``/proc/self/mountinfo``, or None.

    Works on cgroup v1 and v2 and with a private cgroup namespace (where
    ``/proc/self/cgroup`` is just ``0::/``), which is why it is tried first.
    Fields: ``id parent major:minor root mountpoint ...``; ``root`` is the
    source path inside its filesystem.
    """
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5 or _unescape_mountinfo(fields[4]) not in _ID_FILES:
            continue
        match = _MOUNTINFO_ID.search(_unescape_mountinfo(fields[3]))
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


def daemon_sockets(endpoint: Endpoint | None = None) -> tuple[str, ...]:
    """KNOWN_SOCKETS plus the socket of the endpoint actually in use.

    Why: a rootless daemon (``/run/user/UID/docker.sock``), a Podman service
    or a Docker context may listen anywhere; refusing only the usual paths
    would hand that socket to a stage (issue 9, item 1). Its resolved path
    too, when it goes through a symlink (``/var/run`` -> ``/run``).
    """
    endpoint = endpoint if endpoint is not None else discover()
    extra: list[str] = []
    if endpoint.socket_path:
        extra.append(normalize(endpoint.socket_path))
        extra.append(normalize(os.path.realpath(endpoint.socket_path)))
    return tuple(dict.fromkeys([*KNOWN_SOCKETS, *extra]))


def _host_path_exposes_socket(host_path: str, sockets: Iterable[str] = KNOWN_SOCKETS) -> str | None:
    """The daemon socket that ``host_path`` is or contains, if any."""
    for sock in sockets:
        if is_within(sock, host_path):
            return sock
    return None


def _is_socket_file(root: str, path: str) -> bool:
    """True if ``path`` (seen under ``root``) exists and is a Unix socket."""
    try:
        mode = os.stat(os.path.join(root, path.lstrip("/"))).st_mode
    except OSError:
        return False
    return stat.S_ISSOCK(mode)


def _refuse_socket(
    requested: str, host_path: str | None, root: str, sockets: Iterable[str] = KNOWN_SOCKETS
) -> None:
    """Raise if mounting ``requested`` would hand a daemon socket to a stage."""
    if _is_socket_file(root, requested):
        raise DockerExecError(
            f"refusing to mount '{requested}' into a stage container: it is a "
            "Unix socket (a Docker socket gives root on the host); "
            "do not list sockets as stage paths"
        )
    sock = _host_path_exposes_socket(host_path, sockets) if host_path else None
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

    def __init__(self, reason: str = "not in a container", *, root: str = "/", sockets: Iterable[str] = KNOWN_SOCKETS):
        self.reason = reason
        self._root = root
        self._sockets = tuple(sockets)

    def mount(self, path: str, *, read_only: bool = False) -> Mount:
        path = normalize(path)
        _refuse_socket(path, path, self._root, self._sockets)
        return _bind(path, path, read_only)

    def describe(self) -> str:
        return f"identity ({self.reason})"


class HostRootPaths:
    """``docker.host_root`` override: swap the repo root prefix, nothing else.

    For setups where detection cannot work (remote daemon, daemon that hides
    the runner, DinD sidecar sharing a directory). Paths outside the repo are
    passed through unchanged.
    """

    def __init__(self, repo_root: str, host_root: str, *, root: str = "/", sockets: Iterable[str] = KNOWN_SOCKETS):
        self.repo_root = normalize(repo_root)
        self.host_root = normalize(host_root)
        self._root = root
        self._sockets = tuple(sockets)

    def mount(self, path: str, *, read_only: bool = False) -> Mount:
        path = normalize(path)
        if is_within(path, self.repo_root):
            rel = posixpath.relpath(path, self.repo_root)
            source = normalize(posixpath.join(self.host_root, rel))
        else:
            source = path
        _refuse_socket(path, source, self._root, self._sockets)
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
        sockets: Iterable[str] = KNOWN_SOCKETS,
    ):
        self.container_id = container_id
        self.mounts = [dict(m) for m in mounts]
        self._root = root
        # runner-side socket paths (the endpoint's among them) ...
        self._runner_sockets = tuple(sockets)
        # ... and, on the host, whatever backs them in the runner
        host_sockets = [
            normalize(m["Source"])
            for m in self.mounts
            if m.get("Type") == "bind" and m.get("Source") and posixpath.isabs(m.get("Destination") or "")
            and normalize(m["Destination"]) in self._runner_sockets
        ]
        self._sockets = tuple(dict.fromkeys([*self._runner_sockets, *host_sockets]))

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
            or dest in self._runner_sockets
            or _is_socket_file(self._root, dest)
        )

    def mount(self, path: str, *, read_only: bool = False) -> Mount:
        path = normalize(path)
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
            _refuse_socket(path, source, self._root, self._sockets)
            return _bind(path, source, ro)
        if kind == "volume" and m.get("Name"):
            _refuse_socket(path, None, self._root, self._sockets)
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

    ``endpoint`` is the daemon ``client`` talks to (default: ``discover()``):
    its socket is refused as a stage path like the well-known ones.
    """
    sockets = daemon_sockets(endpoint)
    if host_root:
        if not posixpath.isabs(host_root):
            raise DockerExecError(
                f"docker.host_root '{host_root}' is not an absolute path; set it "
                "to the host path of the repo root, e.g. "
                "`dvc config docker.host_root /home/me/project`"
            )
        result: HostPaths = HostRootPaths(repo_root, host_root, root=root, sockets=sockets)
        logger.debug("docker paths: %s", result.describe())
        return result

    if not in_container(root):
        return IdentityPaths("not in a container", root=root, sockets=sockets)

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
        result = RunnerPaths(full_id, info.get("Mounts") or [], root=root, sockets=sockets)
        logger.debug("docker paths: %s (id from %s)", result.describe(), origin)
        return result

    reason = (
        "container marker present but the daemon does not know "
        + (", ".join(sorted(tried)) if tried else "any id of ours")
    )
    logger.debug("docker paths: identity: %s", reason)
    return IdentityPaths(reason, root=root, sockets=sockets)

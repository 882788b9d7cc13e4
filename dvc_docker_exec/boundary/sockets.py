"""Refuse mount sources that would hand a stage a daemon socket: by identity, not by name.

The daemon resolves a bind source on its host (symlinks, ``/proc/<pid>/root``,
``..``) and mounts it recursively, submounts included. A list of socket paths
compared as strings misses all of that (issue 7, hole 2). So a source is
judged by what ``stat`` finds there, as ``(st_dev, st_ino)``:

* it IS a daemon socket: the same inode (also a hard link or a bind mount of it);
* it CONTAINS one: it is one of the directories above the socket's real path;
* a mount point below it is either of those (the daemon's bind is recursive);
* for a directory D and each trailing part R of the socket's path
  (``docker.sock``, ``run/docker.sock``, ...), ``D/R`` is the socket and lies
  inside D: this also finds it where we cannot see the host's directories
  above the socket (the socket pattern, where only the socket file is mounted).

The sockets are those of the daemons in use: the default socket, the endpoint
actually configured (``endpoint.discover()``: DOCKER_HOST, a Docker context),
the well-known sockets of other engines, and every socket a container engine
or runtime *listens on* (``engine_sockets``: ``/proc/net/unix`` matched with
the engines' processes and state folders, so Docker's own containerd under
``/run/docker/containerd``, buildkitd or CRI-O are found without a list of
their paths; issue 16, P5). They are stat-ed again for every container
(``one_scan``): a restarted daemon has a new inode.
"""

from __future__ import annotations

import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple

from dvc_docker_exec.errors import DockerExecError

Ident = Tuple[int, int]

# Sockets of engines that give root (or the engine user's rights) to whoever can call them.
WELL_KNOWN: Tuple[str, ...] = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/podman/podman.sock",
    "/var/run/podman/podman.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
)


@dataclass(frozen=True)
class DaemonSocket:
    path: str  # as named (DOCKER_HOST, the default, ...), for messages
    ident: Ident
    above: FrozenSet[Ident]  # every directory from the socket's real parent up to /
    tails: Tuple[str, ...]  # "docker.sock", "run/docker.sock", "var/run/docker.sock", ...


def _ident(st: os.stat_result) -> Ident:
    return (st.st_dev, st.st_ino)


def _within(path: str, parent: str) -> bool:
    return parent == "/" or path == parent or path.startswith(parent.rstrip("/") + "/")


def daemon_socket(path: str) -> Optional[DaemonSocket]:
    """The socket at `path` (symlinks followed), or None if there is no socket there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        return None
    real = os.path.realpath(path)
    above = set()
    folder = real
    while folder != "/":
        folder = os.path.dirname(folder)
        try:
            above.add(_ident(os.stat(folder)))
        except OSError:
            pass
    tails = set()
    for spelled in (os.path.normpath(path), real):
        parts = spelled.strip("/").split("/")
        tails.update("/".join(parts[i:]) for i in range(len(parts)))
    return DaemonSocket(path, _ident(st), frozenset(above), tuple(sorted(tails, key=len)))


def sockets_in_use(environ: Optional[dict] = None) -> List[str]:
    """Paths of daemon sockets in use: the default, the configured endpoint's, other engines'."""
    from dvc_docker_exec.api.endpoint import DEFAULT_URL, discover

    env = os.environ if environ is None else environ
    paths = [DEFAULT_URL[len("unix://") :]]
    try:
        configured = discover(env).socket_path
    except DockerExecError:  # a broken context: the run fails on connect, with that message
        configured = None
    if configured:
        paths.append(configured)
    paths += WELL_KNOWN
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    paths += [os.path.join(runtime, "docker.sock"), os.path.join(runtime, "podman", "podman.sock")]
    if environ is None:
        paths += engine_sockets()
    return list(dict.fromkeys(paths))


# What container engines and runtimes are called, as processes (/proc/<pid>/comm, 15 characters at most)
ENGINE_PROGRAMS = re.compile(
    r"(dockerd|containerd|containerd-shim.*|buildkitd|podman|conmon|crio|cri-dockerd|rootlesskit|"
    r"dockerd-rootless.*|k3s|k3s-server|kubelet|lxd|incusd|nerdctl|runc|crun)\Z"
)
# Of those, the ones that serve the Docker API themselves (the rest are their helpers and runtimes)
API_DAEMONS = re.compile(r"(dockerd|dockerd-rootless.*|podman)\Z")
# Where they keep their state: a listening socket below one of these is an engine's
# (found for processes whose fds we may not read: root's daemons seen by a user)
ENGINE_FOLDER = re.compile(
    r"/(?:var/)?run/(?:docker|containerd|podman|crio|buildkit|k3s|libpod|user/\d+/(?:docker|containerd|podman|buildkit|"
    r"dockerd-rootless|libpod))(?:[./-]|\Z)|/var/lib/(?:docker|containerd|containers|kubelet)/"
)
_engine_sockets: Dict[str, List[str]] = {}  # per process: the paths found (their inodes are stat-ed per check)


def engine_sockets(net_unix: str = "/proc/net/unix", proc: str = "/proc") -> List[str]:
    """Paths of the Unix sockets container engines and runtimes listen on, found from what is listening.

    Why not a list: Docker Engine runs its own containerd at
    /run/docker/containerd/containerd.sock (plus .ttrpc and a debug socket),
    and each engine has more (buildkitd, metrics, plugins). A socket counts
    when a process named like an engine holds it (its fds, where readable) or
    when it lies in an engine's state folder. Read once per process.
    """
    key = f"{net_unix}:{proc}"
    if key not in _engine_sockets:
        listening = listening_sockets(net_unix)
        held = _held_by_engines(proc) if listening else set()
        _engine_sockets[key] = sorted(
            path for inode, path in listening.items() if inode in held or ENGINE_FOLDER.match(path)
        )
    return _engine_sockets[key]


def listening_sockets(net_unix: str = "/proc/net/unix") -> Dict[int, str]:
    """inode -> path of the listening Unix sockets with a path (this network namespace's)."""
    found: Dict[int, str] = {}
    try:
        with open(net_unix, encoding="utf-8", errors="replace") as fobj:
            next(fobj, None)  # the header
            for line in fobj:
                fields = line.split(None, 7)
                # Num RefCount Protocol Flags Type St Inode Path; flag __SO_ACCEPTCON (0x10000): listening
                if len(fields) == 8 and int(fields[3], 16) & 0x10000 and fields[7].startswith("/"):
                    found[int(fields[6])] = fields[7].rstrip("\n")
    except (OSError, ValueError):
        pass
    return found


def engine_processes(proc: str = "/proc") -> Iterator[Tuple[str, str]]:
    """(pid, program) of the processes in our PID namespace named like a container engine or runtime."""
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return
    for pid in pids:
        try:
            with open(os.path.join(proc, pid, "comm"), encoding="utf-8", errors="replace") as fobj:
                program = fobj.read().strip()
        except OSError:
            continue  # gone
        if ENGINE_PROGRAMS.match(program):
            yield pid, program


def socket_inodes(proc: str, pid: str) -> Optional[set]:
    """Inodes of the sockets process `pid` holds open, or None when its fds are not ours to read (or it is gone)."""
    fd_dir = os.path.join(proc, pid, "fd")
    inodes = set()
    try:
        for fd in os.listdir(fd_dir):
            link = os.readlink(os.path.join(fd_dir, fd))
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    except (OSError, ValueError):
        return None
    return inodes


def _held_by_engines(proc: str) -> set:
    """Socket inodes open in processes named like an engine (those whose fds we may read)."""
    inodes = set()
    for pid, _ in engine_processes(proc):
        # None: gone, or not ours to read: its state folder still tells
        inodes |= socket_inodes(proc, pid) or set()
    return inodes


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def unescape_mountinfo(field: str) -> str:
    """The kernel escapes space, tab, newline and backslash in mountinfo as \\ooo."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


_scan: Optional[dict] = None  # inside `one_scan`: what was found once for this container


@contextmanager
def one_scan() -> Iterator[None]:
    """Stat the daemon sockets and read the mount table once for all the mounts of one container.

    Why: a container has a dozen mounts; finding the sockets for each one
    cost milliseconds apiece. Per container (not per process): a restarted
    daemon's new socket is still seen at the next command.
    """
    global _scan
    outer, _scan = _scan, ({} if _scan is None else _scan)
    try:
        yield
    finally:
        _scan = outer


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> List[str]:
    key = ("mountinfo", mountinfo)
    if _scan is not None and key in _scan:
        return _scan[key]
    found = _mount_points(mountinfo)
    if _scan is not None:
        _scan[key] = found
    return found


def _mount_points(mountinfo: str) -> List[str]:
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as fobj:
            lines = fobj.read().splitlines()
    except OSError:
        return []
    return [unescape_mountinfo(line.split()[4]) for line in lines if len(line.split()) > 4]


class SocketGuard:
    """Finds whether a path (as this process sees it) is or contains a daemon socket."""

    def __init__(
        self,
        socket_paths: Optional[Sequence[str]] = None,
        mountinfo: str = "/proc/self/mountinfo",
        extra: Callable[[], Iterable[str]] = tuple,
    ):
        self._socket_paths = socket_paths  # None: sockets_in_use() at each check
        self._mountinfo = mountinfo
        self._extra = extra

    def sockets(self) -> List[DaemonSocket]:
        key = ("sockets", id(self))
        if _scan is not None and key in _scan:
            return _scan[key]
        paths = list(sockets_in_use() if self._socket_paths is None else self._socket_paths)
        found = (daemon_socket(path) for path in [*paths, *self._extra()])
        unique = {}
        for sock in found:
            if sock is not None:
                unique.setdefault(sock.ident, sock)
        result = list(unique.values())
        if _scan is not None:
            _scan[key] = result
        return result

    def exposure(self, path: str) -> Optional[str]:
        """Why mounting `path` exposes a daemon socket ("is ..."/"contains ..."), or None."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None  # nothing there to mount
        except OSError as exc:
            # the daemon (root) may resolve what we cannot: do not guess
            return f"cannot be checked for a daemon socket ({exc.strerror})"
        sockets = self.sockets()
        here = _ident(st)
        for sock in sockets:
            if here == sock.ident:
                return f"is the daemon socket '{sock.path}'"
            if here in sock.above:
                return f"contains the daemon socket '{sock.path}'"
        if not stat.S_ISDIR(st.st_mode) or not sockets:
            return None
        real = os.path.realpath(path)
        # in one scan, a folder inside a folder found clean is clean (its mounts below were looked at too):
        # the covers of the plan lie inside the mounts already checked
        clean = _scan.setdefault(("clean", id(self)), []) if _scan is not None else []
        if any(_within(real, folder) for folder in clean):
            return None
        for top in [real, *(m for m in mount_points(self._mountinfo) if m != real and _within(m, real))]:
            why = self._inside(top, real, sockets)
            if why:
                return why
        clean.append(real)
        return None

    @staticmethod
    def _inside(top: str, real: str, sockets: List[DaemonSocket]) -> Optional[str]:
        for sock in sockets:
            if top != real:
                try:
                    sub = _ident(os.stat(top))
                except OSError:
                    continue
                if sub == sock.ident or sub in sock.above:
                    return f"contains the daemon socket '{sock.path}' (through the mount at '{top}')"
            for tail in sock.tails:
                candidate = os.path.join(top, tail)
                try:
                    same = _ident(os.stat(candidate)) == sock.ident
                except OSError:
                    continue
                # a symlink that leaves the folder resolves in the container, not on the host
                if same and _within(os.path.realpath(candidate), real):
                    return f"contains the daemon socket '{sock.path}' (as '{candidate}')"
        return None

    def check(self, path: str, shown: Optional[str] = None) -> None:
        why = self.exposure(path)
        if why:
            raise DockerExecError(
                f"refusing to mount '{shown or path}' into a stage container: it {why} (after resolving "
                "symlinks, as the daemon will), and a daemon socket gives root on the host; mount a narrower "
                "directory"
            )


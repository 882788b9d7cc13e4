"""The lease: a stage container lives only as long as the dvc process that started it.

Why: a container is not in dvc's process group. When dvc dies by SIGKILL
(`dvc queue kill --force`, the OOM killer, `kill -9`) nothing of dvc runs to
stop it, and it went on writing into the next run's outputs (issue 18). The
daemon connection cannot tell: a socket proxy that cuts idle connections
looks the same as a dead dvc. And no container may hold the socket to watch
(no Ryuk-style sidecar). So the *container* watches *dvc*, through the kernel:

* **fifo** (one engine, same kernel): dvc holds the write end of a named pipe
  open (``O_CLOEXEC``: its children do not inherit it) for its whole life.
  A watcher in the container reads the pipe; ``read`` returns end-of-file
  only when no writer is left, i.e. when dvc is gone, whatever killed it, and
  independent of any API connection. Then the watcher stops every process of
  the container (TERM, KILL after 1 s), the container exits and the daemon's
  AutoRemove removes it (with its anonymous volumes).
* **beat** (Swarm: the task may run on another machine, a pipe does not cross
  it): dvc rewrites a counter in a file every ``BEAT_PERIOD`` seconds; the
  watcher stops the stage when the counter has not changed for ``BEAT_MISSES``
  readings in a row (20 s), counted on its own clock (no clock skew).

The lease lives in ``.dvc/tmp/docker-exec/<pid>-lease-<hex>/`` inside the
repository, which every stage container already shows at the same path (that
is also what makes it work in the socket pattern): **no mount is added for
it**. That folder is read-only in the stage (stage/mounts.py protection_rules), so a
stage cannot remove the pipe; the watcher opened it before the command
started anyway. The folder is locked (flock) while dvc lives, so the next run
reaps the folders of dead processes like the config copies.

The watcher in the container is types/lease.py (pure: part of the container spec).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

# in a repo's .dvc/tmp, shared with the config copies; a lease folder's name carries LEASE_TAG
from dvc_docker_exec.boundary.private_files import LEASE_TAG, PRIVATE_DIR as FOLDER, LockedFolder
from dvc_docker_exec.types.lease import BEAT_PERIOD, LeaseRef

class _Holder:
    """This process's end of one lease folder: the pipe's write end, and the beat when asked for."""

    def __init__(self, parent: str):
        self._locked = LockedFolder(parent, LEASE_TAG.lstrip("-"))
        self.folder = self._locked.path
        # any container user may open the pipe for reading and reach it (the
        # name is random; nobody but us may write): docker.user, rootless
        # subordinate ids. Reading it gives nothing: nothing is ever written.
        os.chmod(self.folder, 0o711)
        self.fifo = os.path.join(self.folder, "fifo")
        os.mkfifo(self.fifo, 0o600)
        os.chmod(self.fifo, 0o644)
        # O_RDWR: never blocks waiting for a reader; O_CLOEXEC: a child of dvc
        # (git, a host stage) must not keep the lease alive after dvc died
        self.fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_CLOEXEC)
        self.beat = os.path.join(self.folder, "beat")
        self._beating: Optional[threading.Thread] = None
        atexit.register(self.release)

    def ref(self, kind: str) -> LeaseRef:
        if kind == "beat":
            self._start_beat()
            return LeaseRef("beat", self.beat)
        return LeaseRef("fifo", self.fifo)

    def _start_beat(self) -> None:
        if self._beating is not None:
            return
        self.renew()  # the file exists before the first task reads it
        self._beating = threading.Thread(target=self._beat, name="dvc-docker-exec-lease", daemon=True)
        self._beating.start()

    def renew(self, count: int = 0) -> None:
        # a new file renamed over the old one: a reader never sees it half-written
        tmp = f"{self.beat}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{os.getpid()}-{count}-{time.time():.0f}\n".encode())
        finally:
            os.close(fd)
        os.rename(tmp, self.beat)

    def _beat(self) -> None:
        count = 0
        while True:
            time.sleep(BEAT_PERIOD)
            count += 1
            try:
                self.renew(count)
            except OSError:  # the folder went away (an `exp run --temp` copy removed): nothing left to renew
                return

    def release(self) -> None:
        try:
            os.close(self.fifo_fd)
        except OSError:
            pass
        self._locked.remove()


_holders: Dict[str, _Holder] = {}


def hold(parent: str, kind: str = "fifo") -> LeaseRef:
    """This process's lease under `parent` (a repo's .dvc/tmp/docker-exec), made on first use, held until exit."""
    key = os.path.normpath(parent)
    holder = _holders.get(key)
    if holder is None or not os.path.exists(holder.fifo):  # first use, or its folder was removed under us
        if holder is not None:
            holder.release()
        holder = _holders[key] = _Holder(key)
    return holder.ref(kind)


def stale_folders(parents: Sequence[str]) -> List[str]:
    """Lease folders under `parents` whose dvc process is gone (unlocked): a run was killed since the last reap."""
    found = []
    for parent in parents:
        try:
            names = [n for n in os.listdir(parent) if "-lease-" in n and not n.startswith(".")]
        except OSError:
            continue
        for name in names:
            path = os.path.join(parent, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only tried: released at once
                found.append(path)
            except OSError:
                pass  # a live dvc holds it
            finally:
                os.close(fd)
    return found


def lease_parents(tmp_dir: str) -> List[str]:
    """Where this repo's dvc processes keep their leases: its .dvc/tmp, and those of its experiments' temp copies."""
    import glob

    return [os.path.join(tmp_dir, FOLDER), *glob.glob(os.path.join(glob.escape(tmp_dir), "exps", "*", ".dvc", "tmp", FOLDER))]


def reap(folders: Sequence[str]) -> None:
    """Remove lease folders found stale, once the containers of their dead processes were dealt with."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def second_wall(client: Any, home: str, kind: str) -> None:
    """Nothing of a killed run of this project may run alongside this stage: remove its containers first.

    Asks the daemon only when a dvc process of this project died since the
    last check (its lease folder is left unlocked), so a stage pays nothing
    for it otherwise; those folders are reaped once their containers were
    dealt with. The project's experiments' temp copies count as the project.
    """
    from dvc_docker_exec.backends.containers import clear_orphans

    stale = stale_folders(lease_parents(os.path.join(home, ".dvc", "tmp")))
    if stale:
        clear_orphans(client, home, kind)
        reap(stale)


def hold_in(home: str, kind: str) -> LeaseRef:
    """This process's lease in the project's .dvc/tmp/docker-exec: its containers stop when dvc is gone.

    No mount is added for it: the project is mounted at the same path in
    every stage container (the parent project too, for experiments' temp
    copies), and that folder is read-only there (stage/mounts.py protection_rules).
    """
    return hold(os.path.join(home, ".dvc", "tmp", FOLDER), kind)

"""The plugin's own files: written so that a stage cannot redirect them (issue 16, P6).

Everything the plugin writes on the host (the config copies mounted over
.dvc/config; dvc.lock, where the image is recorded, DVC writes itself) is
created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`, under a random name) in a
private folder, then renamed over its target. A
rename replaces a symlink at the target instead of following it, and an
exclusive create fails on anything planted at the name, so a link, a FIFO or
a file the stage left behind is never written through.

Where the private folder is: `.dvc/tmp/docker-exec/<pid>-<random>` (mode 700,
flock-ed while in use, reaped when its process died). Why there and not in
the lock folder of runner.lock_folder (XDG_RUNTIME_DIR or /tmp): a rename
only works within one filesystem, and /tmp or /run/user rarely share the
repository's; the config copies must moreover lie inside the repository so
that the socket pattern can translate their paths for the host's daemon. No
stage can reach that folder: stage/mounts.py protection_rules mounts
`.dvc/tmp/docker-exec` read-only over every mount of the repository (and of
the parent repo in `exp run --temp`), and the folder is made and opened
without following links. When the target lies on another filesystem than
the private folder (a dvc.yaml in a separately mounted subfolder) the
temporary file is made next to the target instead, under a random name, and
the rename is verified: the target must afterwards be the very inode written.

Pure stdlib (provenance, which imports neither dvc nor docker, uses it).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import sys
from contextlib import contextmanager
from typing import Iterator, Optional

logger = logging.getLogger(f"dvc.{__name__}")

PRIVATE_DIR = "docker-exec"  # in .dvc/tmp: one private folder per running dvc process
LEASE_TAG = "-lease-"  # in the name of a lease folder (lease.py) under PRIVATE_DIR

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePathError(OSError):
    """A path the plugin writes or reads for itself is a link, a special file or someone else's."""


def open_own_folder(path: str) -> int:
    """An fd of `path`, made (mode 711) if absent: a real folder of this user that others cannot write.

    Never follows a symlink at `path`: a stage that replaced the folder by a
    link to elsewhere gets a refusal, not our files written (or removed) there.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        # 711, not 700: a stage's container user may be another uid (docker.user, rootless subordinate
        # ids) and must reach its lease's pipe through this folder; it cannot list it (random names
        # below), and what it could read is in mode-700 folders (the config copies)
        os.mkdir(path, 0o711)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise UnsafePathError(f"'{path}' is not a folder ({_kind(path)}); a stage may have planted it: inspect and remove it") from exc
    info = os.fstat(fd)
    if info.st_uid != os.getuid():
        os.close(fd)
        raise UnsafePathError(f"'{path}' is owned by uid {info.st_uid}, not by you: inspect and remove it")
    # ours but open to others (made under umask 0, or chmod-ed): closed again. What others
    # may have put in it is never used: our files go into fresh mode-700 folders of random names
    open_to_others = info.st_mode & 0o002 or (info.st_mode & 0o020 and info.st_gid != os.getgid())
    if open_to_others:
        os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~0o022)
    return fd


def _kind(path: str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return exc.strerror or "unreadable"
    if stat.S_ISLNK(mode):
        return f"a symlink to {os.readlink(path)}"
    return "a special file" if not stat.S_ISREG(mode) else "a file"


class LockedFolder:
    """A fresh mode-700 folder `<pid>-<tag><hex>` under `parent` (a folder of ours: open_own_folder), flock-ed while held.

    Made under a name the reapers ignore (``.new-*``), locked, then renamed: it
    is never seen unlocked while its process lives, so a folder found unlocked
    belongs to a dead process. Made, opened and removed relative to the
    verified parent: no symlink is followed (P6). The config copies
    (private_folder) and the lease (lease.py) both live in one.
    """

    def __init__(self, parent: str, tag: str = ""):
        self.parent = parent
        self._parent_fd = open_own_folder(parent)
        staging = f".new-{os.getpid()}-{os.urandom(4).hex()}"
        self.fd = -1
        try:
            os.mkdir(staging, 0o700, dir_fd=self._parent_fd)
            self.fd = os.open(staging, _DIR_FLAGS, dir_fd=self._parent_fd)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            self.name = f"{os.getpid()}-{tag}{os.urandom(4).hex()}"
            os.rename(staging, self.name, src_dir_fd=self._parent_fd, dst_dir_fd=self._parent_fd)
        except BaseException:
            if self.fd >= 0:
                os.close(self.fd)
            _remove_tree(self._parent_fd, parent, staging)
            os.close(self._parent_fd)
            raise
        self.path = os.path.join(parent, self.name)

    def remove(self) -> None:
        """Removed while still locked, then unlocked; a second call does nothing."""
        if self._parent_fd < 0:
            return
        try:
            _remove_tree(self._parent_fd, self.parent, self.name)
        finally:
            os.close(self.fd)
            os.close(self._parent_fd)
            self._parent_fd = -1


@contextmanager
def private_folder(parent: str) -> Iterator[str]:
    """A fresh mode-700 folder under `parent`, locked while in use, removed at the end."""
    folder = LockedFolder(parent)
    try:
        yield folder.path
    finally:
        folder.remove()


def _remove_tree(parent_fd: int, parent: str, name: str) -> None:
    try:
        if sys.version_info >= (3, 11):
            shutil.rmtree(name, dir_fd=parent_fd)  # relative to the folder we verified
        else:
            shutil.rmtree(os.path.join(parent, name))  # fd-based inside too: links in it are not followed
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.debug("could not remove %s: %s", name, exc)


def reap_stale_overlays(parent: str) -> None:
    """Remove the private folders of dvc processes that died (SIGKILL) before their cleanup."""
    try:
        parent_fd = os.open(parent, _DIR_FLAGS)
    except OSError:
        return  # absent, or not a real folder: nothing of ours to reap (and never through a link)
    try:
        for name in os.listdir(parent_fd):
            if name.startswith(".") or LEASE_TAG in name:
                continue  # a dead process's lease is reaped by the second wall, after its containers
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            except OSError:
                continue  # not a folder (or someone else's): leave it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # a live process holds it
            try:
                logger.debug("removing private files left by a dead process: %s", os.path.join(parent, name))
                _remove_tree(parent_fd, parent, name)
            finally:
                os.close(fd)
    finally:
        os.close(parent_fd)


def read_own_file(path: str) -> Optional[bytes]:
    """The content of a file the plugin wrote, None when absent; never through a link or from a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnsafePathError(f"'{path}' is {_kind(path)}, not a file dvc-docker-exec wrote; a stage may have planted it: inspect and remove it") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePathError(f"'{path}' is {_kind(path)}, not a file dvc-docker-exec wrote; a stage may have planted it: inspect and remove it")
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def replace_file(path: str, data: bytes, staging: Optional[str] = None, mode: int = 0o666) -> None:
    """Write `data` to a fresh file and rename it over `path` (a link at `path` is replaced, not followed).

    `staging`: the private folder's parent (`.dvc/tmp/docker-exec`) to write
    the temporary file in; next to `path` when None or on another filesystem.
    `mode` is filtered by the umask, as for `open(path, "w")`.
    """
    folder, name = os.path.split(os.path.abspath(path))
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with _temp_folder(staging, dir_fd) as tmp_fd:
            tmp = f".{name}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=tmp_fd)
            try:
                with os.fdopen(fd, "wb", closefd=False) as fobj:
                    fobj.write(data)
                ours = os.fstat(fd)
            finally:
                os.close(fd)
            try:
                os.replace(tmp, name, src_dir_fd=tmp_fd, dst_dir_fd=dir_fd)
            except BaseException:
                _unlink(tmp, tmp_fd)
                raise
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) != (ours.st_dev, ours.st_ino):
            raise UnsafePathError(f"'{path}' was replaced by another process while dvc-docker-exec wrote it: inspect it")
    finally:
        os.close(dir_fd)


@contextmanager
def _temp_folder(staging: Optional[str], target_fd: int) -> Iterator[int]:
    """An fd of the folder to make the temporary file in: private when on the target's filesystem."""
    if staging is None:
        yield target_fd
        return
    with private_folder(staging) as folder:
        fd = os.open(folder, _DIR_FLAGS)
        try:
            # rename(2) cannot cross filesystems: then the target's own folder, verified after the rename
            yield fd if os.fstat(fd).st_dev == os.fstat(target_fd).st_dev else target_fd
        finally:
            os.close(fd)


def _unlink(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


"""Tamper evidence (issue 16, P4): what later host dvc/git processes read did not change during a stage.

The read-only covers (stage/mounts.py protection_rules) are the first wall; this is
the second. Before each container the identity of every watched path is
recorded; after it exits the same paths are looked at again. Any difference
(a `.git` renamed away and copied back, a new `config.local`, a planted hook,
a new `commondir`) fails the stage before DVC records anything.

Pure: no dvc, no docker. Callers pass the paths (today dvc_glue derives them
from protected_paths and the user's config locations; a mount plan may pass
its own list).

What is recorded for one path (`Identity`): its kind, device, inode, mode and
owner; for a regular file also size, mtime, ctime and, when small, a hash (a
copy made with `cp -a` keeps size and mtime but not the inode; an in-place
edit keeps the inode but not the ctime, which `touch -d` cannot set back, nor
the hash); for a symlink its target. A folder's mtime and size are *not* compared: they change
whenever anything inside is created (`.dvc/tmp`, `.dvc/cache`), and what
matters inside is watched entry by entry.

A watched folder is expanded one level (its entries) and the entries named in
`EXPAND` one level more (`.git/hooks/*`, `.git/info/*`). Entries that Git or
DVC change in normal operation (`.git/index`, refs, objects, logs...) are
skipped by name (`VOLATILE`); everything else at the top of `.git`, known or
new, is compared: a stage that creates `.git/commondir` or
`.git/config.worktree` is caught whether or not Git is known to read it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional

# A hash costs a read: only files this small (configs, hooks) are hashed; larger ones are
# compared by size/mtime/inode, which a same-size in-place rewrite within one mtime tick could keep.
HASH_LIMIT = 64 * 1024

# Entries of a watched folder that Git changes in normal operation (a `git status` in the stage
# rewrites the index; a parallel queue worker fetches refs and objects into the parent's .git).
# None of them makes a later host process run a command.
VOLATILE = frozenset(
    {
        "index", "HEAD", "ORIG_HEAD", "FETCH_HEAD", "MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD",
        "REBASE_HEAD", "AUTO_MERGE", "BISECT_LOG", "COMMIT_EDITMSG", "MERGE_MSG", "MERGE_MODE",
        "SQUASH_MSG", "packed-refs", "refs", "objects", "logs", "sequencer", "rebase-merge",
        "rebase-apply", "gitk.cache", "shallow", "description",
    }
)
# Folders whose entries are watched too: a hook runs at the next `git commit`; info/ holds attributes.
EXPAND = frozenset({"hooks", "info"})


@dataclass(frozen=True)
class Identity:
    kind: str  # "file", "dir", "link", "other", "absent"
    dev: int = 0
    ino: int = 0
    mode: int = 0
    uid: int = 0
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0  # set by the kernel on every change; a stage cannot set it back (unlike mtime)
    digest: Optional[str] = None  # sha256 of a small regular file
    target: Optional[str] = None  # a symlink's target


ABSENT = Identity("absent")


def identity(path: str) -> Identity:
    """The identity of `path` itself (never followed when it is a symlink)."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return ABSENT
    mode = info.st_mode
    common = dict(dev=info.st_dev, ino=info.st_ino, mode=mode, uid=info.st_uid)
    if stat.S_ISDIR(mode):
        return Identity("dir", **common)
    if stat.S_ISLNK(mode):
        return Identity("link", **common, target=os.readlink(path))
    if not stat.S_ISREG(mode):
        return Identity("other", **common)
    digest = _digest(path) if info.st_size <= HASH_LIMIT else None
    return Identity(
        "file", **common, size=info.st_size, mtime_ns=info.st_mtime_ns, ctime_ns=info.st_ctime_ns, digest=digest
    )


def _digest(path: str) -> Optional[str]:
    try:
        # O_NOFOLLOW|O_NONBLOCK: a file swapped for a link or a FIFO since the lstat is not read through
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return hashlib.sha256(os.read(fd, HASH_LIMIT + 1)).hexdigest()
    finally:
        os.close(fd)


def snapshot(paths: Iterable[str]) -> Dict[str, Identity]:
    """path -> Identity for each watched path and, for a folder, its entries (see the module doc)."""
    out: Dict[str, Identity] = {}
    for path in paths:
        path = os.path.normpath(path)
        if path in out:
            continue
        out[path] = identity(path)
        for name in _entries(path, out[path]):
            if name in VOLATILE:
                continue
            entry = os.path.join(path, name)
            out[entry] = identity(entry)
            if name in EXPAND:
                out.update((inner, identity(inner)) for inner in (os.path.join(entry, n) for n in _entries(entry, out[entry])))
    return out


def _entries(path: str, ident: Identity) -> List[str]:
    if ident.kind != "dir":
        return []
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def differences(before: Mapping[str, Identity], after: Mapping[str, Identity]) -> List[str]:
    """The paths whose identity changed, appeared or disappeared, shallowest first.

    A path under a changed folder is left out: `.git` renamed away and copied
    back is reported as `.git`, not as every file of the copy.
    """
    changed = [path for path in sorted(set(before) | set(after)) if not _same(before.get(path, ABSENT), after.get(path, ABSENT))]
    outer: List[str] = []
    for path in sorted(changed, key=lambda p: (p.count(os.sep), p)):
        if not any(path.startswith(parent + os.sep) for parent in outer):
            outer.append(path)
    return outer


def _same(a: Identity, b: Identity) -> bool:
    if a.kind == b.kind == "dir":
        # a folder's mtime/size change with its content; its place (dev, inode), mode and owner do not
        return (a.dev, a.ino, a.mode, a.uid) == (b.dev, b.ino, b.mode, b.uid)
    return a == b


def describe(path: str, before: Mapping[str, Identity], after: Mapping[str, Identity]) -> str:
    """What happened to `path`, in a few words: `appeared`, `replaced by a copy`, `content changed`..."""
    a, b = before.get(path, ABSENT), after.get(path, ABSENT)
    if a.kind == "absent":
        return f"appeared ({_noun(b)})"
    if b.kind == "absent":
        return "was removed"
    if a.kind != b.kind:
        return f"{_noun(a)} replaced by {_noun(b)}"
    if (a.dev, a.ino) != (b.dev, b.ino):
        return "replaced (renamed away and copied back?)"
    if a.kind == "link":
        return f"now points to {b.target}"
    if (a.mode, a.uid) != (b.mode, b.uid):
        return "mode or owner changed"
    return "content changed"


def _noun(ident: Identity) -> str:
    return {"file": "a file", "dir": "a folder", "link": "a symlink", "other": "a special file"}.get(ident.kind, "nothing")


def check(before: Mapping[str, Identity], paths: Iterable[str]) -> Optional[str]:
    """None when nothing watched changed since `before`, else one line naming the first changed path."""
    after = snapshot(paths)
    changed = differences(before, after)
    if not changed:
        return None
    first = changed[0]
    more = f" (and {len(changed) - 1} more: {', '.join(changed[1:4])}{'...' if len(changed) > 4 else ''})" if len(changed) > 1 else ""
    return f"'{first}' {describe(first, before, after)}{more}"


def watch_list(protected: Iterable[tuple], user_places: Iterable[str]) -> List[str]:
    """The paths to watch: every read-only place of the mount plan's rules, and the user's config.

    `protected` is the plan's rules `(path, read_only)`: each read-only one is
    something a later host process reads (`.dvc`, `.git` and what it points
    to, the user's config where a mount reaches it), except what lies in a
    `.dvc/tmp` (the queue's and our own working folders, changed by host dvc
    processes while the stage runs). The user's DVC and Git config locations
    are watched whether or not a mount is thought to reach them: a few stats,
    and the reach is exactly what an alias gets wrong.
    """
    watched = []
    for path, read_only in protected:
        if not read_only or f"{os.sep}.dvc{os.sep}tmp{os.sep}" in path + os.sep:
            continue
        parent = os.path.dirname(path)
        # a cover inside `.git` (hooks, config: an experiment's writable .git) means the whole
        # `.git`: what a stage may create there (a new commondir) is watched too
        watched.append(parent if os.path.basename(parent) == ".git" else path)
    return list(dict.fromkeys([*watched, *user_places]))

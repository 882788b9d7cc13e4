"""A stage's mount facts, gathered again for each command (the input of `mounts.plan_mounts`).

Everything is taken from resolved paths on disk at the moment the command's
container is about to be created, not once per stage: a first command that
swaps a folder for a symlink (`rm -rf data && ln -s /etc data`) must not
have the second command mount what the link now points at unchecked (issue
16, break 6). Environment values never create a mount: the parent repo of
`exp run --temp` is found from where the temporary copy lies, not from
`DVC_ROOT` (break 8).

Layer: below `dvc_glue`, above `mounts` (pure) and `trust`.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.types.mounts import Rule, StageFacts, mode_at
from dvc_docker_exec.boundary.paths import is_within, linked_outside
from dvc_docker_exec.boundary.private_files import PRIVATE_DIR as OVERLAY_DIR  # in .dvc/tmp: one private folder per dvc process
from dvc_docker_exec.stage.settings import git_root as _git_root

logger = logging.getLogger(f"dvc.{__name__}")

EXPS = os.path.join(".dvc", "tmp", "exps")  # where DVC keeps the copies of `exp run --temp` / the queue

# what Git runs, or follows to another config, inside a .git folder
GIT_RUNS = ("config", "config.worktree", "hooks", "info", "modules", "worktrees", "commondir")

_projects: dict = {}  # per process: Git root -> roots of the DVC projects committed in it


def stage_facts(
    stage: Any,
    overlays: Tuple[Tuple[str, str], ...],
    settings: Optional[DockerSettings],
    invoker: Any = None,
    *,
    extra_binds: Tuple[Tuple[str, str, bool], ...] = (),
    tmpfs: Tuple[Tuple[str, int], ...] = (),
    experiment: bool = False,
    dry: bool = False,
) -> StageFacts:
    """The facts for the next container of `stage`. `settings` None: no protection rules.

    `dry` (`dvc repro --dry`): the same rules as the run, but nothing is made
    on disk; the folders and empty config files a run would make are listed
    as if they were (issue 20, item 4: the dry line shows the run's mounts).

    `invoker` (a `trust.Invoker`): the repository's volumes are judged again
    against the trust model, on what they resolve to now. `extra_binds`
    ((path as DVC sees it, target, read_only)) and `tmpfs` ((target, mode)):
    what another part of the plugin needs in the container (a lease file, a
    scratch tmpfs); they go through the same resolution, socket check and rules.
    `experiment`: DVC runs the stage for an experiment (DVC's own run_env says
    so, never a setting): dvclive in the stage then stages its files in Git.
    """
    if settings is not None and invoker is not None:
        from dvc_docker_exec.stage import trust
        from dvc_docker_exec.config import SettingError

        try:
            trust.check(settings, stage.addressing, invoker)
        except SettingError as exc:
            raise DockerExecError(str(exc)) from None
    paths = mount_paths(stage, create=not dry)
    links = linked_paths(stage, paths)
    return StageFacts(
        addressing=stage.addressing,
        wdir=os.path.normpath(stage.wdir),
        repo_root=os.path.normpath(stage.repo.root_dir),
        mount_paths=tuple(paths),
        config_overlays=overlays,
        linked_paths=tuple(links),
        # what a link leads to is reached as much as a path named outright
        protected=protection_rules(
            stage, [*paths, *(real for _, real in links), *(p for p, _, _ in extra_binds)], settings,
            experiment=experiment, create=not dry,
        )
        if settings
        else (),
        extra_binds=extra_binds,
        tmpfs=tmpfs,
    )


def parent_repo(stage: Any) -> Optional[str]:
    """The repo whose `.dvc/tmp/exps` holds this stage's repo (`exp run --temp`, the queue), or None."""
    root = os.path.normpath(os.path.abspath(stage.repo.root_dir))
    marker = os.sep + EXPS + os.sep
    if marker not in root + os.sep:
        return None
    parent = (root + os.sep).rsplit(marker, 1)[0]
    return parent if os.path.isdir(os.path.join(parent, ".dvc")) else None


def mount_paths(stage: Any, create: bool = True) -> List[str]:
    """Everything a stage may touch, at the same path as on the host.

    The Git root (or repo root), the parent repo of a temporary experiment
    copy (its `.dvc/tmp/exps/...` lies inside), the cache when it lies outside
    (symlink/hardlink cache types must resolve inside), and local deps/outs
    outside the repo (absolute paths, remote:// on local remotes).
    mounts.dedupe_mounts drops what an outer mount covers.
    `create`: make the cache folder if missing (not for a dry run).
    """
    paths = [_git_root(stage), os.path.normpath(stage.repo.root_dir)]
    parent = parent_repo(stage)
    if parent:
        paths.append(parent)
    cache = getattr(getattr(stage.repo, "cache", None), "local_cache_dir", None)
    if cache:
        cache = os.path.normpath(os.path.abspath(cache))
        if create and any(getattr(out, "use_cache", False) for out in stage.outs):
            # a cache dir set but not used yet (`dvc cache dir --local /new/dir`): DVC makes it on
            # first use, Docker would refuse to mount a missing source (issue 18, item 2). Only a
            # stage with cached outputs uses it: DVC makes no cache for `outs_no_cache` (its own
            # test_repro_external_outputs checks that an external cache folder stays absent)
            os.makedirs(cache, exist_ok=True)
        if os.path.isdir(cache) or not create:
            paths.append(cache)
    wdir = os.path.normpath(os.path.abspath(stage.wdir))
    if not os.path.isdir(wdir):
        # Docker would create it, owned by root, and run the command in it
        # (empty, and lost if outside the repo); a host run fails.
        raise DockerExecError(f"stage '{stage.addressing}': its wdir '{wdir}' is not a directory")
    if not any(is_within(wdir, root) for root in paths):
        paths.append(wdir)  # an absolute wdir outside the repo (a host run works there)
    for item in [*stage.deps, *stage.outs]:
        if getattr(item.fs, "protocol", None) != "local" or item.is_in_repo:
            continue
        path = _local_path(stage, item)
        if os.path.exists(path):
            paths.append(path)
    return paths


def linked_paths(stage: Any, mounted: List[str]) -> List[Tuple[str, str]]:
    """Stage paths that resolve outside the mounts through symlinks: (where the lookup leaves them, target).

    A dep `in.txt -> /data/in.txt` (or in a symlinked folder) reads on the
    host; in the container /data does not exist unless it is mounted where
    the link points. Like deps/outs outside the repo, a host run of the
    user's own dvc.yaml could read them; daemon sockets are refused anyway.
    """
    found = []
    for path in [os.path.normpath(os.path.abspath(stage.wdir))] + [
        _local_path(stage, item) for item in [*stage.deps, *stage.outs] if getattr(item.fs, "protocol", None) == "local"
    ]:
        link = linked_outside(path, mounted) if os.path.exists(path) else None
        if link and link not in found:
            found.append(link)
    return found


def _local_path(stage: Any, item: Any) -> str:
    path = os.path.normpath(os.path.abspath(item.fs_path))
    # an out does not exist yet: mount the folder it will appear in
    if item in stage.outs or not os.path.exists(path):
        path = os.path.dirname(path)
    return path


# --- protection rules ------------------------------------------------------------------------------


def protection_rules(
    stage: Any, paths: Sequence[str], settings: DockerSettings, experiment: bool = False, create: bool = True
) -> Tuple[Rule, ...]:
    """What later host processes read, and the stage must not write (issue 16, P3), as rules for the plan.

    * Every `.dvc` folder the stage reaches (this project's, the parent's of
      a temporary copy, every project committed in the Git repo) is a
      read-only mount point, with `.dvc/tmp` writable beneath (DVC and
      dvclive in the stage use it) except `.dvc/tmp/exps` (the queue, other
      experiments' copies) and `.dvc/tmp/docker-exec` (our config copies),
      and the cache writable where it lies inside.
    * Every `.git` folder (or `.git` file and the folders it points to,
      `commondir` included) is a read-only mount point.
    * The folders between a mount's root and such a folder are mount points
      of themselves ("pins"): a mount point cannot be renamed (EBUSY), so
      `mv sub sub.orig && cp -a sub.orig sub` cannot swap in a fresh `.dvc`.
    * In an experiment, the running repo's `.git` folder is a writable
      mount point instead (dvclive stages its files: objects and index),
      with what Git runs or follows read-only beneath: `config`, `hooks`,
      `info`, `modules`, `worktrees`, `commondir`, `config.worktree`.
    * The user's DVC and Git config (global, system, the defaults too) are
      read-only wherever a mount reaches them; missing ones are created
      empty first when a writable mount would let the stage create them.
    Returns (path, read_only), outermost first; made on disk where a mount needs a source
    (`create` False: listed, not made).
    """
    makedirs = (lambda path: os.makedirs(path, exist_ok=True)) if create else (lambda path: None)
    reach = [os.path.realpath(p) for p in [*paths, *_volume_sources(stage, settings)]]
    rules: List[Rule] = []
    pins: List[Rule] = []
    git_root = _git_root(stage)
    parent = parent_repo(stage)
    running = [os.path.normpath(stage.repo.root_dir), parent]
    roots = [*running, git_root, *_other_projects(git_root)]
    running = [os.path.realpath(r) for r in running if r]
    for root in dict.fromkeys(os.path.realpath(r) for r in roots if r):
        dvc_dir = os.path.join(root, ".dvc")
        if not os.path.isdir(dvc_dir) or os.path.islink(dvc_dir) or not _reached(dvc_dir, reach):
            continue
        pins += _pins(root, reach)
        if root not in running:
            # a neighbour project: nothing of its .dvc is this stage's to write (two mounts, not five)
            rules.append((dvc_dir, True))
            continue
        tmp = os.path.join(dvc_dir, "tmp")
        # made now if missing: a mount needs an existing source, and an absent
        # folder under a read-only one could not be created by the stage either
        for folder in (tmp, os.path.join(tmp, "exps"), os.path.join(tmp, OVERLAY_DIR)):
            makedirs(folder)
        rules += [(dvc_dir, True), (tmp, False), (os.path.join(tmp, "exps"), True), (os.path.join(tmp, OVERLAY_DIR), True)]
    for root in dict.fromkeys(os.path.realpath(r) for r in (git_root, parent, stage.repo.root_dir) if r):
        for place in _git_places(root):
            if not _reached(place, reach):
                continue
            pins += _pins(os.path.dirname(place), reach)
            if experiment and os.path.isdir(place) and place == os.path.join(os.path.realpath(_git_root(stage)), ".git"):
                os.makedirs(os.path.join(place, "hooks"), exist_ok=True)
                pins.append((place, False))
                rules += [(os.path.join(place, n), True) for n in GIT_RUNS if os.path.lexists(os.path.join(place, n))]
            else:
                rules.append((place, True))
    for path, is_dir in user_config_places(stage):
        rules += _config_rule(path, is_dir, reach, create)
    # what the stage must write that lies inside a read-only folder: the cache
    # in .dvc/cache, the temp copy of `exp run --temp` in the parent's .dvc/tmp/exps
    read_only = [p for p, ro in rules if ro]
    cache = getattr(getattr(stage.repo, "cache", None), "local_cache_dir", None)
    for path in [p for p in (cache, stage.repo.root_dir if parent else None) if p]:
        real = os.path.realpath(path)
        if any(is_within(real, ro) and real != ro for ro in read_only):
            makedirs(real)  # the cache folder DVC would make on first use
            rules.append((real, False))
    found: dict = {}
    for path, ro in rules:
        found[os.path.normpath(path)] = found.get(os.path.normpath(path), False) or ro
    for path, _ in pins:
        # a pin only makes a mount point: it keeps the mode the other rules give its place
        found.setdefault(os.path.normpath(path), bool(mode_at(os.path.normpath(path), list(found.items()))))
    return tuple(sorted(found.items(), key=lambda item: (item[0].count("/"), item[0])))


def _reached(place: str, reach: Sequence[str]) -> bool:
    """A mount shows `place` (contains it) or shows a part of it (lies inside it)."""
    return any(is_within(place, r) or is_within(r, place) for r in reach)


def _pins(folder: str, reach: Sequence[str]) -> List[Rule]:
    """`folder` and the folders above it, up to the mount root that shows it, as writable mount points."""
    tops = [r for r in reach if is_within(folder, r) and r != folder]
    if not tops:
        return []
    top = max(tops, key=len)
    pins = []
    current = folder
    while current != top and is_within(current, top):
        pins.append((current, False))
        current = os.path.dirname(current)
    return pins


def _git_places(root: str) -> List[str]:
    """`.git` of `root` (a folder, or a `gitdir:` file and the folder it points to) and its `commondir`."""
    dot_git = os.path.join(root, ".git")
    if not os.path.lexists(dot_git) or os.path.islink(dot_git):
        return []
    places = [dot_git]
    git_dir = dot_git
    if os.path.isfile(dot_git):
        pointed = _read_pointer(dot_git, "gitdir:")
        git_dir = os.path.realpath(os.path.join(root, pointed)) if pointed else ""
        if git_dir and os.path.isdir(git_dir):
            places.append(git_dir)
    common = _read_pointer(os.path.join(git_dir, "commondir"), "") if git_dir else None
    if common:
        common_dir = os.path.realpath(os.path.join(git_dir, common))
        if os.path.isdir(common_dir):
            places.append(common_dir)
    return places


def _read_pointer(path: str, prefix: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fobj:
            text = fobj.read(4096).strip()
    except OSError:
        return None
    if not text.startswith(prefix):
        return None
    return text[len(prefix) :].strip() or None


def user_config_places(stage: Any) -> List[Tuple[str, bool]]:
    """(path, is a folder) of the DVC and Git config a later host process of this user reads.

    DVC's global and system folders as configured (DVC_GLOBAL_CONFIG_DIR...)
    and their defaults (a later dvc without those variables reads them); Git's
    ~/.gitconfig, $XDG_CONFIG_HOME/git, /etc/gitconfig and GIT_CONFIG_GLOBAL/SYSTEM.
    """
    places: List[Tuple[str, bool]] = []
    files = getattr(getattr(stage.repo, "config", None), "files", {}) or {}
    for level in ("system", "global"):
        if files.get(level):
            places.append((os.path.dirname(os.path.abspath(files[level])), True))
    try:
        import platformdirs

        places += [(platformdirs.user_config_dir("dvc", "iterative"), True), (platformdirs.site_config_dir("dvc", "iterative"), True)]
    except ImportError:  # pragma: no cover - a DVC dependency
        pass
    home = os.path.expanduser("~")
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    places += [(os.path.join(home, ".config", "dvc"), True), ("/etc/xdg/dvc", True)]
    places += [(os.path.join(home, ".gitconfig"), False), (os.path.join(xdg, "git"), True), ("/etc/gitconfig", False)]
    places += [(os.environ[name], False) for name in ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM") if os.environ.get(name)]
    return list(dict.fromkeys((os.path.normpath(os.path.abspath(p)), d) for p, d in places))


def _config_rule(path: str, is_dir: bool, reach: Sequence[str], create: bool = True) -> List[Rule]:
    """`path` read-only when a mount reaches it; made first if missing, else its nearest existing folder."""
    real = os.path.realpath(path)
    if os.path.lexists(path):
        return [(real, True)] if _reached(real, reach) else []
    existing = _deepest_existing(real)
    if existing is None or not any(is_within(existing, r) for r in reach):
        return []
    if not create:  # --dry: what the run would make and cover
        return [(real, True)]
    try:  # what the stage could create through its mount, we create first (empty) and cover
        if is_dir:
            # the default mode, as DVC makes its config folders: a system one (/etc/xdg/dvc)
            # made 0700 by root would lock every other user's dvc out of it
            os.makedirs(real, exist_ok=True)
        else:
            os.close(os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
        return [(real, True)]
    except OSError:
        return [(existing, True)]  # we may not make it: then nothing in its folder is writable


def _other_projects(git_root: str) -> List[str]:
    """Roots of the DVC projects committed anywhere in the Git repo (a monorepo of `dvc init --subdir`s).

    Why: the whole Git root is mounted, so a stage of one project could
    otherwise plant a config.local in its neighbour. Asked once per process.
    """
    if git_root not in _projects:
        import subprocess

        try:
            out = subprocess.run(
                ["git", "-C", git_root, "ls-files", "-z", "--", ":(glob)**/.dvc/config"],
                capture_output=True, timeout=30, check=True,
            ).stdout
            found = [os.path.join(git_root, os.fsdecode(p)) for p in out.split(b"\0") if p]
        except (OSError, subprocess.SubprocessError):
            found = []  # no git binary: the projects DVC itself names are still covered
        _projects[git_root] = [os.path.dirname(os.path.dirname(p)) for p in found]
    return _projects[git_root]


def _volume_sources(stage: Any, settings: DockerSettings) -> List[str]:
    root = os.path.normpath(stage.repo.root_dir)
    return [os.path.normpath(os.path.join(root, volume.source)) for volume in settings.volumes]


def _deepest_existing(path: str) -> Optional[str]:
    path = os.path.normpath(os.path.abspath(path))
    while not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path


def describe(rules: Iterable[Rule]) -> str:
    return ", ".join(f"{path} ({'ro' if ro else 'rw'})" for path, ro in rules)


def lease_home(stage: Any) -> str:
    """The project whose .dvc/tmp/docker-exec holds this process's lease: the one the user works in.

    For `exp run --temp` and queued experiments that is the parent project,
    not the temp copy: DVC deletes the copy of a killed experiment, and with
    it the sign that its dvc died (a container it left in state Created
    would then never be found by the second wall).
    """
    return parent_repo(stage) or os.path.normpath(stage.repo.root_dir)

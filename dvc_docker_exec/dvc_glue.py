"""Where the plugin meets DVC: config schema registration and ``cmd_run``.

``dvc.stage.run.run_stage`` looks ``cmd_run`` up at call time, so replacing
the module attribute routes every stage command through ``cmd_run`` below,
after DVC's run-cache check (a run-cache hit starts no container) and before
DVC hashes the outputs on the host. The lock's ``cmd`` stays the user's
command: we never touch ``stage.cmd``.
"""

from __future__ import annotations

import logging
import functools
import io
import os
import shutil
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple


from .config import DockerSettings, dvc_schema
from . import session
from .session import engine_ids as _engine_ids, image_place, session as _session, state as _state
from .stage_settings import SECTION, git_root as _git_root, settings_for

# under "dvc." so that `dvc -v` / `-q` apply to our messages too
logger = logging.getLogger(f"dvc.{__name__}")



def register_config_schema(module: Any) -> None:
    module.SCHEMA[SECTION] = dvc_schema()
    # dvc.config memoizes the compiled schema; drop it if it was built already
    compiled = sys.modules.get("dvc.config")
    memory = getattr(getattr(compiled, "get_compiled_schema", None), "memory", None)
    if memory is not None:
        memory.clear()
    module._dvc_docker_exec_patched = True


def patch_stage_run(module: Any) -> None:
    original = module.cmd_run
    wrapper = functools.wraps(original)(functools.partial(cmd_run, original))
    module.cmd_run = wrapper
    module._dvc_docker_exec_patched = True


def register_commands(module: Any) -> None:
    """Add the `dvc docker` command group to DVC's CLI.

    DVC has no entry point for commands: `dvc.cli.parser` builds its parser
    from the module-level COMMANDS list in an lru_cache'd get_main_parser().
    We extend the list right after the module runs, before anything builds
    the parser, and drop the memo in case it was built already.
    """
    from . import commands

    if commands not in module.COMMANDS:
        module.COMMANDS.append(commands)
    cache_clear = getattr(module.get_main_parser, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()
    module._dvc_docker_exec_patched = True


def _patch_with(name: str) -> Callable[[Any], None]:
    """A hook target that delegates to tracking.<name> (provenance, see tracking.py)."""

    def patch(module: Any) -> None:
        from . import tracking

        getattr(tracking, name)(module)
        module._dvc_docker_exec_patched = True

    patch.__name__ = name
    return patch


patch_stage_loader = _patch_with("patch_loader")
patch_repo_stage = _patch_with("patch_stage_create")
patch_stage_serialize = _patch_with("patch_serialize")
patch_stage_cache = _patch_with("patch_stage_cache")
patch_exp_serialize = _patch_with("patch_exp_serialize")
patch_repo_status = _patch_with("patch_status")
patch_repo_reproduce = _patch_with("patch_reproduce")


def cmd_run(original: Callable, stage: Any, dry: bool = False, run_env: Optional[dict] = None) -> None:
    settings = settings_for(stage)
    if settings is None:
        return original(stage, dry=dry, run_env=run_env)

    from dvc.stage import run as dvc_run

    from .engine import check_limits
    from .spec import build_spec, container_env

    logger.info("Running stage '%s' in a container of image '%s':", stage.addressing, settings.image)
    commands = dvc_run._enforce_cmd_list(stage.cmd)
    dvc_env = dvc_run.prepare_kwargs(stage, run_env=run_env)["env"]
    env = container_env(dvc_env, run_env, settings, os.environ, home=None)
    facts_kwargs = dict(
        uid=os.getuid(), gid=os.getgid(), pid=os.getpid(), tty=_tty(), user_name=_user_name(), host=os.uname().nodename
    )
    if not dry:
        facts_kwargs.update(_engine_ids())

    if dry:
        facts = stage_facts(stage, env, overlays=(), settings=None)
        mount_for = _mount_for(stage, settings, dry=True)
        for cmd in commands:
            dvc_run.display_command(cmd)
            logger.info("%s", _run_line(build_spec(settings, facts, cmd, env, mount_for, **facts_kwargs)))
        return

    # The repo lock is released while the command runs (DVC's unlocked_repo), as for a host run.
    from .runner import CONNECTION_LOST, StageSignals, pause_point

    try:
        runner, images = _session(settings.backend)
        # On Swarm the policy applies to the manager's engine: it tells the identity
        # (recorded for provenance) and the nodes then pull the image themselves from
        # a registry they reach, by its registry digest where the manager knows one,
        # so every node runs the same bytes.
        images.ensure(settings.image, settings.pull, image_place(settings.backend))
        if settings.backend == "swarm":
            settings = _pinned(settings, images)
        mount_for = _mount_for(stage, settings)
    except CONNECTION_LOST:
        from .errors import DockerExecError

        raise DockerExecError(
            f"lost the connection to the Docker daemon at {session.endpoint().describe()} before stage "
            f"'{stage.addressing}' started: nothing was run"
        ) from None
    # Signals wait for each step to finish: no container in state Created, no copy left behind.
    with StageSignals() as signals, config_overlays(stage) as overlays:
        facts = stage_facts(stage, env, overlays, settings)
        pause_point("overlays", signals)
        for cmd in commands:
            dvc_run.display_command(cmd)
            spec = build_spec(settings, facts, cmd, env, mount_for, **facts_kwargs)
            logger.debug("%s", _run_line(spec))
            if settings.backend == "engine":
                # Swarm nodes enforce limits themselves; the manager's engine says nothing of them
                check_limits(_state["engine"], spec.mem_limit, spec.nano_cpus, settings.allow_unlimited)
            runner.run(spec, cmd, signals)


def _pinned(settings: DockerSettings, images: Any) -> DockerSettings:
    """settings with the image as `repo@sha256:...` when its identity is a registry digest."""
    from dataclasses import replace

    identity = images.identities.identity(settings.image)
    if identity and "@sha256:" in identity:
        logger.debug("image '%s' pinned for the Swarm nodes as '%s'", settings.image, identity)
        return replace(settings, image=identity)
    return settings


def _run_line(spec: Any) -> str:
    return f"{spec.docker_run_line()}\n  (differs from this run: {'; '.join(spec.run_line_differences())})"


def _user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a passwd entry (e.g. DVC itself in a container)
        return "dvc"


def _tty() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def _mount_for(stage: Any, settings: DockerSettings, dry: bool = False) -> Callable:
    """path -> Mount at the same path; translated when DVC runs in a container."""
    key = ("paths", stage.repo.root_dir, settings.host_root)
    if key not in _state:
        if dry and "client" not in _state:
            # --dry does not need the daemon: show paths as DVC sees them (not cached,
            # so a later real run in this process still detects the socket pattern)
            from .paths import IdentityPaths

            return _positional(IdentityPaths("dry run"))
        from .paths import detect_host_paths

        _session()
        host_paths = detect_host_paths(
            _state["client"], repo_root=_git_root(stage), host_root=settings.host_root, endpoint=_state["endpoint"]
        )
        logger.debug("host paths: %s", host_paths.describe())
        _state[key] = host_paths
    return _positional(_state[key])


def _positional(host_paths: Any) -> Callable:
    # spec.build_spec calls mount_for(path, read_only)
    return lambda path, read_only=False: host_paths.mount(path, read_only=read_only)


def stage_facts(stage: Any, env: dict, overlays: Tuple[Tuple[str, str], ...], settings: Optional[DockerSettings]):
    """`settings` None: a dry run, nothing created on disk (the protection mounts are left out)."""
    from .spec import StageFacts

    paths = mount_paths(stage, env.get("DVC_ROOT"))
    return StageFacts(
        addressing=stage.addressing,
        wdir=os.path.normpath(stage.wdir),
        repo_root=os.path.normpath(stage.repo.root_dir),
        mount_paths=tuple(paths),
        config_overlays=overlays,
        linked_paths=tuple(linked_paths(stage, paths)),
        protected=protected_paths(stage, env.get("DVC_ROOT"), paths, settings) if settings else (),
    )


def mount_paths(stage: Any, dvc_root: Optional[str]) -> List[str]:
    """Everything a stage may touch, at the same path as on the host.

    The Git root (or repo root), DVC_ROOT when it differs (`exp run --temp`
    works in .dvc/tmp/exps/..., DVC_ROOT points at the parent repo), the
    cache when it lies outside (symlink/hardlink cache types must resolve
    inside), and local deps/outs outside the repo (absolute paths, remote://
    on local remotes). spec.dedupe_mounts drops what an outer mount covers.
    """
    paths = [_git_root(stage), os.path.normpath(stage.repo.root_dir)]
    if dvc_root and os.path.isabs(dvc_root):
        paths.append(os.path.normpath(dvc_root))
    cache = getattr(getattr(stage.repo, "cache", None), "local_cache_dir", None)
    if cache:
        paths.append(os.path.normpath(os.path.abspath(cache)))
    wdir = os.path.normpath(os.path.abspath(stage.wdir))
    if not os.path.isdir(wdir):
        # Docker would create it, owned by root, and run the command in it
        # (empty, and lost if outside the repo); a host run fails.
        from .errors import DockerExecError

        raise DockerExecError(f"stage '{stage.addressing}': its wdir '{wdir}' is not a directory")
    if not any(_inside(wdir, root) for root in paths):
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
    from .paths import linked_outside

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


def _inside(path: str, root: str) -> bool:
    from .paths import is_within

    return is_within(path, root)


def protected_paths(
    stage: Any, dvc_root: Optional[str], paths: Sequence[str], settings: DockerSettings
) -> Tuple[Tuple[str, bool], ...]:
    """What is mounted again over the stage's mounts so that it cannot reconfigure DVC or us.

    Every `.dvc` folder the stage reaches (this repo's, DVC_ROOT's for `exp
    run --temp`, the Git root's) is read-only, so neither `config` nor
    `config.local` can be changed or created there, whether or not it exists
    yet. Inside, `.dvc/tmp` and the cache stay writable (DVC and dvclive in
    the stage use them), except `.dvc/tmp/exps` (the queue's broker, other
    experiments' copies) and `.dvc/tmp/docker-exec` (our config copies).
    DVC's global and system config folders are read-only too when a mount
    reaches them, and so are Git's hooks and config (they run commands on the
    host). Returns (path, read_only), outermost first.
    """
    reach = [*paths, *_volume_sources(stage, settings)]
    read_only: List[str] = []
    writable: List[str] = []
    roots = [stage.repo.root_dir, dvc_root, _git_root(stage), *_other_projects(_git_root(stage))]
    for dvc_dir in dict.fromkeys(os.path.join(os.path.normpath(r), ".dvc") for r in roots if r):
        if not os.path.isdir(dvc_dir) or not _inside_any(dvc_dir, reach):
            continue
        tmp = os.path.join(dvc_dir, "tmp")
        # made now if missing: a mount needs an existing source, and an absent
        # folder under a read-only one could not be created by the stage either
        for folder in (tmp, os.path.join(tmp, "exps"), os.path.join(tmp, OVERLAY_DIR)):
            os.makedirs(folder, exist_ok=True)
        read_only += [dvc_dir, os.path.join(tmp, "exps"), os.path.join(tmp, OVERLAY_DIR)]
        writable.append(tmp)
    for root in dict.fromkeys(os.path.normpath(r) for r in (_git_root(stage), dvc_root) if r):
        # Git's hooks and config run commands on the host (a hook at the next
        # `git commit`, core.fsmonitor at the next `git status`): a stage must
        # not plant them any more than a DVC config
        git_dir = os.path.join(root, ".git")
        if os.path.isdir(git_dir) and not os.path.islink(git_dir) and _inside_any(git_dir, reach):
            os.makedirs(os.path.join(git_dir, "hooks"), exist_ok=True)
            read_only += [os.path.join(git_dir, name) for name in ("hooks", "config") if os.path.exists(os.path.join(git_dir, name))]
    for level in ("system", "global"):
        folder = _deepest_existing(os.path.dirname(stage.repo.config.files[level]))
        if folder and _inside_any(folder, reach) and not any(os.path.normpath(p) == folder for p in reach):
            read_only.append(folder)
    # what the stage must write that lies inside a read-only folder: the cache
    # in .dvc/cache, the temp copy of `exp run --temp` in the parent's .dvc/tmp/exps
    inner = [p for p in paths if any(_inside(p, ro) and p != ro for ro in read_only)]
    for path in inner:
        os.makedirs(path, exist_ok=True)  # the cache folder DVC would make on first use
    writable += inner
    found = {os.path.normpath(p): False for p in writable}
    found.update({os.path.normpath(p): True for p in read_only})
    return tuple(sorted(found.items(), key=lambda item: (item[0].count("/"), item[0])))


def _other_projects(git_root: str) -> List[str]:
    """Roots of the DVC projects committed anywhere in the Git repo (a monorepo of `dvc init --subdir`s).

    Why: the whole Git root is mounted, so a stage of one project could
    otherwise plant a config.local in its neighbour. Asked once per process.
    """
    key = ("projects", git_root)
    if key not in _state:
        import subprocess

        try:
            out = subprocess.run(
                ["git", "-C", git_root, "ls-files", "-z", "--", ":(glob)**/.dvc/config"],
                capture_output=True, timeout=30, check=True,
            ).stdout
            found = [os.path.join(git_root, os.fsdecode(p)) for p in out.split(b"\0") if p]
        except (OSError, subprocess.SubprocessError):
            found = []  # no git binary: the projects DVC itself names are still covered
        _state[key] = [os.path.dirname(os.path.dirname(p)) for p in found]
    return _state[key]


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


def _inside_any(path: str, parents: Sequence[str]) -> bool:
    return any(_inside(path, parent) for parent in parents)


OVERLAY_DIR = "docker-exec"  # in .dvc/tmp: one private folder per running dvc process


@contextmanager
def config_overlays(stage: Any) -> Iterator[Tuple[Tuple[str, str], ...]]:
    """Filtered copies of .dvc/config{,.local} without our section, for the stage.

    Why: DVC validates .dvc/config strictly; DVC or dvclive inside the stage
    image (which lacks this plugin) would fail with `extra keys not allowed @
    data['docker']` and dvclive would lose its DVC integration. The copies live
    in .dvc/tmp (inside the repo, so the socket pattern can translate them) and
    are mounted read-only over the originals; the host files stay untouched.

    A copy may hold secrets (a remote's password in config.local): it keeps
    the original's mode, in a folder only its owner can enter, and exists only
    while the stage runs. The folder is locked (flock) while in use, so
    folders left by a killed process are recognised and removed by the next run.
    """
    dvc_dir = getattr(stage.repo, "dvc_dir", None)
    tmp_dir = getattr(stage.repo, "tmp_dir", None)
    originals = [os.path.join(dvc_dir, name) for name in ("config", "config.local")] if dvc_dir else []
    needs = [path for path in originals if _has_section(path)]
    if not tmp_dir:
        yield ()
        return
    parent = os.path.join(tmp_dir, OVERLAY_DIR)
    reap_stale_overlays(parent)
    if not needs:
        yield ()
        return
    with private_folder(parent) as folder:
        overlays = []
        for path in needs:
            copy = os.path.join(folder, os.path.basename(path))
            _write_without_section(path, copy)
            overlays.append((copy, path))
        yield tuple(overlays)


@contextmanager
def private_folder(parent: str) -> Iterator[str]:
    """A fresh mode-700 folder under `parent`, locked while in use, removed at the end."""
    import fcntl
    import tempfile

    os.makedirs(parent, exist_ok=True)
    # made under a name the reaper ignores, locked, then renamed: never seen unlocked
    staging = tempfile.mkdtemp(prefix=".new-", dir=parent)
    fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = os.path.join(parent, f"{os.getpid()}-{os.urandom(4).hex()}")
        os.rename(staging, folder)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)


def reap_stale_overlays(parent: str) -> None:
    """Remove the copies of dvc processes that died (SIGKILL) before their cleanup."""
    import fcntl

    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(parent, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # not a folder (or someone else's): leave it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live process holds it
        try:
            logger.debug("removing config copies left by a dead process: %s", path)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def _has_section(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fobj:
            return any(line.strip().lower().startswith(f"[{SECTION}]") for line in fobj)
    except OSError:
        return False


def _write_without_section(src: str, dst: str) -> None:
    """The copy is created with the original's mode (never wider), not chmod-ed after the fact."""
    from configobj import ConfigObj

    conf = ConfigObj(src, encoding="utf-8", interpolation=False)
    for key in [k for k in conf if k.lower() == SECTION]:
        del conf[key]
    buffer = io.BytesIO()
    conf.write(buffer)
    mode = os.stat(src).st_mode & 0o666
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode & 0o600)
    with os.fdopen(fd, "wb") as fobj:
        fobj.write(buffer.getvalue())
        # readable by whoever may read the original (a container user other than ours)
        os.fchmod(fobj.fileno(), mode)

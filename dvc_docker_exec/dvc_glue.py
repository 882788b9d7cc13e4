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
import sys
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple


from dvc_docker_exec.config import DockerSettings, dvc_schema
from dvc_docker_exec.boundary.private_files import PRIVATE_DIR, UnsafePathError, private_folder, reap_stale_overlays
from dvc_docker_exec.backends import session
from dvc_docker_exec.backends.session import engine_ids as _engine_ids, image_place, session as _session, state as _state
from dvc_docker_exec.stage import mounts as stage_mounts
from dvc_docker_exec.stage.settings import SECTION, git_root as _git_root, settings_for

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


def patch_stage(module: Any) -> None:
    """Check the daemon and the image before `Stage.run` deletes the stage's outputs.

    Why here: `Stage.run` removes the outputs first and reaches `cmd_run` only
    afterwards, so an unreachable daemon or an image that is absent and cannot
    be pulled used to cost the outputs of the last good run (issue 20, item
    3). `ready` makes the connection and applies the pull policy the run needs
    anyway; `cmd_run` then finds both done (one ping, one inspect per process).
    """
    stage_class = module.Stage
    original = stage_class.run

    @functools.wraps(original)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        dry = kwargs.get("dry", args[0] if args else False)
        # the condition under which DVC removes the outputs of a stage with a command
        if self.cmd and not self.frozen and not dry:
            settings = settings_for(self)
            if settings is not None:
                ready(self, settings, check_only=True)
        return original(self, *args, **kwargs)

    stage_class.run = run
    module._dvc_docker_exec_patched = True


def patch_exec_run(module: Any) -> None:
    """`dvc exp exec-run` (a queue worker's experiment) logs each error once.

    Why: `BaseExecutor.reproduce` logs the exception of a failed repro
    (log_errors, dvc/repo/experiments/executor/base.py) and re-raises it, and
    DVC's `main` then logs the same exception again, so `dvc queue logs`
    showed every error twice (issue 20, item 5; DVC does it for a failing host
    command too). The filter drops a record for an exception already logged.
    """
    command = module.CmdExecutorRun
    original = command.run

    @functools.wraps(original)
    def run(self: Any) -> Any:
        once = _OncePerException()
        for name in ("dvc", "dvc_objects", "dvc_data"):  # the loggers dvc.logger.setup gives handlers
            for handler in logging.getLogger(name).handlers:
                if not any(isinstance(f, _OncePerException) for f in handler.filters):
                    handler.addFilter(once)
        return original(self)

    command.run = run
    module._dvc_docker_exec_patched = True


class _OncePerException(logging.Filter):
    """Lets through the first record of an exception object; later records of that same object are dropped.

    One instance on every handler: a record passes each handler, so it is
    remembered by identity of the record, not only of the exception.
    """

    def __init__(self) -> None:
        super().__init__()
        self._first: dict = {}  # id(exception) -> (exception, its first record)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        seen = self._first.setdefault(id(exc), (exc, record))
        return seen[0] is not exc or seen[1] is record


def register_commands(module: Any) -> None:
    """Add the `dvc docker` command group to DVC's CLI.

    DVC has no entry point for commands: `dvc.cli.parser` builds its parser
    from the module-level COMMANDS list in an lru_cache'd get_main_parser().
    We extend the list right after the module runs, before anything builds
    the parser, and drop the memo in case it was built already.
    """
    from dvc_docker_exec import commands

    if commands not in module.COMMANDS:
        module.COMMANDS.append(commands)
    cache_clear = getattr(module.get_main_parser, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()
    module._dvc_docker_exec_patched = True


def _patch_with(name: str) -> Callable[[Any], None]:
    """A hook target that delegates to tracking.<name> (provenance, see tracking.py)."""

    def patch(module: Any) -> None:
        from dvc_docker_exec.dependency import tracking

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

    from dvc_docker_exec.api.engine import check_limits
    from dvc_docker_exec.types.spec import build_spec, container_env

    logger.info("Running stage '%s' in a container of image '%s':", stage.addressing, settings.image)
    commands = dvc_run._enforce_cmd_list(stage.cmd)
    dvc_env = dvc_run.prepare_kwargs(stage, run_env=run_env)["env"]
    env = container_env(dvc_env, run_env, settings, os.environ, home=None)
    facts_kwargs = dict(
        uid=os.getuid(), gid=os.getgid(), pid=os.getpid(), tty=_tty(), user_name=_user_name(), host=os.uname().nodename
    )
    # --dry asks the daemon nothing, unless this process already connected (the image's status):
    # then its user mapping and path translation are the run's
    asked = not dry or "client" in _state
    if asked:
        facts_kwargs.update(_engine_ids())

    if dry:
        # the same functions as the run below, creating nothing: what is made at run time is a placeholder
        with config_overlays(stage, dry=True) as overlays:
            facts = stage_mounts.stage_facts(stage, overlays, settings, dry=True)
        mount_for = _mount_for(stage, settings, dry=True)
        notes = [] if asked else [DRY_NOT_ASKED]
        if overlays:
            notes.append(f"{RUN_PLACEHOLDER} is the folder each run makes for its config copies")
        for cmd in commands:
            dvc_run.display_command(cmd)
            spec = build_spec(settings, facts, cmd, env, mount_for, **facts_kwargs)
            logger.info("%s", _run_line(spec, [*notes, *_made_first(spec)]))
        return

    # The repo lock is released while the command runs (DVC's unlocked_repo), as for a host run.
    from dvc_docker_exec.backends.runner import CONNECTION_LOST, ImageMissingError, StageSignals, pause_point

    runner, images, settings, image_id = ready(stage, settings)  # type: ignore[misc]
    try:
        mount_for = _mount_for(stage, settings)
        home = lease_home(stage)
        second_wall(_state["client"], home, runner.KIND)
        lease = hold_lease(home, runner.LEASE)
    except CONNECTION_LOST:
        raise _lost_before(stage) from None
    _refuse_after_tampering(stage)
    # Signals wait for each step to finish: no container in state Created, no copy left behind.
    from dvc_docker_exec.boundary import tamper
    from dvc_docker_exec.types.mounts import check_plan
    from dvc_docker_exec.boundary.sockets import one_scan
    from dvc_docker_exec.stage.trust import Invoker

    # from DVC's own run_env (its experiment executor), never from docker.env
    experiment = bool((run_env or {}).get("DVC_EXP_NAME"))
    invoker = Invoker(os.getuid(), os.getgid(), (os.path.normpath(stage.repo.root_dir), _git_root(stage)))
    with StageSignals() as signals, config_overlays(stage) as overlays:
        pause_point("overlays", signals)
        for cmd in commands:
            dvc_run.display_command(cmd)
            # the plan is made again for each container, from what the paths resolve to now (issue 16, P2)
            with one_scan():  # the daemon sockets found once for all the mounts of this container
                facts = stage_mounts.stage_facts(stage, overlays, settings, invoker, experiment=experiment)
                spec = build_spec(settings, facts, cmd, env, mount_for, image_id=image_id, lease=lease, **facts_kwargs)
                check_plan(spec.mounts, facts.protected, mount_for)
            watched = tamper.watch_list(facts.protected, [p for p, _ in stage_mounts.user_config_places(stage)])
            logger.debug("%s", _run_line(spec))
            if settings.backend == "engine":
                # Swarm nodes enforce limits themselves; the manager's engine says nothing of them
                check_limits(_state["engine"], spec.mem_limit, spec.nano_cpus, settings.allow_unlimited)
            with watching(stage, watched):
                try:
                    runner.run(spec, cmd, signals)
                except ImageMissingError:
                    # removed since this process last saw it (another stage, `docker rmi` meanwhile):
                    # the pull policy applies again, as it would to a new dvc process (issue 18)
                    if settings.pull == "never" or settings.build:
                        raise
                    _pull_again(settings, images, spec.image_id)
                    runner.run(spec, cmd, signals)


TAMPERED = "tampered"  # _state key: the first tamper report of this process


@contextmanager
def watching(stage: Any, watched: Sequence[str]) -> Iterator[None]:
    """P4: fail the stage when anything in `watched` changed while its container ran.

    Checked whether the container succeeded or failed (a failing stage may
    have planted something first); the tamper report replaces the stage's
    own error, since it is the one the user must act on. Raising here, inside
    DVC's cmd_run, means DVC writes no dvc.lock entry (and so no image
    record: it is one of the entry's deps) for the stage.
    """
    from dvc_docker_exec.boundary import tamper

    before = tamper.snapshot(watched)
    try:
        yield
    finally:
        found = tamper.check(before, watched)
        if found:
            _state[TAMPERED] = found = f"{found} while its container ran"
            raise _tamper_error(stage, found)


def _tamper_error(stage: Any, found: str) -> Exception:
    from dvc_docker_exec.errors import DockerExecError

    return DockerExecError(
        f"stage '{stage.addressing}': {found}; nothing was recorded. "
        "Inspect that path (Git hooks, core.fsmonitor and core.hooksPath in .git/config, commondir, "
        ".dvc/config.local) before you run dvc or git here again; if you changed it yourself, run again"
    )


def _refuse_after_tampering(stage: Any) -> None:
    """A run never continues after its own config changed (`--keep-going`, `exp run` of several stages)."""
    found = _state.get(TAMPERED)
    if found:
        raise _tamper_error(stage, f"not run: {found} (an earlier stage of this dvc process)")


READY = "_docker_exec_ready"  # attribute of a Stage: what `ready` found for it


def ready(
    stage: Any, settings: DockerSettings, check_only: bool = False
) -> Optional[Tuple[Any, Any, DockerSettings, Optional[str]]]:
    """(backend, image manager, settings, image ID) once the daemon answers and the image is there.

    The image is there under the pull policy, or built (docker.build). The
    settings come back pinned to a digest on Swarm; the image ID is the one
    read in the same inspect whose identity DVC records (None on Swarm: the
    nodes pull by digest). Called before DVC removes the stage's outputs
    (patch_stage) and again by cmd_run: the answer is kept on the stage
    object, so the second call costs nothing and a later stage asks again
    (an image removed meanwhile is pulled again, issue 18).

    `check_only` (before the outputs go): an image to build is not built yet,
    since DVC may still restore the stage from its run-cache (the identity of
    a built image is its inputs' hash, known without a build); only the
    daemon is asked.
    """
    from dvc_docker_exec.backends.runner import CONNECTION_LOST

    found = getattr(stage, READY, None)
    if found is not None:
        return found
    try:
        runner, images = _session(settings.backend)
        # On Swarm the policy applies to the manager's engine: it tells the identity
        # (recorded for provenance) and the nodes then pull the image themselves from
        # a registry they reach, by its registry digest where the manager knows one,
        # so every node runs the same bytes.
        image_id = None
        if settings.build and check_only:
            return None
        if settings.build:
            settings, image_id = _built(stage, settings)
        else:
            images.ensure(
                settings.image, settings.pull, image_place(settings.backend), settings.platform, _recorded(stage)
            )
            if settings.backend == "swarm":
                settings = _pinned(settings, images)
            else:
                # the ID from the inspect whose identity DVC records (issue 19, item 6)
                image_id = images.identities.image_id(settings.image)
    except CONNECTION_LOST:
        raise _lost_before(stage) from None
    found = (runner, images, settings, image_id)
    setattr(stage, READY, found)
    return found


def _pull_again(settings: DockerSettings, images: Any, image_id: Optional[str]) -> None:
    """Pull an image removed during the run; it must be the image whose identity is recorded."""
    from dvc_docker_exec.errors import DockerExecError

    images.forget(settings.image)
    images.ensure(settings.image, settings.pull, image_place(settings.backend), settings.platform)
    now = images.identities.image_id(settings.image)
    if image_id and now != image_id:
        raise DockerExecError(
            f"image '{settings.image}' was removed while dvc ran, and pulling it again gave another image "
            f"({now}, not {image_id}); nothing was recorded: run again"
        )


def _recorded(stage: Any) -> Optional[str]:
    """The identity dvc.lock records for the stage (named in an absent image's error)."""
    from dvc_docker_exec.dependency.tracking import image_dependency_of

    dep = image_dependency_of(stage)
    return dep.recorded() if dep is not None else None


def _lost_before(stage: Any) -> Exception:
    from dvc_docker_exec.errors import DockerExecError

    return DockerExecError(
        f"lost the connection to the Docker daemon at {session.endpoint().describe()} before stage "
        f"'{stage.addressing}' started: nothing was run"
    )


def _built(stage: Any, settings: DockerSettings) -> Tuple[DockerSettings, Optional[str]]:
    """(settings, local image ID) of a stage whose image is built (docker.build): built now unless it exists.

    On Swarm the image exists only on the manager: it is pushed to the
    machine's docker.registry and the nodes are pinned to its digest (no ID
    to create from there); without a registry, one error before any service.
    """
    from dataclasses import replace

    from dvc_docker_exec.errors import DockerExecError
    from dvc_docker_exec.stage.settings import build_spec_for

    if settings.backend == "swarm" and not settings.registry:
        raise DockerExecError(
            f"stage '{stage.addressing}': an image built here (docker.build) must reach the Swarm nodes: "
            "set a registry they all reach on this machine, `dvc config --local docker.registry HOST:PORT`"
        )
    builder = session.builder()
    identity, image_id = builder.ensure(build_spec_for(stage, settings))
    if settings.backend != "swarm":
        return settings, image_id
    pinned = builder.push(build_spec_for(stage, settings), identity, image_id, str(settings.registry))
    logger.debug("built image '%s' pinned for the Swarm nodes as '%s'", settings.image, pinned)
    return replace(settings, image=pinned), None


def lease_home(stage: Any) -> str:
    """The project whose .dvc/tmp/docker-exec holds this process's lease: the one the user works in.

    For `exp run --temp` and queued experiments that is the parent project,
    not the temp copy: DVC deletes the copy of a killed experiment, and with
    it the sign that its dvc died (a container it left in state Created
    would then never be found by the second wall).
    """
    return stage_mounts.parent_repo(stage) or os.path.normpath(stage.repo.root_dir)


def second_wall(client: Any, home: str, kind: str) -> None:
    """Nothing of a killed run of this project may run alongside this stage: remove its containers first.

    Asks the daemon only when a dvc process of this project died since the
    last check (its lease folder is left unlocked), so a stage pays nothing
    for it otherwise; those folders are reaped once their containers were
    dealt with. The project's experiments' temp copies count as the project.
    """
    from dvc_docker_exec.backends.containers import clear_orphans
    from dvc_docker_exec.backends.lease import lease_parents, reap, stale_folders

    stale = stale_folders(lease_parents(os.path.join(home, ".dvc", "tmp")))
    if stale:
        clear_orphans(client, home, kind)
        reap(stale)


def hold_lease(home: str, kind: str) -> Any:
    """This process's lease in the project's .dvc/tmp/docker-exec (lease.py): its containers stop when dvc is gone.

    No mount is added for it: the project is mounted at the same path in
    every stage container (the parent project too, for experiments' temp
    copies), and that folder is read-only there (stage_mounts.protection_rules).
    """
    from dvc_docker_exec.backends.lease import hold

    return hold(os.path.join(home, ".dvc", "tmp", OVERLAY_DIR), kind)


def _pinned(settings: DockerSettings, images: Any) -> DockerSettings:
    """settings with the image as `repo@sha256:...` when its identity is a registry digest."""
    from dataclasses import replace

    identity = images.identities.identity(settings.image)
    if identity and "@sha256:" in identity:
        logger.debug("image '%s' pinned for the Swarm nodes as '%s'", settings.image, identity)
        return replace(settings, image=identity)
    return settings


DRY_NOT_ASKED = (
    "--dry did not ask the daemon: paths are shown as DVC sees them (translated when DVC runs in a container, "
    "see `dvc docker doctor`) and the user is not mapped for a rootless engine"
)


def _made_first(spec: Any) -> List[str]:
    """--dry: the bind sources a run makes before its container (the cache, .dvc/tmp folders), as a note."""
    missing = [
        m["Source"] for m in spec.mounts
        if m["Type"] == "bind" and RUN_PLACEHOLDER not in m["Source"] and not os.path.lexists(m["Source"])
    ]
    return [f"a run first makes {', '.join(dict.fromkeys(missing))}"] if missing else []


def _run_line(spec: Any, notes: Sequence[str] = ()) -> str:
    return f"{spec.docker_run_line()}\n  (differs from this run: {'; '.join([*notes, *spec.run_line_differences()])})"


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
            from dvc_docker_exec.boundary.paths import IdentityPaths

            return _positional(IdentityPaths("dry run"))
        from dvc_docker_exec.boundary.paths import detect_host_paths

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


OVERLAY_DIR = PRIVATE_DIR  # in .dvc/tmp: one private folder per running dvc process


RUN_PLACEHOLDER = "<run>"  # in --dry: the per-run folder of the config copies (`<pid>-<random>` at run time)


@contextmanager
def config_overlays(stage: Any, dry: bool = False) -> Iterator[Tuple[Tuple[str, str], ...]]:
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
    if dry:  # where the run puts the copies; nothing is written
        yield tuple((os.path.join(parent, RUN_PLACEHOLDER, os.path.basename(p)), p) for p in needs)
        return
    reap_stale_overlays(parent)
    if not needs:
        yield ()
        return
    with ExitStack() as stack:
        try:
            folder = stack.enter_context(private_folder(parent))
        except UnsafePathError as exc:
            from dvc_docker_exec.errors import DockerExecError

            raise DockerExecError(f"stage '{stage.addressing}': {exc}") from None
        overlays = []
        for path in needs:
            copy = os.path.join(folder, os.path.basename(path))
            _write_without_section(path, copy)
            overlays.append((copy, path))
        yield tuple(overlays)


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

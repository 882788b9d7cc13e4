"""Where the plugin meets DVC: the patch points, and the orchestration of one stage (``ready``, ``cmd_run``).

Orchestration only: what a stage gets comes from stage/ (settings, mounts,
config copies), how it runs from its backend (backends/: every difference
between one engine and Swarm is a method there), what it may not touch from
boundary/. See docs/architecture.md.

``dvc.stage.run.run_stage`` looks ``cmd_run`` up at call time, so replacing
the module attribute routes every stage command through ``cmd_run`` below,
after DVC's run-cache check (a run-cache hit starts no container) and before
DVC hashes the outputs on the host. The lock's ``cmd`` stays the user's
command: we never touch ``stage.cmd``.
"""

from __future__ import annotations

import logging
import functools
import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple


from dvc_docker_exec.config import DockerSettings, dvc_schema
from dvc_docker_exec.backends import session
from dvc_docker_exec.backends.session import engine_ids as _engine_ids, session as _session, state as _state
from dvc_docker_exec.stage import mounts as stage_mounts
from dvc_docker_exec.stage.overlays import RUN_PLACEHOLDER, config_overlays
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
    from dvc_docker_exec.backends.lease import hold_in, second_wall
    from dvc_docker_exec.backends.runner import CONNECTION_LOST, ImageMissingError, StageSignals, pause_point

    runner, images, settings, image_id = ready(stage, settings)  # type: ignore[misc]
    try:
        mount_for = _mount_for(stage, settings)
        home = stage_mounts.lease_home(stage)
        second_wall(_state["client"], home, runner.KIND)
        lease = hold_in(home, runner.LEASE)
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
            runner.check_limits(spec, settings.allow_unlimited)
            with watching(stage, watched):
                try:
                    runner.run(spec, cmd, signals)
                except ImageMissingError:
                    # removed since this process last saw it (another stage, `docker rmi` meanwhile):
                    # the pull policy applies again, as it would to a new dvc process (issue 18)
                    if settings.pull == "never" or settings.build:
                        raise
                    images.pull_again(settings, runner.image_place, spec.image_id)
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
        if settings.build:
            if check_only:
                return None
            from dvc_docker_exec.stage.settings import build_spec_for

            settings, image_id = runner.built(stage.addressing, settings, session.builder(), build_spec_for(stage, settings))
        else:
            images.ensure(settings.image, settings.pull, runner.image_place, settings.platform, _recorded(stage))
            settings, image_id = runner.pulled(settings, images)
    except CONNECTION_LOST:
        raise _lost_before(stage) from None
    found = (runner, images, settings, image_id)
    setattr(stage, READY, found)
    return found


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
    """path -> Mount at the same path; translated when DVC runs in a container (session.mount_for)."""
    return session.mount_for(stage.repo.root_dir, _git_root(stage), settings.host_root, dry=dry)

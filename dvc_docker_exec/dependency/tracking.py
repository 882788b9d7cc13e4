"""The image as a DVC dependency: where provenance meets DVC.

Design (issue 8, item 9; issue 17). DVC has no registry of dependency types,
and ``meta`` never makes a stage changed. The image is a *non-file dependency*
of each container stage, as DVC's own dataset dependency (``ds://``) is: an
:class:`~.image.ImageDependency` with the path ``docker:<image>``. Then

* ``dvc.lock`` records it among the stage's ``deps`` (``path`` + the
  identity under ``dataset``, DVC's lock-schema key for such deps; the format
  is ``provenance.lock_entry``); the lock's ``cmd`` stays the user's, and
  ``dvc.lock`` is the only record (issue 16, P8: what status, doctor and
  ``exp show`` report cannot disagree with it);
* DVC compares it (``dvc status``: the dependency's status is ours) and the
  run-cache key (``to_single_stage_lockfile``) holds it, so a run-cache entry
  is only restored for the same identity (A -> B -> A);
* the user's params are untouched (``params show/diff``); ``dvc exp show``
  gets one column per distinct image (``docker:<image>``, 12 hex digits);
* a DVC without the plugin finds an extra deps entry in ``dvc.lock`` it has
  no dependency for, and ignores it (it does not crash).

What DVC cannot do by itself is know the *current* identity: the dependency
reads it from the daemon. Patch points (both DVC 3.50 and latest):

* ``StageLoader.load_stage`` and ``StageLoad.create`` (wrapped): every
  pipeline stage gets the dependency, whether loaded from ``dvc.yaml`` or
  created by ``dvc stage add`` / ``dvc run`` / ``Repo.run`` (there, after
  ``restore_fields`` brought the stage's ``meta`` back). The plugin never
  rewrites ``dvc.yaml``: the dependency is gone when the plugin is.
* ``serialize.to_pipeline_file`` (wrapped): never writes the dependency into
  ``dvc.yaml``; ``serialize.to_single_stage_lockfile`` (wrapped): a stage that
  now runs on the host writes no image (nor keys the run cache with one).
* ``dvc.stage.cache._can_hash`` (wrapped): a stage without dependencies of
  its own stays out of the run cache, as without the plugin.
* ``SerializableExp.from_repo`` (wrapped): the ``exp show`` columns.
* ``dvc.repo.status.status`` and ``dvc.repo.reproduce.reproduce`` with
  ``dry`` (wrapped, before ``Repo``'s class body imports them): inside
  ``dvc status`` and ``--dry`` nothing is pulled. An absent image is a change
  (``deleted``, like a missing file dependency: what ran is not here); an
  unreachable daemon means "image not checked" (a warning: it cannot tell);
  everywhere else (repro, exp run, commit) the daemon error stands.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Optional

from dvc_docker_exec.types import provenance
from dvc_docker_exec.errors import DockerExecError

logger = logging.getLogger(f"dvc.{__name__}")



# --- patch points ------------------------------------------------------------------


def image_dependency_of(stage: Any) -> Any:
    """The ImageDependency of a loaded stage (public API), or None when its image is not tracked.

    Its `image` is the configured reference (None: the stage runs on the host
    now), `recorded()` the identity in dvc.lock, `record()` that as a
    provenance.Record, `current()` the identity now (daemon), `status()`
    DVC's status entry for it.
    """
    from dvc_docker_exec.dependency.image import ImageDependency

    return next((dep for dep in stage.deps if isinstance(dep, ImageDependency)), None)


def image_dependency(stage: Any, lock_data: Optional[dict]) -> Any:
    """The ImageDependency of a pipeline stage, if any; `lock_data` is its dvc.lock entry."""
    from dvc_docker_exec.config import SettingError
    from dvc_docker_exec.stage.settings import settings_for
    from dvc_docker_exec.dependency.image import ImageDependency

    if stage.is_callback:
        # DVC reruns a stage without deps and outs every time (a "callback
        # stage"); a dependency of ours would make it a normal stage
        return None
    recorded = provenance.record_from_lock(stage.name, lock_data)
    try:
        settings = settings_for(stage)
    except (DockerExecError, SettingError) as exc:
        return ImageDependency(stage, image=None, recorded=recorded, error=exc)
    if settings is not None:
        if not settings.track:
            return None
        from dvc_docker_exec.stage.settings import build_spec_for, lock_name

        try:
            build = build_spec_for(stage, settings)
        except DockerExecError as exc:  # no Dockerfile there: raised where the identity is needed
            return ImageDependency(stage, settings.image, recorded, error=exc)
        return ImageDependency(
            stage, settings.image, recorded, pull=settings.pull, backend=settings.backend, build=build,
            platform=settings.platform, name=lock_name(stage, settings),
        )
    # a host stage: only one that ran in a container before (turned off) needs the dependency
    if recorded is None or _tracking_off(stage):
        return None
    return ImageDependency(stage, image=None, recorded=recorded)


def attach(stage: Any, lock_data: Optional[dict]) -> None:
    """Give a pipeline stage its image dependency (once); never breaks DVC because of the plugin."""
    if not getattr(stage, "name", None) or image_dependency_of(stage) is not None:
        return
    try:
        dep = image_dependency(stage, lock_data)
    except Exception as exc:  # noqa: BLE001 - loading dvc.yaml must not fail because of us
        logger.warning("dvc-docker-exec: image of stage '%s' not tracked: %r", stage.name, exc)
        return
    if dep is not None:
        stage.deps.append(dep)


def _tracking_off(stage: Any) -> bool:
    from dvc_docker_exec.stage.settings import tracking_off

    return tracking_off(stage)


def patch_loader(module: Any) -> None:
    loader = module.StageLoader
    original = loader.load_stage.__func__

    @functools.wraps(original)
    def load_stage(cls: Any, dvcfile: Any, name: Any, stage_data: Any, lock_data: Any = None) -> Any:
        stage = original(cls, dvcfile, name, stage_data, lock_data)
        attach(stage, lock_data)
        return stage

    loader.load_stage = classmethod(load_stage)


def patch_stage_create(module: Any) -> None:
    """Stages made by `dvc stage add` (with or without --run), `dvc run`, `Repo.run` get the dependency too.

    Why here and not in `create_stage`: `StageLoad.create` restores the
    stage's `meta` (restore_fields) after creating it, and `meta.docker`
    chooses the image. The run cache's own temporary stages (create_stage)
    only carry outputs and need none.
    """
    stage_load = module.StageLoad
    original = stage_load.create

    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        stage = original(self, *args, **kwargs)
        from dvc.stage import PipelineStage

        if isinstance(stage, PipelineStage):
            attach(stage, None)  # as DVC's own deps: nothing recorded until it runs or is committed
        return stage

    stage_load.create = create


def _without_image_deps(original: Callable, drop: Callable[[Any], bool] = lambda dep: True) -> Callable:
    @functools.wraps(original)
    def wrapper(stage: Any, *args: Any, **kwargs: Any) -> Any:
        from dvc_docker_exec.dependency.image import ImageDependency

        deps = stage.deps
        stage.deps = [dep for dep in deps if not (isinstance(dep, ImageDependency) and drop(dep))]
        try:
            return original(stage, *args, **kwargs)
        finally:
            stage.deps = deps

    return wrapper


def patch_stage_cache(module: Any) -> None:
    """A stage whose only dependency is ours stays out of the run cache, as without the plugin.

    Why: DVC does not run-cache a stage without dependencies (its outputs may
    come from outside, e.g. a download); the image alone must not make DVC
    restore such outputs instead of running the command.
    """
    can_hash = module._can_hash

    @functools.wraps(can_hash)
    def _can_hash(stage: Any) -> bool:
        from dvc_docker_exec.dependency.image import ImageDependency

        if stage.deps and all(isinstance(dep, ImageDependency) for dep in stage.deps):
            return False
        return can_hash(stage)

    module._can_hash = _can_hash

    get_stage_hash = module._get_stage_hash

    @functools.wraps(get_stage_hash)
    def _get_stage_hash(stage: Any) -> Any:
        # the key holds a built image's identity (its inputs' hash), not the image ID it produced here
        with provenance.keying():
            return get_stage_hash(stage)

    module._get_stage_hash = _get_stage_hash


def patch_serialize(module: Any) -> None:
    module.to_pipeline_file = _without_image_deps(module.to_pipeline_file)
    # a stage that now runs on the host: its lock entry and run-cache key hold no image, as a plain host run's
    module.to_single_stage_lockfile = _without_image_deps(module.to_single_stage_lockfile, lambda dep: dep.image is None)


def image_columns(repo: Any) -> dict:
    """`dvc exp show` columns: `docker:<image>` -> the 12 hex digits of each identity recorded for it."""
    from dvc_docker_exec.dependency.image import ImageDependency

    found: dict = {}
    for dep in repo.index.deps:
        record = dep.record() if isinstance(dep, ImageDependency) else None
        if record is not None:
            found.setdefault(provenance.dep_path(record.image or str(dep.image or "")), set()).add(
                provenance.short_id(record.identity)
            )
    return {column: ",".join(sorted(ids)) for column, ids in found.items()}


def patch_exp_serialize(module: Any) -> None:
    """One `exp show` column per distinct image (not one per stage), placed with the deps, after the params."""
    exp_class = module.SerializableExp
    original = exp_class.from_repo.__func__

    @functools.wraps(original)
    def from_repo(cls: Any, repo: Any, *args: Any, **kwargs: Any) -> Any:
        exp = original(cls, repo, *args, **kwargs)
        try:
            columns = image_columns(repo)
        except Exception as exc:  # noqa: BLE001 - never break `exp show` because of the plugin
            logger.debug("dvc-docker-exec: no image columns: %r", exc)
            return exp
        # DVC 3.50 lists every dep by its path (ours too, see ImageDependency.fs_path): replace those
        for key in [key for key in exp.deps if provenance.is_dep_path(key)]:
            del exp.deps[key]
        exp.deps.update({column: module.ExpDep(hash=ids, size=None, nfiles=None) for column, ids in columns.items()})
        return exp

    exp_class.from_repo = classmethod(from_repo)


def _looking_only(original: Callable, when: Callable[[dict], bool]) -> Callable:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not when(kwargs):
            return original(*args, **kwargs)
        with provenance.looking_only():
            return original(*args, **kwargs)

    return wrapper


def patch_status(module: Any) -> None:
    looking = _looking_only(module.status, lambda kwargs: True)

    @functools.wraps(looking)
    def status(repo: Any, *args: Any, **kwargs: Any) -> Any:
        result = looking(repo, *args, **kwargs)
        mention_orphans(repo)
        return result

    module.status = status


def mention_orphans(repo: Any) -> None:
    """`dvc status` names a container of this repo whose dvc process is gone (the next run would remove it).

    Asks the daemon only when a dvc process of this repo died since the last
    run (its lease folder is left unlocked): a plain `dvc status` stays as
    fast as before and needs no daemon.
    """
    from dvc_docker_exec.backends.lease import lease_parents, stale_folders

    tmp_dir = getattr(repo, "tmp_dir", None)
    if not tmp_dir or not stale_folders(lease_parents(tmp_dir)):
        return
    try:
        from dvc_docker_exec.backends.containers import list_containers
        from dvc_docker_exec.backends.session import client

        found = [c for c in list_containers(client(), repo.root_dir) if c.orphaned]
    except Exception as exc:  # noqa: BLE001 - a hint, never a failure of `dvc status`
        logger.debug("orphan check skipped: %s", exc)
        return
    for orphan in found:
        logger.warning(
            "%s %s of stage '%s' (%s) outlived its dvc process %s: the next `dvc repro` removes it, "
            "or run `dvc docker prune`",
            orphan.kind, orphan.name, orphan.stage, orphan.state, orphan.pid,
        )


def patch_reproduce(module: Any) -> None:
    # `dvc repro --dry` / `dvc exp run --dry` run nothing: they need no daemon and pull nothing
    module.reproduce = _looking_only(module.reproduce, lambda kwargs: bool(kwargs.get("dry")))

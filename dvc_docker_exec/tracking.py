"""The image as a DVC dependency: where provenance meets DVC.

Design (issue 8, item 9). DVC has no registry of dependency types, and
``meta`` never makes a stage changed. Of the known routes we take the one that
leaves every comparison to DVC itself: each container stage gets a *params*
dependency on ``dvc.docker.lock`` (next to ``dvc.lock``) with the key
``<stage>.id``. Then

* ``dvc.lock`` records ``params: {dvc.docker.lock: {train.id: <identity>}}``
  (LOCK_FILE_STAGE_SCHEMA allows params; the lock's ``cmd`` stays the user's);
* the run-cache key (``to_single_stage_lockfile``) holds params values, so a
  run-cache entry is only restored for the same identity (A -> B -> A);
* ``dvc exp show`` and ``dvc params diff`` read params files at each revision,
  and ``dvc.docker.lock`` is committed with each experiment;
* a DVC without the plugin finds an extra params entry in ``dvc.lock`` it has
  no dependency for, and ignores it (it does not crash).

What DVC cannot do by itself is know the *current* identity: the dependency
(:class:`ImageDependency`, a ``ParamsDependency``) reads its value from the
daemon, not from the file; the file holds what ran and is written when DVC
writes the stage's lock entry. Patch points (both DVC 3.50 and latest):

* ``StageLoader.load_stage`` (wrapped): add the dependency to loaded stages.
  Why not ``dvc.yaml``: the plugin never rewrites it, and a dependency injected
  at load is gone when the plugin is (see README "Provenance").
* ``serialize.to_pipeline_file`` (wrapped): never writes the injected
  dependency back into ``dvc.yaml``.
* ``dvc.stage.cache._can_hash`` (wrapped): a stage without dependencies of
  its own stays out of the run cache, as without the plugin.
* ``ProjectFile._dump_lockfile`` (wrapped; 3.50 passes one stage, later
  versions a list) and ``Lockfile.remove_stage``: keep ``dvc.docker.lock`` in
  step with ``dvc.lock`` (repro, exp run, commit, remove).
* ``dvc.repo.status.status`` and ``dvc.repo.reproduce.reproduce`` with
  ``dry`` (wrapped, before ``Repo``'s class body imports them): inside
  ``dvc status`` and ``--dry`` an unreachable daemon or an absent image means
  "image not checked" (a warning), never a pull; everywhere else (repro, exp
  run, commit) the daemon error stands.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable, Optional

from . import provenance
from .errors import DockerExecError

logger = logging.getLogger(f"dvc.{__name__}")



# --- patch points ------------------------------------------------------------------


def _record_path_for(dvcfile: Any) -> str:
    return provenance.record_path(dvcfile.path)


def image_dependency_of(stage: Any) -> Any:
    """The ImageDependency of a loaded stage (public API), or None when its image is not tracked.

    Its `image` is the configured reference (None: the stage runs on the host
    now), `recorded()` the identity in dvc.lock, `current()` the identity now
    (daemon), `status()` DVC's status entry for it.
    """
    from .image_dep import ImageDependency

    return next((dep for dep in stage.deps if isinstance(dep, ImageDependency)), None)


def image_dependency(stage: Any, dvcfile: Any, lock_data: Optional[dict]) -> Any:
    """The ImageDependency to add to a freshly loaded pipeline stage, if any."""
    from .config import SettingError
    from .stage_settings import settings_for
    from .image_dep import ImageDependency

    if stage.is_callback:
        # DVC reruns a stage without deps and outs every time (a "callback
        # stage"); a dependency of ours would make it a normal stage
        return None
    key = provenance.param_key(stage.name)
    path = os.path.relpath(_record_path_for(dvcfile), stage.wdir)
    try:
        settings = settings_for(stage)
    except (DockerExecError, SettingError) as exc:
        return ImageDependency(stage, path, key, image=None, error=exc)
    if settings is not None:
        if not settings.track:
            return None
        from .stage_settings import build_spec_for

        try:
            build = build_spec_for(stage, settings)
        except DockerExecError as exc:  # no Dockerfile there: raised where the identity is needed
            return ImageDependency(stage, path, key, image=settings.image, error=exc)
        return ImageDependency(
            stage, path, key, image=settings.image, pull=settings.pull, backend=settings.backend, build=build,
            platform=settings.platform,
        )
    # a host stage: only one that ran in a container before (turned off) needs the dependency
    recorded = ((lock_data or {}).get("params") or {}).get(path) or {}
    if key not in recorded or _tracking_off(stage):
        return None
    return ImageDependency(stage, path, key, image=None)


def _tracking_off(stage: Any) -> bool:
    from .config import DockerSettings
    from .stage_settings import config_snapshot

    try:  # every level the stage's settings come from (.dvc/docker.yaml too)
        return not DockerSettings.from_levels(config_snapshot(stage.repo)).track
    except (ValueError, DockerExecError):
        return False


def patch_loader(module: Any) -> None:
    loader = module.StageLoader
    original = loader.load_stage.__func__

    @functools.wraps(original)
    def load_stage(cls: Any, dvcfile: Any, name: Any, stage_data: Any, lock_data: Any = None) -> Any:
        stage = original(cls, dvcfile, name, stage_data, lock_data)
        try:
            dep = image_dependency(stage, dvcfile, lock_data)
        except Exception as exc:  # never break loading dvc.yaml because of the plugin
            logger.warning("dvc-docker-exec: image of stage '%s' not tracked: %r", name, exc)
            return stage
        if dep is not None:
            recorded = ((lock_data or {}).get("params") or {}).get(dep.def_path)
            dep.fill_values(recorded)
            stage.deps.append(dep)
        return stage

    loader.load_stage = classmethod(load_stage)


def _without_image_deps(original: Callable) -> Callable:
    @functools.wraps(original)
    def wrapper(stage: Any, *args: Any, **kwargs: Any) -> Any:
        from .image_dep import ImageDependency

        deps = stage.deps
        stage.deps = [dep for dep in deps if not isinstance(dep, ImageDependency)]
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
        from .image_dep import ImageDependency

        if stage.deps and all(isinstance(dep, ImageDependency) for dep in stage.deps):
            return False
        return can_hash(stage)

    module._can_hash = _can_hash


def patch_serialize(module: Any) -> None:
    module.to_pipeline_file = _without_image_deps(module.to_pipeline_file)


def read_records_for(path: str) -> dict:
    """The entries of one dvc.docker.lock, or one clear error (a broken file, a link or FIFO a stage planted)."""
    try:
        return provenance.read_record_file(path)
    except ValueError as exc:
        raise DockerExecError(
            f"{exc}: it is written by dvc-docker-exec; delete it and run `dvc commit` to write it again"
        ) from None
    except OSError as exc:  # private_files.UnsafePathError among them
        raise DockerExecError(str(exc)) from None


def _staging(dvcfile: Any) -> Optional[str]:
    """The private folder our files are made in before the rename (P6, see private_files)."""
    from .private_files import PRIVATE_DIR

    tmp_dir = getattr(dvcfile.repo, "tmp_dir", None)
    return os.path.join(tmp_dir, PRIVATE_DIR) if tmp_dir else None


def _write_record_file(dvcfile: Any, path: str, write: Callable[[Optional[str]], bool]) -> None:
    try:
        changed = write(_staging(dvcfile))
    except OSError as exc:
        raise DockerExecError(f"could not write '{path}': {exc}") from None
    if changed and os.path.exists(path):
        dvcfile.repo.scm_context.track_file(os.path.relpath(path))


def write_records(dvcfile: Any, stages: list, records: Optional[dict] = None) -> None:
    """Bring the stages' entries of dvc.docker.lock in step with what dvc.lock got.

    `records`: the file's entries as read before dvc.lock was written (see patch_dvcfile).
    """
    path = _record_path_for(dvcfile)
    records = read_records_for(path) if records is None else records
    for stage in stages:
        key = provenance.record_key(stage.name)
        dep = image_dependency_of(stage)
        identity = dep.recorded() if dep is not None and dep.image is not None else None
        if identity is None:
            records.pop(key, None)
        else:
            from .build_dep import record_fields

            built = record_fields(dep, records.get(key)) if dep.build is not None else {}
            records[key] = provenance.Record(stage=key, image=str(dep.image), identity=identity, **built)
    _write_record_file(dvcfile, path, lambda staging: provenance.write_record_file(path, records, staging=staging))


def patch_dvcfile(module: Any) -> None:
    project_file = module.ProjectFile
    dump_lockfile = project_file._dump_lockfile

    @functools.wraps(dump_lockfile)
    def _dump_lockfile(self: Any, stages: Any, **kwargs: Any) -> Any:
        # read first: a dvc.docker.lock a stage replaced by a link or a FIFO stops the
        # write before dvc.lock records the stage, not between the two files
        records = read_records_for(_record_path_for(self))
        result = dump_lockfile(self, stages, **kwargs)
        # DVC 3.50 passes one stage, later versions a list
        write_records(self, stages if isinstance(stages, list) else [stages], records)
        return result

    project_file._dump_lockfile = _dump_lockfile

    lockfile = module.Lockfile
    remove_stage = lockfile.remove_stage

    @functools.wraps(remove_stage)
    def _remove_stage(self: Any, stage: Any) -> Any:
        result = remove_stage(self, stage)
        path = provenance.record_path(self.path)
        key = provenance.record_key(stage.name)
        _write_record_file(self, path, lambda staging: provenance.update_record_file(path, key, None, staging=staging))
        return result

    lockfile.remove_stage = _remove_stage


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
    from .lease import lease_parents, stale_folders

    tmp_dir = getattr(repo, "tmp_dir", None)
    if not tmp_dir or not stale_folders(lease_parents(tmp_dir)):
        return
    try:
        from .containers import list_containers
        from .session import client

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

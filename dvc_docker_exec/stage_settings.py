"""A stage's docker settings: DVC's config levels (read once per process) + `meta.docker`.

Read by `dvc_glue.cmd_run` before a stage runs, by the provenance patches
(`tracking`) when stages load, and by the `dvc docker` commands; it depends
on no runner module.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Tuple

from .config import DockerSettings, SettingError

SECTION = "docker"
_snapshots: dict = {}  # per process: config file paths -> the docker section of each level


def settings_for(stage: Any) -> Optional[DockerSettings]:
    """The stage's settings if it runs in a container, None for a host run.

    Repository-supplied settings that widen host access are refused here
    (see `trust`), before anything starts.
    """
    from . import trust
    from .errors import DockerExecError

    levels = config_snapshot(stage.repo)
    meta = (stage.meta or {}).get(SECTION) if isinstance(stage.meta, dict) else None
    if not any(section for _, section in levels) and meta is None:
        return None
    try:
        settings = DockerSettings.from_levels(levels).override(meta, stage.addressing)
        settings = trust.machine_track(settings, levels, stage.addressing)
        if settings.active:
            roots = (os.path.normpath(stage.repo.root_dir), git_root(stage))
            trust.check(settings, stage.addressing, trust.Invoker(os.getuid(), os.getgid(), roots))
    except SettingError as exc:
        raise DockerExecError(str(exc)) from None
    return settings if settings.active else None


def config_snapshot(repo: Any) -> Tuple[Tuple[str, dict], ...]:
    """The `docker` section of each DVC config level, read once per process (first use).

    Why: DVC reloads its config between stages (Repo._reset), so a stage that
    appends `[docker]` to .dvc/config.local would reconfigure the next stage of
    the same `dvc repro` (issue 7, hole 1). A change made mid-run takes effect
    on the next dvc command, like a change to dvc.yaml. Keyed by the config
    files: `exp run --temp` has a repo (and config.local) of its own.
    """
    config = repo.config
    files = config.files
    key = ("config", tuple(files.get(level) for level in config.LEVELS))
    if key not in _snapshots:
        _snapshots[key] = tuple(
            (level, dict(config.read(level).get(SECTION) or {})) for level in config.LEVELS if level in files
        )
    return _snapshots[key]


def git_root(stage: Any) -> str:
    """The Git root of the stage's repo (the repo root without Git)."""
    return repo_git_root(stage.repo)


def repo_git_root(repo: Any) -> str:
    scm = getattr(repo, "scm", None)
    root = getattr(scm, "root_dir", None)
    # NoSCM's root_dir is the repo root; Git's may be a parent (dvc init --subdir)
    return os.path.normpath(root or repo.root_dir)


def tracking_off(stage: Any) -> bool:
    """The levels (and the machine's word over the repository's, see trust.machine_track) turn tracking off.

    For a stage that runs on the host now; settings_for answers for the others.
    """
    from . import trust

    levels = config_snapshot(stage.repo)
    try:
        settings = trust.machine_track(DockerSettings.from_levels(levels), levels, stage.addressing)
    except SettingError:
        return False
    return not settings.track

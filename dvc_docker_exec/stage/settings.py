"""A stage's docker settings: DVC's config levels (read once per process) + `meta.docker`.

Read by `dvc_glue.cmd_run` before a stage runs, by the provenance patches
(`tracking`) when stages load, and by the `dvc docker` commands; it depends
on no runner module.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Set, Tuple

from dvc_docker_exec.config import MACHINE_LEVELS, REPO_LEVEL, SHARED, SHARED_FILE, DockerSettings, SettingError

SECTION = "docker"
_snapshots: dict = {}  # per process: config file paths -> the docker section of each level


def settings_for(stage: Any) -> Optional[DockerSettings]:
    """The stage's settings if it runs in a container, None for a host run.

    Repository-supplied settings that widen host access are refused here
    (see `trust`), before anything starts.
    """
    from dvc_docker_exec.stage import trust
    from dvc_docker_exec.errors import DockerExecError

    levels = config_snapshot(stage.repo)
    meta = (stage.meta or {}).get(SECTION) if isinstance(stage.meta, dict) else None
    if not any(section for _, section in levels) and meta is None:
        return None
    try:
        settings = DockerSettings.from_levels(levels).override(meta, stage.addressing)
        settings = trust.machine_track(settings, levels, stage.addressing)
        settings = settings.with_build_tag(project_name(stage))
        if settings.active:
            roots = (os.path.normpath(stage.repo.root_dir), git_root(stage))
            trust.check(settings, stage.addressing, trust.Invoker(os.getuid(), os.getgid(), roots))
    except SettingError as exc:
        raise DockerExecError(str(exc)) from None
    return settings if settings.active else None


def off_here(repo: Any) -> bool:
    """`docker.enabled false` on this machine: every stage runs on the host (config.DockerSettings.off_here)."""
    try:
        return DockerSettings.from_levels(config_snapshot(repo)).off_here
    except Exception:  # noqa: BLE001 - only an error's hint depends on it (an unreadable config, a bad value)
        return False


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
        levels = []
        for level in config.LEVELS:
            if level not in files:
                continue
            if level == REPO_LEVEL and getattr(repo, "dvc_dir", None):
                # under the repository's .dvc/config: `dvc config docker.x` there wins over the file
                levels.append((SHARED, shared_section(os.path.join(repo.dvc_dir, SHARED_FILE))))
            levels.append((level, dict(config.read(level).get(SECTION) or {})))
        machine = [files[level] for level, section in levels if section and level in MACHINE_LEVELS]
        tracked = tracked_files(repo_git_root(repo), machine)
        _snapshots[key] = tuple(
            (tracked_origin(files[level]) if level in MACHINE_LEVELS and files[level] in tracked else level, section)
            for level, section in levels
        )
    return _snapshots[key]


def shared_section(path: str) -> dict:
    """The settings in `.dvc/docker.yaml`: the repository's docker settings where plain DVC never looks.

    Why a file of its own: DVC validates `.dvc/config` strictly, so a `[docker]`
    section there makes every command of a DVC without this plugin fail
    (`extra keys not allowed @ data['docker']`) for every teammate and CI job.
    DVC tolerates no unknown key in its config (`feature.*` is dropped with a
    warning on every command), nor at the top of dvc.yaml; it ignores files it
    does not know in `.dvc`. Same keys and trust as the committed `.dvc/config`
    (docs/configuration.md "Sharing the settings").
    """
    from dvc_docker_exec.errors import DockerExecError

    try:
        with open(path, encoding="utf-8") as fobj:
            text = fobj.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise DockerExecError(f"cannot read {path}: {exc.strerror or exc}") from None
    from ruamel.yaml import YAML, YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise DockerExecError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DockerExecError(f"{path}: expected a mapping of docker keys like 'image: python:3.12-slim'")
    try:
        DockerSettings.from_mapping(data)
    except SettingError as exc:
        raise DockerExecError(f"{path}: {exc}") from None
    return dict(data)


def tracked_origin(path: str) -> str:
    """The origin of a config file Git tracks: the repository's, whatever the file's name (see `trust`)."""
    from dvc_docker_exec.config import TRACKED

    return f"{TRACKED}{path}"


def tracked_files(git_root: str, paths: Sequence[str]) -> Set[str]:
    """Those of `paths` that the Git repository at `git_root` tracks (issue 16, P1).

    Why: `git add -f .dvc/config.local` makes "this machine's" file part of
    every clone; a setting is judged by where it really is, not by its name.
    Only files inside the work tree are asked about; without git nothing is tracked.
    """
    root = os.path.normpath(git_root) + os.sep
    inside = [p for p in paths if p and os.path.normpath(os.path.abspath(p)).startswith(root)]
    if not inside or not os.path.exists(os.path.join(git_root, ".git")):
        return set()
    import subprocess

    rel = [os.path.relpath(os.path.abspath(p), git_root) for p in inside]
    try:
        out = subprocess.run(
            ["git", "-C", git_root, "ls-files", "-z", "--", *rel], capture_output=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    listed = {os.path.normpath(os.fsdecode(p)) for p in out.split(b"\0") if p}
    return {path for path, r in zip(inside, rel) if os.path.normpath(r) in listed}


def project_name(stage: Any) -> str:
    """What a derived build tag calls the project: the checkout's folder (config.derived_tag).

    In an `exp run --temp`/queue copy (`<repo>/.dvc/tmp/exps/<tmpname>`): the
    workspace's, so that every copy does not leave a tag of its own behind.
    """
    from dvc_docker_exec.types.build import EXP_COPIES

    root = git_root(stage)
    head, sep, _tail = root.partition(EXP_COPIES)
    return os.path.basename(head if sep else root)


def lock_name(stage: Any, settings: DockerSettings) -> str:
    """The image's name in dvc.lock (`docker:<name>`): the configured image, or for a derived build tag
    (`dvc-build/<project>/<dockerfile>`, the checkout's folder name in it) the same in every clone."""
    from dvc_docker_exec.config import derived_lock_name, derived_tag

    image = str(settings.image or "")
    if settings.build and image == derived_tag(project_name(stage), settings.build):
        return derived_lock_name(settings.build)
    return image


def git_root(stage: Any) -> str:
    """The Git root of the stage's repo (the repo root without Git)."""
    return repo_git_root(stage.repo)


def repo_git_root(repo: Any) -> str:
    scm = getattr(repo, "scm", None)
    root = getattr(scm, "root_dir", None)
    # NoSCM's root_dir is the repo root; Git's may be a parent (dvc init --subdir)
    return os.path.normpath(root or repo.root_dir)


def build_spec_for(stage: Any, settings: DockerSettings) -> Any:
    """The stage's `build.BuildSpec` (docker.build relative to the DVC repository root), or None."""
    if not settings.build:
        return None
    from dvc_docker_exec.types.build import spec_for

    repo = stage.repo
    return spec_for(repo.root_dir, settings.build, settings.build_args, settings.target, tag=str(settings.image),
                    written=lambda: written_by_dvc(repo))


def written_by_dvc(repo: Any) -> Tuple[str, ...]:
    """What DVC writes, relative to the repository root: never an input of a built image (types/build.py).

    Every stage's outs (metrics and plots too) in every dvc.yaml, the data
    each .dvc file tracks, each dvc.lock and .dvc file, the params files
    stages read (`dvc exp run -S` writes them), the .gitignore DVC
    adds a cached out to (the first run of an out added by hand writes
    it: the next run would build again). From the stage
    definitions, not from what exists now: the same set in a fresh clone,
    an `exp run --temp`/queue copy and `dvc status`.
    """
    from dvc.dependency.param import ParamsDependency

    from dvc_docker_exec.boundary.paths import is_within

    root = os.path.normpath(repo.root_dir)
    found = set()
    for stage in repo.index.stages:
        path = getattr(stage, "path", None) or ""
        if path.endswith(".dvc"):
            found.add(path)
        elif path:  # a dvc.yaml: its lock file (DVC's ProjectFile names it so)
            found.add(os.path.splitext(path)[0] + ".lock")
        # params files: deps DVC tracks per stage and value (`exp run -S` writes them); in the image's inputs
        # a changed value would rerun every stage
        found.update(dep.fs_path for dep in stage.deps if isinstance(dep, ParamsDependency))
        for out in stage.outs:
            if getattr(out.fs, "protocol", None) != "local":
                continue
            found.add(out.fs_path)
            if getattr(out, "use_scm_ignore", False):  # DVC adds the out to the .gitignore beside it
                found.add(os.path.join(os.path.dirname(out.fs_path), ".gitignore"))
    return tuple(sorted(os.path.relpath(path, root) for path in found if is_within(path, root)))


def tracking_off(stage: Any) -> bool:
    """The levels (and the machine's word over the repository's, see trust.machine_track) turn tracking off.

    For a stage that runs on the host now; settings_for answers for the others.
    """
    from dvc_docker_exec.stage import trust
    from dvc_docker_exec.errors import DockerExecError

    try:  # every level the stage's settings come from (.dvc/docker.yaml too)
        levels = config_snapshot(stage.repo)
        settings = trust.machine_track(DockerSettings.from_levels(levels), levels, stage.addressing)
    except (SettingError, DockerExecError, ValueError):  # a bad setting is reported where the stage runs
        return False
    return not settings.track

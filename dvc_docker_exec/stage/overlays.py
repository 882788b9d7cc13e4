"""The config copies a stage sees: .dvc/config{,.local} without the [docker] section (config_overlays says why)."""

from __future__ import annotations

import io
import os
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, Tuple

from dvc_docker_exec.boundary.private_files import PRIVATE_DIR, UnsafePathError, private_folder, reap_stale_overlays
from dvc_docker_exec.stage.settings import SECTION

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

"""ImageDependency: the stage's image identity as a non-file DVC dependency.

See tracking.py for the design; this module imports DVC's dependency classes,
so tracking.py imports it only when a stage is loaded or created.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Set

from dvc.dependency.dataset import DatasetDependency
from dvc_data.hashfile.hash_info import HashInfo

from dvc_docker_exec.types import provenance
from dvc_docker_exec.types.provenance import Record, status_only
from dvc_docker_exec.errors import DockerExecError

logger = logging.getLogger(f"dvc.{__name__}")
_unreachable: List[str] = []  # inside `dvc status`: why the daemon could not be reached
_warned: Set[str] = set()  # reasons already given in full


class ImageNotChecked(DockerExecError):
    """The current identity cannot be known now (no daemon, a built image's base not present); status/dry only."""


class ImageAbsent(ImageNotChecked):
    """`dvc status` / `--dry`: the daemon answers, and the image is not on it: a change, like a deleted file dep.

    `hints`: what may fix it (the recorded image under another tag, a close name), for one warning.
    """

    def __init__(self, message: str, hints: List[str]):
        super().__init__(message)
        self.hints = hints


class ImageDependency(DatasetDependency):
    """`docker:<image>` in the stage's deps, valued by the daemon; dvc.lock holds the identity that ran.

    Why a DatasetDependency: it is DVC's non-file dependency. DVC writes its
    `dumpd()` into dvc.lock as is, and leaves it out of what treats deps as
    files (the stage graph, `--pull` of missing deps, `exp show`'s file
    columns: tracking adds one column per image instead).

    `image` is the configured reference, or None for a stage that now runs on
    the host but has an identity in dvc.lock (it is changed once, then its
    lock entry carries no image). `error` is a settings error raised on use.
    `name` is what dvc.lock calls the image when that is not `image`: a
    built image's derived tag holds the checkout's folder name, its name in
    dvc.lock must not (stage/settings.lock_name).
    """

    meta = None  # `exp show` of DVC 3.50 reads every dep's meta

    def __init__(self, stage: Any, image: Optional[str], recorded: Optional[Record] = None, pull: str = "missing",
                 error: Optional[Exception] = None, backend: str = "engine", platform: Optional[str] = None,
                 build: Any = None, name: Optional[str] = None):
        self.name = name or image
        path = provenance.dep_path(self.name or (recorded.image if recorded else ""))
        super().__init__(stage, path, {})
        # `exp show` of DVC 3.50 names a dep's column by its path relative to the root
        self.fs_path = os.path.join(stage.repo.root_dir, path)
        self.image = image
        self.pull = pull
        self.error = error
        self.backend = backend  # swarm: the identity is the manager's (session.image_place)
        self.platform = platform  # docker.platform: the pull policy pulls for it
        self.build = build  # a build.BuildSpec (docker.build): the identity is its inputs' hash
        self._recorded = recorded
        self.fill_values(provenance.lock_entry(recorded) if recorded else None)

    @property
    def protocol(self) -> str:  # type: ignore[override]
        # DVC's run cache keys only stages whose deps are all local: the identity is part of the key
        return "local"

    # nothing on disk: never "deleted", never pulled, not a file of the repository (DVC 3.50's
    # AbstractDependency lacks the last one: `exp run` asks every dep while committing its files)
    @property
    def exists(self) -> bool:  # type: ignore[override]
        return True

    @property
    def is_in_repo(self) -> bool:  # type: ignore[override]
        return False

    @property
    def use_scm_ignore(self) -> bool:  # type: ignore[override]
        return False

    def fill_values(self, values: Optional[Dict[str, Any]] = None) -> None:
        self.hash_info = HashInfo(self.PARAM_DATASET, dict(values or {}))  # type: ignore[arg-type]

    def current(self) -> Optional[str]:
        """The identity the stage runs in now; None for a host stage."""
        if self.error is not None:
            raise self.error
        if self.image is None:
            return None
        if self.build is not None:  # docker.build: the inputs' hash (build_dep.py)
            from dvc_docker_exec.dependency import build as build_dep
            from dvc_docker_exec.backends.builder import BaseNotPresent

            try:
                return build_dep.current_inputs(self, status_session).identity
            except BaseNotPresent as exc:
                raise ImageNotChecked(str(exc)) from None
        return current_identity(self.image, self.pull, self.backend, self.platform, self.recorded())

    def recorded(self) -> Optional[str]:
        """The identity in hash_info: dvc.lock's until the stage is saved, then the one that ran."""
        return provenance.identity_from_entry(self.hash_info.value if self.hash_info else None)

    def record(self) -> Optional[Record]:
        """The recorded image as dvc.lock holds it (its reference is the one it ran as; a build's fields too)."""
        identity = self.recorded()
        if identity is None:
            return None
        same = self._recorded is not None and self._recorded.identity == identity and self._recorded.image
        image = self._recorded.image if same else self.name or ""  # type: ignore[union-attr]
        return provenance.record_from_entry(self.stage.name, image, self.hash_info.value)

    def get_hash(self) -> HashInfo:
        if self.image is None:
            # truthy (DVC's run cache requires every dep to hash); never written (tracking drops the dep)
            return HashInfo(self.PARAM_DATASET, {"host": True})  # type: ignore[arg-type]
        try:
            identity = self.current()
        except ImageNotChecked:  # `--dry` asks the run cache too: what was recorded stands
            identity = self.recorded()
        build = self.build.dockerfile if self.build is not None else None
        entry = provenance.lock_entry(Record(self.stage.name, self.image, identity, build=build)) if identity else {}
        return HashInfo(self.PARAM_DATASET, entry)  # type: ignore[arg-type]

    def save(self) -> None:
        self.hash_info = self.get_hash()
        if self.build is not None and self.recorded() is not None:
            # a built image: its Dockerfile, inputs and produced image ID go into its dvc.lock entry too
            from dvc_docker_exec.dependency import build as build_dep

            fields = build_dep.record_fields(self, self._recorded)
            record = Record(self.stage.name, str(self.image), str(self.recorded()), **fields)
            self.hash_info = HashInfo(self.PARAM_DATASET, provenance.lock_entry(record))  # type: ignore[arg-type]

    def dumpd(self, **kwargs: Any) -> dict:
        entry = self.hash_info.value if self.hash_info else None
        if entry and provenance.keying_only():  # the run-cache key: the identity, not the build's trace
            record = provenance.record_from_entry(self.stage.name, "", entry)
            entry = provenance.lock_entry(record, identity_only=True) if record is not None else entry
        return {self.PARAM_PATH: self.def_path, **({self.PARAM_DATASET: dict(entry)} if entry else {})}

    def workspace_status(self) -> dict:
        if self.error is not None:  # an invalid meta.docker: the error names the stage
            raise self.error
        recorded = self.recorded()
        if self.image is None:
            if recorded is None:
                return {}
            change = f"image {provenance.short_identity(recorded)} no longer used (the stage runs on the host)"
            return {str(self): {change: "deleted"}}
        try:
            current = self.current()
            if self.build is not None and provenance.identity_changed(recorded, current):
                from dvc_docker_exec.dependency import build as build_dep

                return {str(self): {build_dep.describe_change(self): "new" if recorded is None else "modified"}}
        except ImageAbsent as exc:
            # What ran is not here, as a deleted file dependency: the workspace does not match dvc.lock, so
            # the stage is changed, never "up to date" (DVC's status never asks the run cache either)
            if exc.hints and str(exc) not in _warned:
                _warned.add(str(exc))
                logger.warning("stage '%s': %s: %s", self.stage.addressing, exc, "; ".join(exc.hints))
            return {str(self): {str(exc): "new" if recorded is None else "deleted"}}
        except ImageNotChecked as exc:
            reason = str(exc) if str(exc) not in _warned else "see above"
            _warned.add(str(exc))
            # not changed and not an error: status cannot tell (issue 8, item 6)
            logger.warning("stage '%s': image '%s' not checked: %s", self.stage.addressing, self.image, reason)
            return {}
        if provenance.identity_changed(recorded, current):
            change = provenance.describe_change(self.image, recorded, current)
            return {str(self): {change: "new" if recorded is None else "modified"}}
        return {}

    def status(self) -> dict:
        return self.workspace_status()

    def download(self, to: Any, jobs: Any = None) -> None:
        return None

    def update(self, rev: Any = None) -> None:
        return None


def current_identity(
    image: str, pull: str, backend: str = "engine", platform: Optional[str] = None, recorded: Optional[str] = None
) -> str:
    """Identity of `image` now: in `dvc status` only looked up, elsewhere after the pull policy.

    On Swarm that is the manager engine's identity of the image (the one the nodes are pinned to).
    """
    from dvc_docker_exec.backends import session

    if status_only():
        _runner, images = status_session(session.session)
        identity = images.identities.identity(image)
        if identity is None:
            from dvc_docker_exec.api.image_help import local_images, look_alikes

            where = session.image_place(backend)
            raise ImageAbsent(
                f"image '{image}' is not on {where or 'this machine'}",
                # the most direct fix only (the recorded image under another tag comes first), as in repro's error
                look_alikes(image, local_images(images.client), recorded)[:1],
            )
        return identity
    _runner, images = session.session()
    return images.identity(image, pull, session.image_place(backend), platform, recorded)


def status_session(connect: Any) -> Any:
    """`connect()` inside `dvc status` / `--dry`: an unreachable daemon means "not checked", asked once per process."""
    if _unreachable:
        raise ImageNotChecked(_unreachable[0])
    try:
        return connect()
    except DockerExecError as exc:
        _unreachable.append(str(exc))
        raise ImageNotChecked(str(exc)) from None

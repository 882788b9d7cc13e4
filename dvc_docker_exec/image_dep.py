"""ImageDependency: the stage's image identity as a DVC params dependency.

See tracking.py for the design; this module imports DVC's dependency classes,
so tracking.py imports it only when a stage is loaded.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Set

from dvc.dependency.param import ParamsDependency
from dvc_data.hashfile.hash_info import HashInfo

from . import provenance
from .provenance import status_only
from .errors import DockerExecError

logger = logging.getLogger(f"dvc.{__name__}")
_unreachable: List[str] = []  # inside `dvc status`: why the daemon could not be reached
_warned: Set[str] = set()  # reasons already given in full


class ImageNotChecked(DockerExecError):
    """The current identity cannot be known now (no daemon, image not present); status/dry only."""


class ImageDependency(ParamsDependency):
    """`<stage>.id` in dvc.docker.lock, valued by the daemon, not by the file.

    `image` is the configured reference, or None for a stage that now runs on
    the host but has an identity in dvc.lock (it is changed once, then its
    lock entry carries no identity). `error` is a settings error raised on use.
    """

    def __init__(self, stage: Any, path: str, key: str, image: Optional[str], pull: str = "missing",
                 error: Optional[Exception] = None, backend: str = "engine", platform: Optional[str] = None,
                 build: Any = None):
        super().__init__(stage, path, params=[key])
        self.key = key
        self.image = image
        self.pull = pull
        self.error = error
        self.backend = backend  # swarm: the identity is the manager's (session.image_place)
        self.platform = platform  # docker.platform: the pull policy pulls for it
        self.build = build  # a build.BuildSpec (docker.build): the identity is its inputs' hash

    # the file is ours and may not exist yet: never "deleted", never read for status
    @property
    def exists(self) -> bool:  # type: ignore[override]
        return True

    def isfile(self) -> bool:
        return True

    def isdir(self) -> bool:
        return False

    def validate_filepath(self) -> None:
        return None

    def current(self) -> Optional[str]:
        """The identity the stage runs in now; None for a host stage."""
        if self.error is not None:
            raise self.error
        if self.image is None:
            return None
        if self.build is not None:  # docker.build: the inputs' hash (build_dep.py)
            from . import build_dep
            from .builder import BaseNotPresent

            try:
                return build_dep.current_inputs(self, status_session).identity
            except BaseNotPresent as exc:
                raise ImageNotChecked(str(exc)) from None
        return current_identity(self.image, self.pull, self.backend, self.platform, self.recorded())

    def recorded(self) -> Optional[str]:
        value = self.hash_info.value if self.hash_info else None
        return value.get(self.key) if isinstance(value, dict) else None

    def read_params(self, flatten: bool = True, **kwargs: Any) -> Dict[str, Any]:
        identity = self.current()
        return {} if identity is None else {self.key: identity}

    def get_hash(self) -> HashInfo:
        # a host stage: truthy (DVC's run cache requires every dep to hash) but
        # serialized as nothing, see dumpd
        try:
            value = self.read_params() or {self.key: None}
        except ImageNotChecked:  # `--dry` asks the run cache too: what was recorded stands
            value = {self.key: self.recorded()}
        return HashInfo(self.PARAM_PARAMS, value)  # type: ignore[arg-type]

    def save(self) -> None:
        self.hash_info = self.get_hash()

    def dumpd(self, **kwargs: Any) -> dict:
        if self.image is None:  # not in dvc.lock, nor in the run-cache key: as a plain host run
            return {self.PARAM_PATH: self.def_path, self.PARAM_PARAMS: []}
        return super().dumpd(**kwargs)

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
                from . import build_dep

                return {str(self): {build_dep.describe_change(self): "new" if recorded is None else "modified"}}
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


def current_identity(
    image: str, pull: str, backend: str = "engine", platform: Optional[str] = None, recorded: Optional[str] = None
) -> str:
    """Identity of `image` now: in `dvc status` only looked up, elsewhere after the pull policy.

    On Swarm that is the manager engine's identity of the image (the one the nodes are pinned to).
    """
    from . import session

    if status_only():
        _runner, images = status_session(session.session)
        identity = images.identities.identity(image)
        if identity is None:
            from .image_help import local_images, look_alikes

            where = session.image_place(backend)
            hints = "; ".join(["", *look_alikes(image, local_images(images.client), recorded)])
            raise ImageNotChecked(
                f"it is not present {f'on {where}' if where else 'locally'} "
                f"(`dvc status` never pulls; `dvc repro` will){hints}"
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

"""The pipeline's images: as configured, as recorded in dvc.lock, as present; what to pull.

Shared by `dvc docker images`, `doctor` and `pull`; loaded only when one of
them runs (the command modules are imported by every `dvc` invocation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple


@dataclass(frozen=True)
class ImageRow:
    """One container stage's image: as configured, as recorded (dvc.lock), as present now."""

    stage: str
    image: str
    pull: str  # the stage's docker.pull policy
    recorded: Optional[str]  # identity the lock records, None if the stage never ran in a container (or is untracked)
    current: Optional[str]  # identity of the local image, None if it is not present
    platform: Optional[str] = None  # the stage's docker.platform
    # a built image (docker.build): `current` is its inputs' identity now (None: cannot tell)
    build: Optional[str] = None  # its Dockerfile
    built: Optional[str] = None  # the local image ID built from the current inputs, None if not built here
    recorded_id: Optional[str] = None  # the image ID dvc.lock records for the recorded inputs
    changes: Tuple[str, ...] = ()  # what differs from the recorded inputs ("Dockerfile changed")

    @property
    def present(self) -> bool:
        return (self.built if self.build else self.current) is not None

    @property
    def changed(self) -> Optional[bool]:
        """Differs from the recorded identity (None: cannot tell, the image is absent)."""
        from dvc_docker_exec.types.provenance import identity_changed

        return identity_changed(self.recorded, self.current) if self.recorded else None

    def as_dict(self) -> dict:
        return {**asdict(self), "present": self.present, "changed": self.changed}


def recorded_identity(stage: Any) -> Optional[str]:
    """The identity dvc.lock records for the stage (None: never ran in a container, or not tracked)."""
    from dvc_docker_exec.dependency.tracking import image_dependency_of

    dep = image_dependency_of(stage)
    return dep.recorded() if dep is not None else None


def image_rows(client: Any, stages: Sequence[Tuple[Any, Any]]) -> List[ImageRow]:
    """`stages`: (stage, DockerSettings) pairs; one inspect per distinct image."""
    from dvc_docker_exec.types.provenance import IdentityCache

    identities = IdentityCache(client)
    return [
        built_row(stage, settings) if settings.build else
        ImageRow(
            stage.addressing, settings.image, settings.pull, recorded_identity(stage),
            identities.identity(settings.image), settings.platform,
        )
        for stage, settings in stages
    ]


def built_row(stage: Any, settings: Any) -> ImageRow:
    """The row of a stage whose image is built: inputs now vs recorded, and the local image of the current inputs."""
    from dvc_docker_exec.backends import session
    from dvc_docker_exec.types.build import what_changed
    from dvc_docker_exec.errors import DockerExecError
    from dvc_docker_exec.types.provenance import looking_only
    from dvc_docker_exec.dependency.tracking import image_dependency_of

    from dvc_docker_exec.dependency import build as build_dep

    dep = image_dependency_of(stage)
    recorded = dep.recorded() if dep is not None else None
    record = build_dep.record(dep) if dep is not None else None
    same = record if record is not None and record.identity == recorded else None
    current = built = None
    changes: Tuple[str, ...] = ()
    if dep is not None and dep.build is not None:
        try:
            with looking_only():  # tells, never pulls a base
                inputs = build_dep.current_inputs(dep)
            current = inputs.identity
            built = session.builder().find(current)
            if recorded != current:
                changes = tuple(what_changed(same.inputs if same else None, inputs))
        except DockerExecError as exc:
            changes = (f"not checked: {exc}",)
    return ImageRow(
        stage.addressing, settings.image, settings.pull, recorded, current,
        build=dep.build.dockerfile if dep is not None and dep.build is not None else settings.build, built=built,
        recorded_id=same.image_id if same else None, changes=changes,
    )


@dataclass(frozen=True)
class Pull:
    source: str  # what to pull: "repo@sha256:..." or the reference as configured
    tag_as: Optional[str] = None  # the stage's reference, pointed at the pulled digest
    platform: Optional[str] = None  # docker.platform: a multi-platform digest resolves to that platform
    # the local image ID dvc.lock records for `source` (built here): tagged, not pulled, if present
    recorded_id: Optional[str] = None


def built_here(row: ImageRow) -> bool:
    """Present as an image that no registry named (its identity is a local ID) and no digest is recorded."""
    return bool(row.current) and "@" not in str(row.current) and not (row.recorded and "@" in row.recorded)


def pull_plan(rows: Sequence[ImageRow]) -> Tuple[List[Pull], List[str]]:
    """One pull per distinct image: by the recorded registry digest when exactly one is recorded for it.

    Returns (pulls, images skipped because they were built here). An image
    built here (`docker build`, `docker load`) has no registry to come from:
    pulling its name would fail, or fetch another image of that name. A
    stage recording a local image ID while the image is absent gets its
    reference as configured. Two stages recording different digests for one
    reference get both digests and no tag.
    """
    digests: Dict[str, Set[str]] = {}
    local_ids: Dict[str, str] = {}
    skipped: List[str] = []
    platforms: Dict[str, Optional[str]] = {}
    for row in rows:
        platforms.setdefault(row.image, row.platform)
        if row.build:
            continue  # built from its Dockerfile (`dvc docker build`), never pulled
        if built_here(row):
            if row.image not in skipped:
                skipped.append(row.image)
            continue
        found = digests.setdefault(row.image, set())
        if row.recorded and "@" in row.recorded:
            found.add(row.recorded)
        elif row.recorded:
            local_ids.setdefault(row.image, row.recorded)
    plan = []
    for image, recorded in digests.items():
        if len(recorded) == 1:
            plan.append(Pull(next(iter(recorded)), tag_as=image, platform=platforms[image]))
        elif not recorded:
            plan.append(Pull(image, platform=platforms[image], recorded_id=local_ids.get(image)))
        else:
            plan.extend(Pull(digest, platform=platforms[image]) for digest in sorted(recorded))
    pulled: Set[str] = set()  # each source once (one digest recorded under two references)
    return [item for item in plan if not (item.source in pulled or pulled.add(item.source))], skipped

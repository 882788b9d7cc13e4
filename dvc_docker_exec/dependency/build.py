"""A built image (docker.build) as the stage's image dependency: what `dependency.image.ImageDependency` delegates.

Kept apart from image.py so that the dependency's design (tracking.py) and
the build's inputs (build.py, builder.py) change independently. `dep` is an
ImageDependency whose `build` is a `build.BuildSpec`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from dvc_docker_exec.types import provenance


def record(dep: Any) -> Optional[provenance.Record]:
    """The stage's record in its dvc.lock entry (with the build's Dockerfile, inputs, image ID), or None."""
    return dep.record()


def recorded_inputs(dep: Any) -> Optional[dict]:
    """The inputs dvc.lock records with the identity it records (None: nothing, or another identity)."""
    entry = record(dep)
    return dict(entry.inputs) if entry is not None and entry.inputs and entry.identity == dep.recorded() else None


def current_inputs(dep: Any, connect: Callable[[Callable[[], Any]], Any] = lambda make: make()) -> Any:
    """build.BuildInputs now: told without building; inside `dvc status` / `--dry` never pulls a base.

    `connect(session.builder)` gives the builder (image.py passes the one
    that turns an unreachable daemon into "not checked"); raises
    builder.BaseNotPresent for an absent, unrecorded base while looking only.
    """
    from dvc_docker_exec.backends import session

    bases = (recorded_inputs(dep) or {}).get("bases")
    looking = provenance.status_only()
    builder = connect(session.builder) if looking else session.builder()
    return builder.inputs(dep.build, bases if isinstance(bases, dict) else {}, looking_only=looking)


def describe_change(dep: Any) -> str:
    """`dvc status`'s words: `image build env/Dockerfile: Dockerfile changed`."""
    from dvc_docker_exec.types.build import what_changed

    return f"image build {dep.build.dockerfile}: {', '.join(what_changed(recorded_inputs(dep), current_inputs(dep)))}"


def record_fields(dep: Any, existing: Optional[provenance.Record]) -> dict:
    """What dvc.lock records beside the identity of a built image: Dockerfile, inputs, image ID.

    `existing`: the record read from dvc.lock when the stage was loaded (kept for the same identity).
    """
    from dvc_docker_exec.backends import session

    identity = dep.recorded()
    same = existing if existing is not None and existing.identity == identity else None
    fields = {"build": dep.build.dockerfile, "inputs": same.inputs if same else None,
              "image_id": same.image_id if same else None}
    builder = session.state.get("builder")
    if builder is None:
        return fields
    inputs = builder.known(dep.build)
    if inputs is not None and inputs.identity == identity:
        fields["inputs"] = inputs.as_record()
    try:
        # built or found in this process, else (a run-cache restore) the local image of these inputs
        fields["image_id"] = builder.produced.get(identity) or fields["image_id"] or builder.find(identity)
    except Exception:  # noqa: BLE001 - a trace, never a reason to fail writing the lock
        pass
    return fields

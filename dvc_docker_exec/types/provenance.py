"""Image provenance: which image identity each container stage ran in.

Public API (stable; ``dvc docker images/doctor/pull`` build on it):

* :func:`resolve_identity` — image reference -> immutable identity through a
  docker-py client: the registry digest (``RepoDigests``) when the image came
  from a registry (of the reference's repository), else the local image ID
  (``sha256:...``); None if absent.
* :class:`IdentityCache` — the same, one inspect per distinct image per process.
* :class:`Record` — one stage's recorded image (reference + identity), and its
  form in ``dvc.lock``: :func:`lock_entry` / :func:`record_from_lock`.
* :func:`identity_changed` — whether a stage's current identity differs from
  the recorded one (None when it cannot be told).
* :func:`short_identity` (from api/image_help.py, where pulls use it too) — the short
  form used in messages; :func:`short_id`
  the 12 hex digits ``dvc exp show`` displays.
* For a loaded DVC stage: ``tracking.image_dependency_of(stage)`` (its
  ``image``, ``recorded()``, ``record()``, ``current()``, ``status()``).

Where the record lives (issue 17): ``dvc.lock``, and nowhere else. The image is
a non-file dependency of the stage, as DVC's own dataset dependency
(``ds://``) is: one entry in the stage's ``deps``::

    train:
      cmd: python train.py
      deps:
      - path: docker:python:3.12-slim     # DEP_PREFIX + the reference as configured
        dataset:                          # DVC's schema key for a non-file dependency
          repo: python                    # only for a registry digest
          sha256: 4f6c1a...               # 64 hex digits
      - path: docker:dvc-docker-exec/proj-env  # a built image (docker.build, issue 19)
        dataset:
          build: env/Dockerfile           # the Dockerfile; the identity is build:sha256:<sha256>
          sha256: 9e07ab...               # the hash of the build's inputs (what DVC compares)
          built: 51d0c3...                # the local image ID the build produced (`dvc docker images`)
          file: 2c26b4...                 # the inputs (they name what changed): the Dockerfile's sha256,
          files: 3a6eb0...                # the build context's other files', the build args',
          args: 44136f...
          target: prod                    # the target (no line when there is none),
          bases:                          # and each FROM image's identity, split as the stage's is
          - ref: python:3.12-slim
            repo: python
            sha: 4f6c1a...

Every value is split so that no line is longer than 80 columns: DVC's YAML
writer moves a longer value onto the next line after ``key: `` (a trailing
space, which pre-commit's whitespace hook rewrites). Hence bare hex digits
(the ``sha256:`` goes without saying) and short keys: 64 hex digits fit after
a key of up to 6 characters at the entry's indent, 4 in a base's (``sha``).
Only what the user chose can still be longer: a reference or Dockerfile path
of more than about 60 characters (as DVC's own long file paths are). Locks
written before (``inputs:`` as one nested mapping) are still read.
One record, one place: ``dvc status``, ``dvc docker doctor`` and
``dvc exp show`` all read it from the stage's lock entry, so they cannot
disagree with ``dvc.lock`` (issue 16, P8). Fields added to :class:`Record`
go into :func:`lock_entry` and :func:`record_from_entry`, nowhere else.

Earlier versions kept a ``dvc.docker.lock`` file and a params entry
``dvc.docker.lock: {<stage>.id: ...}`` in ``dvc.lock``; such a params entry is
still read (:func:`record_from_lock`) until the stage's entry is written again.

This module imports neither dvc nor docker (a client is passed in).
"""

from __future__ import annotations

import contextvars
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from dvc_docker_exec.api.image_help import short_identity

ID_KEY = "id"  # earlier versions' params key: <stage>.id

_SHA = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Record:
    """One stage's recorded environment: the reference as configured and its identity."""

    stage: str  # stage name in its dvc.yaml ("train", "train@1")
    image: str  # reference as configured ("python:3.12-slim")
    identity: str  # "repo@sha256:..." (registry digest) or "sha256:..." (local image ID)
    # a built image (docker.build, issue 19): identity is "build:sha256:..." (its inputs' hash)
    build: Optional[str] = None  # the Dockerfile, relative to the repository root
    inputs: Optional[Mapping[str, Any]] = None  # build.BuildInputs.as_record(): what changed, for `dvc status`
    image_id: Optional[str] = None  # the local image ID the build produced (traces a result to its bytes)

    @property
    def short(self) -> str:
        return short_identity(self.identity)


# --- identity -------------------------------------------------------------------


def _repository(reference: str) -> str:
    """`reg:5000/a/b:tag@sha256:..` -> `reg:5000/a/b` (the tag colon, not the port's)."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _same_repository(a: str, b: str) -> bool:
    def norm(repo: str) -> str:
        for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
            if repo.startswith(prefix):
                repo = repo[len(prefix) :]
                break
        return repo if "/" in repo else f"library/{repo}"

    return norm(a) == norm(b)


def identity_from_inspect(reference: str, attrs: Mapping[str, Any]) -> Optional[str]:
    """The identity from `docker image inspect` data (pure: unit-testable).

    Why a digest first: it names the content in the registry the reference
    points at, so the same image pulled on another machine has the same
    identity; an image that was never pulled from (or pushed to) that
    repository has no such digest, and its local ID is what names it. Digests
    of *other* repositories are ignored: pushing a copy of a local image
    somewhere else (seen here: a test registry on loopback) must not change
    the identity of the stages that use it. With several digests for the
    reference's repository, the smallest wins, so the choice is stable.
    """
    repo = _repository(reference)
    digests = sorted(
        d for d in (attrs.get("RepoDigests") or []) if isinstance(d, str) and "@" in d and _same_repository(_repository(d), repo)
    )
    if digests:
        return digests[0]
    image_id = attrs.get("Id")
    return str(image_id) if image_id else None


def resolve_identity(client: Any, reference: str) -> Optional[str]:
    """Identity of the local image `reference` through a docker-py client; None if absent.

    One `GET /images/{name}/json`; never pulls. Other daemon errors propagate
    (docker.errors.APIError / DockerException).
    """
    found = resolve_image(client, reference)
    return found[0] if found else None


def resolve_image(client: Any, reference: str) -> Optional[Tuple[str, str]]:
    """(identity, local image ID) of `reference` from ONE inspect; None if absent.

    Why both from one inspect: the container is created from the ID that
    belongs to the recorded identity; a second lookup by tag could see a tag
    moved in between (issue 19, item 6).
    """
    from docker.errors import ImageNotFound, NotFound

    try:
        attrs = client.api.inspect_image(reference)
    except (ImageNotFound, NotFound):
        return None
    identity = identity_from_inspect(reference, attrs)
    return (identity, str(attrs.get("Id") or identity)) if identity else None


class IdentityCache:
    """reference -> identity, one inspect per distinct image for the life of the object.

    `forget(reference)` drops an entry (after a pull changed what the tag names).
    """

    def __init__(self, client: Any):
        self.client = client
        self._cache: Dict[str, Optional[Tuple[str, str]]] = {}
        self.inspects = 0  # daemon calls made (benchmark/tests count them)

    def _lookup(self, reference: str) -> Optional[Tuple[str, str]]:
        if reference not in self._cache:
            self.inspects += 1
            self._cache[reference] = resolve_image(self.client, reference)
        return self._cache[reference]

    def identity(self, reference: str) -> Optional[str]:
        found = self._lookup(reference)
        return found[0] if found else None

    def image_id(self, reference: str) -> Optional[str]:
        """The local image ID read in the same inspect as `identity(reference)` (what a container is created from)."""
        found = self._lookup(reference)
        return found[1] if found else None

    def remember(self, reference: str, identity: str, image_id: str) -> None:
        """Set what `reference` stands for in this process (a build just made it)."""
        self._cache[reference] = (identity, image_id)

    def forget(self, reference: str) -> None:
        self._cache.pop(reference, None)


def identity_changed(recorded: Optional[str], current: Optional[str]) -> Optional[bool]:
    """True/False when the current identity differs from / equals the recorded one.

    None when it cannot be told: the current identity is unknown (no daemon,
    image not present locally). A stage with nothing recorded is changed.
    """
    if current is None:
        return None
    return recorded != current


# --- the record in dvc.lock ---------------------------------------------------------

DEP_PREFIX = "docker:"  # the dependency's path in dvc.lock and its `dvc exp show` column: docker:<reference>
LEGACY_RECORD_FILE = "dvc.docker.lock"  # what earlier versions wrote; no longer read nor written
_LOCK_REPO = "repo"
_LOCK_SHA = "sha256"
_LOCK_ID = "id"  # an identity of another form (never written by Docker today): kept whole
_LOCK_BUILD = "build"  # a built image: the Dockerfile (its identity is build:sha256:<inputs' hash>)
_LOCK_BUILT = "built"  # a built image: the 64 hex digits of the local image ID the build produced
_LOCK_INPUTS = "inputs"  # a built image's inputs as one mapping: written before, still read
# a built image's inputs (build.BuildInputs.as_record()), one key each in the entry: as_record key -> lock key
_INPUT_KEYS = (("dockerfile", "file"), ("context", "files"), ("args", "args"))
_LOCK_TARGET = "target"
_LOCK_BASES = "bases"  # a list of {ref, repo?, sha} (or {ref, id} for another form)
_LOCK_REF = "ref"
_LOCK_BASE_SHA = "sha"  # `sha256` would not fit: a base's keys are indented 2 more
BUILD_PREFIX = "build:"
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})\Z")
_HEX = re.compile(r"[0-9a-f]{64}\Z")


def dep_path(image: str) -> str:
    """The image dependency's path: `docker:python:3.12-slim`."""
    return f"{DEP_PREFIX}{image}"


def is_dep_path(path: Any) -> bool:
    return isinstance(path, str) and path.startswith(DEP_PREFIX)


def lock_entry(record: Record, identity_only: bool = False) -> Dict[str, Any]:
    """The record's mapping under the dependency's `dataset` key in dvc.lock (lines of at most 80 columns).

    A built image (docker.build): `build` (the Dockerfile) and `sha256` (its
    inputs' hash) are the identity; `built` (the local image ID the build
    produced) and `inputs` (what `dvc status` compares to name what changed)
    go with it unless `identity_only` (the run-cache key: the same inputs on
    another machine build another image ID, and must still find the entry).
    """
    repo, digest = split_identity(record.identity)
    if repo is None and digest.startswith(BUILD_PREFIX) and _DIGEST.match(digest[len(BUILD_PREFIX) :]):
        entry: Dict[str, Any] = {_LOCK_BUILD: record.build or "", _LOCK_SHA: digest[len(BUILD_PREFIX) + 7 :]}
        if identity_only:
            return entry
        built = _DIGEST.match(record.image_id or "")
        if built:
            entry[_LOCK_BUILT] = built.group(1)
        if record.inputs:
            entry.update(_inputs_entry(record.inputs))
        return entry
    return _identity_entry(record.identity, _LOCK_SHA)


def _identity_entry(identity: str, sha_key: str) -> Dict[str, Any]:
    """`repo@sha256:<hex>` -> {repo, <sha_key>: hex}; `sha256:<hex>` -> {<sha_key>: hex}; else {id: identity}."""
    repo, digest = split_identity(identity)
    match = _DIGEST.match(digest)
    if not match:
        return {_LOCK_ID: identity}
    return {**({_LOCK_REPO: repo} if repo else {}), sha_key: match.group(1)}


def _identity_of(entry: Mapping[str, Any], sha_key: str) -> Optional[str]:
    """The inverse of `_identity_entry`; None when the mapping holds none."""
    if entry.get(_LOCK_ID):
        return str(entry[_LOCK_ID])
    sha = entry.get(sha_key)
    if not sha:
        return None
    repo = entry.get(_LOCK_REPO)
    return f"{repo}@sha256:{sha}" if repo else f"sha256:{sha}"


def _bare(value: Any) -> Any:
    """`sha256:<hex>` -> hex (what fits a line); any other value as is."""
    match = _DIGEST.match(value) if isinstance(value, str) else None
    return match.group(1) if match else value


def _inputs_entry(inputs: Mapping[str, Any]) -> Dict[str, Any]:
    """A built image's inputs (build.BuildInputs.as_record()) as keys of its lock entry, every line within 80 columns."""
    entry: Dict[str, Any] = {key: _bare(inputs.get(name) or "") for name, key in _INPUT_KEYS}
    if inputs.get("target"):
        entry[_LOCK_TARGET] = inputs["target"]
    bases = inputs.get("bases") if isinstance(inputs.get("bases"), Mapping) else {}
    if bases:
        entry[_LOCK_BASES] = [{_LOCK_REF: ref, **_identity_entry(str(identity), _LOCK_BASE_SHA)}
                              for ref, identity in bases.items()]
    return entry


def _inputs_of_entry(entry: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The inverse of `_inputs_entry` (exactly as_record(), whose JSON the identity hashes); also the old `inputs:`."""
    old = entry.get(_LOCK_INPUTS)
    if isinstance(old, Mapping):
        return dict(old)
    if not all(key in entry for _, key in _INPUT_KEYS):
        return None

    def digest(value: Any) -> Any:
        return f"sha256:{value}" if isinstance(value, str) and _HEX.match(value) else value

    bases = {}
    for base in entry.get(_LOCK_BASES) or []:
        identity = _identity_of(base, _LOCK_BASE_SHA) if isinstance(base, Mapping) else None
        if identity is not None and base.get(_LOCK_REF):
            bases[str(base[_LOCK_REF])] = identity
    inputs: Dict[str, Any] = {name: digest(entry[key]) for name, key in _INPUT_KEYS}
    return {**inputs, "target": entry.get(_LOCK_TARGET) or "", "bases": bases}


def identity_from_entry(entry: Any) -> Optional[str]:
    """The identity a `lock_entry` mapping holds; None for anything else."""
    if not isinstance(entry, Mapping):
        return None
    if _LOCK_BUILD in entry and entry.get(_LOCK_SHA) and not entry.get(_LOCK_ID):
        return f"{BUILD_PREFIX}sha256:{entry[_LOCK_SHA]}"
    return _identity_of(entry, _LOCK_SHA)


def record_from_entry(stage_name: str, image: str, entry: Any) -> Optional[Record]:
    """The Record a `lock_entry` mapping holds (a built image's Dockerfile, inputs and image ID too); None if none."""
    identity = identity_from_entry(entry)
    if identity is None:
        return None
    built = entry.get(_LOCK_BUILT)
    return Record(
        stage=stage_name, image=image, identity=identity,
        build=str(entry[_LOCK_BUILD]) if entry.get(_LOCK_BUILD) else None,
        inputs=_inputs_of_entry(entry) if entry.get(_LOCK_BUILD) else None,
        image_id=f"sha256:{built}" if isinstance(built, str) and built else None,
    )


def record_from_lock(stage_name: str, lock_data: Any) -> Optional[Record]:
    """The stage's recorded image from its dvc.lock entry (`lock_data`), None when nothing is recorded.

    Reads the dependency written by this version, else the params entry of
    earlier versions (their reference is unknown: empty).
    """
    if not isinstance(lock_data, Mapping):
        return None
    for dep in lock_data.get("deps") or []:
        if isinstance(dep, Mapping) and is_dep_path(dep.get("path")):
            record = record_from_entry(stage_name, dep["path"][len(DEP_PREFIX) :], dep.get("dataset"))
            if record is not None:
                return record
    legacy = ((lock_data.get("params") or {}).get(LEGACY_RECORD_FILE) or {}).get(f"{record_key(stage_name)}.{ID_KEY}")
    return Record(stage=stage_name, image="", identity=str(legacy)) if legacy else None


def record_key(stage_name: str) -> str:
    """The key earlier versions gave a stage (DVC params keys are dotted paths, so no dots)."""
    return stage_name.replace(".", "_")


def short_id(identity: Optional[str]) -> str:
    """The 12 hex digits `dvc exp show` displays for an identity (as `docker images` does); '' for None."""
    if not identity:
        return ""
    match = _SHA.search(identity)
    return match.group(1)[:12] if match else identity


def describe_change(image: str, recorded: Optional[str], current: Optional[str]) -> str:
    """Words for `dvc status`: `image 'busybox:1' sha256:1a2b.. -> sha256:3c4d..`."""
    if recorded is None:
        return f"image '{image}' {short_identity(current)} (not recorded before)"
    return f"image '{image}' {short_identity(recorded)} -> {short_identity(current)}"


def split_identity(identity: str) -> Tuple[Optional[str], str]:
    """`repo@sha256:x` -> ("repo", "sha256:x"); `sha256:x` -> (None, "sha256:x")."""
    if "@" in identity:
        repo, digest = identity.split("@", 1)
        return repo, digest
    return None, identity


# True inside `dvc status` and `--dry` runs (set by tracking's patches, read by
# dependency/image.py): identities are looked up, never pulled, and may stay unknown.
_STATUS_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("dvc_docker_exec_status_only", default=False)


def status_only() -> bool:
    """True inside `dvc status` / `--dry`: identities are looked up, never pulled, and may stay unknown."""
    return _STATUS_ONLY.get()


@contextmanager
def _set(flag: "contextvars.ContextVar[bool]") -> Iterator[None]:
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)


def looking_only() -> Any:
    """Context: inside it identities are looked up, never pulled (`dvc status`, `--dry`)."""
    return _set(_STATUS_ONLY)


# True while DVC computes a run-cache key (set by tracking's patch of
# dvc.stage.cache._get_stage_hash, read by dependency/image.py): a dependency's entry is
# its identity only (a built image's produced image ID differs between machines).
_KEYING: contextvars.ContextVar[bool] = contextvars.ContextVar("dvc_docker_exec_keying", default=False)


def keying_only() -> bool:
    return _KEYING.get()


def keying() -> Any:
    """Context: DVC computes a run-cache key."""
    return _set(_KEYING)

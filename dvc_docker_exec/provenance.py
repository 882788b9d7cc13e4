"""Image provenance: which image identity each container stage ran in.

Public API (stable; ``dvc docker images/doctor/pull`` build on it):

* :data:`RECORD_FILE` — ``dvc.docker.lock``, the Git-tracked record next to
  each ``dvc.lock``.
* :func:`resolve_identity` — image reference -> immutable identity through a
  docker-py client: the registry digest (``RepoDigests``) when the image came
  from a registry (of the reference's repository), else the local image ID
  (``sha256:...``); None if absent.
* :class:`IdentityCache` — the same, one inspect per distinct image per process.
* :class:`Record`, :func:`read_record_file`, :func:`read_records`,
  :func:`write_record_file` — the record format (stage -> reference + identity).
* :func:`identity_changed` — whether a stage's current identity differs from
  the recorded one (None when it cannot be told).
* :func:`short_identity` — the short form used in messages.
* For a loaded DVC stage: ``tracking.image_dependency_of(stage)`` (its
  ``image``, ``recorded()``, ``current()``, ``status()``).

Record format (YAML, human-readable, written by the plugin when DVC writes the
stage's entry in ``dvc.lock``)::

    # dvc-docker-exec: the image each container stage of dvc.yaml ran in
    train:
      image: "python:3.12-slim"
      id: "python@sha256:4f6c..."

Top-level keys are stage names (``.`` replaced by ``_``, see
:func:`record_key`), so that ``<key>.id`` is a DVC params key: DVC itself
compares it (``dvc status``), keys its run cache with it and shows it in
``dvc exp show`` / ``dvc params diff``.

This module imports neither dvc nor docker (a client is passed in).
"""

from __future__ import annotations

import contextvars
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from .private_files import read_own_file, replace_file

RECORD_FILE = "dvc.docker.lock"
ID_KEY = "id"
IMAGE_KEY = "image"
HEADER = "# dvc-docker-exec: the image each container stage of dvc.yaml ran in (README: Provenance)\n"

_SHA = re.compile(r"sha256:([0-9a-f]{64})")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_@-]*\Z")  # a stage name YAML reads as itself
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}  # YAML 1.1 reads these otherwise
_SKIP_DIRS = {".git", ".dvc", "node_modules", "__pycache__"}


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


def short_identity(identity: Optional[str]) -> str:
    """`python@sha256:4f6c1a...` -> `python@sha256:4f6c1a2b3c4d`; None -> `none`."""
    if not identity:
        return "none"
    return _SHA.sub(lambda m: f"sha256:{m.group(1)[:12]}", identity)


def identity_changed(recorded: Optional[str], current: Optional[str]) -> Optional[bool]:
    """True/False when the current identity differs from / equals the recorded one.

    None when it cannot be told: the current identity is unknown (no daemon,
    image not present locally). A stage with nothing recorded is changed.
    """
    if current is None:
        return None
    return recorded != current


# --- record file -------------------------------------------------------------------


def record_key(stage_name: str) -> str:
    """The record's key for a stage: DVC params keys are dotted paths, so no dots."""
    return stage_name.replace(".", "_")


def param_key(stage_name: str) -> str:
    """The DVC params key that holds the stage's identity (`train.id`)."""
    return f"{record_key(stage_name)}.{ID_KEY}"


def record_path(dvcfile_path: str) -> str:
    """The record file next to a `dvc.yaml` / `dvc.lock`."""
    return os.path.join(os.path.dirname(os.path.abspath(dvcfile_path)), RECORD_FILE)


def read_record_file(path: str) -> Dict[str, Record]:
    """key -> Record of one record file; {} when it does not exist.

    Raises ValueError for a file that is not a mapping of such entries.
    """
    raw = read_own_file(path)  # never through a link a stage planted, never from a FIFO
    if raw is None:
        return {}
    text = raw.decode("utf-8", errors="replace")
    from ruamel.yaml import YAML  # a DVC dependency

    try:
        data = YAML(typ="safe", pure=True).load(text) or {}
    except Exception as exc:  # ruamel's YAMLError and friends: one kind of error for callers
        raise ValueError(f"'{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"'{path}' is not a mapping of stage names")
    out: Dict[str, Record] = {}
    for key, entry in data.items():
        if not isinstance(entry, dict) or not entry.get(ID_KEY):
            raise ValueError(f"'{path}': entry '{key}' has no '{ID_KEY}'")
        inputs = entry.get("inputs")
        out[str(key)] = Record(
            stage=str(key),
            image=str(entry.get(IMAGE_KEY, "")),
            identity=str(entry[ID_KEY]),
            build=str(entry["build"]) if entry.get("build") else None,
            inputs=dict(inputs) if isinstance(inputs, dict) else None,
            image_id=str(entry["image_id"]) if entry.get("image_id") else None,
        )
    return out


def format_records(records: Mapping[str, Record]) -> str:
    """The file text: sorted keys, JSON-quoted values (valid YAML, stable diffs)."""
    lines = [HEADER]
    for key in sorted(records):
        rec = records[key]
        plain = _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS
        lines.append(f"{key if plain else json.dumps(key)}:\n")
        lines.append(f"  {IMAGE_KEY}: {json.dumps(rec.image)}\n")
        lines.append(f"  {ID_KEY}: {json.dumps(rec.identity)}\n")
        if rec.build:
            lines.append(f"  build: {json.dumps(rec.build)}\n")
        if rec.inputs:
            lines.append(f"  inputs: {json.dumps(rec.inputs, sort_keys=True)}\n")
        if rec.image_id:
            lines.append(f"  image_id: {json.dumps(rec.image_id)}\n")
    return "".join(lines)


def write_record_file(path: str, records: Mapping[str, Record], staging: Optional[str] = None) -> bool:
    """Write or remove the file when empty; True if its content changed.

    Written through private_files.replace_file (P6): a fresh file under a
    random name, in `staging` (the private `.dvc/tmp/docker-exec`) when given,
    renamed over `path`; a link or FIFO at `path` or at a temp name is never
    written through. Raises UnsafePathError (an OSError) for such a `path`.
    """
    raw = read_own_file(path)
    old = None if raw is None else raw.decode("utf-8", errors="replace")
    if not records:
        if old is not None:
            os.unlink(path)  # the file itself (read_own_file refused a link)
        return old is not None
    text = format_records(records)
    if text == old:
        return False
    replace_file(path, text.encode("utf-8"), staging=staging)
    return True


def update_record_file(path: str, key: str, record: Optional[Record], staging: Optional[str] = None) -> bool:
    """Set (or with None remove) one stage's entry; True if the file changed."""
    records = read_record_file(path)
    if record is None:
        if key not in records:
            return False
        del records[key]
    else:
        records[key] = record
    return write_record_file(path, records, staging=staging)


def _record_files(root: str) -> Iterator[str]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        if RECORD_FILE in files:
            yield os.path.join(folder, RECORD_FILE)


def read_records(root: str) -> Dict[str, Record]:
    """Every recorded identity under a repo root: stage address -> Record.

    The address is DVC's: `train` for the root dvc.yaml, `sub/dvc.yaml:train`
    for another one (Record.stage is the record's key).
    """
    out: Dict[str, Record] = {}
    for path in _record_files(root):
        folder = os.path.relpath(os.path.dirname(path), root)
        for key, rec in read_record_file(path).items():
            address = key if folder == "." else f"{os.path.join(folder, 'dvc.yaml')}:{key}"
            out[address] = rec
    return out


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
# image_dep): identities are looked up, never pulled, and may stay unknown.
_STATUS_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("dvc_docker_exec_status_only", default=False)


def status_only() -> bool:
    """True inside `dvc status` / `--dry`: identities are looked up, never pulled, and may stay unknown."""
    return _STATUS_ONLY.get()


@contextmanager
def looking_only() -> Iterator[None]:
    token = _STATUS_ONLY.set(True)
    try:
        yield
    finally:
        _STATUS_ONLY.reset(token)

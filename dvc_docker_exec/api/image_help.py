"""What to tell a user whose image is not on this machine (issue 20, item 2).

One line that says the image is not present here, why a pull failed (the
registry's answer in a few words), and the two fixes that apply, most direct
first: the local image that is the one `dvc.lock` records (under another
tag), the closest local names (a typo), `dvc docker pull` (only where a
registry could have the image), how to build or load it. Used by the pull policy (`runner.ImageManager`)
and `dvc docker pull`; only on the failure path (one `GET /images/json`).

Pure except `local_images`, which takes a docker-py client.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

_SHA = re.compile(r"sha256:([0-9a-f]{64})")


def short_identity(identity: Optional[str]) -> str:
    """How an identity reads in a message: `python@sha256:4f6c1a...` -> `python@sha256:4f6c1a2b3c4d`; None -> `none`."""
    if not identity:
        return "none"
    return _SHA.sub(lambda m: f"sha256:{m.group(1)[:12]}", identity)


_LIBRARY = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


@dataclass(frozen=True)
class LocalImage:
    tags: Tuple[str, ...]
    id: str
    digests: Tuple[str, ...] = ()


def local_images(client: Any) -> List[LocalImage]:
    """The daemon's images (tags, ID, registry digests); [] when it cannot tell (only hints depend on it)."""
    try:
        rows = client.api.images()
    except Exception:  # noqa: BLE001 - a socket proxy may deny the list: no hints, same error
        return []
    return [
        LocalImage(
            tuple(t for t in row.get("RepoTags") or () if t and t != "<none>:<none>"),
            str(row.get("Id") or ""),
            tuple(d for d in row.get("RepoDigests") or () if d and not d.startswith("<none>")),
        )
        for row in rows
    ]


def _norm(reference: str) -> str:
    for prefix in _LIBRARY:
        if reference.startswith(prefix):
            reference = reference[len(prefix) :]
            break
    name = reference.split("@", 1)[0]
    return reference if ":" in name.rsplit("/", 1)[-1] or "@" in reference else reference + ":latest"


CUTOFF = 0.6  # difflib's default: below it a name is no suggestion
MARGIN = 0.05  # how much less alike than the best name another suggestion may be


def close_names(image: str, images: Sequence[LocalImage], n: int = 3) -> List[str]:
    """Local tags that look like `image` (a typo: `nu-irs:1` -> `nu-iris:1`), closest first."""
    wanted = _norm(image)
    tags = {_norm(tag): tag for local in images for tag in local.tags}
    tags.pop(wanted, None)
    scored = sorted(
        ((difflib.SequenceMatcher(None, wanted, name).ratio(), name) for name in tags), key=lambda item: (-item[0], item[1])
    )
    if not scored or scored[0][0] < CUTOFF:
        return []
    # why relative to the best: names sharing a long prefix (`team/...`) are all "close"; a typo is much closer
    return [tags[name] for ratio, name in scored[:n] if ratio >= max(CUTOFF, scored[0][0] - MARGIN)]


def recorded_here(recorded: Optional[str], images: Sequence[LocalImage]) -> Optional[LocalImage]:
    """The local image whose ID (or registry digest) is the recorded identity, if present."""
    if not recorded:
        return None
    for local in images:
        if recorded == local.id or recorded in local.digests:
            return local
    return None


_UNREACHED = (
    # (pattern in the daemon's error, what it means in a few words): the registry was not reached, so it may
    # have the image (a pull later can work)
    (r"lookup (\S+?)(?: on \S+)?: no such host|no such host", "{0} does not resolve: no network?"),
    (r"temporary failure in name resolution|server misbehaving", "the registry's name does not resolve: no network?"),
    (r"connection refused", "nothing answers at the registry (connection refused)"),
    (r"i/o timeout|deadline exceeded|timeout", "the registry did not answer in time"),
)
_REASONS = _UNREACHED + (
    # the registry answered (or refused to talk): pulling again does not help
    (r"http response to https client", "the registry speaks HTTP (list it in the daemon's insecure-registries)"),
    (r"x509|certificate", "the registry's TLS certificate is not trusted"),
    (r"pull access denied|unauthorized|authentication required|denied",
     "access denied: no such repository there, or `docker login` first"),
    (r"manifest unknown|not found", "the registry has no such image or tag"),
)


def pull_reason(detail: str) -> str:
    """The daemon's pull error in a few words (the full text is in `dvc -v`)."""
    text = str(detail).strip()
    for pattern, meaning in _REASONS:
        found = re.search(pattern, text, re.IGNORECASE)
        if found:
            host = next((g for g in found.groups() if g), None) if found.groups() else None
            return meaning.format(f"'{host}'" if host else "the registry's name")
    first = text.splitlines()[0] if text else "unknown error"
    return first if len(first) <= 160 else first[:157] + "..."


def unreached(detail: str) -> bool:
    """True when a pull failed before a registry answered (no network, no DNS, nothing listening, a timeout)."""
    return any(re.search(pattern, str(detail), re.IGNORECASE) for pattern, _ in _UNREACHED)


def _repository(reference: str) -> str:
    """`team/x:1`, `team/x@sha256:...`, `docker.io/team/x` -> `team/x` (a registry's port stays)."""
    name = _norm(reference).split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def made_here(image: str, images: Sequence[LocalImage], recorded: Optional[str] = None) -> bool:
    """True when what is known says `image` comes from no registry: it was built or loaded on a machine.

    Evidence, not a guess from the name (`python:3.12` and `egs-trial:1` look
    alike, one is on Docker Hub): dvc.lock records a bare image ID (what ran
    had no registry digest: a pulled image is recorded as `repo@sha256:...`),
    or the repository's other tags here have no registry digest of that
    repository (built here; a digest of a push elsewhere does not count).
    """
    if recorded and _SHA.fullmatch(recorded):
        return True
    repository = _repository(image)
    family = [local for local in images if any(_repository(tag) == repository for tag in local.tags)]
    return bool(family) and not any(_repository(d) == repository for local in family for d in local.digests)


def look_alikes(image: str, images: Sequence[LocalImage], recorded: Optional[str] = None) -> List[str]:
    """Clauses naming the local image that is the recorded one, and the closest local names."""
    found = []
    same = recorded_here(recorded, images)
    if same is not None:
        # of its tags, the one most like the name asked for (others may tag the same image elsewhere)
        wanted = _norm(image)
        name = max(same.tags, key=lambda tag: difflib.SequenceMatcher(None, wanted, _norm(tag)).ratio()) if same.tags else short_identity(same.id)
        found.append(f"the image dvc.lock records is here as '{name}': `docker tag {name} {image}`")
    close = [name for name in close_names(image, images) if same is None or name not in same.tags]
    if close:
        found.append("did you mean " + " or ".join(f"'{name}'" for name in close) + "?")
    return found


def pull_fix(
    image: str, images: Sequence[LocalImage], recorded: Optional[str], pull_failure: Optional[str], registry: str
) -> Optional[str]:
    """`dvc docker pull` as a fix, only where a registry could have the image; else None.

    Not after the registry answered (no such image, access denied: the
    reason and any `docker login` hint say it), nor for an image made here.
    """
    if made_here(image, images, recorded):
        return None
    if pull_failure is None:  # docker.pull never: nothing was tried
        return "`dvc docker pull` (or `dvc config docker.pull missing`)"
    if unreached(pull_failure):
        return f"`dvc docker pull` once {registry} is reachable"
    return None


def unavailable(
    image: str,
    images: Sequence[LocalImage],
    *,
    recorded: Optional[str] = None,
    pull_failure: Optional[str] = None,
    registry: str = "its registry",
    policy: str = "missing",
) -> str:
    """One line: not present here; why no pull helped; did you mean; how to make it exist.

    `pull_failure`: the daemon's pull error (shortened here), None when no pull was tried.
    """
    if pull_failure is not None:
        head = (
            f"image '{image}' is not present on this machine, and pulling it from {registry} failed "
            f"({pull_reason(pull_failure)})"
        )
    else:
        head = f"image '{image}' is not present locally and docker.pull is '{policy}'"
    # the two fixes that apply, most direct first (a readable line, not every way out)
    fixes = look_alikes(image, images, recorded)
    if recorded_here(recorded, images) is not None:  # what ran is here: the one fix that restores exactly it
        return "; ".join([head, fixes[0]])
    pull = pull_fix(image, images, recorded, pull_failure, registry)
    if pull:
        fixes.append(pull)
    fixes.append(f"`docker build -t {image} .` or `docker load -i FILE`")
    return "; ".join([head, *fixes[:2]])

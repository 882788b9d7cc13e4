"""The image as code (issue 19): what determines a built image, hashed without the daemon.

A stage with ``docker.build`` runs in an image built from a Dockerfile of the
repository. Its identity is not the image (a rebuild of the same inputs makes
another ID) but a hash of what determines it, so that a fresh clone, or a
machine after ``docker image rm``, is up to date without building:

* the Dockerfile's bytes,
* the files of the build context after ``.dockerignore`` (docker-py's
  ``exclude_paths``, the Docker CLI's rules): path, executable bit, content
  (symlinks: their target), never the mtime/owner/full mode a clone changes,
* the build args and the target,
* the identity of each ``FROM`` image as resolved on this engine.

The context is the Dockerfile's folder. ``.git`` and ``.dvc`` are never part
of it (Git's and DVC's own state and config would change the hash at every
commit, send the cache to the daemon, and differ in every experiment copy, whose
``.dvc/config.local`` DVC writes), nor is anything DVC
writes (``BuildSpec.written``: every stage's outs, the data .dvc files track,
dvc.lock and .dvc files, params files, see stage/settings.written_by_dvc): the image is an input of the stages, so their
outputs in its inputs would make it depend on itself (a root Dockerfile
without .dockerignore was never up to date). What is hashed is what
is sent: ``write_context`` hashes the bytes it puts into the tar and the
builder refuses a context that changed in between.

File hashes are cached by (size, mtime, ctime, inode) in a file of the
user's private lock folder (not mounted into any stage: a stage cannot
forge it), so an unchanged context of 1,000 files costs stats, not reads.

Pure apart from reading the context and that cache; imports neither dvc nor
a daemon client (docker-py's path matcher only).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tarfile
from dataclasses import dataclass, field, replace
from typing import IO, Callable, Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence, Tuple

from dvc_docker_exec.errors import DockerExecError

PREFIX = "build:"  # identities of built images: "build:sha256:<hex>" (a pulled one: "repo@sha256:" or "sha256:")
LABEL_INPUTS = "dvc-docker-exec.build.inputs"  # on the built image: the identity it was built from
LABEL_DOCKERFILE = "dvc-docker-exec.build.dockerfile"
# relative to the repository root: Git's and DVC's own folders (DVC's cache, state, config: `.dvc/config.local`
# is this machine's, DVC rewrites it in every `exp run --temp`/queue copy, and may hold a remote's credentials)
ALWAYS_EXCLUDED = (".git", ".dvc")
CHUNK = 1 << 20
KEEP_CONTEXTS = 6  # per-file lists of the last contexts hashed here: `dvc status` names the files that changed


def is_built(identity: Optional[str]) -> bool:
    return bool(identity) and str(identity).startswith(PREFIX)


@dataclass(frozen=True)
class BuildSpec:
    """One image to build: where its Dockerfile and context are, with what args, under which tag."""

    repo_root: str  # absolute
    dockerfile: str  # relative to repo_root ("env/Dockerfile")
    args: Tuple[Tuple[str, str], ...] = ()
    target: Optional[str] = None
    tag: str = ""
    # paths (relative to repo_root) DVC writes, never part of the context; asked when the context is read,
    # not when the spec is made (stage/settings.written_by_dvc reads the repo's index, which loads stages)
    written: Optional[Callable[[], Sequence[str]]] = field(default=None, compare=False, hash=False, repr=False)

    @property
    def context(self) -> str:
        """The context folder, relative to repo_root ("." for a Dockerfile at the root)."""
        return os.path.dirname(self.dockerfile) or "."

    @property
    def key(self) -> Tuple:
        return (self.repo_root, self.dockerfile, self.args, self.target)


def spec_for(repo_root: str, build: str, args: Sequence[Tuple[str, str]] = (), target: Optional[str] = None,
             tag: str = "", written: Optional[Callable[[], Sequence[str]]] = None) -> BuildSpec:
    """`build` (docker.build) is a Dockerfile or a folder holding one; both must resolve inside the repository."""
    root = os.path.realpath(repo_root)
    path = os.path.normpath(os.path.join(root, build))
    if os.path.isdir(path):
        path = os.path.join(path, "Dockerfile")
    if not os.path.isfile(path):
        raise DockerExecError(f"docker.build '{build}': no Dockerfile at '{os.path.relpath(path, root)}'")
    real = os.path.realpath(path)
    context = os.path.realpath(os.path.dirname(path))
    if not (_within(real, root) and _within(context, root)):
        raise DockerExecError(
            f"docker.build '{build}' resolves outside the repository ('{real}'): the build context is "
            "read from the repository only"
        )
    # the Dockerfile where it is, its folder resolved (a symlinked folder is read where it points)
    dockerfile = os.path.relpath(os.path.join(context, os.path.basename(path)), root)
    return BuildSpec(root, dockerfile, tuple(args), target, tag, written)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# --- Dockerfile: the FROM images ---------------------------------------------------------------


_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?[-+](?P<word>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def _instructions(text: str) -> Iterator[Tuple[str, str]]:
    """(INSTRUCTION, rest) with continuation lines joined and comments dropped (the `escape` directive honoured)."""
    escape = "\\"
    found = re.search(r"^#\s*escape\s*=\s*(\S)", text, re.MULTILINE | re.IGNORECASE)
    if found and text.lstrip().startswith("#"):
        escape = found.group(1)
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and current):
            continue
        if stripped.endswith(escape):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            yield word.upper(), rest.strip()
        current = ""
    if current.strip():
        word, _, rest = current.strip().partition(" ")
        yield word.upper(), rest.strip()


def _expand(text: str, values: Mapping[str, str]) -> str:
    def sub(match: "re.Match[str]") -> str:
        name = match.group("braced") or match.group("plain")
        if name in values:
            return values[name]
        return match.group("word") or ""

    return _VAR.sub(sub, text)


def base_images(dockerfile_text: str, args: Sequence[Tuple[str, str]] = ()) -> List[str]:
    """The images the Dockerfile builds FROM, in order, each once (not `scratch`, not its own stages).

    Global ARGs (before the first FROM) and the build args are expanded, as
    the builder does. `COPY --from=<image>` is not followed (docs).
    """
    given = dict(args)
    values: Dict[str, str] = {}
    stages: List[str] = []
    out: List[str] = []
    seen_from = False
    for word, rest in _instructions(dockerfile_text):
        if word == "ARG" and not seen_from:
            for item in rest.split():
                name, sep, default = item.partition("=")
                value = given.get(name, default.strip("\"'") if sep else None)
                if value is not None:
                    values[name] = value
        elif word == "FROM":
            seen_from = True
            parts = [p for p in rest.split() if not p.startswith("--")]
            if not parts:
                continue
            image = _expand(parts[0], values)
            if image.lower() != "scratch" and image.lower() not in stages and image not in out:
                out.append(image)
            if len(parts) >= 3 and parts[1].lower() == "as":
                stages.append(parts[2].lower())
    return out


# --- the context --------------------------------------------------------------------------------


def read_dockerignore(context_dir: str) -> List[str]:
    """The patterns of `.dockerignore` as the Docker CLI reads them (comments and blank lines dropped)."""
    try:
        with open(os.path.join(context_dir, ".dockerignore"), encoding="utf-8") as fobj:
            lines = fobj.read().splitlines()
    except FileNotFoundError:
        return []
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def context_files(spec: BuildSpec, memo: Optional[Dict[str, bool]] = None) -> List[str]:
    """Paths (relative to the context) of what the build gets: files, symlinks and folders, sorted.

    docker-py's `exclude_paths` walk with its own matcher (the Docker CLI's
    rules), on `os.scandir`, with each path's verdict kept in `memo` (valid
    for one set of patterns, see HashCache): an unchanged context is walked,
    not matched again.
    """
    from docker.utils.build import PatternMatcher

    context_dir = os.path.join(spec.repo_root, spec.context)
    excluded = [
        rel for rel in (os.path.relpath(os.path.join(spec.repo_root, e), context_dir) for e in ALWAYS_EXCLUDED)
        if rel != ".." and not rel.startswith("../")
    ]
    own = dockerfile_in_context(spec)
    written = dvc_written(spec) - {own}
    # what exclude_paths adds: the Dockerfile is always sent
    matcher = PatternMatcher(read_dockerignore(context_dir) + excluded + [f"!{own}"])
    exceptions = [p.cleaned_pattern for p in matcher.patterns if p.exclusion]
    memo = {} if memo is None else memo
    found: List[str] = []

    def walk(folder: str, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if rel in written:  # with all it holds (literal paths: not .dockerignore patterns)
                    continue
                skip = memo.get(rel)
                if skip is None:
                    skip = memo[rel] = matcher.matches(rel)
                if not skip:
                    found.append(rel)
                if not entry.is_dir(follow_symlinks=False):
                    continue
                # an excluded folder is still entered when an exception (`!dir/file`) may re-admit something in it
                if skip and not any(pattern.startswith(rel) for pattern in exceptions):
                    continue
                walk(entry.path, rel + "/")

    walk(context_dir, "")
    # an exception never re-admits .git or DVC's state, whatever .dockerignore says
    return sorted(f for f in found if not any(f == e or f.startswith(e + "/") for e in excluded))


def dvc_written(spec: BuildSpec) -> FrozenSet[str]:
    """`spec.written` relative to the context (those inside it), normalised as the walk names them."""
    if spec.written is None:
        return frozenset()
    context_dir = os.path.join(spec.repo_root, spec.context)
    inside = (os.path.relpath(os.path.join(spec.repo_root, path), context_dir) for path in spec.written())
    return frozenset(rel for rel in inside if rel not in (".", "..") and not rel.startswith("../"))


EXP_COPIES = "/.dvc/tmp/exps/"  # DVC's copies for `exp run --temp` and the queue: <repo>/.dvc/tmp/exps/<tmpname>


def missing_from_copy(spec: BuildSpec) -> List[str]:
    """Files of the build context the workspace has and this experiment copy lacks ([] outside a copy).

    Why: DVC's copies hold only what Git and DVC track; an untracked file the
    Dockerfile COPYs builds in the workspace and fails in the copy ("COPY
    failed: file not found in build context"). The workspace is the repository
    the copy lives in (a `dvc init --subdir` repo: the subfolder's, the same).
    """
    head, sep, _tail = spec.repo_root.partition(EXP_COPIES)
    if not sep or not os.path.isfile(os.path.join(head, spec.dockerfile)):
        return []
    workspace = replace(spec, repo_root=head)
    try:
        have = set(context_files(spec))
        return [rel for rel in context_files(workspace) if rel not in have
                and not os.path.isdir(os.path.join(head, workspace.context, rel))]
    except OSError:  # the workspace changing meanwhile: only a hint is lost
        return []


def dockerfile_in_context(spec: BuildSpec) -> str:
    return os.path.relpath(os.path.join(spec.repo_root, spec.dockerfile), os.path.join(spec.repo_root, spec.context))


@dataclass
class HashCache:
    """One context's file hashes by (size, mtime_ns, ctime_ns, inode), and its paths' .dockerignore verdicts.

    Loaded from / saved to `path` (None: in memory only). `contexts`: the
    per-file list (path -> executable bit + 16 hex of the content) of the
    last KEEP_CONTEXTS context digests hashed here, oldest first: what
    `what_changed` compares to name the files (dvc.lock records one hash).
    """

    path: Optional[str]
    entries: Dict[str, list] = field(default_factory=dict)
    matches: Dict[str, Dict[str, bool]] = field(default_factory=dict)  # patterns' key -> path -> excluded
    contexts: Dict[str, Dict[str, str]] = field(default_factory=dict)  # context digest -> path -> short entry
    dirty: bool = False

    @classmethod
    def load(cls, path: Optional[str]) -> "HashCache":
        if path:
            try:
                with open(path, encoding="utf-8") as fobj:
                    data = json.load(fobj)
                if isinstance(data, dict) and isinstance(data.get("files"), dict):
                    contexts = data.get("contexts") if isinstance(data.get("contexts"), dict) else {}
                    return cls(path, data["files"], data.get("matches") or {}, contexts)
            except (OSError, ValueError):
                pass
        return cls(path)

    def memo(self, key: str) -> Dict[str, bool]:
        """The verdicts for one set of .dockerignore patterns (others are dropped: they are stale)."""
        if key not in self.matches:
            self.matches = {key: {}}
            self.dirty = True
        return self.matches[key]

    def get(self, rel: str, info: os.stat_result) -> Optional[str]:
        entry = self.entries.get(rel)
        if entry and entry[:4] == [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]:
            return entry[4]
        return None

    def put(self, rel: str, info: os.stat_result, digest: str) -> None:
        self.entries[rel] = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, digest]
        self.dirty = True

    def remember(self, context: str, files: Dict[str, str]) -> None:
        """Keep the per-file list of a context digest (a digest seen before keeps its place)."""
        if context in self.contexts:
            return
        self.contexts[context] = files
        for old in list(self.contexts)[:-KEEP_CONTEXTS]:
            del self.contexts[old]
        self.dirty = True

    def save(self, keep: Sequence[str]) -> None:
        if not self.path:
            return
        wanted = set(keep)
        files = {k: v for k, v in self.entries.items() if k in wanted}
        if not self.dirty and len(files) == len(self.entries):
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fobj:
                json.dump({"files": files, "matches": self.matches, "contexts": self.contexts}, fobj)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache: the next run hashes again


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fobj:
        for chunk in iter(lambda: fobj.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(kind: str, rel: str, executable: bool, digest: str) -> bytes:
    """One context entry as hashed: the same bytes whether it was read for status or for the tar."""
    # NUL cannot occur in a path: the fields cannot run into each other
    return f"{kind}\0{rel}\0{int(executable)}\0{digest}\n".encode("utf-8", "surrogateescape")


def context_digest(spec: BuildSpec, cache: Optional[HashCache] = None) -> Tuple[str, str]:
    """(sha256 of the Dockerfile, sha256 of the context's entries), reading only files whose stat changed."""
    context_dir = os.path.join(spec.repo_root, spec.context)
    cache = cache or HashCache(None)
    total = hashlib.sha256()
    key = hashlib.sha256("\n".join(read_dockerignore(context_dir) + [spec.dockerfile]).encode()).hexdigest()
    memo = cache.memo(key)
    before = len(memo)
    names = context_files(spec, memo)
    cache.dirty = cache.dirty or len(memo) != before
    own = dockerfile_in_context(spec)
    dockerfile_digest = None
    files: Dict[str, str] = {}  # path -> what `what_changed` compares: kind/executable bit + 16 hex
    for rel in names:
        full = os.path.join(context_dir, rel)
        info = os.lstat(full)
        if rel == own:  # hashed on its own: `dvc status` tells a Dockerfile change from a context change
            dockerfile_digest = cache.get(rel, info)
            if dockerfile_digest is None:
                dockerfile_digest = _file_digest(full)
                cache.put(rel, info, dockerfile_digest)
        elif stat.S_ISLNK(info.st_mode):
            target = os.readlink(full)
            total.update(_entry("link", rel, False, target))
            files[rel] = "l" + hashlib.sha256(os.fsencode(target)).hexdigest()[:16]
        elif stat.S_ISREG(info.st_mode):
            digest = cache.get(rel, info)
            if digest is None:
                digest = _file_digest(full)
                cache.put(rel, info, digest)
            executable = bool(info.st_mode & 0o111)
            total.update(_entry("file", rel, executable, digest))
            files[rel] = f"{int(executable)}{digest[:16]}"
        # folders: not hashed (Git keeps no empty folder; a clone must hash the same)
    cache.remember("sha256:" + total.hexdigest(), files)
    cache.save(names)
    if dockerfile_digest is None:  # never excluded by .dockerignore; a symlink is read where it points
        dockerfile_digest = _file_digest(os.path.join(spec.repo_root, spec.dockerfile))
    return "sha256:" + dockerfile_digest, "sha256:" + total.hexdigest()


class _HashingReader(io.RawIOBase):
    """Reads a file for tarfile while hashing the bytes that go into the tar."""

    def __init__(self, fobj: IO[bytes]):
        self.fobj = fobj
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = self.fobj.read(size)
        self.digest.update(data)
        return data

    def readable(self) -> bool:
        return True


def write_context(spec: BuildSpec, out: IO[bytes]) -> Tuple[Optional[str], str]:
    """Write the context as an uncompressed tar to `out`; returns (Dockerfile, context) digests of the bytes written.

    Owners are 0:0 (the Docker CLI's choice); a file whose size changed while
    it was read is an error (tar would pad or cut it).
    """
    context_dir = os.path.join(spec.repo_root, spec.context)
    total = hashlib.sha256()
    own = dockerfile_in_context(spec)
    own_digest = None
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in context_files(spec):
            full = os.path.join(context_dir, rel)
            info = tar.gettarinfo(full, arcname=rel)
            if info is None:
                continue  # a socket: the CLI skips it too
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = int(info.mtime) if 0 <= info.mtime < 8**11 else 0
            if info.issym():
                total.update(_entry("link", rel, False, info.linkname))
                tar.addfile(info)
            elif info.isfile():
                with open(full, "rb") as fobj:
                    reader = _HashingReader(fobj)
                    tar.addfile(info, reader)  # type: ignore[arg-type]
                    if fobj.read(1):
                        raise DockerExecError(f"'{os.path.join(spec.context, rel)}' grew while the build context was read")
                if rel == own:
                    own_digest = "sha256:" + reader.digest.hexdigest()
                else:
                    total.update(_entry("file", rel, bool(info.mode & 0o111), reader.digest.hexdigest()))
            else:
                tar.addfile(info)
    return own_digest, "sha256:" + total.hexdigest()


# --- the identity -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildInputs:
    """What determines a built image; `identity` is what DVC records and compares."""

    dockerfile: str  # sha256 of the Dockerfile
    context: str  # sha256 of the context's other entries
    args: str  # sha256 of the build args (values may be secrets: never recorded in clear)
    target: str  # "" for the last stage
    bases: Tuple[Tuple[str, str], ...]  # (FROM reference, its identity)
    # HashCache.contexts when these were told (this one's files included): never part of the identity
    contexts: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def identity(self) -> str:
        text = json.dumps(self.as_record(), sort_keys=True, separators=(",", ":"))
        return PREFIX + "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def as_record(self) -> Dict[str, object]:
        return {
            "dockerfile": self.dockerfile,
            "context": self.context,
            "args": self.args,
            "target": self.target,
            "bases": dict(self.bases),
        }


def args_digest(args: Sequence[Tuple[str, str]]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(sorted(args)).encode()).hexdigest()


def inputs_of(spec: BuildSpec, resolve_base: Callable[[str], str], cache: Optional[HashCache] = None) -> BuildInputs:
    """The inputs of `spec`; `resolve_base(reference)` gives a FROM image's identity (raises when unknown)."""
    with open(os.path.join(spec.repo_root, spec.dockerfile), encoding="utf-8", errors="replace") as fobj:
        text = fobj.read()
    cache = cache or HashCache(None)
    dockerfile, context = context_digest(spec, cache)
    bases = tuple((ref, resolve_base(ref)) for ref in base_images(text, spec.args))
    return BuildInputs(dockerfile, context, args_digest(spec.args), spec.target or "", bases, dict(cache.contexts))


def files_changed(before: Optional[Mapping[str, str]], after: Optional[Mapping[str, str]], shown: int = 5) -> str:
    """`files of the build context changed (a.py changed, notes.txt added)`; without both lists (a context
    not hashed on this machine before: a fresh clone) without the names."""
    words = "files of the build context changed"
    if before is None or after is None:
        return words
    changes = [
        f"{rel} {'added' if rel not in before else 'deleted' if rel not in after else 'changed'}"
        for rel in sorted(set(before) | set(after)) if before.get(rel) != after.get(rel)
    ]
    if not changes:
        return words
    more = f" and {len(changes) - shown} more" if len(changes) > shown else ""
    return f"{words} ({', '.join(changes[:shown])}{more})"


def what_changed(recorded: Optional[Mapping[str, object]], current: BuildInputs) -> List[str]:
    """Words for `dvc status`: which inputs differ from the recorded ones ("Dockerfile changed", ...)."""
    if not recorded:
        return ["not built before"]
    out = []
    if recorded.get("dockerfile") != current.dockerfile:
        out.append("Dockerfile changed")
    if recorded.get("context") != current.context:
        out.append(files_changed(current.contexts.get(str(recorded.get("context"))), current.contexts.get(current.context)))
    if recorded.get("args") != current.args:
        out.append("build args changed")
    if (recorded.get("target") or "") != current.target:
        out.append(f"target '{recorded.get('target') or ''}' -> '{current.target}'")
    old_bases = recorded.get("bases") if isinstance(recorded.get("bases"), Mapping) else {}
    for ref, identity in current.bases:
        if old_bases.get(ref) != identity:  # type: ignore[union-attr]
            out.append(f"base image '{ref}' {'changed' if ref in old_bases else 'added'}")  # type: ignore[operator]
    for ref in old_bases or {}:
        if ref not in dict(current.bases):
            out.append(f"base image '{ref}' no longer used")
    return out or ["inputs changed"]

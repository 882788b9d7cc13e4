"""Building a stage's image through the daemon (issue 19): once per need, with DVC-like progress.

`Builder.inputs` tells the identity of a build without building (DVC's
status and its run-cache key use it); `Builder.ensure` makes the image exist:
an image labelled with that identity is reused (whatever its tag), otherwise
it is built once per machine (a lock per identity shared by every dvc process
of the user, the pull lock's pattern) and tagged.

The context is sent by the API as a tar (docker-py `APIClient.build` with a
custom context): no path of ours reaches the daemon, so Docker contexts, SSH
endpoints and the socket pattern need no translation. Nothing of the host is
mounted into a build, and the build gets no secret, SSH agent, network or
privilege beyond Docker's defaults: the repository can choose none of them.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import sys
import tempfile
from typing import IO, Any, Deque, Dict, Mapping, Optional, Tuple

from dvc_docker_exec.types import build
from dvc_docker_exec.types.build import BuildInputs, BuildSpec
from dvc_docker_exec.errors import DockerExecError

logger = logging.getLogger(f"dvc.{__name__}")

TAIL = 10  # lines of a failed build's output in its error
_STEP = re.compile(r"Step (\d+)/(\d+) : (.*)")


class BaseNotPresent(DockerExecError):
    """A FROM image is absent and nothing is recorded for it: the identity cannot be told without pulling."""


class BuildFailed(DockerExecError):
    pass


class BuildDisplay:
    """A build's progress as DVC shows its own: a bar over the steps on a terminal, one line per step otherwise.

    The steps' own output is shown with `-v` (DVC's debug level) and kept,
    last lines only, for the error of a failed build.
    """

    def __init__(self, dockerfile: str, out: Optional[IO[str]] = None):
        from dvc.progress import Tqdm

        self.dockerfile = dockerfile
        self.out = out or sys.stderr
        self.step: Optional[str] = None
        self.step_no = 0
        self.total = 0
        self.tail: Deque[str] = collections.deque(maxlen=TAIL)
        self.image_id: Optional[str] = None
        self.verbose = logger.getEffectiveLevel() <= logging.DEBUG
        self.quiet = logger.getEffectiveLevel() > logging.INFO
        self.bar = Tqdm(desc=f"Building {dockerfile}", unit="step", file=self.out, leave=True, disable=self.quiet)
        self.lines = self.bar.disable and not self.quiet

    def feed(self, event: Mapping[str, Any]) -> None:
        if "error" in event:
            detail = event.get("errorDetail") or {}
            self.close()
            raise BuildFailed(self._failure(str(detail.get("message") or event["error"]).strip(), detail.get("code")))
        aux = event.get("aux")
        if isinstance(aux, Mapping) and aux.get("ID"):
            self.image_id = str(aux["ID"])
        for line in str(event.get("stream") or "").splitlines():
            self._line(line.rstrip())

    def _line(self, line: str) -> None:
        step = _STEP.match(line)
        if step:
            self.step_no, self.total, self.step = int(step.group(1)), int(step.group(2)), step.group(3)
            self.tail.clear()
            if self.lines:
                self._write(f"{self.dockerfile}: step {self.step_no}/{self.total}: {self.step}")
            else:
                if self.bar.total != self.total:  # known from the first step on: a bar with a total
                    self.bar.total = self.total
                    self.bar.bar_format = self.bar.BAR_FMT_DEFAULT
                self.bar.update(self.step_no - 1 - self.bar.n)
                self.bar.set_msg(self.step[:40])
            return
        if not line.strip() or line.startswith((" ---> ", "Removing intermediate container", "Successfully")):
            return
        self.tail.append(line)
        if self.verbose:
            self._write(f"  {line}")

    def _failure(self, message: str, code: Any) -> str:
        where = f"step {self.step_no}/{self.total} '{self.step}'" if self.step else "before its first step"
        status = f" with exit code {code}" if code else ""
        text = f"cannot build the image of '{self.dockerfile}': {where} failed{status}: {message.splitlines()[0]}"
        if self.tail:
            text += "\nlast lines of its output:\n" + "\n".join(f"  {line}" for line in self.tail)
        return text

    def _write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def close(self) -> None:
        if not self.bar.disable and self.total:
            self.bar.update(self.total - self.bar.n)
        self.bar.close()


# The classic builder's words when the image of the step before vanished while the step ran
LOST_PARENT = "unknown parent image ID"


def cache_path(spec: BuildSpec) -> Optional[str]:
    """The context's hash cache, in the user's private lock folder (a stage cannot write it)."""
    from dvc_docker_exec.backends.runner import lock_folder

    try:
        folder = lock_folder()
    except DockerExecError:
        return None
    name = hashlib.sha1(os.path.join(spec.repo_root, spec.context).encode()).hexdigest()
    return os.path.join(folder, f"build-context-{name}.json")


class Builder:
    """The builds of one dvc process: inputs told once per build, images made once per machine."""

    def __init__(self, client: Any, images: Any, out: Optional[IO[str]] = None):
        self.client = client
        self.api = client.api
        self.images = images  # runner.ImageManager: FROM images are looked up (and pulled) through it
        self.out = out or sys.stderr
        self._inputs: Dict[Tuple, Tuple[BuildInputs, bool]] = {}  # spec.key -> (inputs, a base was assumed)
        self.produced: Dict[str, str] = {}  # identity -> local image ID, built or found in this process
        self.built_now: set = set()  # identities this process built (not found)

    def inputs(self, spec: BuildSpec, recorded_bases: Optional[Mapping[str, str]] = None,
               looking_only: bool = False) -> BuildInputs:
        """The inputs now; an absent FROM image counts as recorded (a fresh machine is up to date).

        Absent and not recorded: pulled (as the builder would), or with
        `looking_only` (`dvc status`, `--dry`) BaseNotPresent.
        """
        if spec.key in self._inputs:
            return self._inputs[spec.key][0]
        assumed = []

        def resolve(ref: str) -> str:
            identity = self.images.identities.identity(ref)
            if identity is None and recorded_bases and ref in recorded_bases:
                assumed.append(ref)
                return recorded_bases[ref]
            if identity is None:
                if looking_only:
                    raise BaseNotPresent(
                        f"its base image '{ref}' is not present (`dvc status` never pulls; `dvc repro` will)"
                    )
                self.images.ensure(ref, "missing")
                identity = self.images.identity(ref, "missing")
            return identity

        inputs = build.inputs_of(spec, resolve, build.HashCache.load(cache_path(spec)))
        self._inputs[spec.key] = (inputs, bool(assumed))
        return inputs

    def known(self, spec: BuildSpec) -> Optional[BuildInputs]:
        """The inputs this process told for `spec` (what DVC compared and records), None if not asked yet."""
        found = self._inputs.get(spec.key)
        return found[0] if found else None

    def find(self, identity: str) -> Optional[str]:
        """The local image built from these inputs (by its label), newest first; None if there is none."""
        found = self.api.images(filters={"label": f"{build.LABEL_INPUTS}={identity}"})
        if not found:
            return None
        return str(max(found, key=lambda image: image.get("Created") or 0)["Id"])

    def ensure(self, spec: BuildSpec, force: bool = False) -> Tuple[str, str]:
        """(identity, local image ID) of the stage's image, built unless an image of these inputs exists."""
        inputs = self.inputs(spec)
        if self._inputs[spec.key][1]:
            # a base was taken as recorded: get it now, so the identity recorded is the one built on
            for ref, _ in inputs.bases:
                self.images.ensure(ref, "missing")
            del self._inputs[spec.key]
            inputs = self.inputs(spec)
        identity = inputs.identity
        image_id = None if force or identity in self.produced else self.find(identity)
        if identity in self.produced and not force:
            image_id = self.produced[identity]
        if image_id is None:
            from dvc_docker_exec.backends.runner import _file_lock

            with _file_lock(f"build:{identity}", what=f"building the image of '{spec.dockerfile}'"):
                # another process may have built it while we waited
                image_id = None if force else self.find(identity)
                if image_id is None:
                    image_id = self._build(spec, inputs)
                    self.built_now.add(identity)
        self._tag(spec, image_id)
        self.produced[identity] = image_id
        self.images.identities.remember(spec.tag, identity, image_id)
        return identity, image_id

    def _build(self, spec: BuildSpec, inputs: BuildInputs) -> str:
        identity = inputs.identity
        if logger.getEffectiveLevel() <= logging.INFO:  # `-q` silences it, as DVC's own progress
            self.out.write(f"Building image '{spec.tag}' from {spec.dockerfile}...\n")
            self.out.flush()
        missing = build.missing_from_copy(spec)
        if missing:  # `exp run --temp`/--queue: the copy lacks files the workspace's build would get
            names = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            logger.warning(
                "the build context of '%s' in this experiment's copy lacks %d file(s) of the workspace: %s "
                "(`dvc exp run --temp`/`--queue` copies only what Git and DVC track: `git add` them)",
                spec.dockerfile, len(missing), names,
            )
        with tempfile.TemporaryFile() as context:
            sent = build.write_context(spec, context)
            if sent != (inputs.dockerfile, inputs.context):
                raise DockerExecError(
                    f"the build context of '{spec.dockerfile}' changed while it was read: nothing was built; run again"
                )
            for attempt in (1, 2):
                try:
                    display = self._send(spec, identity, context)
                    break
                except BuildFailed as exc:
                    if attempt == 2 or LOST_PARENT not in str(exc):
                        raise
                    # the daemon lost the image of the previous step while this one ran: another build or an
                    # image removal (`docker image prune`, `rmi`) at the same time; a known daemon race
                    # (moby/moby#18976). Nothing of ours was wrong: one more build, from that step's inputs.
                    logger.warning("%s; building it once more", str(exc).splitlines()[0])
        if not display.image_id:
            raise BuildFailed(f"cannot build the image of '{spec.dockerfile}': the daemon named no image")
        if not display.quiet:
            self.out.write(f"Built image '{spec.tag}' ({display.image_id[:19]}) from {spec.dockerfile}\n")
        return display.image_id

    def _send(self, spec: BuildSpec, identity: str, context: IO[bytes]) -> BuildDisplay:
        """One build request from the context file (read from its start); its display, closed."""
        from docker.errors import APIError

        context.seek(0)
        display = BuildDisplay(spec.dockerfile, self.out)
        try:
            stream = self.api.build(
                fileobj=context,
                custom_context=True,
                dockerfile=build.dockerfile_in_context(spec),
                buildargs=dict(spec.args) or None,
                target=spec.target,
                labels={build.LABEL_INPUTS: identity, build.LABEL_DOCKERFILE: spec.dockerfile},
                rm=True,
                forcerm=True,  # no intermediate container left behind, failed step included
                pull=False,
                decode=True,
            )
            for event in stream:
                display.feed(event)
        except APIError as exc:
            display.close()
            raise BuildFailed(f"cannot build the image of '{spec.dockerfile}': {exc.explanation or exc}") from None
        display.close()
        return display

    def _tag(self, spec: BuildSpec, image_id: str) -> None:
        """Point the stage's tag at the image; never take over a tag that names an image built otherwise."""
        from docker.errors import APIError, ImageNotFound, NotFound
        from docker.utils import parse_repository_tag

        try:
            current = self.api.inspect_image(spec.tag)
        except (ImageNotFound, NotFound):
            current = None
        if current is not None:
            if current.get("Id") == image_id:
                return
            labels = (current.get("Config") or {}).get("Labels") or {}
            if build.LABEL_INPUTS not in labels:
                raise DockerExecError(
                    f"docker.image '{spec.tag}' names an image that was not built from a docker.build Dockerfile: "
                    f"it is not retagged; choose another docker.image for the build of '{spec.dockerfile}' "
                    f"(or unset it: a name is derived from the project), or `docker image rm {spec.tag}` if that tag "
                    "is yours to replace"
                )
        repository, tag = parse_repository_tag(spec.tag)
        try:
            self.api.tag(image_id, repository, tag or "latest", force=True)
        except APIError as exc:
            raise DockerExecError(f"cannot tag the image built from '{spec.dockerfile}' as '{spec.tag}': {exc.explanation or exc}") from None

    def push(self, spec: BuildSpec, identity: str, image_id: str, registry: str) -> str:
        """Push the built image to `registry` (Swarm nodes pull it there); returns `repo@sha256:<digest>`.

        Tagged `<registry>/<tag's path>:<12 hex of the inputs>`: one tag per
        inputs, so a push never moves what an earlier pinned run names.
        """
        from docker.errors import APIError
        from docker.utils import parse_repository_tag

        path = parse_repository_tag(spec.tag)[0]
        first = path.split("/", 1)[0]
        if "/" in path and ("." in first or ":" in first or first == "localhost"):
            path = path.split("/", 1)[1]  # the tag's own registry host is not part of the path
        repository = f"{registry}/{path}"
        tag = "build-" + identity.rsplit(":", 1)[-1][:12]
        digest = None
        try:
            self.api.tag(image_id, repository, tag, force=True)
            for event in self.api.push(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise DockerExecError(
                        f"cannot push the image built from '{spec.dockerfile}' to {registry}: {event['error']}"
                    )
                aux = event.get("aux")
                if isinstance(aux, Mapping) and aux.get("Digest"):
                    digest = str(aux["Digest"])
        except APIError as exc:
            raise DockerExecError(
                f"cannot push the image built from '{spec.dockerfile}' to {registry}: {exc.explanation or exc}"
            ) from None
        if not digest:
            raise DockerExecError(f"pushing the image built from '{spec.dockerfile}' to {registry} gave no digest")
        return f"{repository}@{digest}"

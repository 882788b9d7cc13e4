"""Pulling an image with a progress display, for `dvc docker pull` and `docker.pull missing`.

On a terminal: one bar per image in DVC's own progress style (dvc.progress.Tqdm,
bytes, "layers 2/5"); otherwise (CI logs, pipes) one line per layer when it
is done, so a log shows what was fetched without carriage-return noise.
`-q` silences both, as for DVC's own transfers.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import IO, Any, Dict, Mapping, Optional

from dvc_docker_exec.api.image_help import short_identity
from dvc_docker_exec.errors import DockerExecError

logger = logging.getLogger(f"dvc.{__name__}")

DONE = ("Pull complete", "Already exists")


@dataclass
class Layer:
    total: int = 0
    current: int = 0
    done: bool = False
    status: str = ""


@dataclass
class PullState:
    """What the daemon's JSON progress stream told us so far (pure: fed event by event)."""

    layers: Dict[str, Layer] = field(default_factory=dict)
    digest: Optional[str] = None
    status: Optional[str] = None  # "Downloaded newer image for ..." / "Image is up to date for ..."

    def feed(self, event: Mapping[str, Any]) -> Optional[str]:
        """Apply one event; returns the id of a layer that just finished, else None."""
        status = str(event.get("status") or "")
        layer_id = event.get("id")
        if status.startswith("Digest: "):
            self.digest = status[len("Digest: ") :]
        elif status.startswith("Status: "):
            self.status = status[len("Status: ") :]
        if not layer_id or status.startswith("Pulling from"):
            return None
        layer = self.layers.setdefault(str(layer_id), Layer())
        layer.status = status
        detail = event.get("progressDetail") or {}
        if status == "Downloading" and detail.get("total"):
            layer.total = int(detail["total"])
            layer.current = int(detail.get("current", 0))
        elif status in ("Download complete", "Verifying Checksum", "Extracting") or status in DONE:
            layer.current = layer.total
        if status in DONE and not layer.done:
            layer.done = True
            return str(layer_id)
        return None

    @property
    def done_layers(self) -> int:
        return sum(1 for layer in self.layers.values() if layer.done)

    @property
    def total_bytes(self) -> int:
        return sum(layer.total for layer in self.layers.values())

    @property
    def current_bytes(self) -> int:
        return sum(layer.current for layer in self.layers.values())


def human_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} GB"


class PullDisplay:
    """The progress of one image's pull, drawn as DVC draws its transfers."""

    def __init__(self, image: str, out: Optional[IO[str]] = None, position: Optional[int] = None):
        from dvc.progress import Tqdm

        self.image = image
        self.label = short_identity(image)  # `repo@sha256:<12 hex>` for a pull by digest
        self.out = out or sys.stderr
        self.state = PullState()
        self.quiet = logger.getEffectiveLevel() > logging.INFO
        # Tqdm disables itself when `out` is not a terminal or DVC is quiet
        self.bar = Tqdm(desc=self.label, bytes=True, file=self.out, position=position, leave=True)
        self._with_total = self.bar.BAR_FMT_DEFAULT_NESTED if self.bar.pos else self.bar.BAR_FMT_DEFAULT
        self.lines = self.bar.disable and not self.quiet

    def feed(self, event: Mapping[str, Any]) -> None:
        finished = self.state.feed(event)
        if self.lines:
            if finished:
                layer = self.state.layers[finished]
                size = f" ({human_size(layer.total)})" if layer.total else ""
                self._line(f"{finished}: {layer.status}{size}")
            return
        state = self.state
        if state.total_bytes and state.total_bytes != self.bar.total:
            self.bar.total = state.total_bytes
            self.bar.bar_format = self._with_total
        self.bar.set_msg(f"layers {state.done_layers}/{len(state.layers)}")
        self.bar.update(state.current_bytes - self.bar.n)

    def close(self, failed: bool = False) -> None:
        self.bar.close()
        if self.lines and not failed:
            state = self.state
            text = short_identity(state.status or "pulled")
            if state.layers:
                new = sum(1 for layer in state.layers.values() if layer.status == "Pull complete")
                size = f", {human_size(state.total_bytes)}" if state.total_bytes else ""
                text += f" ({len(state.layers)} layers, {new} downloaded{size})"
            if state.digest and state.digest not in self.image:
                text += f"; digest {state.digest}"
            self._line(text)

    def _line(self, text: str) -> None:
        self.out.write(f"{self.label}: {text}\n")
        self.out.flush()


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}


def image_platform(inspect: Mapping[str, Any]) -> str:
    """`os/arch[/variant]` of an image from `GET /images/{name}/json`."""
    parts = [str(inspect.get("Os") or "?"), str(inspect.get("Architecture") or "?")]
    if inspect.get("Variant"):
        parts.append(str(inspect["Variant"]))
    return "/".join(parts).lower()


def platform_matches(requested: str, actual: str) -> bool:
    """Pure: does an image of platform `actual` satisfy docker.platform `requested`? (`linux` = any arch)"""
    want, have = requested.lower().split("/"), actual.lower().split("/")
    want[1:2] = [_ARCH_ALIASES.get(part, part) for part in want[1:2]]
    have[1:2] = [_ARCH_ALIASES.get(part, part) for part in have[1:2]]
    if want[:2] != have[: len(want[:2])]:
        return False
    if len(want) < 3:
        return True
    # arm64 images often carry no variant: it is v8 then
    return (have[2] if len(have) > 2 else ("v8" if have[1] == "arm64" else "")) == want[2]


# What registries and daemons say when credentials are missing or wrong.
_AUTH_ERRORS = (
    "no basic auth credentials",
    "unauthorized",
    "authentication required",
    "denied",
    "incorrect username or password",
)


def login_hint(image: str, message: str) -> str:
    """What to add to a pull error in which the registry refused access (`docker login REGISTRY`), else ""."""
    if not any(words in message.lower() for words in _AUTH_ERRORS):
        return ""
    registry = registry_of(image)
    target = "" if registry in ("docker.io", "index.docker.io") else f" {registry}"
    return (
        f"; the registry {registry} refused access: log in with `docker login{target}` as the user who runs dvc "
        "(or configure credsStore/credHelpers in ~/.docker/config.json, as for the Docker CLI)"
    )
class PullFailed(DockerExecError):
    """A pull the registry (or the way to it) refused; `detail` is the daemon's own text.

    `hint`: `docker login REGISTRY` when the registry refused access, else "";
    whoever rewords the error keeps it.
    """

    def __init__(self, image: str, registry: str, detail: str, platform: Optional[str] = None):
        self.image, self.registry, self.detail = image, registry, detail
        self.hint = login_hint(image, detail)
        where = f" for {platform}" if platform else ""
        super().__init__(f"cannot pull image '{image}'{where} from {registry}: {detail}{self.hint}")


def registry_of(image: str) -> str:
    from docker.auth import resolve_repository_name
    from docker.utils import parse_repository_tag

    try:
        return resolve_repository_name(parse_repository_tag(image)[0])[0]
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def pull_image(
    api: Any, image: str, out: Optional[IO[str]] = None, position: Optional[int] = None, platform: Optional[str] = None
) -> PullState:
    """Pull `image` (a tag or a `name@sha256:...` digest) with a progress display; `platform`: docker.platform.

    Errors name the image, the registry and the registry's reason (and `docker
    login REGISTRY` when it refused the credentials), as one DVC error line.
    docker-py sends the credentials of the Docker CLI's config (auths,
    credsStore, credHelpers) for that registry.
    """
    from docker.errors import APIError
    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(image)
    display = PullDisplay(image, out=out, position=position)
    try:
        # why tag "latest": an empty tag makes the daemon pull every tag of the repository
        extra = {"platform": platform} if platform else {}
        for event in api.pull(repository, tag=tag or "latest", stream=True, decode=True, **extra):
            if "error" in event:
                raise PullFailed(image, registry_of(image), str(event["error"]), platform)
            display.feed(event)
    except APIError as exc:
        display.close(failed=True)
        raise PullFailed(image, registry_of(image), str(exc.explanation or exc), platform) from None
    except BaseException:
        display.close(failed=True)
        raise
    display.close()
    return display.state


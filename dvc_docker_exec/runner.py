"""docker-py lifecycle of one stage command: create, attach, start, stream, wait, remove.

The container is removed in ``finally`` whatever happens (failure, Ctrl-C,
SIGTERM, a broken stream); a signal is forwarded to the container first so
the command can clean up, and it is killed if it has not stopped within
``STOP_GRACE`` seconds.
"""

from __future__ import annotations

import logging
import fcntl
import hashlib
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Tuple

import docker
from docker.errors import APIError, DockerException, NotFound

from dvc.stage.exceptions import StageCmdFailedError

from . import streams
from .endpoint import Endpoint, discover
from .engine import Engine
from .errors import DockerExecError, StageInterruptedError
from .provenance import IdentityCache
from .spec import ContainerSpec

# under "dvc." so that `dvc -v` / `-q` apply to our messages too
logger = logging.getLogger(f"dvc.{__name__}")

STOP_GRACE = 1.0  # seconds between forwarding a signal and SIGKILL (target: gone within 2 s)
STDOUT, STDERR = streams.STDOUT, streams.STDERR


class ContainerCmdFailedError(StageCmdFailedError):
    """DVC's StageCmdFailedError message, plus the image and an OOM kill."""

    def __init__(self, cmd: str, status: int, image: str, oom: bool = False, memory: Optional[int] = None):
        super().__init__(cmd, status)
        detail = f" in a container of image '{image}'"
        if oom:
            limit = f" (docker.memory = {memory} bytes)" if memory else ""
            detail += f": killed, out of memory{limit}"
        self.args = (self.args[0] + detail,)
        self.image, self.status, self.oom = image, status, oom


def connect(
    endpoint: Optional[Endpoint] = None, factory: Optional[Callable[[], docker.DockerClient]] = None
) -> docker.DockerClient:
    """A client that answered a ping, or a one-line error that names the endpoint and how to fix it."""
    endpoint = endpoint or discover()
    try:
        client = (factory or endpoint.client)()
        client.ping()
        return client
    except DockerException as exc:
        what, fix = connect_failure(endpoint, exc)
        raise DockerExecError(f"{what}: {fix}") from None


def connect_failure(endpoint: Endpoint, exc: Exception) -> Tuple[str, str]:
    """(what went wrong, how to fix it) when the daemon did not answer (also `dvc docker doctor`'s line)."""
    text = str(exc)
    if "Permission denied" in text or "PermissionError" in text:
        return (
            f"permission denied on the Docker socket {endpoint.describe()}",
            "add your user to the 'docker' group (then log in again), or point DOCKER_HOST at a socket you may use",
        )
    return (
        f"cannot reach the Docker daemon at {endpoint.describe()} ({_reason(text) or type(exc).__name__})",
        "start Docker (e.g. `sudo systemctl start docker`), set DOCKER_HOST or `docker context use`, "
        "or run stages on the host with `dvc config docker.enabled false`",
    )


def _reason(text: str) -> str:
    """The OS's words from requests' nested reprs: "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"."""
    import re

    found = re.search(r"\w+Error\(\d+, '([^']+)'\)", text) or re.search(r"\[Errno \d+\] ([^\"')]+)", text)
    if found:
        return found.group(1).strip()
    return text.split(": ", 1)[-1].strip().splitlines()[0] if text else ""


@contextmanager
def _file_lock(name: str) -> Iterator[None]:
    """A lock shared by every dvc process of this user (parallel queue workers)."""
    folder = os.path.join(tempfile.gettempdir(), f"dvc-docker-exec-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, hashlib.sha1(name.encode()).hexdigest() + ".lock")
    with open(path, "a") as fobj:
        fcntl.flock(fobj, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fobj, fcntl.LOCK_UN)


class ImageManager:
    """Applies the pull policy; an absent image is pulled once, not once per worker."""

    def __init__(self, client: docker.DockerClient, out=sys.stderr):
        self.client = client
        self.out = out
        self._pulled: set = set()
        self._known: set = set()  # seen present in this process: no inspect per stage
        # one inspect per distinct image per process, shared with provenance
        self.identities = IdentityCache(client)

    def _present(self, image: str) -> bool:
        return self.identities.identity(image) is not None

    def identity(self, image: str, policy: str) -> str:
        """The identity of the image a stage will run, after applying the pull policy."""
        self.ensure(image, policy)
        identity = self.identities.identity(image)
        if identity is None:  # deleted between the pull and the inspect
            raise DockerExecError(f"image '{image}' vanished from the Docker daemon while in use")
        return identity

    def ensure(self, image: str, policy: str) -> None:
        if image in self._pulled or (policy != "always" and image in self._known):
            return
        if policy != "always" and self._present(image):
            self._known.add(image)
            return
        if policy == "never":
            raise DockerExecError(
                f"image '{image}' is not present locally and docker.pull is 'never': "
                f"build or load it (`docker build -t {image} .`), or set `dvc config docker.pull missing`"
            )
        with _file_lock(f"pull:{image}"):
            # another worker may have pulled it while we waited for the lock
            self.identities.forget(image)
            if policy == "always" or not self._present(image):
                self._pull(image)
                self.identities.forget(image)  # the tag may name another image now
        self._pulled.add(image)

    def _pull(self, image: str) -> None:
        from .pulling import pull_image

        self.out.write(f"Pulling image '{image}'...\n")
        pull_image(self.client.api, image, out=self.out)


def pump(sock, tty: bool, out_fd: int = STDOUT, err_fd: int = STDERR) -> None:
    """Copy the attach stream to our stdout/stderr until EOF (see streams.pump)."""
    streams.pump(sock, streams.Output(tty, out_fd, err_fd))


class _Signals:
    """While a container runs: SIGINT/SIGTERM raise, so `finally` stops and removes it.

    DVC ignores SIGINT while a host command runs (the command, in the same
    process group, gets the terminal's SIGINT). A container is not in our
    process group, so we catch the signal and forward it. SIGINT may also be
    inherited as ignored (background jobs, queue workers), so we install the
    handler explicitly. Only possible in the main thread.
    """

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._old: dict = {}

    def _raise(self, signum, frame):  # noqa: ARG002
        self.received = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise StageInterruptedError(f"stage interrupted by {signal.Signals(signum).name}")

    def _remember(self, signum, frame):  # noqa: ARG002
        self.received = self.received or signum

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._raise)
        return self

    def quiet(self) -> None:
        """During cleanup a second Ctrl-C must not abort the removal."""
        for sig in self._old:
            signal.signal(sig, self._remember)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _explain(exc: APIError) -> str:
    text = str(exc.explanation or exc)
    if "could not select device driver" in text:
        text += " (docker.gpus needs the NVIDIA Container Toolkit on the Docker host)"
    return text


class ContainerRunner:
    """Runs one command line per container, the way `docker run --rm --init` does.

    The daemon removes the container when it exits (AutoRemove), and we learn
    the exit code from a wait registered *before* the start with condition
    "removed" (the CLI's own sequence), so a finished command costs no extra
    round trips, and even a container whose dvc process was SIGKILLed goes
    away once its command ends. An interrupted one is stopped and removed here.
    """

    def __init__(self, client: docker.DockerClient, engine: Optional[Engine] = None):
        self.client = client
        self.api = client.api
        self.engine = engine or Engine("Docker Engine", "?")

    def _register_wait(self, cid: str):
        # The daemon registers the wait, then sends the headers at once and
        # the body when the container is gone: stream=True returns after the
        # headers, so the exit cannot slip by before we listen. docker-py's
        # own wait() blocks on the body, hence its private helpers here.
        res = self.api._post(
            self.api._url("/containers/{0}/wait", cid), params={"condition": self.engine.wait_condition}, stream=True, timeout=None
        )
        self.api._raise_for_status(res)
        return res

    def run(self, spec: ContainerSpec, cmd: str) -> None:
        """Run one command line; raise ContainerCmdFailedError on a non-zero exit."""
        host_config = self.api.create_host_config(**spec.host_config_kwargs())
        try:
            cid = self.api.create_container(**spec.create_kwargs(host_config))["Id"]
        except APIError as exc:
            raise DockerExecError(f"cannot create the container for '{cmd}': {_explain(exc)}") from None
        started = time.time()
        status: Optional[int] = None
        waiter = None
        with _Signals() as signals:
            try:
                waiter = self._register_wait(cid)
                sock = self.api.attach_socket(cid, params={"stdout": 1, "stderr": 1, "stream": 1})
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    self.api.start(cid)
                    streams.follow(self.api, cid, sock, streams.Output(spec.tty))
                finally:
                    streams.close_quietly(sock)
                status = streams.exit_status(self.api, cid, waiter, self.engine.wait_condition, started, cmd)
            except APIError as exc:
                raise DockerExecError(f"container for '{cmd}' failed: {_explain(exc)}") from None
            finally:
                signals.quiet()
                if waiter is not None:
                    waiter.close()
                if status is None:
                    self._stop(cid, signals.received)
        if status:
            oom = status == 137 and self._oom_killed(cid, started)
            raise ContainerCmdFailedError(cmd, status, spec.image, oom=oom, memory=spec.mem_limit)

    def _oom_killed(self, cid: str, since: float) -> bool:
        """The container is gone (AutoRemove): ask the daemon's event log."""
        try:
            return bool(streams.container_events(self.api, cid, since, "oom"))
        except Exception:  # noqa: BLE001 - a diagnosis, never a new failure
            return False

    def _stop(self, cid: str, sig: Optional[int]) -> None:
        """Forward the signal we got, SIGKILL after STOP_GRACE, and make sure it is removed."""
        api = self.api
        try:
            api.kill(cid, signal=int(sig or signal.SIGTERM))
            deadline = time.monotonic() + STOP_GRACE
            while time.monotonic() < deadline:
                if not api.inspect_container(cid)["State"]["Running"]:
                    break
                time.sleep(0.05)
        except NotFound:
            return  # exited and auto-removed already
        except Exception:  # noqa: BLE001 - not running, or a connection broken by the interrupt
            api = discover().client().api
        try:
            api.remove_container(cid, force=True)
        except NotFound:
            pass
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, APIError) and exc.status_code == 409:
                return  # the daemon's auto-removal is already under way
            logger.warning(
                "could not remove container %s (%s); remove it with `docker rm -f %s`", cid[:12], exc, cid[:12]
            )

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
import re
import signal
import stat
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Tuple, Union

import docker
from docker.errors import APIError, DockerException, NotFound

from dvc.stage.exceptions import StageCmdFailedError

from dvc_docker_exec.api import streams
from dvc_docker_exec.api.endpoint import Endpoint, discover
from dvc_docker_exec.api.engine import Engine, check_limits
from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.errors import DockerExecError, StageInterruptedError
from dvc_docker_exec.types.provenance import IdentityCache
from dvc_docker_exec.types.spec import ContainerSpec

# under "dvc." so that `dvc -v` / `-q` apply to our messages too
logger = logging.getLogger(f"dvc.{__name__}")

STOP_GRACE = 1.0  # seconds between forwarding a signal and SIGKILL (target: gone within 2 s)
STDOUT, STDERR = streams.STDOUT, streams.STDERR


class ContainerCmdFailedError(StageCmdFailedError):
    """DVC's StageCmdFailedError message, plus the image and an OOM kill."""

    def __init__(
        self, cmd: str, status: int, image: str, oom: bool = False, memory: Optional[int] = None, probable: bool = False
    ):
        """`probable`: the OOM kill is inferred from exit 137 under a memory limit, not reported (Swarm)."""
        super().__init__(cmd, status)
        detail = f" in a container of image '{image}'"
        if oom:
            limit = f" (docker.memory = {memory} bytes)" if memory else ""
            detail += f": killed, {'probably ' if probable else ''}out of memory{limit}"
        self.args = (self.args[0] + detail,)
        self.image, self.status, self.oom = image, status, oom


def connect(
    endpoint: Optional[Endpoint] = None,
    factory: Optional[Callable[[], docker.DockerClient]] = None,
    host_run_hint: Union[bool, Callable[[], bool]] = True,
) -> docker.DockerClient:
    """A client that answered a ping, or a one-line error that names the endpoint and how to fix it."""
    endpoint = endpoint or discover()
    try:
        client = (factory or endpoint.client)()
        client.ping()
        return client
    except DockerException as exc:
        what, fix = connect_failure(endpoint, exc, host_run_hint)
        raise DockerExecError(f"{what}: {fix}") from None


HOST_RUN_HINT = "or run stages on the host with `dvc config --local docker.enabled false`"


def connect_failure(
    endpoint: Endpoint, exc: Exception, host_run_hint: Union[bool, Callable[[], bool]] = True
) -> Tuple[str, str]:
    """(what went wrong, how to fix it) when the daemon did not answer (also `dvc docker doctor`'s line).

    `host_run_hint` False: `docker.enabled false` is already in force here, so
    the fix does not suggest it (a `dvc docker` command still needs the daemon);
    a callable is asked only here, on failure (it reads the config levels).
    `--local` because only this machine's `enabled false` wins over an image
    the repository chooses (config.DockerSettings.off_here).
    """
    text = str(exc)
    if callable(host_run_hint):
        host_run_hint = host_run_hint()
    if "Permission denied" in text or "PermissionError" in text:
        return (
            f"permission denied on the Docker socket {endpoint.describe()}",
            "add your user to the 'docker' group (then log in again), or point DOCKER_HOST at a socket you may use",
        )
    return (
        f"cannot reach the Docker daemon at {endpoint.describe()} ({_reason(text) or type(exc).__name__})",
        "start Docker (e.g. `sudo systemctl start docker`), set DOCKER_HOST or `docker context use`"
        + (f", {HOST_RUN_HINT}" if host_run_hint else " (docker.enabled is false here: stages run on the host, this command needs the daemon)"),
    )


def _reason(text: str) -> str:
    """The OS's words from requests' nested reprs: "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"."""
    import re

    found = re.search(r"\w+Error\(\d+, '([^']+)'\)", text) or re.search(r"\[Errno \d+\] ([^\"')]+)", text)
    if found:
        return found.group(1).strip()
    return text.split(": ", 1)[-1].strip().splitlines()[0] if text else ""


LOCK_TIMEOUT = 900.0  # seconds a process waits for another one's pull before giving up


def lock_folder(environ: Optional[Mapping[str, str]] = None, uid: Optional[int] = None) -> str:
    """A folder only this user can write: where the processes of one user meet.

    Why not a fixed name in /tmp: another user can create it first (a symlink
    into the victim's home, or a folder with a lock held forever). Candidates
    are verified without following symlinks; a foreign or shared one is
    skipped, never used.
    """
    env = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    candidates = []
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], "dvc-docker-exec"))
    candidates.append(os.path.join(tempfile.gettempdir(), f"dvc-docker-exec-{uid}"))
    if env.get("HOME"):
        candidates.append(os.path.join(env["HOME"], ".cache", "dvc-docker-exec"))
    refused = []
    for folder in candidates:
        problem = _private_folder(folder, uid)
        if problem is None:
            return folder
        logger.debug("not using %s as lock folder: %s", folder, problem)
        refused.append(f"{folder} ({problem})")
    raise DockerExecError("no private folder for dvc-docker-exec's locks: " + "; ".join(refused))


def _private_folder(folder: str, uid: int) -> Optional[str]:
    """None if `folder` is (now) a real folder owned by `uid` that nobody else may write, else why not."""
    try:
        os.makedirs(os.path.dirname(folder), mode=0o700, exist_ok=True)
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return exc.strerror or str(exc)
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return "not a folder"
    if info.st_uid != uid:
        return f"owned by uid {info.st_uid}"
    if info.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


@contextmanager
def _file_lock(name: str, timeout: Optional[float] = None, what: str = "") -> Iterator[None]:
    """A lock shared by every dvc process of this user (parallel queue workers); never waits forever."""
    timeout = LOCK_TIMEOUT if timeout is None else timeout
    folder = lock_folder()
    path = os.path.join(folder, hashlib.sha1(name.encode()).hexdigest() + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise DockerExecError(
                        f"gave up after {timeout:g}s waiting for another dvc process (pid {holder}) "
                        f"{what or 'holding ' + path}; run again once it is done, or remove {path}"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class ImageManager:
    """Applies the pull policy; an absent image is pulled once, not once per worker."""

    def __init__(self, client: docker.DockerClient, out=sys.stderr):
        self.client = client
        self.out = out
        self._pulled: set = set()
        self._known: set = set()  # seen present in this process: no inspect per stage
        # one inspect per distinct image per process, shared with provenance
        self.identities = IdentityCache(client)

    def pull_again(self, settings: DockerSettings, on: Optional[str], image_id: Optional[str]) -> None:
        """Pull an image removed during the run (issue 18); it must be the image whose identity is recorded."""
        self.forget(settings.image)
        self.ensure(settings.image, settings.pull, on, settings.platform)
        now = self.identities.image_id(settings.image)
        if image_id and now != image_id:
            raise DockerExecError(
                f"image '{settings.image}' was removed while dvc ran, and pulling it again gave another image "
                f"({now}, not {image_id}); nothing was recorded: run again"
            )

    def forget(self, image: str) -> None:
        """Seen removed from the engine: the next ensure() looks (and pulls) again."""
        self._known.discard(image)
        self._pulled.discard(image)
        self.identities.forget(image)

    def _present(self, image: str) -> bool:
        return self.identities.identity(image) is not None

    def identity(
        self, image: str, policy: str, on: Optional[str] = None, platform: Optional[str] = None,
        recorded: Optional[str] = None,
    ) -> str:
        """The identity of the image a stage will run, after applying the pull policy (`on`, `recorded`: see ensure)."""
        self.ensure(image, policy, on, platform, recorded)
        identity = self.identities.identity(image)
        if identity is None:  # deleted between the pull and the inspect
            raise DockerExecError(f"image '{image}' vanished from the Docker daemon while in use")
        return identity

    def ensure(
        self, image: str, policy: str, on: Optional[str] = None, platform: Optional[str] = None,
        recorded: Optional[str] = None,
    ) -> None:
        """Apply the pull policy to this client's engine.

        `on` names that engine in errors when it is not where the stage runs
        (Swarm: "the Swarm manager '...'"; it resolves the digest the nodes pull).
        `platform` (docker.platform): an image of another platform counts as
        absent, so it is pulled for that platform unless the policy is
        'never', which makes it an error.
        `recorded`: the identity dvc.lock records for the stage; an
        absent image's error names a local image that has it (image_help).
        """
        key = (image, platform)
        if key in self._pulled or (policy != "always" and key in self._known):
            return
        if policy != "always" and self._present(image):
            mismatch = self._platform_mismatch(image, platform)
            if mismatch is None:
                self._known.add(key)
                return
            if policy == "never":
                raise DockerExecError(
                    f"image '{image}' is {mismatch}{' on ' + on if on else ' here'}, but docker.platform asks for "
                    f"{platform}: pull it for that platform (`docker pull --platform {platform} {image}`), "
                    "or set `dvc config docker.pull missing`"
                )
        if policy == "never":
            if on:
                raise DockerExecError(
                    f"image '{image}' is not present on {on} and docker.pull is 'never': the manager tells "
                    f"the digest every node runs; pull or load it there, or set `dvc config docker.pull missing`"
                )
            raise DockerExecError(self._unavailable(image, recorded, policy=policy))
        with _file_lock(f"pull:{image}", what=f"pulling image '{image}'"):
            # another worker may have pulled it while we waited for the lock
            self.identities.forget(image)
            if policy == "always" or not self._present(image) or self._platform_mismatch(image, platform):
                self._pull(image, on, platform, recorded)
                self.identities.forget(image)  # the tag may name another image now
        mismatch = self._platform_mismatch(image, platform)
        if mismatch is not None:  # e.g. a registry that serves a single-platform image under that tag
            raise DockerExecError(
                f"image '{image}' pulled for {platform} is {mismatch}: the registry has no {platform} image under "
                "that name; build one for that platform, or change docker.platform"
            )
        self._pulled.add(key)

    def _platform_mismatch(self, image: str, platform: Optional[str]) -> Optional[str]:
        """The image's own platform when it does not satisfy `platform`, else None."""
        from dvc_docker_exec.api.pulling import image_platform, platform_matches

        if not platform:
            return None
        try:
            actual = image_platform(self.client.api.inspect_image(image))
        except NotFound:
            return None  # absent: the pull decides
        return None if platform_matches(platform, actual) else actual

    def _unavailable(self, image: str, recorded: Optional[str], **why: str) -> str:
        from dvc_docker_exec.api.image_help import local_images, unavailable

        return unavailable(image, local_images(self.client), recorded=recorded, **why)

    def _pull(
        self, image: str, on: Optional[str] = None, platform: Optional[str] = None, recorded: Optional[str] = None
    ) -> None:
        from dvc_docker_exec.api.pulling import PullFailed, pull_image

        self.out.write(f"Pulling image '{image}'{' for ' + platform if platform else ''}...\n")
        try:
            pull_image(self.client.api, image, out=self.out, platform=platform)
        except PullFailed as exc:
            logger.debug("%s", exc)  # the daemon's full text; the error below shortens it
            if on:
                raise DockerExecError(
                    f"{exc} (pulled by {on}: push the image to a registry the manager and every node reach)"
                ) from None
            self.identities.forget(image)
            if self._present(image):  # docker.pull always: a local image exists, but not the latest one
                from dvc_docker_exec.api.image_help import pull_reason

                raise DockerExecError(
                    f"cannot pull image '{image}' from {exc.registry} ({pull_reason(exc.detail)}) and docker.pull "
                    f"is 'always': a local image of that name exists; `dvc config docker.pull missing` runs it{exc.hint}"
                ) from None
            raise DockerExecError(
                self._unavailable(image, recorded, pull_failure=exc.detail, registry=exc.registry) + exc.hint
            ) from None


def pump(sock, tty: bool, out_fd: int = STDOUT, err_fd: int = STDERR) -> None:
    """Copy the attach stream to our stdout/stderr until EOF (see streams.pump)."""
    streams.pump(sock, streams.Output(tty, out_fd, err_fd))


class StageSignals:
    """While a stage runs in a container: SIGINT, SIGTERM and SIGHUP stop it, never half-way.

    DVC ignores SIGINT while a host command runs (the command, in the same
    process group, gets the terminal's SIGINT). A container is not in our
    process group, so we catch the signal and forward it. SIGHUP (terminal
    closed, ssh dropped) kills a host command too, so it is treated like
    SIGTERM, unless it was ignored when we started (`nohup dvc repro`).
    SIGINT may be inherited as ignored (background jobs, queue workers), so
    its handler is installed explicitly.

    By default a signal is only remembered: a lifecycle step (writing the
    config copies, create, start, remove) is never cut in the middle, which
    would leave a container in state Created or a copy behind. It takes
    effect at the next ``check()``, at once inside ``interruptible()`` (while
    the command runs), and at the latest when the block ends. Only possible
    in the main thread; elsewhere nothing is installed.
    """

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self.count = 0  # signals so far (the first one decides what we forward)
        self._old: dict = {}
        self._raising = False

    def _handle(self, signum, frame):  # noqa: ARG002
        self.received = self.received or signum
        self.count += 1
        if self._raising:
            self._raising = False  # a second signal during cleanup must not abort it
            self.check()

    def check(self) -> None:
        """Raise for a signal received so far: KeyboardInterrupt for SIGINT, else StageInterruptedError."""
        if self.received is None:
            return
        if self.received == signal.SIGINT:
            raise KeyboardInterrupt
        raise StageInterruptedError(f"stage interrupted by {signal.Signals(self.received).name}")

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        self.check()
        self._raising = True
        try:
            yield
        finally:
            self._raising = False

    def __enter__(self) -> "StageSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                    continue  # nohup: the user asked to survive a hang-up
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        if exc_type is None:
            self.check()  # a signal that came during the last step still stops DVC


def with_signals(signals: Optional[StageSignals], run: Callable[..., None], *args) -> None:
    """run(*args, signals) with the caller's StageSignals, or with its own ones when there are none."""
    if signals is not None:
        return run(*args, signals)
    with StageSignals() as own:
        return run(*args, own)


PAUSE_ENV = "DVC_DOCKER_EXEC_TEST_PAUSE"  # tests only: stop at one lifecycle phase until a signal comes


def pause_point(phase: str, signals: StageSignals) -> None:
    """Test hook: with DVC_DOCKER_EXEC_TEST_PAUSE=<phase>, wait here (at most 60 s) for a signal.

    Why: a signal must be able to arrive at every step of the lifecycle;
    pausing there makes that deterministic instead of a timing lottery.
    SIGUSR1 resumes without stopping anything (a test changes the world
    meanwhile, e.g. moves an image's tag between identity read and create).
    """
    if os.environ.get(PAUSE_ENV) != phase:
        return
    resumed: list = []
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGUSR1, lambda *_: resumed.append(1)) if main else None
    try:
        sys.stderr.write(f"dvc-docker-exec: paused at {phase}\n")
        sys.stderr.flush()
        seen, deadline = signals.count, time.monotonic() + 60
        while signals.count == seen and not resumed and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        if main:
            signal.signal(signal.SIGUSR1, old)


# What a dropped connection to the daemon looks like, whichever step it hits.
CONNECTION_LOST = streams.CUT


def lost_connection(endpoint: Optional[Endpoint], cmd: str, cleaned: str) -> DockerExecError:
    """One line instead of docker-py's nested reprs: what broke, what it means, what was cleaned up."""
    where = endpoint.describe() if endpoint else "(unknown endpoint)"
    return DockerExecError(
        f"lost the connection to the Docker daemon at {where} while running '{cmd}': "
        f"the stage's result is unknown and nothing was recorded; {cleaned}"
    )


class ImageMissingError(DockerExecError):
    """The image is not on the engine (any more): the caller may apply the pull policy again."""


def _explain(exc: APIError) -> str:
    text = str(exc.explanation or exc)
    if "could not select device driver" in text:
        text += " (docker.gpus needs the NVIDIA Container Toolkit on the Docker host)"
    elif "error setting rlimit" in text:
        # measured with Podman 4.3 here (its root lacks CAP_SYS_RESOURCE): any ulimit fails at start
        text += (
            " (docker.ulimits: this engine may not set those limits; an engine without CAP_SYS_RESOURCE, "
            "such as rootless Docker or Podman, cannot raise one above its own: lower or unset docker.ulimits)"
        )
    elif "unknown or invalid runtime name" in text:
        text += " (docker.runtime must name a runtime the daemon lists in `docker info`)"
    return text


class ContainerRunner:
    """Runs one command line per container, the way `docker run --rm --init` does.

    The daemon removes the container when it exits (AutoRemove), and we learn
    the exit code from a wait registered *before* the start with condition
    "removed" (the CLI's own sequence), so a finished command costs no extra
    round trips, and even a container whose dvc process was SIGKILLed goes
    away once its command ends. An interrupted one is stopped and removed here.
    """

    LEASE = "fifo"  # how its containers watch their dvc process: same kernel (lease.py)
    KIND = "container"  # what it leaves on the daemon (containers.clear_orphans)
    RUNS_HERE = True  # on the endpoint's engine: its GPUs, runtimes and limits are the stage's
    image_place = None  # the image is looked up and pulled where the stage runs

    def __init__(
        self, client: docker.DockerClient, engine: Optional[Engine] = None, endpoint: Optional[Endpoint] = None
    ):
        self.client = client
        self.api = client.api
        self.engine = engine or Engine("Docker Engine", "?")
        self.endpoint = endpoint

    def pulled(self, settings: DockerSettings, images: "ImageManager") -> Tuple[DockerSettings, Optional[str]]:
        """The container is created from the image ID read in the inspect whose identity DVC records (issue 19, item 6)."""
        return settings, images.identities.image_id(settings.image)

    def built(self, stage: str, settings: DockerSettings, builder: Any, spec: Any) -> Tuple[DockerSettings, Optional[str]]:
        """Built now unless it exists; created from the local image ID the build gave."""
        _identity, image_id = builder.ensure(spec)
        return settings, image_id

    def check_limits(self, spec: ContainerSpec, allow_unlimited: bool) -> None:
        check_limits(self.engine, spec.mem_limit, spec.nano_cpus, allow_unlimited)

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

    def run(self, spec: ContainerSpec, cmd: str, signals: Optional[StageSignals] = None) -> None:
        """Run one command line; raise ContainerCmdFailedError on a non-zero exit.

        `signals`: the caller's StageSignals when it has more to clean up
        (config copies); otherwise the run installs its own.
        """
        with_signals(signals, self._run, spec, cmd)

    def _run(self, spec: ContainerSpec, cmd: str, signals: StageSignals) -> None:
        signals.check()  # stopped while the previous command line ended: start no other
        host_config = self.api.create_host_config(**spec.host_config_kwargs())
        started = time.time()
        cid: Optional[str] = None
        # what to remove if we stop early: by its unique name until we know its
        # id (a create cut by a lost connection may still have made it)
        ref: Optional[str] = spec.name
        status: Optional[int] = None
        waiter = sock = None
        lost: Optional[BaseException] = None
        cleaned = "nothing was created"
        try:
            pause_point("create", signals)
            try:
                cid = self.api.create_container(**spec.create_kwargs(host_config))["Id"]
            except APIError as exc:
                ref = None  # refused: nothing was made
                error = ImageMissingError if exc.status_code == 404 and "image" in _explain(exc).lower() else DockerExecError
                raise error(f"cannot create the container for '{cmd}': {_explain(exc)}") from None
            ref = cid
            pause_point("created", signals)
            signals.check()
            waiter = self._register_wait(cid)
            sock = self.api.attach_socket(cid, params={"stdout": 1, "stderr": 1, "stream": 1})
            pause_point("attached", signals)
            signals.check()
            sys.stdout.flush()
            sys.stderr.flush()
            self.api.start(cid)
            pause_point("started", signals)
            with signals.interruptible():
                # a connection cut while the stage is silent is resumed there (streams);
                # a daemon that does not answer at all ends up below as `lost`
                streams.follow(self.api, cid, sock, streams.Output(spec.tty))
                status = streams.exit_status(self.api, cid, waiter, self.engine.wait_condition, started, cmd)
            pause_point("exited", signals)
        except APIError as exc:
            raise DockerExecError(f"container for '{cmd}' failed: {_explain(exc)}") from None
        except CONNECTION_LOST as exc:
            lost = exc
        finally:
            for stream in (sock, waiter):
                if stream is not None:
                    streams.release(stream)
            if status is None and ref is not None:
                cleaned = self._stop(ref, signals, report=lost is not None)
        if lost is not None:
            raise lost_connection(self.endpoint, cmd, cleaned) from None
        if status:
            oom = status == 137 and self._oom_killed(cid, started)
            raise ContainerCmdFailedError(cmd, status, spec.image, oom=oom, memory=spec.mem_limit)

    def _oom_killed(self, cid: str, since: float) -> bool:
        """The container is gone (AutoRemove): ask the daemon's event log."""
        try:
            return bool(streams.container_events(self.api, cid, since, "oom"))
        except Exception:  # noqa: BLE001 - a diagnosis, never a new failure
            return False

    def _stop(self, ref: str, signals: StageSignals, report: bool = False) -> str:
        """Forward the signal we got, SIGKILL after STOP_GRACE, make sure it is removed; say what happened.

        `ref` is the container's id or (unique) name. With `report` the
        caller puts the outcome into its error, otherwise a failure to
        remove is logged as a warning.
        """
        api = self.api
        name = ref[:12] if re.fullmatch(r"[0-9a-f]{13,64}", ref) else ref  # an id: its short form
        pause_point("stop", signals)
        try:
            api.kill(ref, signal=int(signals.received or signal.SIGTERM))
            deadline = time.monotonic() + STOP_GRACE
            while time.monotonic() < deadline:
                if not api.inspect_container(ref)["State"]["Running"]:
                    break
                time.sleep(0.05)
        except NotFound:
            return f"container {name} was already gone"
        except Exception:  # noqa: BLE001 - not running, or a connection broken by the interrupt
            try:
                api = (self.endpoint or discover()).client().api
            except Exception:  # noqa: BLE001
                pass
        try:
            api.remove_container(ref, force=True, v=True)  # with its anonymous volumes (`VOLUME` in the image)
        except NotFound:
            pass  # the daemon's auto-removal was quicker
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, APIError) and exc.status_code == 409:
                return f"container {name} was stopped and removed"  # auto-removal already under way
            reason = short_reason(exc)
            if not report:
                logger.warning(
                    "could not remove container %s (%s); remove it with `docker rm -f %s`", name, reason, name
                )
            return f"container {name} could not be removed ({reason}): remove it with `docker rm -f {name}`"
        return f"container {name} was stopped and removed"


def short_reason(exc: BaseException) -> str:
    """One line for a docker-py / requests failure, not its nested reprs."""
    if isinstance(exc, APIError):
        return str(exc.explanation or exc)
    if isinstance(exc, CONNECTION_LOST) or "Connection" in type(exc).__name__:
        return "the daemon does not answer"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

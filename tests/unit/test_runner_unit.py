"""Unit tests for dvc_docker_exec.backends.runner without a daemon.

``pump`` reads a real socket (``socket.socketpair``) fed by a writer thread
and writes to temporary files; ``connect`` and ``ImageManager`` get fake
clients.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import docker
import pytest
from docker.errors import APIError, DockerException, ImageNotFound
from dvc.stage.exceptions import StageCmdFailedError

from dvc_docker_exec.backends import runner
from dvc_docker_exec.api import streams
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.backends.runner import ContainerCmdFailedError, ImageManager, connect, pump
from dvc_docker_exec.api.streams import CHUNK

# --- pump ------------------------------------------------------------------------------------


def frame(stream: int, payload: bytes) -> bytes:
    """Docker's multiplexed attach frame: [stream, 0, 0, 0, size (big endian)] + payload."""
    return struct.pack(">BxxxL", stream, len(payload)) + payload


class Outputs:
    """Two temporary files standing in for stdout and stderr."""

    def __init__(self, folder: Path):
        self.out_path, self.err_path = folder / "out", folder / "err"
        self.out = os.open(self.out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self.err = os.open(self.err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def close(self) -> Tuple[bytes, bytes]:
        os.close(self.out)
        os.close(self.err)
        return self.out_path.read_bytes(), self.err_path.read_bytes()


@pytest.fixture
def outputs(tmp_path: Path) -> Iterator[Outputs]:
    outs = Outputs(tmp_path)
    yield outs


def run_pump(pieces: Iterable[bytes], outputs: Outputs, tty: bool = False, pause: float = 0.0) -> Tuple[bytes, bytes]:
    """Send `pieces` one `sendall` each (with a pause, so reads see them apart), then EOF."""
    reader, writer = socket.socketpair()
    error: List[BaseException] = []

    def write() -> None:
        try:
            for piece in pieces:
                writer.sendall(piece)
                if pause:
                    time.sleep(pause)
        except BaseException as exc:  # noqa: BLE001
            error.append(exc)
        finally:
            writer.shutdown(socket.SHUT_WR)
            writer.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        pump(reader, tty, out_fd=outputs.out, err_fd=outputs.err)
    finally:
        thread.join(10)
        reader.close()
    assert not error
    return outputs.close()


def test_pump_demultiplexes_interleaved_frames(outputs: Outputs) -> None:
    frames = [frame(1, b"out 1\n"), frame(2, b"err 1\n"), frame(1, b"out 2\n"), frame(2, b"err 2\n"), frame(1, b"")]
    assert run_pump([b"".join(frames)], outputs) == (b"out 1\nout 2\n", b"err 1\nerr 2\n")


def test_pump_frames_split_across_reads(outputs: Outputs) -> None:
    data = frame(1, b"hello ") + frame(2, b"oops\n") + frame(1, b"world\n")
    # the header split after 3 and 6 bytes, a payload split in two
    cuts = [3, 6, 10, 14, 20, len(data) - 1]
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    assert run_pump(pieces, outputs, pause=0.01) == (b"hello world\n", b"oops\n")


def test_pump_split_with_a_tiny_read_size(outputs: Outputs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic splits: every read returns at most 5 bytes."""
    monkeypatch.setattr(streams, "CHUNK", 5)
    frames = [frame(1 + i % 2, f"line {i}\n".encode()) for i in range(50)]
    out, err = run_pump([b"".join(frames)], outputs)
    assert out == b"".join(f"line {i}\n".encode() for i in range(0, 50, 2))
    assert err == b"".join(f"line {i}\n".encode() for i in range(1, 50, 2))


def test_pump_frame_larger_than_chunk(outputs: Outputs) -> None:
    big = bytes(range(256)) * (3 * CHUNK // 256 + 7)  # 3 MiB and a bit, not a multiple of the chunk
    small = b"between\n"
    data = frame(1, big) + frame(2, small) + frame(1, big[::-1])
    out, err = run_pump([data[i : i + 65536] for i in range(0, len(data), 65536)], outputs)
    assert out == big + big[::-1]
    assert err == small


def test_pump_stdin_frames_go_to_stdout(outputs: Outputs) -> None:
    # stream 0 (stdin) never comes from an attach without stdin, but must not be lost or crash
    assert run_pump([frame(0, b"x"), frame(2, b"y")], outputs) == (b"x", b"y")


def test_pump_tty_passes_raw_bytes(outputs: Outputs) -> None:
    raw = b"\x01\x00\x00\x00\x00\x00\x00\x05not a frame\r\n\x1b[31mred\x1b[0m"
    assert run_pump([raw[:7], raw[7:]], outputs, tty=True, pause=0.01) == (raw, b"")


def test_pump_empty_stream(outputs: Outputs) -> None:
    assert run_pump([], outputs) == (b"", b"")


def test_pump_truncated_last_frame_is_dropped(outputs: Outputs) -> None:
    # a connection cut mid-frame: what was complete is written, no hang, no crash
    data = frame(1, b"complete\n") + frame(1, b"cut short")[:-3]
    assert run_pump([data], outputs) == (b"complete\n", b"")


# --- ContainerCmdFailedError -------------------------------------------------------------------


def test_cmd_failed_keeps_dvcs_shape() -> None:
    exc = ContainerCmdFailedError("python train.py", 3, "busybox:1.36")
    assert isinstance(exc, StageCmdFailedError)
    assert str(exc).startswith(str(StageCmdFailedError("python train.py", 3)))
    assert str(exc) == "failed to run: python train.py, exited with 3 in a container of image 'busybox:1.36'"
    assert (exc.status, exc.image, exc.oom) == (3, "busybox:1.36", False)


def test_cmd_failed_oom() -> None:
    exc = ContainerCmdFailedError("python train.py", 137, "img", oom=True, memory=512 * 1024**2)
    assert str(exc) == (
        "failed to run: python train.py, exited with 137 in a container of image 'img': "
        f"killed, out of memory (docker.memory = {512 * 1024**2} bytes)"
    )
    no_limit = ContainerCmdFailedError("x", 137, "img", oom=True)
    assert str(no_limit).endswith("in a container of image 'img': killed, out of memory")


# --- connect ------------------------------------------------------------------------------------

NO_SOCKET = (
    "Error while fetching server API version: ('Connection aborted.', "
    "FileNotFoundError(2, 'No such file or directory'))"
)
NO_PERMISSION = (
    "Error while fetching server API version: ('Connection aborted.', "
    "PermissionError(13, 'Permission denied'))"
)


def raising(message: str):
    def factory() -> docker.DockerClient:
        raise DockerException(message)

    return factory


def test_connect_no_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/nowhere/docker.sock")
    with pytest.raises(DockerExecError) as info:
        connect(factory=raising(NO_SOCKET))
    message = str(info.value)
    assert "cannot reach the Docker daemon at 'unix:///tmp/nowhere/docker.sock'" in message
    assert "No such file or directory" in message
    assert "systemctl start docker" in message and "DOCKER_HOST" in message
    # --local: only this machine's `enabled false` wins over an image the repository chooses
    assert "dvc config --local docker.enabled false" in message
    assert "\n" not in message


def test_connect_never_suggests_what_is_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/nowhere/docker.sock")
    with pytest.raises(DockerExecError) as info:
        connect(factory=raising(NO_SOCKET), host_run_hint=False)
    assert "enabled false`" not in str(info.value) and "docker.enabled is false here" in str(info.value)


def test_connect_default_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(DockerExecError, match="at 'unix:///var/run/docker.sock'"):
        connect(factory=raising(NO_SOCKET))


def test_connect_permission_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/docker.sock")
    with pytest.raises(DockerExecError) as info:
        connect(factory=raising(NO_PERMISSION))
    message = str(info.value)
    assert message.startswith("permission denied on the Docker socket 'unix:///run/docker.sock'")
    assert "'docker' group" in message


def test_connect_empty_message() -> None:
    with pytest.raises(DockerExecError, match=r"\(DockerException\)"):
        connect(factory=raising(""))


class FakeClient:
    def __init__(self, ping_error: Optional[Exception] = None):
        self.ping_error = ping_error
        self.pings = 0

    def ping(self) -> bool:
        self.pings += 1
        if self.ping_error:
            raise self.ping_error
        return True


def test_connect_pings() -> None:
    client = FakeClient()
    assert connect(factory=lambda: client) is client
    assert client.pings == 1


def test_connect_failed_ping() -> None:
    with pytest.raises(DockerExecError, match="cannot reach the Docker daemon"):
        connect(factory=lambda: FakeClient(DockerException(NO_SOCKET)))


# --- ImageManager ---------------------------------------------------------------------------------


class FakeAPI:
    """inspect_image/pull of docker-py's APIClient, with an image store."""

    def __init__(self, present: Iterable[str] = (), events: Optional[List[dict]] = None):
        self.present = set(present)
        self.events = events
        self.pulls: List[Tuple[str, Optional[str]]] = []
        self.inspects = 0

    def inspect_image(self, image: str) -> dict:
        self.inspects += 1
        if image not in self.present:
            raise ImageNotFound(f"No such image: {image}")
        return {"Id": "sha256:abc"}

    def pull(self, repository: str, tag: Optional[str] = None, stream: bool = False, decode: bool = False):
        assert stream and decode
        self.pulls.append((repository, tag))
        events = self.events or [
            {"status": "Pulling from library/x", "id": tag},
            {"status": "Downloading", "id": "l1", "progress": "[==> ]"},
            {"status": "Pull complete", "id": "l1"},
            {"status": "Pull complete", "id": "l1"},
            {"status": f"Digest: sha256:{'0' * 64}"},
        ]
        for event in events:
            yield event
        self.present.add(f"{repository}:{tag}")


class FakeDockerClient:
    def __init__(self, api: FakeAPI):
        self.api = api


@pytest.fixture(autouse=True)
def private_lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pull lock files go to our tmp_path, not the machine's /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def manager(api: FakeAPI) -> Tuple[ImageManager, io.StringIO]:
    out = io.StringIO()
    return ImageManager(FakeDockerClient(api), out=out), out  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["missing", "never"])
def test_present_image_is_not_pulled(policy: str) -> None:
    api = FakeAPI(present=["busybox:1.36"])
    images, out = manager(api)
    images.ensure("busybox:1.36", policy)
    assert api.pulls == [] and out.getvalue() == ""


def test_never_and_absent() -> None:
    images, _ = manager(FakeAPI())
    with pytest.raises(DockerExecError) as info:
        images.ensure("my/img:1", "never")
    message = str(info.value)
    assert "image 'my/img:1' is not present locally and docker.pull is 'never'" in message
    assert "docker build -t my/img:1 ." in message and "dvc config docker.pull missing" in message


def test_never_and_absent_on_the_swarm_manager() -> None:
    images, _ = manager(FakeAPI())
    with pytest.raises(DockerExecError) as info:
        images.ensure("reg:5000/img:1", "never", on="the Swarm manager 'unix:///m.sock' (from DOCKER_HOST)")
    message = str(info.value)
    assert message.startswith(
        "image 'reg:5000/img:1' is not present on the Swarm manager 'unix:///m.sock' (from DOCKER_HOST) "
        "and docker.pull is 'never': the manager tells the digest every node runs"
    )
    assert "docker build" not in message


def test_a_failed_pull_on_the_swarm_manager_names_it() -> None:
    images, _ = manager(FakeAPI(events=[{"error": "manifest unknown"}]))
    with pytest.raises(DockerExecError) as info:
        images.ensure("reg:5000/img:1", "missing", on="the Swarm manager 'm'")
    assert str(info.value) == (
        "cannot pull image 'reg:5000/img:1' from reg:5000: manifest unknown "
        "(pulled by the Swarm manager 'm': push the image to a registry the manager and every node reach)"
    )


def test_missing_and_absent_pulls_once() -> None:
    api = FakeAPI()
    images, out = manager(api)
    images.ensure("python:3.12-slim", "missing")
    images.ensure("python:3.12-slim", "missing")
    assert api.pulls == [("python", "3.12-slim")]
    text = out.getvalue()
    assert text.startswith("Pulling image 'python:3.12-slim'...\n")
    assert text.count("l1: Pull complete") == 1  # one line per layer when not a terminal
    assert "Downloading" not in text  # progress bars are not


def test_missing_pulled_meanwhile_by_another_worker() -> None:
    """Absent before the lock, present after it: not pulled again."""
    api = FakeAPI()
    answers = iter([False, True])
    images, _ = manager(api)
    images._present = lambda image: next(answers)  # type: ignore[method-assign]
    images.ensure("busybox", "missing")
    assert api.pulls == []


def test_untagged_image_pulls_latest() -> None:
    api = FakeAPI()
    images, _ = manager(api)
    images.ensure("localhost:5000/team/img", "missing")
    assert api.pulls == [("localhost:5000/team/img", "latest")]


def test_always_pulls_once_per_process() -> None:
    api = FakeAPI(present=["busybox:1.36"])
    images, _ = manager(api)
    images.ensure("busybox:1.36", "always")
    images.ensure("busybox:1.36", "always")
    assert api.pulls == [("busybox", "1.36")]
    images.ensure("alpine:3", "always")
    assert api.pulls == [("busybox", "1.36"), ("alpine", "3")]


def test_pull_error_event() -> None:
    api = FakeAPI(events=[{"status": "Pulling"}, {"error": "manifest unknown", "errorDetail": {"message": "x"}}])
    images, _ = manager(api)
    pattern = r"^image 'nope:1' is not present on this machine, and pulling it from docker.io failed \(the registry has no such image or tag\); `docker build -t nope:1 \.` or `docker load -i FILE`$"
    with pytest.raises(DockerExecError, match=pattern):
        images.ensure("nope:1", "missing")
    assert "nope:1" not in images._pulled


def test_failed_pull_always_with_a_local_image_says_so() -> None:
    api = FakeAPI(present=["nope:1"], events=[{"error": "manifest unknown"}])
    images, _ = manager(api)
    with pytest.raises(DockerExecError) as info:
        images.ensure("nope:1", "always")
    assert "docker.pull is 'always': a local image of that name exists" in str(info.value)
    assert "not present" not in str(info.value)


def test_absent_image_names_close_and_recorded_local_images() -> None:
    api = FakeAPI()
    api.images = lambda: [{"RepoTags": ["nu-iris:1"], "Id": "sha256:" + "a" * 64, "RepoDigests": []}]
    images, _ = manager(api)
    with pytest.raises(DockerExecError) as info:
        images.ensure("nu-irs:1", "never", recorded="sha256:" + "a" * 64)
    assert "is here as 'nu-iris:1': `docker tag nu-iris:1 nu-irs:1`" in str(info.value)


def test_pull_api_error() -> None:
    api = FakeAPI()

    def pull(*args, **kwargs):
        raise APIError("500 Server Error", explanation="pull access denied for nope")
        yield  # pragma: no cover

    api.pull = pull  # type: ignore[method-assign]
    images, _ = manager(api)
    with pytest.raises(DockerExecError) as info:
        images.ensure("nope", "missing")
    text = str(info.value)
    assert text.startswith("image 'nope' is not present on this machine, and pulling it from docker.io failed (access denied")
    assert text.endswith(
        "; the registry docker.io refused access: log in with `docker login` as the user who runs dvc (or configure "
        "credsStore/credHelpers in ~/.docker/config.json, as for the Docker CLI)"
    )


@pytest.mark.parametrize(
    ("image", "reason", "login"),
    [
        ("127.0.0.1:5000/team/img:1", "no basic auth credentials", "docker login 127.0.0.1:5000"),
        ("reg.example.com/img", "unauthorized: authentication required", "docker login reg.example.com"),
        ("busybox", "denied: requested access to the resource is denied", "docker login`"),
        ("reg.example.com/img", "manifest unknown", None),
    ],
)
def test_login_hint_names_the_registry(image: str, reason: str, login: Optional[str]) -> None:
    from dvc_docker_exec.api.pulling import login_hint

    hint = login_hint(image, reason)
    assert (login in hint) if login else hint == ""


@pytest.mark.parametrize(
    ("requested", "actual", "matches"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux", "linux/arm64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/x86_64", "linux/amd64", True),
        ("linux/arm64/v8", "linux/arm64", True),  # arm64 images often carry no variant
        ("linux/arm/v7", "linux/arm/v6", False),
        ("windows/amd64", "linux/amd64", False),
    ],
)
def test_platform_matches(requested: str, actual: str, matches: bool) -> None:
    from dvc_docker_exec.api.pulling import platform_matches

    assert platform_matches(requested, actual) is matches


class PlatformAPI(FakeAPI):
    """Images are amd64; a pull for a platform makes them that platform."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.platforms: Dict[str, str] = {}
        self.pull_platforms: List[Optional[str]] = []

    def inspect_image(self, image: str) -> dict:
        found = super().inspect_image(image)
        os_name, arch = self.platforms.get(image, "linux/amd64").split("/")[:2]
        return {**found, "Os": os_name, "Architecture": arch}

    def pull(self, repository, tag=None, stream=False, decode=False, platform=None):
        self.pull_platforms.append(platform)
        yield from super().pull(repository, tag, stream, decode)
        if platform:
            self.platforms[f"{repository}:{tag}"] = platform


def test_an_image_of_another_platform_is_an_error_with_pull_never() -> None:
    images, _ = manager(PlatformAPI(present=["busybox:1"]))
    with pytest.raises(DockerExecError) as info:
        images.ensure("busybox:1", "never", platform="linux/arm64")
    assert str(info.value) == (
        "image 'busybox:1' is linux/amd64 here, but docker.platform asks for linux/arm64: pull it for that "
        "platform (`docker pull --platform linux/arm64 busybox:1`), or set `dvc config docker.pull missing`"
    )


def test_an_image_of_another_platform_is_pulled_for_it_when_the_policy_allows() -> None:
    api = PlatformAPI(present=["busybox:1"])
    images, out = manager(api)
    images.ensure("busybox:1", "missing", platform="linux/arm64")
    assert api.pull_platforms == ["linux/arm64"]
    assert out.getvalue().startswith("Pulling image 'busybox:1' for linux/arm64...")
    images.ensure("busybox:1", "missing", platform="linux/amd64")  # not this process's pull: pulled again
    assert api.pull_platforms == ["linux/arm64", "linux/amd64"]
    images.ensure("busybox:1", "missing", platform="linux")
    assert len(api.pull_platforms) == 2


def test_a_registry_without_that_platform_is_a_clear_error() -> None:
    api = PlatformAPI(present=["busybox:1"])
    api.pull = lambda *a, **k: iter(())  # type: ignore[method-assign] # the registry had only amd64
    images, _ = manager(api)
    with pytest.raises(DockerExecError, match=r"^image 'busybox:1' pulled for linux/arm64 is linux/amd64: the registry"):
        images.ensure("busybox:1", "always", platform="linux/arm64")


# --- ContainerRunner with a fake API ------------------------------------------------------------


class FakeRunAPI:
    """The APIClient calls ContainerRunner.run makes; the attach stream is a socketpair.

    Like the daemon, it keeps the containers that exist: one whose create
    request carried AutoRemove (the HostConfig as docker-py sends it, not the
    arguments the runner passed) is removed when its command exits (the end of
    the wait body), any other only by remove_container; and a wait for
    "removed" on a container that nothing removes never answers (it fails
    here, instead of hanging).
    """

    def __init__(self, status: int = 0, oom: bool = False, output: bytes = b"", fail_in: str = ""):
        self.status, self.oom, self.output, self.fail_in = status, oom, output, fail_in
        self.calls: List[str] = []
        self.removed: List[str] = []
        self.killed: List[int] = []
        self.sockets: List[socket.socket] = []
        self.containers: set = set()

    def _maybe_fail(self, name: str) -> None:
        self.calls.append(name)
        if self.fail_in == name:
            raise APIError(f"{name} failed", explanation=f"{name} exploded")
        if self.fail_in == f"{name}:interrupt":
            raise KeyboardInterrupt

    def create_host_config(self, **kwargs) -> dict:
        self.host_config_kwargs = kwargs
        return docker.types.HostConfig(version="1.41", **kwargs)  # what docker-py's APIClient makes of them

    def create_container(self, **kwargs) -> dict:
        self._maybe_fail("create_container")
        self.create_kwargs = kwargs
        self.containers.add("c0ffee" * 10)
        # the daemon knows only the request: AutoRemove in its HostConfig
        self.auto_remove = bool((kwargs.get("host_config") or {}).get("AutoRemove"))
        return {"Id": "c0ffee" * 10}

    def attach_socket(self, cid: str, params: dict) -> socket.socket:
        self._maybe_fail("attach_socket")
        reader, writer = socket.socketpair()
        writer.sendall(self.output)
        writer.close()
        self.sockets.append(reader)
        return reader

    def start(self, cid: str) -> None:
        self._maybe_fail("start")

    # the wait registered before start: stream=True response whose body comes at the end
    def _url(self, path: str, *args: str) -> str:
        return path.format(*args)

    def _post(self, url: str, params: dict, stream: bool, timeout: Optional[float]) -> object:
        self._maybe_fail("wait")
        assert params == {"condition": "removed"} and stream
        body = json.dumps({"StatusCode": self.status, "Error": None}).encode()

        def read(*args) -> bytes:  # the command exited: the daemon's AutoRemove, then the body
            cid = "c0ffee" * 10
            if self.auto_remove:
                self.containers.discard(cid)
            assert cid not in self.containers, "a wait for 'removed' on a container nothing removes never answers"
            return body

        return types.SimpleNamespace(raw=types.SimpleNamespace(read=read), close=lambda: None)

    def _raise_for_status(self, res: object) -> None:
        pass

    def events(self, **kwargs) -> Iterator[dict]:
        self.calls.append("events")
        assert "event" not in kwargs["filters"]  # filtered by us: Podman's filter names differ
        return iter([{"status": "start"}] + ([{"status": "oom"}] if self.oom else []))

    def inspect_container(self, cid: str) -> dict:
        self.calls.append("inspect_container")
        return {"State": {"Running": False}}

    def kill(self, cid: str, signal: int) -> None:
        self.killed.append(signal)

    def remove_container(self, cid: str, force: bool = False, v: bool = False) -> None:
        assert force and v, "removal must take the anonymous volumes too (P7)"
        self.removed.append(cid)
        self.containers.discard(cid)


def run_with(api: FakeRunAPI, memory: Optional[str] = None) -> None:
    from dvc_docker_exec.config import DockerSettings
    from dvc_docker_exec.types.spec import StageFacts, build_spec

    settings = DockerSettings.from_mapping({"image": "busybox", **({"memory": memory} if memory else {})})
    facts = StageFacts(addressing="s", wdir="/r", repo_root="/r", mount_paths=("/r",))
    spec = build_spec(
        settings,
        facts,
        "echo hi",
        {},
        lambda p, ro: docker.types.Mount(target=p, source=p, type="bind", read_only=ro),
        uid=1000,
        gid=1000,
        pid=1,
        tty=True,
    )
    client = FakeDockerClient(api)  # type: ignore[arg-type]
    runner.ContainerRunner(client).run(spec, "echo hi")  # type: ignore[arg-type]


def test_run_success_removes_the_container(capfd: pytest.CaptureFixture[str]) -> None:
    api = FakeRunAPI(output=b"hi\n")
    run_with(api)
    # one inspect after the stream ends: had it been cut while the command runs? (streams.follow)
    assert api.calls == ["create_container", "wait", "attach_socket", "start", "inspect_container"]
    assert api.containers == set()  # gone when run() returns
    assert api.removed == [] and api.killed == []  # the daemon removes it (AutoRemove): no extra round trip
    assert api.host_config_kwargs["auto_remove"] is True
    assert api.sockets[0].fileno() == -1  # closed
    assert api.host_config_kwargs["init"] is True
    assert capfd.readouterr().out == "hi\n"


def test_run_failure_raises_dvcs_error_and_removes() -> None:
    api = FakeRunAPI(status=137, oom=True)
    with pytest.raises(ContainerCmdFailedError, match="exited with 137 in a container of image 'busybox': killed, out of memory"):
        run_with(api, memory="64m")
    assert api.calls[-1] == "events" and api.killed == []
    assert api.containers == set()


def test_run_create_error() -> None:
    api = FakeRunAPI(fail_in="create_container")
    with pytest.raises(DockerExecError, match="cannot create the container for 'echo hi': create_container exploded"):
        run_with(api)
    assert api.removed == []


def test_run_api_error_while_running_stops_and_removes() -> None:
    api = FakeRunAPI(fail_in="start")
    with pytest.raises(DockerExecError, match="container for 'echo hi' failed: start exploded"):
        run_with(api)
    assert api.killed == [15]  # SIGTERM forwarded, then removed
    assert api.removed == ["c0ffee" * 10]
    assert api.containers == set()


def test_run_interrupted_stops_and_removes() -> None:
    api = FakeRunAPI(fail_in="start:interrupt")
    with pytest.raises(KeyboardInterrupt):
        run_with(api)
    assert api.killed and api.removed == ["c0ffee" * 10]
    assert api.containers == set()

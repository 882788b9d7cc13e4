"""A stage's output and exit status, surviving connections that are cut while it is silent.

Socket proxies in front of the daemon (HAProxy in Tecnativa's
docker-socket-proxy: ``timeout client/server 10m``) close any connection
that carries nothing for longer than their timeout; a training stage that
prints nothing for 10 minutes then lost its output stream and its wait
(issue 9, finding b: ``IncompleteRead(0 bytes read)``). Here:

* **Output**: the attach stream ends. If the container still runs, the
  stream was cut, so we follow the container's log from its start and skip
  what we already wrote, byte for byte per stream (``Output`` counts them):
  nothing is lost or written twice. Again after every cut.
* **Exit status**: the wait registered before start is cut. We look at the
  container: exited -> its ``State.ExitCode``; running -> wait again; gone
  (AutoRemove was quicker) -> the ``die`` event in the daemon's event log
  carries ``exitCode``. If none of these can tell, the run fails: a stage is
  never recorded without its real exit status.

Kept apart from runner.py's lifecycle (signals, create/start/stop) on purpose.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from http.client import HTTPException
from typing import Any, Callable, Dict, Iterable, List, Optional

from docker.errors import NotFound
from funcy import retry
from requests.exceptions import ChunkedEncodingError
from requests.exceptions import ConnectionError as RequestsConnectionError
from urllib3.exceptions import HTTPError as Urllib3Error

from dvc_docker_exec.errors import DockerExecError

logger = logging.getLogger(f"dvc.{__name__}")

CHUNK = 1 << 20  # read the attach stream in large chunks (100 MB of stdout: see benchmarks/)
STDOUT, STDERR = 1, 2
# what a connection cut by a proxy (or a daemon restart) looks like while reading
CUT = (Urllib3Error, HTTPException, ChunkedEncodingError, RequestsConnectionError, ConnectionError)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except InterruptedError:
            continue
        data = data[written:]


class Output:
    """Writes a container's stdout/stderr to our descriptors; counts, and on a replay skips, bytes per stream.

    Non-TTY streams are multiplexed in frames (8-byte header: stream, 0, 0, 0,
    big-endian size); a TTY stream is raw and counts as stdout.
    """

    def __init__(self, tty: bool, out_fd: int = STDOUT, err_fd: int = STDERR):
        self.tty = tty
        self.fds = {STDOUT: out_fd, STDERR: err_fd}
        self.written: Dict[int, int] = {STDOUT: 0, STDERR: 0}
        self._skip: Dict[int, int] = {STDOUT: 0, STDERR: 0}
        self._buf = bytearray()

    def replay(self) -> None:
        """The next bytes fed start again from the container's first byte of output."""
        self._buf.clear()  # a frame cut in the middle comes again, whole
        self._skip = dict(self.written)

    def _emit(self, stream: int, data: memoryview) -> None:
        stream = STDERR if stream == STDERR else STDOUT
        skip = self._skip[stream]
        if skip:
            cut = min(skip, len(data))
            self._skip[stream] = skip - cut
            data = data[cut:]
        if data:
            _write_all(self.fds[stream], data)
            self.written[stream] += len(data)

    def feed(self, chunk: bytes) -> None:
        if self.tty:
            self._emit(STDOUT, memoryview(chunk))
            return
        buf = self._buf
        buf += chunk
        view = memoryview(buf)
        pos = 0
        while len(view) - pos >= 8:
            size = int.from_bytes(view[pos + 4 : pos + 8], "big")
            if len(view) - pos - 8 < size:
                break
            self._emit(view[pos], view[pos + 8 : pos + 8 + size])
            pos += 8 + size
        view.release()
        del buf[:pos]


def _reader(sock: Any) -> Callable[[], bytes]:
    """What returns the next bytes as soon as there are some (never waits for a full chunk)."""
    proc = getattr(sock, "proc", None)
    if proc is not None and getattr(proc, "stdout", None) is not None:
        # docker-py's SSHSocket (ssh:// through the ssh client): the stream is the ssh
        # process's stdout; its fileno() is an unconnected socket (ENOTCONN), and
        # its recv(n) waits for n bytes. read1 returns what has arrived.
        return lambda: proc.stdout.read1(CHUNK)
    fd = sock.fileno()
    return lambda: os.read(fd, CHUNK)


def pump(sock: Any, output: Output) -> None:
    """Copy the attach stream to ``output`` until EOF or a cut.

    Why not docker-py's log generator: it yields one frame at a time and
    measured 3.3x slower than the CLI for 100 MB of output. We read large
    chunks from the raw socket and demultiplex the frames ourselves.
    """
    read = _reader(sock)
    while True:
        try:
            chunk = read()
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                continue
            if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                return  # cut: the caller decides from the container's state
            raise
        if not chunk:
            return
        output.feed(chunk)


def release(stream: Any) -> None:
    """Close a stream of the daemon's and the socket and response under it, whatever state they are in.

    Why not `stream.close()` alone: docker-py's attach socket is a SocketIO whose
    close() leaves its socket to the garbage collector (a ResourceWarning, an
    error under DVC 3.50's own test settings), and the HTTP response to the GC.
    """
    for part in (stream, getattr(stream, "_sock", None), getattr(stream, "_response", None)):
        if part is not None:
            try:
                part.close()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                pass


def close_quietly(stream: Any) -> None:
    """Close an attach stream whose other end may be gone (ssh:// raises BrokenPipeError here)."""
    try:
        stream.close()
    except OSError as exc:
        logger.debug("closing the output stream: %s", exc)


def _running(api: Any, cid: str) -> bool:
    try:
        return bool(api.inspect_container(cid)["State"]["Running"])
    except NotFound:
        return False


# Reopening the output stream after a cut: a proxy's idle cut reconnects at once; a daemon
# that is gone (or restarting) is asked again with backoff, then the cut is the caller's
# (runner: "lost the connection ..."), instead of a loop that asks again at full speed.
REOPEN_TRIES = 6  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s: about 3 s for a daemon to come back


def _backoff(attempt: int) -> float:
    return min(0.1 * 2**attempt, 2.0)


@retry(REOPEN_TRIES, errors=CUT, timeout=_backoff)
def _open_logs(api: Any, cid: str) -> Any:
    res = api._get(
        api._url("/containers/{0}/logs", cid),
        params={"follow": 1, "stdout": 1, "stderr": 1},
        stream=True,
        timeout=None,
    )
    api._raise_for_status(res)  # NotFound (the container is gone) is not retried
    return res


def _log_chunks(res: Any) -> Iterable[bytes]:
    """The container's whole output so far, then new output as it comes, raw frames as in attach."""
    try:
        # chunked: yields each chunk as it arrives (a plain read(n) would wait for n bytes)
        yield from res.raw.stream(None, decode_content=False)
    finally:
        res.close()


def follow(api: Any, cid: str, sock: Any, output: Output, running: Callable[[Any, str], bool] = _running) -> None:
    """All of the container's output once, even if the connection is cut while it is silent.

    The attach stream ends the same way when the command ends and when a
    proxy cuts it; the container's state tells them apart. The log stream
    that replaces it is replayed until it ends cleanly with the container
    stopped: a cut log stream is replayed even if the container has stopped
    meanwhile (Podman delivers followed lines in batches, so the last ones
    may still be in the log only), until the container is gone.
    """
    pump(sock, output)
    if not running(api, cid):
        return
    while True:
        logger.debug("output stream of container %s ended while it runs (cut by a proxy?): resuming", cid[:12])
        output.replay()
        try:
            # a daemon that does not answer after the retries: the cut is the caller's
            res = _open_logs(api, cid)
        except NotFound:
            return  # gone: AutoRemove after it exited
        try:
            for chunk in _log_chunks(res):
                output.feed(chunk)
        except CUT as exc:
            logger.debug("log stream of container %s cut again (%s)", cid[:12], exc)
            continue
        if not running(api, cid):
            return


def parse_wait(body: bytes, cmd: str) -> Optional[int]:
    """The StatusCode of a wait answer; None when the answer is not there (cut) or not an exit status."""
    try:
        result = json.loads(body or b"{}")
    except ValueError:
        return None
    message = (result.get("Error") or {}).get("Message")
    if message:
        raise DockerExecError(f"container for '{cmd}' failed: {message}")
    status = result.get("StatusCode")
    # Podman answers -1 when it does not know (a wait on a container that is not running)
    return int(status) if isinstance(status, int) and status >= 0 else None


def exit_status(api: Any, cid: str, waiter: Any, condition: str, since: float, cmd: str) -> int:
    """The exit status from the wait registered before start, or found again after a cut."""
    try:
        status = parse_wait(waiter.raw.read(), cmd)
    except CUT as exc:
        logger.debug("wait for container %s cut (%s)", cid[:12], exc)
        status = None
    finally:
        waiter.close()
    while status is None:
        try:
            state = api.inspect_container(cid)["State"]
        except NotFound:
            return _status_from_events(api, cid, since, cmd)
        if not state.get("Running") and state.get("Status") in ("exited", "dead", "stopped"):
            return int(state["ExitCode"])
        logger.debug("container %s still runs: waiting for it again", cid[:12])
        # registered while it runs, so "next-exit" cannot miss the exit; Docker's
        # "removed" also answers when AutoRemove was quicker than we were
        again = "removed" if condition == "removed" else "next-exit"
        res = api._post(api._url("/containers/{0}/wait", cid), params={"condition": again}, stream=True, timeout=None)
        try:
            api._raise_for_status(res)
            status = parse_wait(res.raw.read(), cmd)
        except NotFound:
            return _status_from_events(api, cid, since, cmd)
        except CUT as exc:
            logger.debug("wait for container %s cut again (%s)", cid[:12], exc)
        finally:
            res.close()
    return status


def container_events(api: Any, cid: str, since: float, action: str) -> List[dict]:
    """The container's events named ``action`` ("die", "oom") since ``since``, up to now.

    Filtered here, not by the daemon: Podman 4.3 matches an ``event=die``
    filter against its own name ("died") and returns nothing, while the
    events it sends carry ``status: die`` like Docker's (measured).
    """
    events = api.events(since=int(since) - 1, until=int(time.time()) + 1, filters={"container": cid}, decode=True)
    return [e for e in events if (e.get("Action") or e.get("status")) == action]


def _status_from_events(api: Any, cid: str, since: float, cmd: str) -> int:
    """A removed container's exit status, from its ``die`` event."""
    try:
        for event in container_events(api, cid, since, "die"):
            code = ((event.get("Actor") or {}).get("Attributes") or {}).get("exitCode")
            if code is not None:
                return int(code)
    except Exception as exc:  # noqa: BLE001 - explained below
        logger.debug("events of container %s: %s", cid[:12], exc)
    raise DockerExecError(
        f"lost the exit status of '{cmd}' (container {cid[:12]}): the connection to the daemon was cut "
        "while it ran, the container is gone, and the daemon's events do not tell (a socket proxy "
        "must allow EVENTS); nothing was recorded"
    )

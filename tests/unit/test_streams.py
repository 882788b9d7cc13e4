"""streams: output replay without loss or duplicates, exit status after a cut connection."""

from __future__ import annotations

import io
import json
import os
import types
from typing import List

import pytest
from docker.errors import NotFound
from urllib3.exceptions import ProtocolError

from dvc_docker_exec.api import streams
from dvc_docker_exec.errors import DockerExecError


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


@pytest.fixture
def pipes():
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    yield out_w, err_w, lambda: (_drain(out_r, out_w), _drain(err_r, err_w))


def _drain(r: int, w: int) -> bytes:
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    return data


def test_replay_skips_what_was_written_per_stream(pipes):
    out_w, err_w, read = pipes
    output = streams.Output(tty=False, out_fd=out_w, err_fd=err_w)
    first = frame(1, b"a1\n") + frame(2, b"e1\n") + frame(1, b"a2\n")
    output.feed(first + frame(1, b"par"))  # the last frame is cut in the middle: not written
    output.replay()
    # the log replays everything from the start, then the new output
    output.feed(first + frame(1, b"partial\n") + frame(2, b"e2\n"))
    assert read() == (b"a1\na2\npartial\n", b"e1\ne2\n")


def test_replay_in_the_middle_of_a_frame(pipes):
    out_w, err_w, read = pipes
    output = streams.Output(tty=True, out_fd=out_w, err_fd=err_w)
    output.feed(b"hello ")
    output.replay()
    output.feed(b"hel")
    output.feed(b"lo world")
    assert read() == (b"hello world", b"")


class CutAPI:
    """inspect/wait/events of a daemon behind a proxy that cut the first wait."""

    def __init__(self, states: List[object], events: List[dict] = (), rewait: bytes = b""):
        self.states = list(states)
        self.events_list = list(events)
        self.rewait = rewait
        self.posts: List[dict] = []

    def inspect_container(self, cid):
        state = self.states.pop(0)
        if state is None:
            raise NotFound("gone")
        return {"State": state}

    def _url(self, path, *args):
        return path.format(*args)

    def _post(self, url, params, stream, timeout):
        self.posts.append(params)
        return types.SimpleNamespace(raw=io.BytesIO(self.rewait), close=lambda: None)

    def _raise_for_status(self, res):
        pass

    def events(self, **kwargs):
        assert kwargs["filters"] == {"container": "c" * 64}
        return iter(self.events_list)


class CutWaiter:
    def __init__(self):
        self.raw = self
        self.closed = False

    def read(self):
        raise ProtocolError("Connection broken: IncompleteRead(0 bytes read)")

    def close(self):
        self.closed = True


CID = "c" * 64


def test_cut_wait_then_exited_container_gives_its_exit_code():
    api = CutAPI([{"Running": False, "Status": "exited", "ExitCode": 3}])
    waiter = CutWaiter()
    assert streams.exit_status(api, CID, waiter, "removed", 0, "x") == 3
    assert waiter.closed and api.posts == []


def test_cut_wait_while_running_waits_again():
    body = json.dumps({"StatusCode": 5, "Error": None}).encode()
    api = CutAPI([{"Running": True, "Status": "running"}], rewait=body)
    assert streams.exit_status(api, CID, CutWaiter(), "next-exit", 0, "x") == 5
    assert api.posts == [{"condition": "next-exit"}]


def test_cut_wait_and_removed_container_reads_the_die_event():
    api = CutAPI([None], events=[{"status": "start"}, {"status": "die", "Actor": {"Attributes": {"exitCode": "7"}}}])
    assert streams.exit_status(api, CID, CutWaiter(), "removed", 0, "x") == 7


def test_no_way_to_know_the_status_is_an_error_not_a_success():
    api = CutAPI([None], events=[])
    with pytest.raises(DockerExecError, match="lost the exit status of 'x'.*must allow EVENTS"):
        streams.exit_status(api, CID, CutWaiter(), "removed", 0, "x")


def test_podman_minus_one_is_not_an_exit_status():
    assert streams.parse_wait(b'{"StatusCode":-1,"Error":null}', "x") is None
    assert streams.parse_wait(b'{"StatusCode":7,"Error":null}', "x") == 7
    assert streams.parse_wait(b"", "x") is None
    with pytest.raises(DockerExecError, match="boom"):
        streams.parse_wait(b'{"StatusCode":0,"Error":{"Message":"boom"}}', "x")


def test_pump_reads_an_ssh_process_stream_without_waiting_for_a_full_chunk(pipes):
    # docker-py's SSHSocket: the stream is the ssh process's stdout (a BufferedReader);
    # its fileno() is an unconnected socket. A short frame must come through at once.
    import threading

    out_w, err_w, read = pipes
    r, w = os.pipe()
    proc = types.SimpleNamespace(stdout=os.fdopen(r, "rb"))
    sock = types.SimpleNamespace(proc=proc, fileno=lambda: (_ for _ in ()).throw(OSError(107, "ENOTCONN")))
    os.write(w, frame(1, b"first\n"))
    seen = threading.Event()

    class Watch(streams.Output):
        def feed(self, chunk):
            super().feed(chunk)
            seen.set()

    thread = threading.Thread(target=streams.pump, args=(sock, Watch(False, out_w, err_w)))
    thread.start()
    assert seen.wait(10), "the first frame waited for more bytes"
    os.write(w, frame(2, b"second\n"))
    os.close(w)
    thread.join(10)
    proc.stdout.close()
    assert read() == (b"first\n", b"second\n")


class ReopenAPI:
    """`GET /containers/{id}/logs` that fails `refusals` times (a daemon restarting), then streams `data`."""

    def __init__(self, refusals: int, data: bytes = b""):
        from requests.exceptions import ConnectionError as RequestsConnectionError

        self.refusals, self.data, self.opens = refusals, data, 0
        self.error = RequestsConnectionError("Connection refused")

    def _url(self, template: str, cid: str) -> str:
        return template.format(cid)

    def _get(self, url: str, **kwargs):
        self.opens += 1
        if self.opens <= self.refusals:
            raise self.error
        raw = types.SimpleNamespace(stream=lambda amt, decode_content: iter([self.data]))
        return types.SimpleNamespace(raw=raw, close=lambda: None)

    def _raise_for_status(self, res) -> None:
        pass


class EmptySocket:
    def fileno(self) -> int:
        r, w = os.pipe()
        os.close(w)
        return r


def test_a_daemon_that_comes_back_is_asked_again_with_backoff(monkeypatch, pipes) -> None:
    import funcy.flow

    slept: List[float] = []
    monkeypatch.setattr(funcy.flow.time, "sleep", slept.append)
    api = ReopenAPI(refusals=3, data=frame(1, b"after the restart\n"))
    states = iter([True, False])
    out_w, err_w, drained = pipes
    streams.follow(api, "c" * 64, EmptySocket(), streams.Output(False, out_w, err_w), running=lambda a, c: next(states))
    assert drained()[0] == b"after the restart\n"
    assert api.opens == 4 and slept == [0.1, 0.2, 0.4]


def test_a_daemon_that_stays_away_is_a_cut_for_the_caller(monkeypatch, pipes) -> None:
    import funcy.flow

    slept: List[float] = []
    monkeypatch.setattr(funcy.flow.time, "sleep", slept.append)
    api = ReopenAPI(refusals=100)
    out_w, err_w, _ = pipes
    with pytest.raises(streams.CUT):
        streams.follow(api, "c" * 64, EmptySocket(), streams.Output(False, out_w, err_w), running=lambda a, c: True)
    assert api.opens == streams.REOPEN_TRIES  # not a loop at full speed for ever
    assert sum(slept) < 5


def test_release_closes_the_socket_and_response_under_an_attach_stream():
    """docker-py's attach socket is a SocketIO: its close() leaves the socket to the GC (ResourceWarning)."""
    import socket as socketlib

    from dvc_docker_exec.api import streams as s

    a, b = socketlib.socketpair()
    stream = a.makefile("rb", buffering=0)  # a SocketIO over `a`, as docker-py returns

    class Response:
        closed = False

        def close(self):
            self.closed = True

    stream._response = response = Response()
    stream._sock = a
    s.release(stream)
    assert a.fileno() == -1 and response.closed and stream.closed
    b.close()

    class Broken:
        def close(self):
            raise OSError("gone")

    s.release(Broken())  # a connection already gone is no error

"""Demultiplexing Docker's attach/log stream onto our stdout and stderr.

Without a TTY the daemon frames the stream: an 8-byte header (stream id,
3 zero bytes, big-endian payload size) before each payload. With a TTY it is
one raw stream. Bytes are written straight to the file descriptors (no
Python-level buffering: see benchmarks/repro_bench.py) and counted per
stream, so a reader that resumes (Swarm logs read twice) can skip what was
already written.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

STDOUT, STDERR = 1, 2
HEADER = 8


def write_all(fd: int, data: memoryview) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except InterruptedError:
            continue
        data = data[written:]


class Demux:
    """Feed it chunks as they come; it writes each payload to the right fd."""

    def __init__(
        self, tty: bool, out_fd: int = STDOUT, err_fd: int = STDERR, skip: Optional[Dict[int, int]] = None
    ) -> None:
        self.tty = tty
        self.fds = {STDOUT: out_fd, STDERR: err_fd}
        self.seen: Dict[int, int] = {STDOUT: 0, STDERR: 0}
        self._skip = dict(skip or {})
        self._buf = bytearray()

    def written(self) -> Dict[int, int]:
        """Bytes seen so far per stream (written or skipped)."""
        return dict(self.seen)

    def _emit(self, stream: int, payload: memoryview) -> None:
        stream = STDERR if stream == STDERR else STDOUT  # stdin (0) frames never come; treat as stdout
        self.seen[stream] += len(payload)
        skip = self._skip.get(stream, 0)
        if skip:
            cut = min(skip, len(payload))
            self._skip[stream] = skip - cut
            payload = payload[cut:]
        if payload:
            write_all(self.fds[stream], payload)

    def feed(self, chunk: bytes) -> None:
        if self.tty:
            self._emit(STDOUT, memoryview(chunk))
            return
        self._buf += chunk
        view = memoryview(self._buf)
        pos = 0
        while len(view) - pos >= HEADER:
            size = int.from_bytes(view[pos + 4 : pos + 8], "big")
            if len(view) - pos - HEADER < size:
                break
            self._emit(view[pos], view[pos + HEADER : pos + HEADER + size])
            pos += HEADER + size
        view.release()
        del self._buf[:pos]

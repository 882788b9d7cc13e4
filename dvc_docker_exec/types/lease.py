"""What a stage container knows of its lease: the watcher wrapped around the stage's command (pure).

The host side (the folder, the pipe, the beat, the reaping) is
backends/lease.py, which explains why a container watches dvc. This part is
a value the container spec carries (types/spec.py): the lease's kind and path,
and the POSIX sh watcher, double-forked so that it is the container init's
child, not the command's: the command keeps its PID, exit status, signals
(docker-init forwards them to it) and TTY exactly as before. ``kill -1``
reaches every process of the container's own PID namespace (our containers
always get one) except init.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

BEAT_PERIOD = 2  # seconds between two renewals of a Swarm lease
BEAT_MISSES = 10  # readings (BEAT_PERIOD apart) without renewal before a Swarm task stops itself
NAME = "dvc-docker-exec-lease"  # $0 of the watcher script (what `ps` shows)

# $1 shell, $2 lease, $3 the stage's command line. The watcher's stdout and
# stdin are /dev/null; its stderr is the container's (one line when it acts).
_STOP = (
    'echo "dvc-docker-exec: $why: stopping the stage" >&2; '
    "kill -TERM -1 2>/dev/null; sleep 1; kill -KILL -1 2>/dev/null"
)
FIFO_WATCH = (
    "( ( why='the dvc process that started this container is gone'; "
    '{ while read -r _; do :; done; } < "$2" 2>/dev/null || why="cannot read the lease $2"; '
    + _STOP
    + ' ) </dev/null >/dev/null & ); exec "$1" -c "$3"'
)
BEAT_WATCH = (
    "( ( why='the dvc process that started this task stopped renewing its lease'; last=; idle=0; "
    f'while [ "$idle" -lt {BEAT_MISSES} ]; do now=; read -r now < "$2" 2>/dev/null; '
    'if [ "$now" != "$last" ]; then last=$now; idle=0; else idle=$((idle+1)); fi; '
    f"sleep {BEAT_PERIOD}; done; "
    + _STOP
    + ' ) </dev/null >/dev/null & ); exec "$1" -c "$3"'
)
WATCHERS = {"fifo": FIFO_WATCH, "beat": BEAT_WATCH}


@dataclass(frozen=True)
class LeaseRef:
    """What a container needs to know of its lease: how to watch it and where (a path the stage sees)."""

    kind: str  # "fifo" or "beat"
    path: str


def command(shell: str, cmd: str, lease: Optional[LeaseRef]) -> Tuple[str, ...]:
    """Pure: the argv after the entrypoint `shell`: `-c cmd`, wrapped in the lease watcher when there is one."""
    if lease is None:
        return ("-c", cmd)
    return ("-c", WATCHERS[lease.kind], NAME, shell, lease.path, cmd)

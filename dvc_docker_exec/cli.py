"""`dvc-docker-exec`: find and remove containers left behind.

The runner removes its container whatever happens, except when the dvc
process itself is killed with SIGKILL (`dvc queue kill --force`, the OOM
killer): then the container runs on until its command ends (the daemon then
removes it, as with `docker run --rm`). Every container carries the label
`dvc-docker-exec` and the pid of the dvc process that started it, so such
leftovers can be found (`ps`) and removed (`prune`) before that.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from .spec import LABEL


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def orphaned(container) -> bool:
    """A container of this host whose dvc process is gone.

    Pids are only meaningful where they were taken: a container started from
    another machine or runner container is never called orphaned here.
    """
    if container.labels.get(f"{LABEL}.host") != os.uname().nodename:
        return False
    try:
        pid = int(container.labels.get(f"{LABEL}.pid", ""))
    except ValueError:
        return False
    return not _pid_alive(pid)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="dvc-docker-exec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ps", help="list containers started by dvc-docker-exec")
    prune = sub.add_parser("prune", help="remove containers whose dvc process is gone")
    prune.add_argument("--all", action="store_true", help="remove running ones of live dvc processes too")
    args = parser.parse_args(argv)

    from .errors import DockerExecError
    from .runner import connect

    try:
        client = connect()
    except DockerExecError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    containers = client.containers.list(all=True, filters={"label": LABEL})
    if args.command == "ps":
        for c in containers:
            state = "orphaned" if orphaned(c) else "-"
            print(f"{c.short_id}  {c.status:<8} {state:<8} {c.labels.get(f'{LABEL}.stage', '?')}  "
                  f"{c.labels.get(f'{LABEL}.repo', '?')}")
        return 0
    removed = 0
    for c in containers:
        if args.all or orphaned(c):
            c.remove(force=True)
            removed += 1
            print(f"removed {c.short_id} ({c.labels.get(f'{LABEL}.stage', '?')})")
    print(f"{removed} container(s) removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`dvc-docker-exec CMD ...`: a thin alias of `dvc docker CMD ...`, kept for scripts that used it.

The commands themselves live in `dvc_docker_exec.commands` and run through
DVC's own CLI (its -v/-q/--cd, its one-line errors and exit codes).
"""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    import dvc_docker_exec_hook  # noqa: F401 - registers `dvc docker` even where the .pth file was not processed
    from dvc.cli import main as dvc_main

    return dvc_main(["docker", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

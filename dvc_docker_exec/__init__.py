"""dvc-docker-exec: run every DVC stage command in a Docker container.

The ``.pth`` file runs the top-level, stdlib-only ``dvc_docker_exec_hook`` at
every Python start; this package is imported only when DVC loads a module the
hook patches. Kept empty all the same: whatever imports it first pays for it.
The layout of its sub-packages: docs/architecture.md.
"""

__version__ = "0.1.0"

"""Deprecated alias of the top-level module ``dvc_docker_exec_hook`` (the import hook moved there, issue 22).

Kept for scripts and older notes that import ``dvc_docker_exec.hook``; this
name is the very module object, so its ``install()`` and ``_TARGETS`` are the
hook's own. The ``.pth`` file imports ``dvc_docker_exec_hook`` directly.
"""

import sys

import dvc_docker_exec_hook

sys.modules[__name__] = dvc_docker_exec_hook

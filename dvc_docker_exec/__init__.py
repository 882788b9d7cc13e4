"""dvc-docker-exec: run every DVC stage command in a Docker container.

Kept empty on purpose: the ``.pth`` import hook imports ``dvc_docker_exec.hook``
at every Python start, and that must not pull in dvc or docker.
"""

__version__ = "0.1.0"

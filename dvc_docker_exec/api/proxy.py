"""Say which permission a socket proxy denied.

API-filtering proxies in front of the daemon (Tecnativa's
docker-socket-proxy, linuxserver's, a hand-made HAProxy) answer a call they
do not allow with an HTML ``403 Forbidden``; docker-py would show that as
``403 Client Error ... Forbidden`` with no hint of what to allow. The proxies
grant access per API section (``CONTAINERS=1``, ``IMAGES=1``, ...) plus
``POST=1`` for anything but GET/HEAD (DELETE included), so the section and
the method name the missing permission. The daemon's own 403s (an
authorization plugin) are JSON and pass through untouched.
"""

from __future__ import annotations

import re
from typing import Any, Callable, List
from urllib.parse import unquote, urlsplit

from dvc_docker_exec.errors import DockerExecError

_SECTION = re.compile(r"^/(?:v[\d.]+/)?_?([A-Za-z]+)")
# Tecnativa's variable for each API section (its README)
_NAMES = {
    "ping": "PING",
    "version": "VERSION",
    "info": "INFO",
    "events": "EVENTS",
    "containers": "CONTAINERS",
    "images": "IMAGES",
    "networks": "NETWORKS",
    "volumes": "VOLUMES",
    "exec": "EXEC",
    "build": "BUILD",
    "auth": "AUTH",
    "system": "SYSTEM",
    "distribution": "DISTRIBUTION",
    "plugins": "PLUGINS",
    "services": "SERVICES",
    "tasks": "TASKS",
    "nodes": "NODES",
    "swarm": "SWARM",
    "secrets": "SECRETS",
    "configs": "CONFIGS",
    "session": "SESSION",
    "commit": "COMMIT",
}


def permissions_for(method: str, url: str) -> List[str]:
    """The proxy permissions a call needs, e.g. ``['CONTAINERS', 'POST']``."""
    path = unquote(urlsplit(url).path)
    match = _SECTION.match(path)
    needed = [_NAMES.get(match.group(1).lower(), match.group(1).upper())] if match else []
    if method.upper() not in ("GET", "HEAD"):
        needed.append("POST")
    return needed


def denied_message(method: str, url: str, where: str) -> str:
    path = urlsplit(url).path
    needed = " and ".join(f"{p}=1" for p in permissions_for(method, url)) or "this call"
    return (
        f"the Docker endpoint {where} refused {method.upper()} {path} (403 Forbidden): a socket proxy "
        f"in front of the daemon must allow it ({needed} in docker-socket-proxy terms)"
    )


def denied_hook(where: str) -> Callable[..., Any]:
    """A requests response hook that turns a proxy's 403 into a DockerExecError naming the permission."""

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ARG001
        if response.status_code == 403 and "json" not in response.headers.get("Content-Type", ""):
            request = response.request
            raise DockerExecError(denied_message(request.method, request.url, where))
        return response

    return hook

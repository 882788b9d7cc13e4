"""Which Docker daemon we talk to, found the way the Docker CLI finds it.

Order (docker CLI's `cli/command/cli.go` resolveContextName + docker-py's
`kwargs_from_env`): ``DOCKER_HOST`` (with ``DOCKER_TLS_VERIFY`` /
``DOCKER_CERT_PATH``), else ``DOCKER_CONTEXT``, else ``currentContext`` in the
Docker config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``),
else the default socket.

Why not ``docker.from_env()``: it reads ``DOCKER_HOST`` only. A user who ran
`docker context use rootless` (what rootless Docker's setup tool tells them)
or Docker Desktop's context would silently be sent to /var/run/docker.sock,
and our error messages would name the wrong socket (issue 9, finding c).

Every daemon call of the plugin goes through ``Endpoint.client()``, and every
message that names the daemon uses ``Endpoint.describe()``, so what we say is
what we used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from dvc_docker_exec.errors import DockerExecError

DEFAULT_URL = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class Endpoint:
    url: str  # unix:///..., tcp://..., ssh://user@host, npipe://...
    source: str  # where it came from, for messages: "DOCKER_HOST", "Docker context 'x' (DOCKER_CONTEXT)", ...
    tls: Any = None  # docker.tls.TLSConfig or None

    @property
    def socket_path(self) -> Optional[str]:
        """The local socket file for a unix:// endpoint, else None."""
        if self.url.startswith("unix://"):
            return "/" + self.url[len("unix://") :].lstrip("/")
        return None

    @property
    def is_local(self) -> bool:
        return self.socket_path is not None

    def describe(self) -> str:
        return f"'{self.url}' (from {self.source})"

    def client(self, **kwargs: Any):
        """A docker-py client for this endpoint (not yet pinged)."""
        import docker

        if self.url.startswith("ssh://"):
            # why: the ssh client binary is what the Docker CLI uses too (it
            # reads ~/.ssh/config; `docker system dial-stdio` runs on the
            # remote, so the docker CLI must be there). docker-py still
            # imports paramiko for its ssh transport, whichever it uses.
            try:
                import paramiko  # noqa: F401
            except ImportError:
                raise DockerExecError(
                    f"the Docker endpoint {self.describe()} is an ssh:// URL, which needs paramiko: "
                    "pip install 'dvc-docker-exec[ssh]'"
                ) from None
            kwargs.setdefault("use_ssh_client", True)
        client = docker.DockerClient(base_url=self.url, tls=self.tls or False, **kwargs)
        from dvc_docker_exec.api.engine import gone_is_not_found
        from dvc_docker_exec.api.proxy import denied_hook

        client.api.hooks["response"].extend([denied_hook(self.describe()), gone_is_not_found])
        return client


def discover(environ: Optional[Mapping[str, str]] = None) -> Endpoint:
    """The endpoint the Docker CLI would use in this environment."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST")
    if host:
        from docker.utils import kwargs_from_env

        tls = kwargs_from_env(environment=dict(env)).get("tls")
        return Endpoint(url=host, source="DOCKER_HOST", tls=tls)
    name = env.get("DOCKER_CONTEXT")
    if name:
        return _from_context(name, "DOCKER_CONTEXT", env)
    name = _current_context_name(env)
    if name and name != "default":
        return _from_context(name, f"the current context in {_config_file(env)}", env)
    return Endpoint(url=DEFAULT_URL, source="the default socket")


def _config_file(env: Mapping[str, str]) -> str:
    folder = env.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(folder, "config.json")


def _current_context_name(env: Mapping[str, str]) -> Optional[str]:
    import json

    try:
        with open(_config_file(env), encoding="utf-8") as fobj:
            return json.load(fobj).get("currentContext")
    except (OSError, ValueError, AttributeError):
        return None


def _from_context(name: str, why: str, env: Mapping[str, str]) -> Endpoint:
    """Read the context's meta.json and TLS files the way the Docker CLI stores them.

    Why not docker-py's ContextAPI: it finds the contexts folder only next to
    an existing config.json and reads DOCKER_CONFIG from os.environ only.
    """
    import hashlib
    import json

    source = f"Docker context '{name}', {why}"
    if name == "default":
        return Endpoint(url=DEFAULT_URL, source=source)
    folder = os.path.dirname(_config_file(env))
    context_id = hashlib.sha256(name.encode("utf-8")).hexdigest()
    meta_file = os.path.join(folder, "contexts", "meta", context_id, "meta.json")
    try:
        with open(meta_file, encoding="utf-8") as fobj:
            docker_endpoint = json.load(fobj)["Endpoints"]["docker"]
        host = docker_endpoint["Host"]
    except FileNotFoundError:
        raise DockerExecError(f"{source} does not exist: `docker context ls` lists the contexts") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DockerExecError(f"{source} cannot be read from '{meta_file}' ({exc!r})") from None
    tls_dir = os.path.join(folder, "contexts", "tls", context_id, "docker")
    return Endpoint(url=host, source=source, tls=_context_tls(tls_dir, docker_endpoint.get("SkipTLSVerify", False)))


def _context_tls(tls_dir: str, skip_verify: bool) -> Any:
    if not os.path.isdir(tls_dir):
        return None
    from docker.tls import TLSConfig

    def path(name: str) -> Optional[str]:
        full = os.path.join(tls_dir, name)
        return full if os.path.isfile(full) else None

    cert, key, ca = path("cert.pem"), path("key.pem"), path("ca.pem")
    return TLSConfig(
        client_cert=(cert, key) if cert and key else None, ca_cert=ca, verify=bool(ca) and not skip_verify
    )

"""Endpoint discovery in the Docker CLI's order (issue 9, item 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvc_docker_exec.api.endpoint import DEFAULT_URL, discover
from dvc_docker_exec.errors import DockerExecError


def _context(config_dir: Path, name: str, host: str) -> None:
    import hashlib

    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": False}}})
    )


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "docker-config"
    folder.mkdir()
    _context(folder, "rootless", "unix:///run/user/4545/docker.sock")
    _context(folder, "desktop", "unix:///home/me/.docker/desktop/docker.sock")
    return folder


def test_default_socket(tmp_path: Path) -> None:
    endpoint = discover({"DOCKER_CONFIG": str(tmp_path)})
    assert endpoint.url == DEFAULT_URL
    assert endpoint.socket_path == "/var/run/docker.sock"
    assert endpoint.describe() == "'unix:///var/run/docker.sock' (from the default socket)"


def test_docker_host_wins_over_contexts(config_dir: Path) -> None:
    (config_dir / "config.json").write_text(json.dumps({"currentContext": "desktop"}))
    env = {"DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": "rootless", "DOCKER_HOST": "unix:///some/dir/d.sock"}
    endpoint = discover(env)
    assert (endpoint.url, endpoint.source) == ("unix:///some/dir/d.sock", "DOCKER_HOST")
    assert endpoint.socket_path == "/some/dir/d.sock"


def test_docker_context_env_wins_over_current_context(config_dir: Path) -> None:
    (config_dir / "config.json").write_text(json.dumps({"currentContext": "desktop"}))
    endpoint = discover({"DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": "rootless"})
    assert endpoint.url == "unix:///run/user/4545/docker.sock"
    assert "Docker context 'rootless'" in endpoint.source and "DOCKER_CONTEXT" in endpoint.source


def test_current_context_from_config(config_dir: Path) -> None:
    (config_dir / "config.json").write_text(json.dumps({"currentContext": "desktop"}))
    endpoint = discover({"DOCKER_CONFIG": str(config_dir)})
    assert endpoint.url == "unix:///home/me/.docker/desktop/docker.sock"
    assert "Docker context 'desktop'" in endpoint.source and "config.json" in endpoint.source


def test_default_context_by_name(config_dir: Path) -> None:
    endpoint = discover({"DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": "default"})
    assert endpoint.url == DEFAULT_URL


def test_missing_context_is_one_line(config_dir: Path) -> None:
    with pytest.raises(DockerExecError) as info:
        discover({"DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": "nope"})
    assert "Docker context 'nope'" in str(info.value) and "docker context ls" in str(info.value)
    assert "\n" not in str(info.value)


def test_tcp_and_ssh_have_no_socket() -> None:
    assert discover({"DOCKER_HOST": "tcp://127.0.0.1:2375"}).socket_path is None
    assert discover({"DOCKER_HOST": "ssh://me@build-host"}).is_local is False


def test_unreachable_context_error_names_it(config_dir: Path) -> None:
    """Finding (c): the error names the context's endpoint, not /var/run/docker.sock."""
    from dvc_docker_exec.backends.runner import connect

    endpoint = discover({"DOCKER_CONFIG": str(config_dir), "DOCKER_CONTEXT": "rootless"})
    with pytest.raises(DockerExecError) as info:
        connect(endpoint)
    message = str(info.value)
    assert "unix:///run/user/4545/docker.sock" in message and "Docker context 'rootless'" in message
    assert "/var/run/docker.sock" not in message


def test_ssh_without_paramiko_says_what_to_install(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_paramiko(name, *args, **kwargs):
        if name == "paramiko":
            raise ImportError("No module named 'paramiko'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_paramiko)
    endpoint = discover({"DOCKER_HOST": "ssh://me@build-host"})
    with pytest.raises(DockerExecError, match=r"ssh:// URL, which needs paramiko: pip install 'dvc-docker-exec\[ssh\]'"):
        endpoint.client()

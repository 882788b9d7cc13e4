"""Other engines, each started by its own script under scripts/engines/ (idempotent).

Run one engine alone with its marker: ``scripts/test.sh -m podman``,
``-m proxy``, ``-m rootless`` (all of them: ``-m engines``). As with Docker,
an engine that cannot start skips on a laptop and fails when ``CI=true``.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

from tests.conftest import ROOT, _unavailable, machine_lock, our_containers


def start_engine(script: str, *args: str, env: dict | None = None) -> str:
    """Run scripts/engines/<script>; its last stdout line is the endpoint URL."""
    import os

    try:
        with machine_lock("engines"):
            proc = subprocess.run(
                [str(ROOT / "scripts" / "engines" / script), *args],
                capture_output=True,
                text=True,
                timeout=900,
                env={**os.environ, **(env or {})},
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"scripts/engines/{script} failed: {exc}")
    if proc.returncode != 0 or not proc.stdout.strip():
        _unavailable(f"scripts/engines/{script} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def proxy_name(kind: str) -> str:
    """A proxy of this checkout and pytest worker alone: proxy.sh restarts a proxy whose configuration
    differs (another checkout's timeout would cut this one's connections), and the counters a test
    reads (proxy_counters) must count its own connections only."""
    import os
    import re

    owner = re.sub(r"[^A-Za-z0-9]+", "-", f"{ROOT.name}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
    return f"dde-{owner}-{kind}"


def start_proxy(kind: str, **env: str) -> str:
    """scripts/engines/proxy.sh under proxy_name(kind), with Tecnativa's switches in `env`; its URL."""
    return start_engine("proxy.sh", proxy_name(kind), env=env)


def proxy_counters(url: str) -> Dict[str, int]:
    """HAProxy's own counters of the proxy at `url` (its stats socket, proxy.sh): `served` connections
    passed on to the daemon, `cut` of them ended by the proxy's timeout or an abort, `denied` requests."""
    import csv
    import io
    import socket

    stats = str(Path(url[len("unix://") :]).parent / "stats.sock")
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(stats)
        conn.sendall(b"show stat\n")
        data = b"".join(iter(lambda: conn.recv(65536), b""))
    rows = list(csv.DictReader(io.StringIO(data.decode().lstrip("# "))))
    backends = [r for r in rows if r["svname"] == "BACKEND"]
    frontend = next(r for r in rows if r["svname"] == "FRONTEND")
    return {
        "served": sum(int(r["stot"] or 0) for r in backends),
        "cut": sum(int(r["srv_abrt"] or 0) + int(r["cli_abrt"] or 0) for r in backends),
        "denied": int(frontend["dreq"] or 0),
    }


def engine_client(url: str):
    import docker

    try:
        client = docker.DockerClient(base_url=url)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"the engine at {url} does not answer: {exc}")
    return client


def assert_no_leftovers(client, under: str, grace: float = 5.0) -> None:
    deadline = time.monotonic() + grace
    while (left := our_containers(client, under)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for container in left:
        container.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


@pytest.fixture
def engine_repo(make_repo, busybox_image, engine_url: str, engine: object) -> Iterator:
    """A repo whose dvc talks to `engine_url` (DOCKER_HOST); nothing of it may be left on that engine."""
    repo = make_repo(busybox_image)
    repo.env["DOCKER_HOST"] = engine_url
    yield repo
    assert_no_leftovers(engine, str(repo.path))

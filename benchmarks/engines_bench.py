"""One stage container on each engine (Podman, a socket proxy, rootless) vs rootful Docker (ContainerRunner, no DVC).

Prints numbers, asserts nothing. Usage (as root, engines started by
scripts/engines/*.sh; an endpoint that does not answer is skipped):

    python benchmarks/engines_bench.py [--reps 10]

For each endpoint: median wall time of `ContainerRunner.run` for `true`
(create, wait, attach, start, stream, exit status: the plugin's whole
lifecycle of one command line), and its ratio to rootful Docker. Rounds
alternate between endpoints so drift hits all of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import docker
from docker.types import Mount

from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.api.engine import probe
from dvc_docker_exec.backends.runner import ContainerRunner
from dvc_docker_exec.types.spec import StageFacts, build_spec

IMAGE = "dvc-docker-exec-test/busybox:latest"
ENDPOINTS = {
    "docker (rootful)": "unix:///var/run/docker.sock",
    "podman 4.3 (rootful)": "unix:///run/dde-podman/podman.sock",
    "docker via haproxy": "unix:///run/dde-proxy/dde-i9-context/proxy.sock",
    "docker rootless": "unix:///run/user/{uid}/docker.sock",
}


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    try:
        rootless_uid = os.stat("/home/dde-rootless").st_uid
    except OSError:
        rootless_uid = -1
    folder = tempfile.mkdtemp(prefix="dde-engines-bench-")
    os.chmod(folder, 0o755)
    runners = {}
    for name, url in ENDPOINTS.items():
        url = url.format(uid=rootless_uid)
        try:
            client = docker.DockerClient(base_url=url)
            client.ping()
            client.images.get(IMAGE)
        except Exception as exc:  # noqa: BLE001
            print(f"{name:24s} skipped: {exc}")
            continue
        engine = probe(client.api)
        uid, gid = engine.stage_ids(os.getuid(), os.getgid())
        facts = StageFacts(addressing="bench", wdir=folder, repo_root=folder, mount_paths=(folder,))
        spec = build_spec(
            DockerSettings.from_mapping({"image": IMAGE}), facts, "true", {},
            lambda p, ro: Mount(target=p, source=p, type="bind", read_only=ro),
            uid=uid, gid=gid, pid=os.getpid(), tty=False,
        )
        runners[name] = (ContainerRunner(client, engine), spec)
        runners[name][0].run(spec, "true")  # warm-up
    times: dict = {name: [] for name in runners}
    for _ in range(args.reps):
        for name, (runner, spec) in runners.items():
            start = time.perf_counter()
            runner.run(spec, "true")
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["docker (rootful)"]) if times.get("docker (rootful)") else None
    figures = {}
    for name, values in times.items():
        median = statistics.median(values)
        ratio = f"  x{median / base:.2f}" if base else ""
        print(f"{name:24s} median {median * 1000:7.1f} ms over {len(values)} runs{ratio}")
        figures[name] = f"{median * 1000:.0f} ms{ratio}"
    return figures


if __name__ == "__main__":
    main()

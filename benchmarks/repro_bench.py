"""Plugin vs hand-written `docker run --rm` in each cmd, measured side by side.

Prints numbers, asserts nothing. Usage (Docker Engine and test images ready,
see scripts/test.sh):

    python benchmarks/repro_bench.py [--reps 3] [--stages 10] [--mb 100]

1. `dvc repro -f` of a pipeline of N trivial stages: plugin vs the same
   pipeline with `docker run --rm ...` written into every cmd (same image,
   mounts and user). Repetitions alternate so drift hits both sides.
   The first line compares each side with its default network (plugin: host,
   `docker run`: bridge); the others put both on the same network.
2. One stage writing ~100 MB to stdout (DVC's stdout goes to a file), both on host.
3. The import hook's cost at Python start (`python -X importtime`, wheel install).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMAGE = "dvc-docker-exec-test/busybox:latest"


def sh(args, cwd, env, out=subprocess.DEVNULL) -> None:
    proc = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        sys.exit(f"{shlex.join(map(str, args))} failed in {cwd}:\n{proc.stderr}")


def make_repo(root: Path, env: dict, cmds: list, network: str = "host") -> Path:
    root.mkdir(parents=True)
    sh(["git", "init", "-q"], root, env)
    sh([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    stages = "".join(f"  s{i}:\n    cmd: {json.dumps(cmd)}\n" for i, cmd in enumerate(cmds))  # JSON is YAML
    (root / "dvc.yaml").write_text("stages:\n" + stages)
    return root


def configure_plugin(root: Path, env: dict, network: str) -> None:
    for key, value in (("image", IMAGE), ("pull", "never"), ("network", network)):
        sh([sys.executable, "-m", "dvc", "config", f"docker.{key}", value], root, env)


def hand_written(cmd: str, root: Path, network: str = "bridge") -> str:
    """What a user writes without the plugin: same image, mount, user, workdir (network as given)."""
    net = "" if network == "bridge" else f"--network {network} "
    return (
        f"docker run --rm --init {net}--user {os.getuid()}:{os.getgid()} "
        f"-v {root}:{root} -w {root} {IMAGE} sh -c {shlex.quote(cmd)}"
    )


def timed_repro(root: Path, env: dict, out_path: Path | None = None) -> float:
    out = open(out_path, "wb") if out_path else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        sh([sys.executable, "-m", "dvc", "repro", "-f"], root, env, out=out)
        return time.perf_counter() - start
    finally:
        if out_path:
            out.close()


def compare(name: str, plugin: Path, manual: Path, env: dict, reps: int, out_dir: Path | None = None) -> str:
    times: dict = {"plugin": [], "docker run": []}
    for rep in range(reps):
        order = [("plugin", plugin), ("docker run", manual)]
        if rep % 2:
            order.reverse()
        for label, root in order:
            out = out_dir / f"{label.replace(' ', '_')}.out" if out_dir else None
            times[label].append(timed_repro(root, env, out))
    p, m = statistics.median(times["plugin"]), statistics.median(times["docker run"])
    print(f"{name}")
    print(f"  plugin       median {p:7.2f} s   runs {', '.join(f'{t:.2f}' for t in times['plugin'])}")
    print(f"  docker run   median {m:7.2f} s   runs {', '.join(f'{t:.2f}' for t in times['docker run'])}")
    print(f"  ratio plugin / hand-written docker run: {p / m:.2f}x")
    return f"{p / m:.2f}x"


def hook_cost(reps: int = 15) -> str:
    """What the .pth line costs at every Python start, as a wheel install has it.

    A wheel of this checkout is installed with --target into a temp dir and the
    .pth's import is timed from there (median of `reps` fresh interpreters).
    An editable install (`pip install -e .`) adds setuptools' own editable
    finder on top (~15 ms here), which is not ours.
    """
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="dde-hook-") as tmp:
        source, target = Path(tmp) / "src", Path(tmp) / "site"
        source.mkdir()
        for name in ("setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "dvc_docker_exec.pth"):
            shutil.copy(repo / name, source / name)
        shutil.copytree(repo / "dvc_docker_exec", source / "dvc_docker_exec")  # build from a copy: no build/ here
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(source)],
            check=True,
            capture_output=True,
        )
        env = {**os.environ, "PYTHONPATH": str(target)}
        totals = []
        for _ in range(reps):
            proc = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", "import dvc_docker_exec_hook"],
                capture_output=True,
                text=True,
                env=env,
            )
            rows = [line.split("|") for line in proc.stderr.splitlines()]
            ours = [int(row[1]) for row in rows if len(row) == 3 and row[2].strip().startswith("dvc_docker_exec")]
            totals.append(max(ours))  # the outermost import's cumulative time
        loaded = subprocess.run(
            [sys.executable, "-c", "import sys, dvc_docker_exec_hook; print('dvc' in sys.modules, 'docker' in sys.modules)"],
            capture_output=True,
            text=True,
            env=env,
        ).stdout.strip()
    print("import hook at Python start (wheel install, python -X importtime):")
    print(f"  median {statistics.median(totals) / 1000:.3f} ms, min {min(totals) / 1000:.3f} ms over {reps} interpreters")
    print(f"  dvc / docker imported by the hook: {loaded}")
    return f"{statistics.median(totals) / 1000:.3f} ms"


def main() -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stages", type=int, default=10)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    with tempfile.TemporaryDirectory(prefix="dde-bench-") as tmp:
        base = Path(tmp)
        trivial = [f"echo {i} > out{i}.txt" for i in range(args.stages)]
        plugins, manuals = {}, {}
        for network in ("host", "none", "bridge"):
            plugins[network] = make_repo(base / f"plugin-{network}", env, trivial)
            configure_plugin(plugins[network], env, network)
            manual_root = base / f"manual-{network}"
            manuals[network] = make_repo(manual_root, env, [hand_written(c, manual_root, network) for c in trivial])
        # The headline: each side with its default network, as a user gets it
        # (the plugin's default is host; `docker run` without --network is bridge).
        figures = {}
        figures["plugin / docker run, defaults"] = compare(
            f"{args.stages} trivial stages, defaults: plugin (network host) vs docker run (bridge)",
            plugins["host"],
            manuals["bridge"],
            env,
            args.reps,
        )
        for network in ("host", "none", "bridge"):
            figures[f"plugin / docker run, network {network}"] = compare(
                f"{args.stages} trivial stages, both on network {network}", plugins[network], manuals[network], env, args.reps
            )

        size = args.mb * 1_000_000
        big = f"head -c {size} /dev/zero | tr '\\0' 'x'"
        plugin = make_repo(base / "plugin-big", env, [big])
        configure_plugin(plugin, env, "host")
        manual_root = base / "manual-big"
        manual = make_repo(manual_root, env, [hand_written(big, manual_root, "host")])
        figures[f"plugin / docker run, {args.mb} MB stdout"] = compare(
            f"one stage writing {args.mb} MB to stdout (to a file)", plugin, manual, env, args.reps, base
        )
        figures["import hook at Python start"] = hook_cost()
    return figures


if __name__ == "__main__":
    main()

"""What the `.pth` hook costs every Python start: a start with the plugin's .pth vs a bare `python -c pass`.

Compares, side by side in one run (interleaved, median of N):

* the hook's own import (``python -X importtime``, cumulative µs of
  ``dvc_docker_exec_hook``; issue 22 goal: at most 300 µs), and
* the wall-clock time of a whole Python start with the plugin's site folder
  (its .pth, the hook module, the package, as a wheel lays them out) against
  the same start with an empty site folder.

Both starts run with ``-I -S`` and add the folder with ``site.addsitedir``, so
nothing else of this machine's site-packages (such as an editable install's
finder) is in the measurement. Prints; asserts nothing.

Usage: python benchmarks/hook_bench.py [--reps N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
HOOK = "dvc_docker_exec_hook"
START = "import site, sys; site.addsitedir(sys.argv[1])"
LOADED = START + "; print('dvc_docker_exec' in sys.modules, 'dvc' in sys.modules, 'docker' in sys.modules)"


def site_like_a_wheel(folder: Path) -> None:
    """What a wheel puts at the root of site-packages: the .pth, the hook module, the package."""
    shutil.copy2(ROOT / "dvc_docker_exec.pth", folder)
    shutil.copy2(ROOT / f"{HOOK}.py", folder)
    shutil.copytree(ROOT / "dvc_docker_exec", folder / "dvc_docker_exec", ignore=shutil.ignore_patterns("__pycache__"))


def python(*args: str) -> Tuple[float, str]:
    """(seconds, stderr) of one interpreter start."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-I", "-S", *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, proc.stderr


def hook_us(stderr: str) -> int:
    """The cumulative µs of the hook module in `-X importtime` output."""
    for line in stderr.splitlines():
        fields = line.split("|")
        if len(fields) == 3 and fields[2].strip() == HOOK:
            return int(fields[1])
    raise RuntimeError(f"{HOOK} was not imported:\n{stderr}")


def measure(reps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dde-hook-") as tmp:
        plugin, empty = Path(tmp, "plugin"), Path(tmp, "empty")
        plugin.mkdir()
        empty.mkdir()
        site_like_a_wheel(plugin)
        python("-c", START, str(plugin))  # writes the .pyc files once (as pip does at install)
        hook: List[int] = []
        with_pth: List[float] = []
        bare: List[float] = []
        for _ in range(reps):  # interleaved: a load change on the machine hits both sides alike
            hook.append(hook_us(python("-X", "importtime", "-c", START, str(plugin))[1]))
            with_pth.append(python("-c", START, str(plugin))[0])
            bare.append(python("-c", START, str(empty))[0])
        loaded = subprocess.run(
            [sys.executable, "-I", "-S", "-c", LOADED, str(plugin)], capture_output=True, text=True, check=True
        ).stdout.split()
    return {
        "hook_us": statistics.median(hook),
        "with_ms": statistics.median(with_pth) * 1e3,
        "bare_ms": statistics.median(bare) * 1e3,
        "loaded": dict(zip(("dvc_docker_exec", "dvc", "docker"), loaded)),
    }


def main(argv: List[str] = None) -> Dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args(argv)
    found = measure(args.reps)
    print(f"Python start with the plugin's .pth vs bare (median of {args.reps}, {sys.executable}):")
    print(f"  {HOOK} import (-X importtime, cumulative): {found['hook_us']:.0f} µs (goal <= 300 µs)")
    print(
        f"  wall clock: bare {found['bare_ms']:.2f} ms, with the .pth {found['with_ms']:.2f} ms "
        f"({found['with_ms'] - found['bare_ms']:+.2f} ms, {found['with_ms'] / found['bare_ms']:.3f}x)"
    )
    print(f"  imported at start (should all be False): {found['loaded']}")
    # the headline figures of `python -m benchmarks hook`'s table
    return {
        "hook import": f"{found['hook_us']:.0f} µs (goal <= 300 µs)",
        "start with the .pth / bare": f"{found['with_ms'] / found['bare_ms']:.3f}x",
        "imported at start": ", ".join(name for name, seen in found["loaded"].items() if seen != "False") or "nothing",
    }


if __name__ == "__main__":
    main()

"""The README's main job: scripts/run-example.sh runs the example pipeline in containers."""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, recorded_events

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "dvc-docker-exec-example:latest"  # the script's default DDE_EXAMPLE_IMAGE


def test_run_example_script(tmp_path, docker_client, no_leftovers):
    target = tmp_path / "example"
    env = {k: v for k, v in os.environ.items() if k != "DDE_EXAMPLE_IMAGE"}
    env["DDE_VENV"] = sys.prefix  # this venv, already set up
    with recorded_events(docker_client, repo=str(target)) as events:
        proc = subprocess.run(
            [str(ROOT / "scripts" / "run-example.sh"), str(target)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (target / "metrics.json").exists() and (target / "dvc.lock").exists()

    # The daemon's own record, not the plugin's log line: `dvc repro` ran all three
    # stages in containers of the example image, then `dvc exp run -S train.lr=...`
    # reran train and evaluate; each container started, exited 0 and was removed.
    def of(event: str) -> dict:
        return {e["id"]: e["Actor"]["Attributes"] for e in events if e.get("Action") == event}

    created, started, died, destroyed = of("create"), of("start"), of("die"), of("destroy")
    stages = collections.Counter(attrs["dvc-docker-exec.stage"] for attrs in created.values())
    assert stages == {"prepare": 1, "train": 2, "evaluate": 2}, stages
    # created from the built image's ID (what is recorded), the tag in our label
    assert {attrs["dvc-docker-exec.image"] for attrs in created.values()} == {IMAGE}
    assert set(started) == set(died) == set(destroyed) == set(created)
    assert {attrs["exitCode"] for attrs in died.values()} == {"0"}

"""The README's main job: scripts/run-example.sh runs the example pipeline in containers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_run_example_script(tmp_path, docker_client, no_leftovers):
    target = tmp_path / "example"
    env = {**os.environ, "DDE_VENV": sys.prefix}  # this venv, already set up
    proc = subprocess.run(
        [str(ROOT / "scripts" / "run-example.sh"), str(target)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "all 3 stages ran in containers" in proc.stdout
    assert (target / "metrics.json").exists() and (target / "dvc.lock").exists()

"""The scripts that start daemons for the tests (scripts/ensure-docker.sh, scripts/engines/*.sh).

Why: daemons outlive the script that starts them. Started from a test checkout
that was later deleted, Podman's service kept a deleted working folder, and
conmon then failed every run ("Failed to get working directory").
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import ROOT

SCRIPTS = sorted((ROOT / "scripts" / "engines").glob("*.sh")) + [ROOT / "scripts" / "ensure-docker.sh"]
DAEMON_START = re.compile(r"^\s*(\S+\s+)?(setsid|haproxy -D|\"\$\(command -v sshd)")


def test_lib_moves_to_the_root_folder(tmp_path) -> None:
    out = subprocess.run(
        ["bash", "-c", f'PROG=t; . "{ROOT}/scripts/engines/lib.sh"; pwd'], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.stdout.strip() == "/", out.stderr


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s.name != "lib.sh"], ids=lambda s: s.name)
def test_daemons_start_outside_the_callers_folder(script) -> None:
    lines = script.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if DAEMON_START.match(line)]
    moved = [i for i, line in enumerate(lines) if line.strip() == "cd /" or "lib.sh\"" in line and line.startswith(".")]
    assert starts, f"{script.name}: no daemon start found (update DAEMON_START)"
    assert moved and min(moved) < min(starts), f"{script.name} starts a daemon before `cd /`"

"""`dvc-docker-exec ps|prune`: leftovers of a SIGKILLed dvc are found by label and removed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import LABEL

pytestmark = pytest.mark.docker


def test_prune_removes_orphans_only(docker_client, busybox_image, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    labels = {
        LABEL: "1",
        f"{LABEL}.stage": "orphan",
        f"{LABEL}.repo": str(tmp_path),
        f"{LABEL}.host": os.uname().nodename,
    }
    orphan = docker_client.containers.create(busybox_image, "true", labels={**labels, f"{LABEL}.pid": str(dead.pid)})
    live = docker_client.containers.create(
        busybox_image, "true", labels={**labels, f"{LABEL}.stage": "live", f"{LABEL}.pid": "1"}
    )
    try:
        ps = subprocess.run([sys.executable, "-m", "dvc_docker_exec.cli", "ps"], capture_output=True, text=True)
        assert ps.returncode == 0, ps.stderr
        rows = {line.split()[0]: line.split() for line in ps.stdout.splitlines() if line.strip()}
        # columns: id, status, state, stage, repo
        assert rows[orphan.short_id][2:4] == ["orphaned", "orphan"], ps.stdout
        assert rows[live.short_id][2:4] == ["-", "live"], ps.stdout
        prune = subprocess.run([sys.executable, "-m", "dvc_docker_exec.cli", "prune"], capture_output=True, text=True)
        assert prune.returncode == 0, prune.stderr
        names = {c.id for c in docker_client.containers.list(all=True, filters={"label": LABEL})}
        assert orphan.id not in names and live.id in names
    finally:
        for c in (orphan, live):
            try:
                c.remove(force=True)
            except Exception:  # noqa: BLE001
                pass

"""DVC run by a non-root user: outputs belong to that user, not root (field notes #1)."""

from __future__ import annotations

import pytest

from tests.conftest import setpriv

pytestmark = pytest.mark.docker


def test_outputs_belong_to_invoking_user(tester, make_user_repo, busybox_image, no_leftovers):
    entry, prefix = tester
    repo = make_user_repo(entry, prefix, busybox_image)
    cmd = "id -u > uid.txt; echo $HOME > home.txt; touch $HOME/writable; mkdir -p out && echo x > out/f"
    repo.dvc("stage", "add", "-n", "own", "-o", "out", cmd)
    repo.dvc("repro")

    assert repo.read("uid.txt").strip() == str(entry.pw_uid)
    for name in ("uid.txt", "out", "out/f"):
        assert (repo.path / name).stat().st_uid == entry.pw_uid, name
    assert repo.read("home.txt").strip() == "/tmp/dvc-docker-exec-home"


def test_socket_permission_denied_is_one_clear_line(tester, make_user_repo, busybox_image):
    entry, _ = tester
    repo = make_user_repo(entry, setpriv(entry, "clear"), busybox_image)  # not in the socket's group
    repo.dvc("stage", "add", "-n", "s", "echo hi")
    proc = repo.dvc("repro", check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "permission denied on the Docker socket" in err and "docker' group" in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1

"""Unit tests for the lifecycle guarantees of issue 7 (no daemon): signals, locks, config copies, protection mounts."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import types
from pathlib import Path
from typing import List

import pytest
from docker.types import Mount
from requests.exceptions import ConnectionError as RequestsConnectionError
from urllib3.exceptions import ProtocolError

from dvc_docker_exec.stage import overlays
from dvc_docker_exec.backends import runner
from dvc_docker_exec.stage import mounts as stage_mounts
from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.errors import DockerExecError, StageInterruptedError
from dvc_docker_exec.types.spec import StageFacts, build_spec
from tests.unit.test_runner_unit import FakeDockerClient, FakeRunAPI

# --- StageSignals ----------------------------------------------------------------------------------


def test_signal_is_deferred_until_check() -> None:
    with pytest.raises(StageInterruptedError, match="interrupted by SIGTERM"):
        with runner.StageSignals() as signals:
            os.kill(os.getpid(), signal.SIGTERM)  # a step in progress is not cut
            assert signals.received == signal.SIGTERM
            signals.check()


def test_signal_raises_at_once_when_interruptible() -> None:
    with runner.StageSignals() as signals:
        with pytest.raises(StageInterruptedError, match="SIGHUP"):
            with signals.interruptible():
                os.kill(os.getpid(), signal.SIGHUP)
                raise AssertionError("not interrupted")
        os.kill(os.getpid(), signal.SIGTERM)  # a second one during cleanup only counts
        assert signals.count == 2 and signals.received == signal.SIGHUP
        signals.received = None  # handled: let the block end normally


def test_signal_during_the_last_step_raises_at_the_end() -> None:
    with pytest.raises(KeyboardInterrupt):
        with runner.StageSignals():
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sighup_left_alone_when_ignored() -> None:
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with runner.StageSignals() as signals:
            os.kill(os.getpid(), signal.SIGHUP)
            assert signals.received is None
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


# --- the runner: signals at each step, a lost daemon -------------------------------------------------


def spec_for():
    settings = DockerSettings.from_mapping({"image": "busybox"})
    facts = StageFacts(addressing="s", wdir="/r", repo_root="/r", mount_paths=("/r",))
    return build_spec(
        settings, facts, "echo hi", {},
        lambda p, ro: Mount(target=p, source=p, type="bind", read_only=ro), uid=1, gid=1, pid=1, tty=False,
    )


class SignalledAPI(FakeRunAPI):
    """A signal arrives during one API call; the call completes (nothing is cut half-way)."""

    def __init__(self, during: str, **kwargs):
        super().__init__(**kwargs)
        self.during = during

    def _maybe_fail(self, name: str) -> None:
        super()._maybe_fail(name)
        if name == self.during:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("during", ["create_container", "wait", "attach_socket", "start"])
def test_signal_during_a_call_removes_the_container(during: str) -> None:
    api = SignalledAPI(during)
    with pytest.raises(StageInterruptedError):
        runner.ContainerRunner(FakeDockerClient(api)).run(spec_for(), "echo hi")  # type: ignore[arg-type]
    assert api.removed == ["c0ffee" * 10]  # by id: the create had completed
    if during != "start":
        assert "start" not in api.calls  # never started after the signal


class LostAPI(FakeRunAPI):
    """The daemon stops answering while the command runs; it answers again for the cleanup, or never."""

    def __init__(self, comes_back: bool):
        super().__init__()
        self.comes_back = comes_back
        self.refusals = 0

    def _refuse(self) -> None:
        if not self.comes_back or self.refusals == 0:
            self.refusals += 1
            raise RequestsConnectionError("('Connection aborted.', ConnectionRefusedError(111))")

    def _post(self, url, params, stream, timeout):
        self._maybe_fail("wait")

        def read():
            raise ProtocolError("Connection broken: IncompleteRead(0 bytes read)")

        return types.SimpleNamespace(raw=types.SimpleNamespace(read=read), close=lambda: None)

    def inspect_container(self, cid: str) -> dict:
        self._refuse()
        return super().inspect_container(cid)

    def kill(self, cid: str, signal: int) -> None:
        self._refuse()
        super().kill(cid, signal)

    def remove_container(self, cid: str, force: bool = False, v: bool = False) -> None:
        self._refuse()
        super().remove_container(cid, force, v)


@pytest.mark.parametrize("comes_back", [True, False])
def test_lost_daemon_is_one_clear_error(comes_back: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    api = LostAPI(comes_back)
    endpoint = types.SimpleNamespace(describe=lambda: "'unix:///x.sock' (from DOCKER_HOST)", client=lambda: FakeDockerClient(api))
    with pytest.raises(DockerExecError) as info:
        runner.ContainerRunner(FakeDockerClient(api), endpoint=endpoint).run(spec_for(), "echo hi")  # type: ignore[arg-type]
    text = str(info.value)
    assert text.startswith("lost the connection to the Docker daemon at 'unix:///x.sock' (from DOCKER_HOST)")
    assert "result is unknown" in text and "Connection aborted" not in text and "\n" not in text
    if comes_back:
        assert "container c0ffeec0ffee was stopped and removed" in text
    else:
        assert "container c0ffeec0ffee could not be removed (the daemon does not answer)" in text
        assert "docker rm -f c0ffeec0ffee" in text


# --- the lock folder -----------------------------------------------------------------------------------


def test_lock_folder_is_private(tmp_path: Path) -> None:
    folder = runner.lock_folder({"HOME": str(tmp_path / "home")}, uid=os.getuid())
    info = os.lstat(folder)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def test_lock_folder_skips_planted_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / "dvc-docker-exec").symlink_to(tmp_path)  # a symlink: not followed
    (shared / f"dvc-docker-exec-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(shared / f"dvc-docker-exec-{os.getuid()}", 0o777)  # writable by others: not private
    home = tmp_path / "home"
    folder = runner.lock_folder({"XDG_RUNTIME_DIR": str(runtime), "HOME": str(home)})
    assert folder == str(home / ".cache" / "dvc-docker-exec")


def test_lock_folder_none_private_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "dvc-docker-exec-4242").symlink_to("/")
    with pytest.raises(DockerExecError, match=r"no private folder for dvc-docker-exec's locks: .*\(not a folder\)"):
        runner.lock_folder({}, uid=4242)


def test_lock_never_waits_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "lock_folder", lambda: str(tmp_path))
    with runner._file_lock("pull:x"):
        held = os.path.join(tmp_path, os.listdir(tmp_path)[0])
        # another open file description: flock conflicts as between two processes
        with pytest.raises(DockerExecError, match=rf"gave up after 0.2s waiting for another dvc process \(pid {os.getpid()}\) pulling"):
            with runner._file_lock("pull:x", timeout=0.2, what="pulling image 'x'"):
                pass
        assert os.path.exists(held)


# --- config copies -------------------------------------------------------------------------------------


def test_copy_keeps_the_originals_mode(tmp_path: Path) -> None:
    original = tmp_path / "config.local"
    original.write_text("[docker]\n  network = none\n['remote \"r\"']\n  password = s3cret\n")
    os.chmod(original, 0o600)
    old_umask = os.umask(0)  # the copy must not depend on a tight umask
    try:
        overlays._write_without_section(str(original), str(tmp_path / "copy"))
    finally:
        os.umask(old_umask)
    copy = tmp_path / "copy"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert "s3cret" in copy.read_text() and "docker" not in copy.read_text()


def test_private_folder_is_locked_and_removed(tmp_path: Path) -> None:
    with overlays.private_folder(str(tmp_path)) as folder:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        overlays.reap_stale_overlays(str(tmp_path))  # a live folder is not reaped
        assert os.path.isdir(folder)
    assert os.listdir(tmp_path) == []


def test_stale_folder_of_a_dead_process_is_reaped(tmp_path: Path) -> None:
    parent = tmp_path / "docker-exec"
    stale = parent / "123-dead"
    stale.mkdir(parents=True)
    (stale / "config.local").write_text("secret")
    live = parent / "456-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    (tmp_path / "elsewhere").mkdir()
    (parent / "link").symlink_to(tmp_path / "elsewhere")  # planted: never followed
    try:
        overlays.reap_stale_overlays(str(parent))
    finally:
        os.close(fd)
    assert sorted(os.listdir(parent)) == ["456-live", "link"]
    assert (tmp_path / "elsewhere").is_dir()


# --- protection mounts -----------------------------------------------------------------------------------


def fake_stage(root: Path, git_root: Path, global_dir: Path) -> object:
    repo = types.SimpleNamespace(
        root_dir=str(root),
        dvc_dir=str(root / ".dvc"),
        scm=types.SimpleNamespace(root_dir=str(git_root)),
        config=types.SimpleNamespace(files={"system": "/etc/xdg/dvc/config", "global": str(global_dir / "config")}),
    )
    return types.SimpleNamespace(repo=repo, addressing="s")


def test_protected_paths_cover_every_reachable_dvc_folder(tmp_path: Path) -> None:
    git_root = tmp_path / "git"
    sub = git_root / "sub"
    for dvc_dir in (git_root / ".dvc", sub / ".dvc"):
        dvc_dir.mkdir(parents=True)
    (git_root / "conf").mkdir()
    stage = fake_stage(sub, git_root, git_root / "conf" / "dvc")  # global config dir: not there yet
    cache = str(sub / ".dvc" / "cache")
    settings = DockerSettings.from_mapping({"image": "busybox"})
    stage.repo.cache = types.SimpleNamespace(local_cache_dir=cache)
    found = dict(stage_mounts.protection_rules(stage, [str(git_root), str(sub), cache], settings))
    for dvc_dir in (git_root / ".dvc", sub / ".dvc"):
        assert found[str(dvc_dir)] is True
    dvc_dir = sub / ".dvc"  # the running project's: its tmp is written by DVC in the stage
    assert found[str(dvc_dir / "tmp")] is False
    assert found[str(dvc_dir / "tmp" / "exps")] is True
    assert found[str(dvc_dir / "tmp" / "docker-exec")] is True
    assert str(git_root / ".dvc" / "tmp") not in found  # a neighbour's: read-only as a whole
    assert found[cache] is False and os.path.isdir(cache)
    assert found[str(sub)] is False  # a pin: a mount point cannot be renamed
    assert str(git_root / ".git") not in found  # no .git here: nothing made up
    assert found[str(git_root / "conf" / "dvc")] is True and (git_root / "conf" / "dvc").is_dir()  # made, then covered
    assert "/etc/xdg" not in str(found)  # not mounted: nothing to protect


def test_the_whole_git_folder_is_protected(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    stage = fake_stage(root, root, tmp_path / "nowhere")
    found = dict(stage_mounts.protection_rules(stage, [str(root)], DockerSettings.from_mapping({"image": "b"})))
    assert found[str(root / ".git")] is True


def test_protection_follows_every_alias_of_the_repo() -> None:
    settings = DockerSettings.from_mapping({"image": "busybox", "volumes": "/repo:/alias"})
    facts = StageFacts(
        addressing="s", wdir="/repo", repo_root="/repo", mount_paths=("/repo",),
        protected=(("/repo/.dvc", True), ("/repo/.dvc/tmp", False)),
    )
    spec = build_spec(
        settings, facts, "true", {},
        lambda p, ro: Mount(target=p, source=p, type="bind", read_only=ro), uid=0, gid=0, pid=1, tty=False,
    )
    mounts = {m["Target"]: m for m in spec.mounts}
    for target in ("/repo/.dvc", "/alias/.dvc"):
        assert mounts[target]["ReadOnly"] is True and mounts[target]["Source"] == "/repo/.dvc"
    for target in ("/repo/.dvc/tmp", "/alias/.dvc/tmp"):
        assert not mounts[target].get("ReadOnly") and mounts[target]["Source"] == "/repo/.dvc/tmp"


def test_a_users_volume_at_a_protected_place_wins() -> None:
    settings = DockerSettings.from_mapping({"image": "busybox", "volumes": "/data/tmp:/repo/.dvc/tmp"})
    facts = StageFacts("s", "/repo", "/repo", ("/repo",), protected=(("/repo/.dvc", True), ("/repo/.dvc/tmp", False)))
    spec = build_spec(
        settings, facts, "true", {},
        lambda p, ro: Mount(target=p, source=p, type="bind", read_only=ro), uid=0, gid=0, pid=1, tty=False,
    )
    targets: List[str] = [m["Target"] for m in spec.mounts]
    assert targets.count("/repo/.dvc/tmp") == 1
    assert {m["Target"]: m["Source"] for m in spec.mounts}["/repo/.dvc/tmp"] == "/data/tmp"


def test_protection_skipped_inside_a_named_volume() -> None:
    settings = DockerSettings.from_mapping({"image": "busybox"})
    facts = StageFacts("s", "/repo", "/repo", ("/repo",), protected=(("/repo/.dvc", True),))
    spec = build_spec(
        settings, facts, "true", {},
        lambda p, ro: Mount(target="/repo", source="ws", type="volume", read_only=ro), uid=0, gid=0, pid=1, tty=False,
    )
    assert [m["Target"] for m in spec.mounts] == ["/repo"]



# --- the Swarm backend: same guarantees --------------------------------------------------------------


class FakeSwarmAPI:
    """create_service works; then the manager stops answering (or answers again for the cleanup)."""

    def __init__(self, comes_back: bool, signal_in_create: bool = False):
        self.comes_back, self.signal_in_create = comes_back, signal_in_create
        self.removed: List[str] = []

    def create_service(self, **kwargs) -> dict:
        if self.signal_in_create:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"ID": "5e41ce" * 4}

    def _url(self, path: str, *args: str) -> str:
        return path

    def _get(self, url: str, params: dict, stream: bool):
        return types.SimpleNamespace(iter_content=lambda size: iter([]), close=lambda: None)

    def _get_raw_response_socket(self, response):
        raise OSError("no socket")

    def tasks(self, filters: dict) -> list:
        if self.removed:
            return []
        raise RequestsConnectionError("('Connection aborted.', RemoteDisconnected('Remote end closed'))")

    def remove_service(self, service_id: str) -> None:
        if not self.comes_back:
            raise RequestsConnectionError("('Connection aborted.', ConnectionRefusedError(111))")
        self.removed.append(service_id)


@pytest.mark.parametrize("comes_back", [True, False])
def test_swarm_lost_manager_is_one_clear_error(comes_back: bool) -> None:
    from dvc_docker_exec.backends.swarm import SwarmRunner

    api = FakeSwarmAPI(comes_back)
    endpoint = types.SimpleNamespace(describe=lambda: "'tcp://manager:2375' (from DOCKER_HOST)")
    with pytest.raises(DockerExecError) as info:
        SwarmRunner(types.SimpleNamespace(api=api), endpoint).run(spec_for(), "echo hi")
    text = str(info.value)
    assert text.startswith("lost the connection to the Docker daemon at 'tcp://manager:2375'") and "\n" not in text
    assert "Connection aborted" not in text
    if comes_back:
        assert "Swarm service 5e41ce5e41ce was removed" in text
    else:
        assert "could not be removed (the daemon does not answer): remove it with `docker service rm 5e41ce5e41ce`" in text


def test_swarm_signal_during_create_removes_the_service() -> None:
    from dvc_docker_exec.backends.swarm import SwarmRunner

    api = FakeSwarmAPI(comes_back=True, signal_in_create=True)
    with pytest.raises(StageInterruptedError):
        SwarmRunner(types.SimpleNamespace(api=api)).run(spec_for(), "echo hi")
    assert api.removed == ["5e41ce" * 4]


def test_pins_keep_the_mode_of_their_place(tmp_path: Path) -> None:
    """exp run --temp: the copy lies in the parent's read-only .dvc/tmp/exps; the folders between stay read-only."""
    parent = tmp_path / "parent"
    temp = parent / ".dvc" / "tmp" / "exps" / "run" / "tmpabc"
    (temp / ".dvc").mkdir(parents=True)
    (temp / ".git").mkdir()
    stage = fake_stage(temp, temp, tmp_path / "nowhere")
    stage.repo.cache = types.SimpleNamespace(local_cache_dir=str(parent / ".dvc" / "cache"))
    found = dict(stage_mounts.protection_rules(stage, [str(temp), str(parent)], DockerSettings.from_mapping({"image": "b"})))
    assert found[str(parent / ".dvc")] is True and found[str(parent / ".dvc" / "tmp" / "exps")] is True
    assert found[str(parent / ".dvc" / "tmp" / "exps" / "run")] is True  # a pin inside exps: read-only
    assert found[str(temp)] is False  # the copy itself is written by the stage
    assert found[str(temp / ".dvc")] is True and found[str(temp / ".git")] is True
    assert found[str(parent / ".dvc" / "cache")] is False

"""Shared fixtures.

Docker-dependent tests carry the ``docker`` marker (set by the fixtures that
need the engine). Without a reachable engine they skip on a laptop, but fail
when ``CI=true``: a CI run that silently skipped them would prove nothing.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from dvc_docker_exec.boundary.paths import is_within

ROOT = Path(__file__).resolve().parent.parent
LABEL = "dvc-docker-exec"
BUSYBOX = "dvc-docker-exec-test/busybox:latest"
PYTHON_DVC = "dvc-docker-exec-test/python-dvc:bookworm"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"no Docker Engine answers ({exc}); run scripts/ensure-docker.sh")
    return client


def _need_image(client, image: str) -> str:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        _unavailable(f"test image {image} is missing; run scripts/build-images.sh")
    return image


@contextmanager
def machine_lock(name: str) -> Iterator[None]:
    """Held while starting a shared engine or building a shared image (scripts/engines/*.sh, build-images.sh).

    Why: those scripts are idempotent, not safe to run twice at once; under pytest-xdist two workers (and
    on a shared machine two test runs) may call the same one at the same moment.
    """
    import fcntl

    fd = os.open(f"/tmp/dvc-docker-exec-{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def loopback_registry(folder: Path, auth: str = "") -> Iterator[str]:
    """Debian's docker-registry on a free loopback port; yields `127.0.0.1:PORT` (an insecure registry
    Docker accepts without configuration). `auth`: extra YAML for its config (e.g. htpasswd)."""
    import shutil
    import socket

    binary = shutil.which("docker-registry")
    if not binary:
        _unavailable("docker-registry is not installed; run scripts/ensure-docker.sh")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = folder / "config.yml"
    config.write_text(
        f"version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {folder / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n{auth}"
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "docker-registry did not start"
                assert proc.poll() is None, "docker-registry exited at start"
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def push_image(client, reference: str, *, tag_of: Optional[str] = None, remove: bool = False,
         auth_config: Optional[dict] = None) -> str:
    """Push `reference` (`registry/name:tag`; first tagged from the local image `tag_of` if given);
    every error line fails the test. `remove`: drop the local reference afterwards. Returns the digest."""
    name, tag = reference.rsplit(":", 1)
    if tag_of:
        client.images.get(tag_of).tag(name, tag)
    digest = None
    for line in client.api.push(name, tag=tag, stream=True, decode=True, auth_config=auth_config):
        assert "error" not in line, line
        digest = (line.get("aux") or {}).get("Digest") or digest
    if remove:
        client.images.remove(reference)
    assert digest, f"no digest for {reference}"
    return digest


def push_test_image(client, base: str, reference: str, auth_config: Optional[dict] = None, size: int = 0) -> str:
    """Push `reference` (`registry/name:tag`): `base` plus a layer of its own (something to download;
    `size` random bytes more, a layer no daemon has), then remove it locally, so that a stage must pull
    it. Returns its digest."""
    import io
    import tarfile

    name, tag = reference.rsplit(":", 1)
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for path, data in (("dde-pull-marker", reference.encode()), ("blob", os.urandom(size))):
            if data:
                info = tarfile.TarInfo(path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    helper = client.containers.create(base, "true", network_disabled=True)
    try:
        helper.put_archive("/", layer.getvalue())
        image = helper.commit(name, tag)
    finally:
        helper.remove(force=True)
    digest = push_image(client, reference, auth_config=auth_config)
    client.images.remove(image.id, force=True)
    return digest


def remove_repository(client, repository: str) -> None:
    """Remove every tag and digest of `repository` (`registry:port/name`) from the engine, by reference: an image
    other names keep (busybox, pulled back under a test's name) stays, one known only by these goes. Never by
    image ID: forced, that would untag every name of an image other tests use."""
    import docker

    for image in client.images.list(name=repository):
        for reference in [*image.tags, *image.attrs.get("RepoDigests", [])]:
            if reference.startswith((f"{repository}:", f"{repository}@")):
                try:
                    client.images.remove(reference, force=True)
                except docker.errors.ImageNotFound:
                    pass  # gone with the image whose last name another reference was


@pytest.fixture(scope="session")
def registry(tmp_path_factory, docker_client):
    """`127.0.0.1:PORT`: the one loopback registry of this test session (of this xdist worker); tests
    push under names of their own (a uuid). Loopback is an insecure registry Docker allows as is."""
    with loopback_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def write_dvc_yaml(repo, stages: dict) -> None:
    import yaml

    repo.write("dvc.yaml", yaml.safe_dump({"stages": stages}, sort_keys=False))


def commit_all(repo) -> None:
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "hostile change")


@pytest.fixture(scope="session")
def busybox_image(docker_client) -> str:
    return _need_image(docker_client, BUSYBOX)


@pytest.fixture(scope="session")
def python_dvc_image(docker_client) -> str:
    return _need_image(docker_client, PYTHON_DVC)


# Repos made by this test session live under these folders. Leftover checks
# look only at containers labelled with such a repo, so that two test
# sessions on one machine do not remove each other's containers.
SESSION_ROOTS: List[str] = []


def our_containers(client, under: Optional[str] = None) -> List:
    """Containers of the plugin whose repo lies under `under` (default: this session's repos)."""
    import docker

    roots = [under] if under else SESSION_ROOTS
    # ignore_removed: a container removed between the list and its inspect (AutoRemove, another session) is
    # skipped, not a 404; whole path components: session root .../pytest-13 must not match .../pytest-139/...
    for attempt in range(10):
        try:
            found = client.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
            break
        except docker.errors.APIError as exc:
            # Podman answers 500 "no such container" (not 404) for one removed between list and inspect
            if "no such container" not in str(exc).lower() or attempt == 9:
                raise
            time.sleep(0.1)
    return [c for c in found if any(is_within(c.labels.get(f"{LABEL}.repo", ""), r) for r in roots)]


@pytest.fixture(scope="session", autouse=True)
def _session_root(tmp_path_factory) -> None:
    SESSION_ROOTS.append(str(tmp_path_factory.getbasetemp()))


# Why a generous bound: a container whose command has ended may still be in
# the daemon's hands (AutoRemove, or a forced removal that answered 409 because
# one was under way) for a moment after dvc exits; on a loaded machine that
# moment can be seconds. Only such containers are waited for: a running or
# never-started container of ours is a leftover at once.
REMOVAL_GRACE = 60.0  # seconds


def _being_removed(container) -> bool:
    try:
        container.reload()
    except Exception:  # noqa: BLE001 - gone meanwhile
        return True
    state = container.attrs.get("State", {})
    auto_remove = container.attrs.get("HostConfig", {}).get("AutoRemove", False)
    return state.get("Status") == "removing" or (auto_remove and state.get("Status") in ("exited", "dead"))


@pytest.fixture
def no_leftovers(docker_client) -> Iterator[None]:
    """Every integration test asserts it leaves no container of ours behind."""
    before = {c.id for c in our_containers(docker_client)}
    yield
    deadline = time.monotonic() + REMOVAL_GRACE
    while True:
        left = [c for c in our_containers(docker_client) if c.id not in before]
        if not left or not all(_being_removed(c) for c in left) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for c in left:
        c.remove(force=True)
    assert not left, f"containers left behind: {[(c.name, c.status) for c in left]}"


def daemon_events(client, since: int, until: Optional[int] = None, **filters) -> List[dict]:
    """The daemon's event records from `since` up to `until` (default now + 1), filtered by the daemon
    (Engine API filters: type, event, label, ...). Events are filtered by whole seconds: `since` is
    inclusive. `client`: a DockerClient of any engine (a swarm node's too)."""
    until = int(time.time()) + 1 if until is None else until
    return list(client.events(since=since, until=until, decode=True, filters=filters))


def our_labels(**labels: str) -> List[str]:
    """The label filter of our containers carrying `labels` (label suffix=value, e.g. repo=PATH)."""
    return [LABEL] + [f"{LABEL}.{key}={value}" for key, value in labels.items()]


def container_events(client, event: str, since: int, until: Optional[int] = None, **labels: str) -> List[dict]:
    """The daemon's `event` records for containers of ours carrying `labels` (label suffix=value)."""
    return daemon_events(client, since, until, type="container", event=event, label=our_labels(**labels))


@contextmanager
def live_events(client, **filters) -> Iterator[List[dict]]:
    """with live_events(client, type=..., ...) as events: ... -> the daemon's events during the block that
    match `filters` (Engine API filters), received live, filled when the block ends.

    Why live: a `since` query reads the daemon's in-memory buffer of its last 256 events (Engine 20.10),
    and under pytest-xdist another worker's tests can push a long block's first events out of it
    (test_example once lost its first stage's create). The subscription starts before the block; after
    it, a query of the last seconds adds what the live stream had not delivered yet (deduplicated).
    Events of the block's first second from before the block are left out by their time (timeNano): a
    since-query is by whole seconds, so no test has to sleep past a second boundary first.
    """
    import threading

    began = time.time_ns()
    since = began // 1_000_000_000
    stream = client.events(since=since, decode=True, filters=filters)
    events: List[dict] = []

    def pump() -> None:
        try:
            for event in stream:
                events.append(event)
        except Exception:  # the stream is closed at the end of the block
            pass

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    received: List[dict] = []
    try:
        yield received
    finally:
        tail = daemon_events(client, max(since, int(time.time()) - 2), **filters)
        stream.close()
        reader.join(5)
        seen = set()
        for event in [*events, *tail]:
            key = (event.get("id"), event.get("Action"), event.get("timeNano"))
            if key not in seen and event.get("timeNano", began) >= began:
                seen.add(key)
                received.append(event)


@contextmanager
def recorded_events(client, **labels: str) -> Iterator[List[dict]]:
    """with recorded_events(client, repo=...) as events: ... -> our containers' events (all kinds) during
    the block, for the containers carrying `labels` (label suffix=value); see live_events."""
    with live_events(client, type="container", label=our_labels(**labels)) as events:
        yield events


@contextmanager
def recorded_pulls(client, image: str) -> Iterator[List[dict]]:
    """with recorded_pulls(client, image) as pulls: ... -> the daemon's pulls of exactly `image` (a test's
    registry port and unique name, not any loopback registry's) during the block; see live_events."""
    pulls: List[dict] = []
    with live_events(client, type="image", event="pull") as events:
        yield pulls
    pulls += [e for e in events if e.get("id") == image]


@contextmanager
def containers_created(client, repo: "DvcRepo") -> Iterator[List[str]]:
    """with containers_created(client, repo) as created: ... -> the stage names of the containers the
    daemon created for `repo` inside the block (from its create events: the `.stage` label), filled
    when the block ends. The proof that a run started no container (a run-cache hit), not log text.
    Received live (recorded_events), so a long block loses none under pytest-xdist."""
    created: List[str] = []
    with recorded_events(client, repo=str(repo.path)) as events:
        yield created
    created += sorted(e["Actor"]["Attributes"][f"{LABEL}.stage"] for e in events if e.get("Action") == "create")


# --- Scheduling under pytest-xdist (scripts/test.sh: -n 3 --dist loadfile --no-loadscope-reorder) --------
# A module's tests run on one worker (--dist loadfile): its module-scoped fixtures are made once. The Swarm
# modules are one unit: one worker starts the session's 3-node swarm (swarm/conftest), and its tests mostly
# wait on the swarm's scheduler (the machine is ~95 % idle while they run alone), so they run beside the
# others instead of in a pass of their own. Longest first (the Swarm's, then DVC's own slice): the other
# workers then share the many short modules and end together.
# Why a scheduler of our own and not `--dist loadgroup` with xdist_group marks: under pytest 9.2 loadgroup
# silently stops grouping (pytest-xdist#1386: it renames node ids through a field pytest no longer reads).
SWARM_TESTS = "tests/integration/swarm/"
LONGEST_FIRST = (SWARM_TESTS, "tests/dvc_suite/")


def xdist_unit(nodeid: str) -> str:
    """What runs on one worker: the Swarm tests together, every other module alone."""
    return SWARM_TESTS if nodeid.startswith(SWARM_TESTS) else nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)  # an xdist hook, called in the controller
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # another --dist asked for on the command line: xdist's own
    from xdist.scheduler import LoadFileScheduling

    class ModuleScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_unit(nodeid)

    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(config, items) -> None:
    strays = [i.nodeid for i in items if i.get_closest_marker("swarm") and not i.nodeid.startswith(SWARM_TESTS)]
    if strays:  # they would run beside the Swarm's worker, on a second swarm of the same name
        raise pytest.UsageError(f"Swarm tests belong under {SWARM_TESTS}: {', '.join(strays)}")
    rank = {prefix: i for i, prefix in enumerate(LONGEST_FIRST)}
    # a stable sort: the rest as collected; the scheduler hands out units in this order (--no-loadscope-reorder)
    items.sort(key=lambda item: next((r for p, r in rank.items() if item.nodeid.startswith(p)), len(rank)))


# Under CI=true a skip proves nothing, whoever wrote it (a plain skipif, an
# importorskip, a pytest.skip in a new test): the run fails and names them.
SKIPPED: List[str] = []


def pytest_runtest_logreport(report) -> None:
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        SKIPPED.append(f"{report.nodeid}: {reason}")


# Containers the suite left behind: found by this process, or (under pytest-xdist) reported by each worker
LEFT_BEHIND: List[str] = []


@pytest.hookimpl(optionalhook=True)  # an xdist hook, called in the controller as each worker ends
def pytest_testnodedown(node, error) -> None:
    LEFT_BEHIND.extend(getattr(node, "workeroutput", {}).get("dvc_docker_exec_left_behind", []))


def pytest_sessionfinish(session, exitstatus):
    """The whole suite leaves no container behind, either; under CI=true nothing was skipped.

    Under pytest-xdist each worker checks the repos of its own tests and hands the names to the controller,
    which fails the run (a worker's exit status is not the run's); the controller sees every report."""
    try:
        import docker

        left = our_containers(docker.from_env())
    except Exception:  # noqa: BLE001
        left = []
    for c in left:
        c.remove(force=True)
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:
        worker_output["dvc_docker_exec_left_behind"] = [c.name for c in left]
        return
    LEFT_BEHIND.extend(c.name for c in left)
    if SKIPPED:
        session.exitstatus = 1
        sys.stderr.write("\nERROR: CI=true but tests were skipped:\n" + "".join(f"  {s}\n" for s in SKIPPED))
    if LEFT_BEHIND:
        session.exitstatus = 1
        sys.stderr.write(f"\nERROR: containers left behind by the suite: {LEFT_BEHIND}\n")


class DvcRepo:
    """A temporary Git+DVC repo driven through the real `dvc` CLI in subprocesses."""

    def __init__(self, path: Path, env: dict):
        self.path = path
        self.env = env

    def run(self, *args: str, check: bool = True, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            args,
            cwd=kwargs.pop("cwd", self.path),
            env={**self.env, **kwargs.pop("env", {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    @staticmethod
    def dvc_argv() -> List[str]:
        return [sys.executable, "-m", "dvc"]

    def dvc(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.run(*self.dvc_argv(), *args, **kwargs)

    def write(self, name: str, text: str) -> Path:
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def lock(self) -> Optional[str]:
        path = self.path / "dvc.lock"
        return path.read_text() if path.exists() else None

    def config(self, key: str, value: Optional[str] = None, *, local: bool = False) -> None:
        """Write what `dvc config [--local] KEY VALUE` writes (`--unset KEY` when `value` is None), through
        DVC's own Config.edit in this process, validated against its schema (the plugin's section too):
        for tests where `dvc config` is not what is tested, since each dvc start-up costs ~0.65 s of CPU.
        KEY is section.option. A new config.local belongs to the repo's owner, as if they had run it."""
        from dvc.config import Config

        section, option = key.split(".")
        level = "local" if local else "repo"
        config = Config(dvc_dir=str(self.path / ".dvc"))
        with config.edit(level) as conf:
            if value is None:
                del conf[section][option]
            else:
                conf.setdefault(section, {})[option] = value
        owner = self.path.stat()
        os.chown(config.files[level], owner.st_uid, owner.st_gid)

    def stage_add(self, *argv: str) -> None:
        """Write what `dvc stage add ARGV` writes (the stage in dvc.yaml, .gitignore entries for cached outs)
        without starting dvc (about 2 s each on a loaded machine): for tests where `stage add` is not what
        is tested. Options: -n, -d, -o, -O, -p, -m, -M, -f; anything else is refused (use the real command).
        The files belong to the repo's owner, as if they had run the command."""
        import argparse

        import yaml

        parser = argparse.ArgumentParser(prog="stage_add", add_help=False)
        parser.add_argument("-n", "--name", required=True)
        parser.add_argument("-f", "--force", action="store_true")
        for flag in ("-d", "-o", "-O", "-p", "-m", "-M"):
            parser.add_argument(flag, action="append", default=[])
        parser.add_argument("command", nargs=argparse.REMAINDER)
        args = parser.parse_args(argv)
        assert args.command, f"stage_add{argv}: no command"
        dvc_yaml = self.path / "dvc.yaml"
        document = (yaml.safe_load(dvc_yaml.read_text()) if dvc_yaml.exists() else None) or {}
        stages = document.setdefault("stages", {})
        assert args.force or args.name not in stages, f"stage '{args.name}' already exists (stage_add -f replaces it)"
        # the key order of DVC's own dump (dvc/stage/serialize.py)
        stage: dict = {"cmd": " ".join(args.command)}
        if args.d:
            stage["deps"] = sorted(args.d)
        if args.p:
            stage["params"] = [entry for option in args.p for entry in _param_entries(option)]
        for key, cached, uncached in (("outs", args.o, args.O), ("metrics", args.m, args.M)):
            if cached or uncached:  # sorted by path, as DVC writes them
                paths = sorted(cached + uncached)
                stage[key] = [path if path in cached else {path: {"cache": False}} for path in paths]
        stages[args.name] = stage
        owner = self.path.stat()
        written = [self.write("dvc.yaml", yaml.safe_dump(document, sort_keys=False))]
        for out in args.o + args.m:  # DVC's Output.ignore(): cached outs inside the repo
            target = (self.path / out).resolve()
            if not target.is_relative_to(self.path.resolve()):
                continue
            ignore = target.parent / ".gitignore"
            entry = "/" + target.name
            text = ignore.read_text() if ignore.exists() else ""
            if entry not in text.splitlines():
                ignore.parent.mkdir(parents=True, exist_ok=True)
                ignore.write_text(text + ("" if not text or text.endswith("\n") else "\n") + entry + "\n")
                written.append(ignore)
        for path in written:
            os.chown(path, owner.st_uid, owner.st_gid)


def _param_entries(option: str) -> list:
    """One `-p` of `dvc stage add` as dvc.yaml lists it: `lr`, `a,b` (params.yaml) or `file.yaml:a,b`."""
    if ":" in option:
        name, keys = option.split(":", 1)
        return [{name: keys.split(",") if keys else None}]
    return option.split(",")


HANG_GUARD = 90  # seconds: a test that would hang fails instead (not a timing assertion)


def start_dvc(
    repo: DvcRepo,
    *args: str,
    env: Optional[dict] = None,
    preexec: Optional[Callable] = None,
    stdout: Optional[Path] = None,
):
    """`dvc ARGS` in its own session, stderr to a file the test can poll (stdout too, to `stdout`).

    As the repo's user where the repo has a `prefix` (e.g. setpriv, which execs: proc.pid is dvc's).
    """
    err = repo.path.parent / f"{repo.path.name}-stderr-{time.monotonic_ns()}.txt"
    handle = open(err, "w")
    out = open(stdout, "w") if stdout else subprocess.DEVNULL
    proc = subprocess.Popen(
        [*getattr(repo, "prefix", []), *repo.dvc_argv(), *args],
        cwd=repo.path,
        env={**repo.env, **(env or {})},
        stdout=out,
        stderr=handle,
        start_new_session=True,
        preexec_fn=preexec,
    )
    handle.close()
    if stdout:
        out.close()
    return proc, err


def wait_until(
    condition: Callable[[], object], what: str, proc: Optional[subprocess.Popen] = None, timeout: float = HANG_GUARD
):
    """condition()'s first true value, polled; fails if `proc` (a dvc started) ends first, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert proc is None or proc.poll() is None, f"dvc exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.05)


def repo_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env.update(
        HOME=str(home),
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site-cache"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    return env


def init_repo(path: Path, home: Path, image: Optional[str] = None) -> DvcRepo:
    """`git init`, `dvc init`, `docker.image` set (pull never: no registry here), all committed."""
    path.mkdir()
    home.mkdir()
    repo = DvcRepo(path, repo_env(home))
    repo.run("git", "init", "-q")
    repo.dvc("init", "-q")
    if image:  # DvcRepo.config: what `dvc config` writes (test_helpers), without two more dvc start-ups
        repo.config("docker.image", image)
        repo.config("docker.pull", "never")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "init")
    return repo


@pytest.fixture(scope="session")
def repo_template(tmp_path_factory) -> Callable[[Optional[str]], Path]:
    """repo_template(image) -> a repo made by `init_repo` once per session (per xdist worker) and image.

    Why: three `dvc` start-ups and git cost seconds per test; a copy of the same result costs milliseconds.
    """
    made: dict = {}

    def template(image: Optional[str]) -> Path:
        if image not in made:
            base = tmp_path_factory.mktemp("repo-template")
            made[image] = init_repo(base / "repo", base / "home", image).path
        return made[image]

    return template


def _fresh_tmp(folder: str, names: List[str]) -> List[str]:
    # .dvc/tmp/btime marks when DVC first saw the repo (part of its site-cache key): a copy is a new repo
    return ["btime"] if Path(folder).name == "tmp" and Path(folder).parent.name == ".dvc" else []


@pytest.fixture
def make_repo(tmp_path: Path, repo_template):
    """make_repo(image=None, name="repo") -> DvcRepo as `init_repo` makes it (a copy of the session's template)."""

    def make(image: Optional[str] = None, name: str = "repo") -> DvcRepo:
        path = tmp_path / name
        home = tmp_path / f"{name}-home"
        home.mkdir()
        shutil.copytree(repo_template(image), path, symlinks=True, ignore=_fresh_tmp)
        return DvcRepo(path, repo_env(home))

    return make


@pytest.fixture
def repo(make_repo, busybox_image, no_leftovers) -> DvcRepo:
    return make_repo(busybox_image)


def refused(repo: DvcRepo, *args: str, marker: str = "seen.txt", **kwargs) -> str:
    """`dvc repro` (or `dvc *args`) fails with one ERROR line, no traceback, and the stage's marker never appears.

    For attack tests: a refused attempt must stop before any container starts. Returns the ERROR line.
    """
    proc = repo.dvc(*(args or ("repro",)), check=False, **kwargs)
    err = proc.stderr.strip()
    assert proc.returncode != 0, proc.stdout + err
    assert not (repo.path / marker).exists(), f"the stage ran: {proc.stdout}{err}"
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 1, err
    return lines[0]


def in_container_probe() -> str:
    """Shell snippet printing PID 1's command line: docker-init inside our containers."""
    return "tr '\\0' ' ' < /proc/1/cmdline"


RUNNER = "dvc-docker-exec-test/runner:latest"  # DVC + the plugin of this source (repo Dockerfile)


@pytest.fixture(scope="session")
def runner_image(docker_client) -> str:
    """The runner image of the current source (a cached no-op when unchanged)."""
    try:
        with machine_lock("build-images"):
            proc = subprocess.run(
                [str(ROOT / "scripts" / "build-images.sh"), "runner"],
                capture_output=True,
                text=True,
                timeout=1200,
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"scripts/build-images.sh runner failed: {exc}")
    if proc.returncode != 0:
        _unavailable(f"scripts/build-images.sh runner failed:\n{proc.stdout}{proc.stderr}")
    return RUNNER


# --- P7: anonymous volumes (shared by the lifecycle tests) ---------------------------------------------

VOLUME_IMAGE = "dvc-docker-exec-test/busybox-volume:latest"  # busybox with `VOLUME /data`


@pytest.fixture(scope="session")
def volume_image(docker_client, busybox_image) -> str:
    """An image that declares an anonymous volume: each container gets one of its own (P7)."""
    dockerfile = f"FROM {busybox_image}\nVOLUME /data\n".encode()
    docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=VOLUME_IMAGE, rm=True, pull=False)
    return VOLUME_IMAGE


def anonymous_volume(client, repo) -> str:
    """The anonymous volume of the repo's running container (waits for it)."""
    container = wait_running(client, repo)
    volumes = [m["Name"] for m in container.attrs["Mounts"] if m["Type"] == "volume" and m["Destination"] == "/data"]
    assert volumes, container.attrs["Mounts"]
    return volumes[0]


def volume_exists(client, name: str) -> bool:
    import docker

    try:
        client.volumes.get(name)
        return True
    except docker.errors.NotFound:
        return False


def assert_volume_removed(client, name: str) -> None:
    deadline = time.monotonic() + 30
    while volume_exists(client, name) and time.monotonic() < deadline:
        time.sleep(0.1)
    if volume_exists(client, name):
        client.volumes.get(name).remove(force=True)
        pytest.fail(f"anonymous volume {name} was left behind")


def made_first(dry_output: str, repo_path: Path) -> List[str]:
    """Make what a `dvc repro --dry` line needs on disk to be pasted; returns the folders made.

    Why: --dry creates nothing, and Docker refuses a bind mount of a missing
    source. A run first makes the folders its note "a run first makes ..."
    names (the cache, `.dvc/tmp` and our private folder in it), and the config
    copies shown under the `<run>` placeholder (here: empty files, a DVC
    config without the docker section).
    """
    assert "a run first makes " in dry_output, dry_output
    dvc_dir = repo_path / ".dvc"
    folders = [dvc_dir / "cache", dvc_dir / "tmp" / "exps", dvc_dir / "tmp" / "docker-exec"]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for name in ("config", "config.local"):
        if f"/docker-exec/<run>/{name}" in dry_output:
            copy = dvc_dir / "tmp" / "docker-exec" / "<run>" / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text("")
    return [str(f) for f in folders]


# --- Shared helpers (issue 22): one of each, for every test module ---------------------------------------
# Test modules import these from here (or fixtures by name), never from each other.


def running(client, repo: DvcRepo) -> List:
    """The repo's containers that run now (on the engine of `client`)."""
    return [c for c in our_containers(client, str(repo.path)) if c.status == "running"]


def wait_running(client, repo: DvcRepo, proc: Optional[subprocess.Popen] = None):
    """The repo's running container, once there is one (fails if `proc`, the dvc started, ends first)."""
    return wait_until(lambda: running(client, repo), "a running container", proc)[0]


def stage_started(client, repo: DvcRepo, stdout: Path, line: str = "started") -> bool:
    """The stage's container runs and its command has begun: its first `line` reached dvc's stdout
    (start_dvc(..., stdout=...)): the plugin is in its output loop and the command's lease watcher,
    its parent, is under way. The condition to wait for before a signal, instead of a sleep."""
    return bool(running(client, repo)) and line in stdout.read_text().splitlines()


def wait_started(client, repo: DvcRepo, stdout: Path, proc: subprocess.Popen, line: str = "started") -> None:
    wait_until(lambda: stage_started(client, repo, stdout, line), "the stage's command under way", proc)


# --- Local test users (root only): one way to make them, one way to run as them ------------------------


def local_user(name: str, home: bool = False):
    """The local user `name` (its pwd entry), created once; creating one needs root (else unavailable)."""
    import pwd

    if os.getuid() != 0:
        _unavailable("creating a test user needs root")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home" if home else "--no-create-home", "--shell", "/bin/sh", name], check=True)
    return pwd.getpwnam(name)


def setpriv(entry, groups="clear") -> List[str]:
    """The prefix that runs a command as `entry` (why setpriv: su/sudo would reset the environment and
    need a login shell). `groups`: "clear" (none), "init" (the user's own), or a list of gids. It execs:
    a child's pid is the command's."""
    if groups == "clear":
        group_arg = "--clear-groups"
    elif groups == "init":
        group_arg = "--init-groups"
    else:
        group_arg = f"--groups={','.join(str(g) for g in groups)}"
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", group_arg, "--"]


def need_python_for(prefix: List[str], who: str) -> None:
    """This interpreter, with DVC and the plugin, must be usable through `prefix` (else unavailable)."""
    probe = subprocess.run([*prefix, sys.executable, "-c", "import dvc.repo, dvc_docker_exec"], capture_output=True)
    if probe.returncode != 0:
        _unavailable(
            f"{sys.executable} is not usable by {who} (make the venv with /usr/bin/python3 "
            "in a world-readable place, as scripts/test.sh does)"
        )


TESTER = "dde-tester"


@pytest.fixture(scope="session")
def tester():
    """A second local user allowed on the Docker socket (its group): (pwd entry, setpriv prefix)."""
    entry = local_user(TESTER, home=True)
    prefix = setpriv(entry, [os.stat("/var/run/docker.sock").st_gid])
    need_python_for(prefix, TESTER)
    return entry, prefix


class UserRepo(DvcRepo):
    """A DvcRepo whose every command runs through `prefix` (setpriv: as another local user)."""

    def __init__(self, path: Path, env: dict, prefix: List[str], uid: int):
        super().__init__(path, env)
        self.prefix = prefix
        self.uid = uid  # the user's, who owns the repo

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return super().run(*self.prefix, *args, **kwargs)


@pytest.fixture
def make_user_repo(make_repo):
    """make_user_repo(entry, prefix, image=None, **env) -> UserRepo: make_repo's repo, moved out of
    pytest's root-private basetemp into a folder of its own that `entry` owns (with a fresh HOME in it);
    its commands run through `prefix`. `env` adds to the repo's environment. Removed at teardown."""
    import tempfile

    made: List[Path] = []

    def make(entry, prefix: List[str], image: Optional[str] = None, **env: str) -> UserRepo:
        built = make_repo(image, name=f"user-repo-{len(made)}")
        base = Path(tempfile.mkdtemp(prefix="dde-user-"))
        made.append(base)
        SESSION_ROOTS.append(str(base))
        shutil.move(str(built.path), str(base / "repo"))
        (base / "home").mkdir()
        subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(base)], check=True)
        return UserRepo(base / "repo", {**repo_env(base / "home"), "USER": entry.pw_name, **env}, prefix, entry.pw_uid)

    yield make
    for base in made:
        shutil.rmtree(base, ignore_errors=True)


# --- A daemon socket at another path (one relay for every test that needs one) -------------------------


class SocketRelay:
    """A unix socket at `path` forwarding every connection to the real daemon's socket; the test can
    cut the connections open now (a daemon restart, a proxy timeout) or stop it (the daemon is gone)."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock"):
        import socket
        import threading

        self.path, self.target = path, target
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(64)
        self.open: List = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._copy, args=(a, b), daemon=True).start()

    @staticmethod
    def _copy(src, dst) -> None:
        import socket

        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Every connection open now breaks (new ones still work)."""
        import socket

        with self.lock:
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.open = []

    def stop(self) -> None:
        """Nothing answers any more."""
        self.server.close()
        os.unlink(self.path)
        self.cut()


@pytest.fixture
def socket_relay() -> Iterator[Callable[[Path], SocketRelay]]:
    """socket_relay(path) -> a SocketRelay listening at `path`; stopped at teardown."""
    relays: List[SocketRelay] = []

    def make(path: Path) -> SocketRelay:
        relays.append(SocketRelay(path))
        return relays[-1]

    yield make
    for relay in relays:
        try:
            relay.stop()
        except OSError:
            pass  # stopped by the test

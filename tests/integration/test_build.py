"""Issue 19: the image as code (`docker.build`) and running exactly what is recorded.

Offline: every image here is built FROM the local test images.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import uuid
from typing import Iterator, List

import pytest

from tests.conftest import BUSYBOX, DvcRepo, start_dvc, wait_until

pytestmark = pytest.mark.docker


@pytest.fixture
def scratch_images(docker_client) -> Iterator[List[str]]:
    """Tags (and IDs) a test creates; removed afterwards, nothing else."""
    made: List[str] = []
    yield made
    for ref in reversed(made):
        try:
            docker_client.images.remove(ref, force=True, noprune=False)
        except Exception:  # noqa: BLE001 - already gone
            pass


def marker_image(docker_client, text: str) -> str:
    """A local image FROM busybox whose /marker holds `text`; returns its ID."""
    dockerfile = f"FROM {BUSYBOX}\nRUN echo {text} > /marker\n".encode()
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile), rm=True, labels={"dde-test": "i19"})
    return image.id


def test_moved_tag_between_identity_and_create_runs_recorded_bytes(repo: DvcRepo, docker_client, scratch_images):
    """A `docker tag` (or build, or pull) in another terminal while the stage starts: the recorded image runs."""
    tag = f"dde-i19-test/moved:{uuid.uuid4().hex[:8]}"
    first, second = marker_image(docker_client, "first"), marker_image(docker_client, "second")
    scratch_images += [tag, first, second]
    docker_client.images.get(first).tag(tag)
    repo.config("docker.image", tag)
    repo.stage_add("-n", "s", "-o", "out.txt", "cat /marker > out.txt")
    proc, err = start_dvc(repo, "repro", env={"DVC_DOCKER_EXEC_TEST_PAUSE": "create"})
    wait_until(lambda: "paused at create" in err.read_text(), "pause at create", proc)
    docker_client.images.get(second).tag(tag)  # the tag moves after the identity was read
    os.kill(proc.pid, signal.SIGUSR1)
    assert proc.wait(timeout=120) == 0, err.read_text()
    assert repo.read("out.txt") == "first\n"
    assert first[len("sha256:"):] in repo.read("dvc.lock")
    # the tag moved: status says so (the recorded bytes are not what the tag names now)
    assert "s:" in repo.dvc("status").stdout


# --- docker.build ----------------------------------------------------------------------------------------

DOCKERFILE = """FROM {base}
LABEL dde-test-token={token}
COPY hello.txt /hello.txt
RUN echo {built} > /built
"""


class Built:
    """A repo whose stage runs in an image built from env/Dockerfile (unique per test: label + tag)."""

    def __init__(self, repo: DvcRepo, client, token: str):
        self.repo, self.client, self.token = repo, client, token

    def dockerfile(self, base: str = BUSYBOX, built: str = "one") -> None:
        self.repo.write("env/Dockerfile", DOCKERFILE.format(base=base, token=self.token, built=built))

    def images(self) -> List:
        return self.client.images.list(filters={"label": f"dde-test-token={self.token}"})

    def remove_images(self) -> None:
        """Every image of this test (by its label, whatever its tags)."""
        for image in self.images():
            try:
                self.client.images.remove(image.id, force=True)
            except Exception:  # noqa: BLE001 - removed with another tag
                pass

    def record(self) -> dict:
        """The stage's record, read from its dvc.lock entry (the only place it is written)."""
        from dvc_docker_exec.types.provenance import record_from_lock

        assert not (self.repo.path / "dvc.docker.lock").exists()
        from ruamel.yaml import YAML

        return record_from_lock("s", YAML(typ="safe").load(self.repo.lock())["stages"]["s"]).__dict__


@pytest.fixture
def built(repo: DvcRepo, docker_client) -> Iterator[Built]:
    token = uuid.uuid4().hex[:12]
    b = Built(repo, docker_client, token)
    b.dockerfile()
    repo.write("env/hello.txt", "hello\n")
    repo.write("env/.dockerignore", "ignored.txt\n")
    repo.write("env/ignored.txt", "x\n")
    repo.write("in.txt", "in\n")
    repo.config("docker.build", "env")
    repo.config("docker.image", f"dde-i19-test/built:{token}")
    # a real dependency: DVC run-caches only stages that have one
    repo.stage_add("-n", "s", "-d", "in.txt", "-o", "out.txt", "cat /hello.txt /built in.txt > out.txt")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "pipeline")
    yield b
    b.remove_images()


def status(repo: DvcRepo) -> str:
    return repo.dvc("status").stdout


def test_build_runs_records_and_status_is_clean(built: Built):
    out = built.repo.dvc("repro")
    assert "Building image" in out.stderr + out.stdout
    assert built.repo.read("out.txt") == "hello\none\nin\n"
    record = built.record()
    image_id = built.images()[0].id
    assert record["identity"].startswith("build:sha256:") and record["image_id"] == image_id
    assert record["build"] == "env/Dockerfile" and set(record["inputs"]) >= {"dockerfile", "context", "bases"}
    assert record["inputs"]["bases"] == {BUSYBOX: built.client.images.get(BUSYBOX).id}
    # issue 17: no line wrapped by DVC's YAML writer (it leaves `key: ` with a trailing space)
    lock = built.repo.lock()
    assert [line for line in lock.splitlines() if line != line.rstrip() or len(line) > 80] == [], lock
    assert "up to date" in status(built.repo)
    again = built.repo.dvc("repro")
    assert "Building" not in again.stdout + again.stderr


def test_status_names_what_changed_and_ignores_dockerignored(built: Built, scratch_images):
    repo = built.repo
    base = f"dde-i19-test/base:{built.token}"
    built.client.images.get(BUSYBOX).tag(base)
    scratch_images.append(base)
    built.dockerfile(base=base)
    repo.dvc("repro")
    repo.write("env/ignored.txt", "changed\n")
    assert "up to date" in status(repo)
    repo.write("env/hello.txt", "changed\n")
    assert "image build env/Dockerfile: files of the build context changed" in status(repo)
    repo.write("env/hello.txt", "hello\n")
    built.dockerfile(base=base, built="two")
    assert "image build env/Dockerfile: Dockerfile changed" in status(repo)
    built.dockerfile(base=base)
    assert "up to date" in status(repo)
    built.client.images.get(marker_image(built.client, "newbase")).tag(base)  # a new base under the same tag
    scratch_images.append(built.client.images.get(base).id)
    assert f"image build env/Dockerfile: base image '{base}' changed" in status(repo)
    repo.config("docker.build_args", "X=1")
    assert "build args changed" in status(repo)


def test_a_lock_written_before_with_nested_inputs_is_still_read(built: Built):
    """dvc.lock of earlier versions held a build's inputs as one nested `inputs:` mapping (long lines, issue 17)."""
    from ruamel.yaml import YAML

    repo = built.repo
    repo.dvc("repro")
    record = built.record()
    yaml = YAML(typ="safe")
    lock = yaml.load(repo.lock())
    entry = lock["stages"]["s"]["deps"][0]["dataset"]
    for key in ("file", "files", "args", "target", "bases"):
        entry.pop(key, None)
    entry["inputs"] = dict(record["inputs"])  # the old form: as_record(), sha256: prefixes and all
    with open(repo.path / "dvc.lock", "w", encoding="utf-8") as fobj:
        yaml.dump(lock, fobj)
    assert built.record() == record
    assert "up to date" in status(repo)
    repo.write("env/hello.txt", "changed\n")  # what changed is told from the old inputs
    assert "image build env/Dockerfile: files of the build context changed" in status(repo)
    repo.dvc("repro")  # the entry is written again in the new form
    assert "inputs:" not in repo.lock() and all(line == line.rstrip() for line in repo.lock().splitlines())


def test_revert_restores_from_run_cache_without_container_or_build(built: Built):
    repo = built.repo
    repo.dvc("repro")
    built.dockerfile(built="two")
    repo.dvc("repro")
    assert repo.read("out.txt") == "hello\ntwo\nin\n"
    built.dockerfile(built="one")
    out = repo.dvc("repro")
    text = out.stdout + out.stderr
    assert "in a container" not in text and "Building" not in text, text
    assert repo.read("out.txt") == "hello\none\nin\n"
    assert "up to date" in status(repo)


def test_fresh_clone_and_removed_image_are_up_to_date_without_build(built: Built, make_repo, tmp_path):
    repo = built.repo
    repo.dvc("repro")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "ran")
    for image in built.images():
        built.client.images.remove(image.id, force=True)
    assert "up to date" in status(repo)
    clone = DvcRepo(tmp_path / "clone", repo.env)
    repo.run("git", "clone", "-q", str(repo.path), str(clone.path), cwd=tmp_path)
    clone.dvc("cache", "dir", "--local", str(repo.path / ".dvc" / "cache"))  # the data, as `dvc pull` would bring it
    clone.dvc("checkout")
    assert "up to date" in status(clone)
    out = clone.dvc("repro")
    assert "Building" not in out.stdout + out.stderr and not built.images()
    clone.write("env/hello.txt", "other\n")  # a stage that must run builds
    out = clone.dvc("repro")
    assert "Building" in out.stdout + out.stderr and clone.read("out.txt") == "other\none\nin\n"


def test_failed_build_is_one_error_and_records_nothing(built: Built, docker_client):
    repo = built.repo
    repo.write("env/Dockerfile", f"FROM {BUSYBOX}\nLABEL dde-test-token={built.token}\nRUN echo going wrong; exit 3\n")
    # the build's own containers carry the Dockerfile's LABELs (the token comes before the failing RUN)
    ours = {"label": f"dde-test-token={built.token}"}
    out = repo.dvc("repro", check=False)
    assert out.returncode != 0
    assert "ERROR" in out.stderr and "Traceback" not in out.stderr
    assert "'env/Dockerfile': step 3/5 'RUN echo going wrong; exit 3' failed with exit code 3" in out.stderr, out.stderr
    assert "going wrong" in out.stderr
    assert repo.lock() is None and not (repo.path / "dvc.docker.lock").exists()
    assert not docker_client.containers.list(all=True, filters=ours, ignore_removed=True)  # no intermediate container left


def test_dry_builds_nothing(built: Built):
    out = built.repo.dvc("repro", "--dry")
    assert "Building" not in out.stdout + out.stderr
    assert not built.images()


def test_parallel_processes_build_a_shared_dockerfile_once(built: Built, tmp_path):
    """Two dvc processes (two clones, one Dockerfile): one builds, the other waits and reuses it."""
    repo = built.repo
    clone = DvcRepo(tmp_path / "clone", repo.env)
    repo.run("git", "clone", "-q", str(repo.path), str(clone.path), cwd=tmp_path)
    procs = [start_dvc(r, "repro") for r in (repo, clone)]
    texts = []
    for proc, err in procs:
        assert proc.wait(timeout=180) == 0, err.read_text()
        texts.append(err.read_text())
    assert sum(t.count("Building image") for t in texts) == 1, texts
    assert len(built.images()) == 1


def test_dvc_docker_build_and_images(built: Built):
    repo = built.repo
    assert "not built here" in repo.dvc("docker", "images").stdout
    out = repo.dvc("docker", "build").stdout
    assert out.startswith(f"Built dde-i19-test/built:{built.token} from env/Dockerfile")
    assert "Up to date:" in repo.dvc("docker", "build", "s").stdout
    assert "Built " in repo.dvc("docker", "build", "--force").stdout  # the layer cache makes it cheap
    image_id = built.images()[0].id
    rows = json.loads(repo.dvc("docker", "images", "--json").stdout)
    assert rows[0]["build"] == "env/Dockerfile" and rows[0]["built"] == image_id and rows[0]["present"]
    repo.dvc("repro")
    rows = json.loads(repo.dvc("docker", "images", "--json").stdout)
    assert rows[0]["recorded_id"] == image_id and rows[0]["recorded"] == rows[0]["current"]
    repo.write("env/hello.txt", "new\n")
    doctor = repo.dvc("docker", "doctor", check=False).stdout
    assert "image built from env/Dockerfile" in doctor and "files of the build context changed" in doctor
    assert "Skipped" not in repo.dvc("docker", "pull").stdout  # nothing to pull: built, not pulled


def test_queue_workers_build_a_shared_dockerfile_once(built: Built):
    """`dvc queue start -j 2`: two experiments need the same image at once; one worker builds it."""
    from tests.helpers import queue, start_workers, stop_workers, wait_for_queue

    repo = built.repo
    repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])  # the workers' dvc
    repo.write("params.yaml", "x: 1\n")
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: cat /built > out.txt; echo ${x} >> out.txt\n"
               "    deps: [in.txt]\n    params: [x]\n    outs: [out.txt]\n")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "params")
    for name, value in (("q1", 2), ("q2", 3)):
        queue(repo, name, f"x={value}")
    try:
        start_workers(repo, 2)
        status = wait_for_queue(repo, ["q1", "q2"], timeout=240)
        logs = [repo.dvc("queue", "logs", name).stdout for name in ("q1", "q2")]
    finally:
        stop_workers(repo)
    assert status["q1"] == status["q2"] == "Success", (status, logs)
    assert sum(log.count("Building image") for log in logs) == 1, logs
    assert len(built.images()) == 1


# --- a Dockerfile at the root: the pipeline's own outputs in its context, the lock in every clone ----------


@pytest.fixture
def root_built(make_repo, docker_client, busybox_image, no_leftovers) -> Iterator[Built]:
    """The user's setup: `Dockerfile` at the root, no .dockerignore, docker.build in config.local, tag derived."""
    token = uuid.uuid4().hex[:12]
    repo = make_repo(name=f"project-{token}")  # the derived tag holds the folder: unique per test run
    b = Built(repo, docker_client, token)
    repo.write("Dockerfile", f"FROM {BUSYBOX}\nLABEL dde-test-token={token}\n")
    repo.config("docker.build", "Dockerfile", local=True)
    repo.config("docker.pull", "never", local=True)
    yield b
    b.remove_images()


def test_a_root_context_holding_the_pipeline_outputs_is_up_to_date_after_a_run(root_built: Built):
    """Before: every second `dvc repro` failed ("the build context ... changed while it was read"):
    the outs and dvc.lock were part of the image's inputs, so the image depended on its own outputs."""
    repo = root_built.repo
    repo.write("data.csv", "1\n")
    repo.dvc("add", "-q", "data.csv")
    repo.write("params.yaml", "x: 1\n")
    repo.dvc("stage", "add", "-q", "-n", "s", "-d", "data.csv", "-o", "out.txt", "date +%s%N > out.txt")
    repo.dvc("stage", "add", "-q", "-n", "m", "-d", "out.txt", "-p", "x", "-M", "m.json", "echo '{\"n\": 1}' > m.json")
    # a stage added by hand: its first run adds its out to sub/.gitignore (DVC writes it too)
    with open(repo.path / "dvc.yaml", "a") as fobj:
        fobj.write("  h:\n    cmd: mkdir -p sub && echo h > sub/hand.txt\n    outs: [sub/hand.txt]\n")
    first = repo.dvc("repro")
    assert "Building image" in first.stdout + first.stderr
    for _ in range(2):
        again = repo.dvc("repro", check=False)
        text = again.stdout + again.stderr
        assert again.returncode == 0 and "Building" not in text and "changed while it was read" not in text, text
        assert "up to date" in text, text
    assert "up to date" in status(repo)
    identity = root_built.record()["identity"]
    # what DVC writes changes: outs by hand, tracked data (and its .dvc file): never the image's inputs
    repo.write("out.txt", "edited\n")
    repo.write("m.json", "{}\n")
    repo.write("sub/hand.txt", "edited\n")
    repo.write("data.csv", "2\n")
    repo.dvc("add", "-q", "data.csv")
    repo.write("params.yaml", "x: 2\n")  # a param (`exp run -S` writes it): the stages that read it, not all
    text = status(repo)
    assert "out.txt" in text and "params.yaml" in text, text
    assert "image build" not in text, text
    repo.dvc("commit", "-f", "-q")
    assert "up to date" in status(repo) and root_built.record()["identity"] == identity
    # an `exp run --temp` copy (outs checked out from the cache, no untracked file) has the same identity
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "ran")
    temp = repo.dvc("exp", "run", "--temp")
    assert "Building" not in temp.stdout + temp.stderr and "lacks" not in temp.stderr, temp.stdout + temp.stderr
    # a file of the context that no stage writes is an input
    repo.write("notes.txt", "x\n")
    assert "image build Dockerfile: files of the build context changed (notes.txt added)" in status(repo)


def test_two_clones_in_different_folders_write_the_same_lock(root_built: Built, tmp_path):
    """The derived tag holds the checkout's folder name; what dvc.lock records does not (no Git churn)."""
    repo = root_built.repo
    token = root_built.token
    repo.dvc("stage", "add", "-q", "-n", "s", "-o", "out.txt", "echo hi > out.txt")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "pipeline")
    clones = []
    for name in (f"alpha-{token}", f"other-folder-{token}"):
        clone = DvcRepo(tmp_path / name, repo.env)
        repo.run("git", "clone", "-q", str(repo.path), str(clone.path), cwd=tmp_path)
        clone.config("docker.build", "Dockerfile", local=True)  # config.local is not cloned
        clone.config("docker.pull", "never", local=True)
        clone.dvc("repro")
        clones.append(clone)
    lock = clones[0].lock()
    assert lock == clones[1].lock()
    assert "path: docker:dvc-build/dockerfile\n" in lock and token not in lock, lock
    assert root_built.client.images.get(f"dvc-build/alpha-{token}/dockerfile")  # the local tag: per checkout
    # a lock written by the previous version (the folder in the path) is still up to date, rewritten on a run
    old = lock.replace("docker:dvc-build/dockerfile", f"docker:dvc-build/alpha-{token}/dockerfile")
    (clones[0].path / "dvc.lock").write_text(old)
    assert "up to date" in status(clones[0])
    out = clones[0].dvc("repro")
    assert "Building" not in out.stdout + out.stderr and "up to date" in out.stdout, out.stdout
    clones[0].dvc("repro", "-f")
    assert clones[0].lock() == lock


@pytest.mark.parametrize("how", ["--temp", "--queue"])
def test_an_experiment_copy_names_the_untracked_context_files_it_lacks(root_built: Built, how: str):
    """DVC's `exp run --temp`/queue copy holds only what Git and DVC track: an untracked file the Dockerfile
    COPYs builds in the workspace and fails in the copy; the warning names it."""
    repo = root_built.repo
    repo.write("Dockerfile", f"FROM {BUSYBOX}\nLABEL dde-test-token={root_built.token}\nCOPY notes.txt /notes.txt\n")
    repo.dvc("stage", "add", "-q", "-n", "s", "-o", "out.txt", "cat /notes.txt > out.txt")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "pipeline")
    repo.write("notes.txt", "untracked\n")  # never `git add`ed
    repo.dvc("repro")
    assert repo.read("out.txt") == "untracked\n"
    if how == "--temp":
        out = repo.dvc("exp", "run", "--temp", check=False)
        failed, text = out.returncode != 0, out.stdout + out.stderr
    else:
        from tests.helpers import queue, start_workers, stop_workers, wait_for_queue

        repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])
        queue(repo, "q1")
        try:
            start_workers(repo, 1)
            failed = wait_for_queue(repo, ["q1"], timeout=240)["q1"] == "Failed"
            text = repo.dvc("queue", "logs", "q1").stdout
        finally:
            stop_workers(repo)
    assert failed and "COPY failed" in text, text
    assert "in this experiment's copy lacks 1 file(s) of the workspace: notes.txt" in text, text
    # the copy's build is tagged as the workspace's (not after the copy's temporary folder)
    assert f"Building image 'dvc-build/{repo.path.name}/dockerfile'" in text, text

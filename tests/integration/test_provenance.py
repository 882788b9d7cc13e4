"""Provenance against the real engine: the image identity is a dependency (issue 8).

Images are built here from the offline busybox test image (`docker build`,
never a pull), under tags unique to this test session, and removed after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from dvc_docker_exec.types.provenance import LEGACY_RECORD_FILE, dep_path, short_id, short_identity
from tests.conftest import DvcRepo, containers_created, push_image, remove_repository
from tests.helpers import experiments, git_show, lock_records, queue, records, start_workers, status, stop_workers, wait_for_queue

pytestmark = pytest.mark.docker

TAG_PREFIX = "dvc-docker-exec-test/i8-prov"
# prints the marker file of the image (absent in plain busybox) into out.txt
MARK_CMD = "(cat /marker 2>/dev/null || echo none)"


def docker_build(folder: Path, suffix: str, marker: str, base: str) -> str:
    """`docker build` FROM `base` with /marker holding `marker`; the tag is unique to this process."""
    tag = f"{TAG_PREFIX}-{os.getpid()}-{suffix}"
    ctx = folder / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "marker").write_text(marker + "\n")
    (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY marker /marker\n")
    proc = subprocess.run(
        ["docker", "build", "-q", "--network", "none", "-t", tag, str(ctx)],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    assert proc.returncode == 0, proc.stderr
    return tag


@pytest.fixture
def build_image(busybox_image, tmp_path) -> Iterator[Callable[[str, str], str]]:
    """build(tag_suffix, marker) -> image reference; `docker build` FROM the busybox test image."""
    tags, ids = [], []

    def build(suffix: str, marker: str) -> str:
        tags.append(docker_build(tmp_path, suffix, marker, busybox_image))
        ids.append(subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tags[-1]],
                                  capture_output=True, text=True, check=True).stdout.strip())
        return tags[-1]

    yield build
    for tag in set(tags):
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
    # an image a rebuild under the same tag left nameless; not forced: one another name still holds
    # (the same content built by another worker, whose tag differs) stays
    subprocess.run(["docker", "rmi", *set(ids)], capture_output=True)


@pytest.fixture(scope="module")
def image_b(busybox_image, tmp_path_factory) -> Iterator[str]:
    """The second image of most tests here (marker B), built once: no test changes it."""
    tag = docker_build(tmp_path_factory.mktemp("image-b"), "b", "B", busybox_image)
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.fixture
def repo(repo: DvcRepo) -> DvcRepo:
    """conftest's repo plus in.txt, the dependency of the stages here (see the callback-stage test)."""
    repo.write("in.txt", "in\n")
    return repo


def image_id(docker_client, ref: str) -> str:
    return docker_client.api.inspect_image(ref)["Id"]


def lock_identity(repo: DvcRepo, stage: str):
    return records(repo).get(stage, (None, None))[1]


def params_show(repo: DvcRepo) -> dict:
    """What DVC's params show (`Repo.params.show`: `dvc exp show`, `dvc.api.params_show`) finds, per file."""
    code = ("import json; from dvc.repo import Repo; "
            "print(json.dumps({p: v.get('data') for p, v in Repo('.').params.show()[''].get('data', {}).items()}))")
    return json.loads(repo.run(sys.executable, "-c", code).stdout)


def trailing_space(text: str) -> list:
    return [line for line in text.splitlines() if line.endswith((" ", "\t"))]


PIPELINE = f"""stages:
  box:
    cmd: {MARK_CMD} > box.txt
    deps: [in.txt]
    outs: [box.txt]
  after:
    cmd: cat box.txt > after.txt
    deps: [box.txt]
    outs: [after.txt]
    meta: {{docker: false}}
  pinned:
    cmd: {MARK_CMD} > pinned.txt
    deps: [in.txt]
    outs: [pinned.txt]
    meta: {{docker: "PINNED"}}
  host:
    cmd: tr '\\0' ' ' < /proc/1/cmdline > host.txt
    outs: [host.txt]
    meta: {{docker: false}}
"""


def test_image_change_reruns_exactly_the_stages_on_it(repo, image_b, busybox_image, docker_client):
    repo.write("dvc.yaml", PIPELINE.replace("PINNED", busybox_image))
    yaml_before = repo.read("dvc.yaml")
    repo.dvc("repro")
    a_id = image_id(docker_client, busybox_image)
    assert records(repo) == {"box": (busybox_image, a_id), "pinned": (busybox_image, a_id)}
    assert lock_identity(repo, "box") == a_id and lock_identity(repo, "host") is None
    assert yaml.safe_load(repo.lock())["stages"]["box"]["cmd"] == f"{MARK_CMD} > box.txt"
    assert status(repo) == {}
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "A")

    repo.config("docker.image", image_b)
    b_id = image_id(docker_client, image_b)
    text = repo.dvc("status").stdout
    # in words that name the image, old -> new identity
    assert f"image '{image_b}' {short_identity(a_id)} -> {short_identity(b_id)}" in text, text
    assert set(status(repo)) == {"box"}  # pinned and host stages stay up to date

    with containers_created(docker_client, repo) as created:
        proc = repo.dvc("repro")
    assert created == ["box"], created  # the daemon's own account: only the stage on the changed image
    assert "Running stage 'box' in a container" in proc.stdout
    assert "Running stage 'after':" in proc.stdout  # a host stage whose dep (box.txt) changed
    assert "Running stage 'pinned'" not in proc.stdout
    assert "Running stage 'host'" not in proc.stdout
    assert repo.read("box.txt") == "B\n" and repo.read("after.txt") == "B\n" and repo.read("pinned.txt") == "none\n"
    assert records(repo) == {"box": (image_b, b_id), "pinned": (busybox_image, a_id)}
    assert lock_identity(repo, "box") == b_id
    assert repo.read("dvc.yaml") == yaml_before  # never rewritten
    # git diff of dvc.lock shows which stage changed environment, in lines of at most 80 columns
    diff = repo.run("git", "diff", "--", "dvc.lock").stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert f"-    - path: {dep_path(busybox_image)}" in changed and f"+    - path: {dep_path(image_b)}" in changed
    assert f"-        sha256: {a_id[7:]}" in changed and f"+        sha256: {b_id[7:]}" in changed, diff
    assert not trailing_space(repo.lock()) and max(len(line) for line in repo.lock().splitlines()) <= 80
    assert not (repo.path / LEGACY_RECORD_FILE).exists()  # dvc.lock is the only record
    assert status(repo) == {}


def test_run_cache_is_keyed_by_the_image_a_b_a(repo, image_b, busybox_image, docker_client):
    repo.write("dvc.yaml", f"stages:\n  s:\n    cmd: {MARK_CMD} > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n")
    repo.dvc("repro")
    assert repo.read("out.txt") == "none\n"

    repo.config("docker.image", image_b)
    (repo.path / "out.txt").unlink()
    with containers_created(docker_client, repo) as created:
        proc = repo.dvc("repro")  # A's run-cache entry must not be served under B
    assert created == ["s"], created
    assert "is cached" not in proc.stdout and "in a container of image" in proc.stdout, proc.stdout
    assert repo.read("out.txt") == "B\n"

    repo.config("docker.image", busybox_image)
    (repo.path / "out.txt").unlink()
    with containers_created(docker_client, repo) as created:
        proc = repo.dvc("repro")  # back to A: A's outputs from the run cache, no container
    assert created == [], "a run-cache hit started a container"
    assert "Stage 's' is cached - skipping run" in proc.stdout, proc.stdout
    assert "in a container" not in proc.stdout
    assert repo.read("out.txt") == "none\n"
    assert lock_identity(repo, "s") == image_id(docker_client, busybox_image)
    assert records(repo)["s"] == (busybox_image, image_id(docker_client, busybox_image))


def test_rebuild_under_the_same_tag_is_a_change(repo, build_image, docker_client):
    tag = build_image("same", "one")
    repo.config("docker.image", tag)
    repo.write("dvc.yaml", f"stages:\n  s:\n    cmd: {MARK_CMD} > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n")
    repo.dvc("repro")
    first = image_id(docker_client, tag)
    assert repo.read("out.txt") == "one\n" and status(repo) == {}

    assert build_image("same", "two") == tag  # a changed file, the same tag
    second = image_id(docker_client, tag)
    assert second != first
    text = repo.dvc("status").stdout
    assert f"{short_identity(first)} -> {short_identity(second)}" in text, text
    proc = repo.dvc("repro")
    assert "in a container" in proc.stdout
    assert repo.read("out.txt") == "two\n"
    assert records(repo)["s"] == (tag, second)


def test_turning_the_plugin_off_and_on_changes_container_stages_once(repo, docker_client):
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: echo x > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n")
    repo.dvc("repro")
    repo.config("docker.enabled", "false")
    st = status(repo)
    assert list(st) == ["s"], st
    assert "runs on the host" in repo.dvc("status").stdout
    proc = repo.dvc("repro")
    assert "Running stage 's':" in proc.stdout and "in a container" not in proc.stdout
    assert lock_identity(repo, "s") is None and "docker:" not in repo.lock()
    assert status(repo) == {}

    repo.config("docker.enabled", "true")
    assert "not recorded before" in repo.dvc("status").stdout
    with containers_created(docker_client, repo) as created:
        proc = repo.dvc("repro")
    assert created == [], "a run-cache hit started a container"
    # the first container run's outputs come back from the run cache (same image)
    assert "Stage 's' is cached" in proc.stdout and "Running stage 's':" not in proc.stdout, proc.stdout
    assert lock_identity(repo, "s") and set(records(repo)) == {"s"}
    assert status(repo) == {}


def test_track_false_is_the_old_behaviour(repo, image_b):
    repo.config("docker.track", "false")
    repo.write("dvc.yaml", f"stages:\n  s:\n    cmd: {MARK_CMD} > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n")
    repo.dvc("repro")
    assert "docker:" not in repo.lock() and records(repo) == {}
    repo.config("docker.image", image_b)
    assert status(repo) == {}
    assert "Data and pipelines are up to date" in repo.dvc("status").stdout
    assert "in a container" not in repo.dvc("repro").stdout


def test_track_false_per_stage(repo, image_b):
    repo.write("dvc.yaml", f"""stages:
  untracked:
    cmd: {MARK_CMD} > u.txt
    deps: [in.txt]
    outs: [u.txt]
    meta: {{docker: {{track: false}}}}
  tracked:
    cmd: {MARK_CMD} > t.txt
    deps: [in.txt]
    outs: [t.txt]
""")
    repo.dvc("repro")
    assert set(records(repo)) == {"tracked"}
    repo.config("docker.image", image_b)
    assert set(status(repo)) == {"tracked"}


def test_daemon_absent_status_says_not_checked_and_repro_fails(repo):
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: echo x > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n  t:\n"
               "    cmd: echo y > t.txt\n    deps: [in.txt]\n    outs: [t.txt]\n")
    repo.dvc("repro")
    gone = {"DOCKER_HOST": f"unix://{repo.path.parent}/no-daemon.sock"}
    proc = repo.dvc("status", env=gone)
    assert proc.returncode == 0
    assert "Data and pipelines are up to date" in proc.stdout  # not changed
    assert "stage 's': image 'dvc-docker-exec-test/busybox:latest' not checked: cannot reach the Docker daemon" in proc.stderr
    assert "stage 't': image" in proc.stderr and "not checked" in proc.stderr
    assert "ERROR" not in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(repo.dvc("status", "--json", env=gone).stdout) == {}

    dry = repo.dvc("repro", "--dry", env=gone)  # runs nothing: needs no daemon, as before
    assert "not checked" in dry.stderr and "Data and pipelines are up to date" in dry.stdout
    repo.write("in.txt", "changed\n")  # changed for another reason: --dry consults the run cache too
    dry = repo.dvc("repro", "--dry", env=gone)
    assert "docker run --rm" in dry.stdout and "Traceback" not in dry.stderr

    (repo.path / "out.txt").unlink()
    proc = repo.dvc("repro", env=gone, check=False)
    assert proc.returncode != 0
    assert "ERROR" in proc.stderr and "cannot reach the Docker daemon" in proc.stderr


def test_status_never_pulls_an_absent_image(repo, docker_client):
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: echo x > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n")
    repo.dvc("repro")
    absent = f"{TAG_PREFIX}-absent-{uuid.uuid4().hex[:8]}:none"
    repo.config("docker.image", absent)
    repo.config("docker.pull", "missing")
    proc = repo.dvc("status")
    assert f"deleted:            image '{absent}' is not on this machine" in proc.stdout  # changed, not up to date
    assert "Pulling" not in proc.stderr + proc.stdout
    # one fix, the most direct: what ran is here under its old name (no look-alike names after it)
    assert "`docker tag dvc-docker-exec-test/busybox:" in proc.stderr and "did you mean" not in proc.stderr
    assert not docker_client.images.list(name=absent.split(":")[0])


def test_stage_add_and_repro_never_write_the_dependency_into_dvc_yaml(repo):
    repo.dvc("stage", "add", "-n", "a", "-d", "in.txt", "-o", "a.txt", "echo a > a.txt")
    repo.dvc("repro")
    repo.dvc("stage", "add", "-n", "b", "-d", "a.txt", "-o", "b.txt", "cat a.txt > b.txt")
    repo.dvc("stage", "add", "-f", "-n", "a", "-d", "in.txt", "-o", "a.txt", "echo aa > a.txt")  # rewrites a loaded stage
    repo.dvc("repro")
    repo.dvc("commit", "-f")
    text = repo.read("dvc.yaml")
    assert "docker:" not in text and "params" not in text
    assert set(records(repo)) == {"a", "b"}


def test_a_stage_without_dependencies_still_runs_every_time(repo):
    """DVC reruns a stage without deps on every repro; a dependency of ours must not change that."""
    repo.write("dvc.yaml", "stages:\n  cb:\n    cmd: date +%s%N >> runs.txt\n")
    repo.dvc("repro")
    repo.dvc("repro")
    assert len(repo.read("runs.txt").splitlines()) == 2
    assert records(repo) == {}  # nothing to compare: it always reruns


def test_commit_records_the_identity(repo, image_b, docker_client):
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: echo x > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n")
    repo.dvc("repro")
    repo.config("docker.image", image_b)
    repo.dvc("commit", "-f")  # "this output is fine under B"
    assert records(repo)["s"] == (image_b, image_id(docker_client, image_b))
    assert status(repo) == {}


def test_stage_in_a_subfolder_records_next_to_its_lock(repo):
    repo.write("sub/in.txt", "in\n")
    repo.write("sub/dvc.yaml", "stages:\n  s:\n    cmd: echo x > out.txt\n    wdir: .\n    deps: [in.txt]\n    outs: [out.txt]\n")
    repo.dvc("repro", "sub/dvc.yaml")
    assert set(records(repo, "sub")) == {"s"} and not (repo.path / "dvc.lock").exists()
    assert status(repo) == {}
    repo.dvc("remove", "sub/dvc.yaml:s")
    assert records(repo, "sub") == {}


def test_params_stay_the_users_and_exp_show_has_one_short_column_per_image(
    repo, image_b, docker_client, busybox_image
):
    """issue 17, group 3: params show/diff of the user's files unchanged; `exp show` one column per image."""
    repo.write("params.yaml", "lr: 1\n")
    repo.write("dvc.yaml", f"stages:\n  s:\n    cmd: {MARK_CMD} > out.txt\n    deps: [in.txt]\n    params: [lr]\n"
               f"    outs: [out.txt]\n  t:\n    cmd: {MARK_CMD} > t.txt\n    deps: [in.txt]\n    outs: [t.txt]\n")
    repo.dvc("repro")
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "A")
    assert params_show(repo) == {"params.yaml": {"lr": 1}}
    repo.config("docker.image", image_b)
    repo.dvc("repro")
    assert json.loads(repo.dvc("params", "diff", "--json").stdout) == {}  # no params changed
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "B")
    repo.config("docker.image", busybox_image)
    repo.dvc("exp", "run", "-n", "back-to-a")
    a_col, b_col = dep_path(busybox_image), dep_path(image_b)
    exps = experiments(repo)
    assert exps["back-to-a"]["deps"][a_col] == short_id(image_id(docker_client, busybox_image))
    assert list(exps["back-to-a"]["params"]) == ["params.yaml"]
    exp_diff = json.loads(repo.dvc("exp", "diff", "HEAD", "back-to-a", "--json").stdout)
    assert LEGACY_RECORD_FILE not in exp_diff["params"]
    header, *rows = repo.dvc("exp", "show", "--csv").stdout.splitlines()
    columns = header.split(",")
    assert b_col in columns and columns.count(b_col) == 1  # two stages, one image: one column
    assert short_id(image_id(docker_client, image_b)) in ",".join(rows)
    assert columns.index("lr") < columns.index(b_col)  # after the user's params
    dropped = repo.dvc("exp", "show", "--csv", "--drop", "docker:.*").stdout.splitlines()[0].split(",")
    assert not [c for c in dropped if c.startswith("docker:")] and "lr" in dropped
    assert "Warning" not in repo.dvc("exp", "save", "-n", "saved").stderr  # nothing untracked of ours


IMAGE_PARAM_YAML = f"""stages:
  s:
    cmd: {MARK_CMD} > out.txt
    deps: [in.txt]
    params: [image]
    outs: [out.txt]
    meta: {{docker: "${{image}}"}}
"""


def test_queue_j2_records_the_identity_per_experiment(make_repo, busybox_image, build_image, docker_client,
                                                       no_leftovers):
    """The image as a param templated into meta.docker; two experiments on two images, two workers."""
    image_b = build_image("qb", "QB")
    repo = make_repo(busybox_image)
    repo.env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), repo.env.get("PATH", "")])
    repo.write("params.yaml", f"image: {busybox_image}\n")
    repo.write("in.txt", "in\n")
    repo.write("dvc.yaml", IMAGE_PARAM_YAML)
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "pipeline")
    queue(repo, "on-a", f"image={busybox_image}")
    queue(repo, "on-b", f"image={image_b}")
    try:
        start_workers(repo, 2)
        st = wait_for_queue(repo, ["on-a", "on-b"])
        assert st["on-a"] == "Success" and st["on-b"] == "Success", st
    finally:
        stop_workers(repo)
    exps = experiments(repo)
    expected = {"on-a": (busybox_image, "none\n"), "on-b": (image_b, "QB\n")}
    for name, (image, out) in expected.items():
        rev = exps[name]["rev"]
        assert lock_records(git_show(repo, rev, "dvc.lock")) == {"s": (image, image_id(docker_client, image))}, name
        assert exps[name]["deps"][dep_path(image)] == short_id(image_id(docker_client, image))
    # the workspace was not touched by the queue
    assert not (repo.path / "dvc.lock").exists()


def test_temp_exp_run_records_the_identity(make_repo, busybox_image, build_image, docker_client, no_leftovers):
    image_b = build_image("tb", "TB")
    repo = make_repo(busybox_image)
    repo.write("params.yaml", f"image: {busybox_image}\n")
    repo.write("in.txt", "in\n")
    repo.write("dvc.yaml", IMAGE_PARAM_YAML)
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "pipeline")
    repo.dvc("exp", "run", "--temp", "-n", "tmp-b", "-S", f"image={image_b}")
    rev = experiments(repo)["tmp-b"]["rev"]
    assert lock_records(git_show(repo, rev, "dvc.lock")) == {"s": (image_b, image_id(docker_client, image_b))}


VANILLA = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != "dvc_docker_exec_hook"]
from dvc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_dvc_without_the_plugin_reads_the_repo(repo, tmp_path: Path):
    """No crash; it ignores the recorded identities (stages up to date) and drops them when it rewrites dvc.lock."""
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: echo x > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n")
    repo.dvc("repro")
    assert lock_identity(repo, "s")
    # that DVC cannot read the docker section: the config lives where it does not look
    repo.config("docker.image")
    repo.config("docker.pull")
    script = tmp_path / "vanilla_dvc.py"
    script.write_text(VANILLA)
    proc = repo.run(sys.executable, str(script), "status", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Data and pipelines are up to date" in proc.stdout and "Traceback" not in proc.stderr
    shown = repo.run(sys.executable, str(script), "exp", "show", "--csv").stdout
    assert shown.startswith("Experiment,") and "docker:" not in shown  # no dependency on the record there
    proc = repo.run(sys.executable, str(script), "repro", "-f")
    assert lock_identity(repo, "s") is None  # dvc.lock rewritten without the plugin's entry


def test_shared_settings_file_is_tolerated_by_a_dvc_without_the_plugin(repo, busybox_image, tmp_path: Path):
    """Issue 20, item 6: `.dvc/docker.yaml` shares the image; plain DVC ignores it, where `[docker]` in .dvc/config breaks it."""
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: cat /proc/1/cmdline > out.txt\n    outs: [out.txt]\n")
    script = tmp_path / "vanilla_dvc.py"
    script.write_text(VANILLA)
    broken = repo.run(sys.executable, str(script), "status", check=False)  # the fixture's `dvc config docker.image`
    assert broken.returncode != 0 and "extra keys not allowed" in broken.stderr
    repo.config("docker.image")
    repo.config("docker.pull")
    repo.write(".dvc/docker.yaml", f"image: {busybox_image}\npull: never\n")
    proc = repo.run(sys.executable, str(script), "status")
    assert "Traceback" not in proc.stderr and "WARNING" not in proc.stderr
    run = repo.dvc("repro")
    assert f"in a container of image '{busybox_image}'" in run.stdout and "docker-init" in repo.read("out.txt")
    # `dvc config` on this machine still wins over the shared file
    repo.config("docker.enabled", "false", local=True)
    assert "in a container" not in repo.dvc("repro", "-f").stdout


def test_a_registry_image_is_identified_by_its_digest_and_a_moved_tag_reruns(
    repo, registry, build_image, busybox_image, docker_client
):
    """Registry on loopback (test_pull's fixture): digest identity; a tag moved in the registry, then pulled."""
    name = f"{registry}/dde-prov-{uuid.uuid4().hex[:8]}"
    ref = f"{name}:1"
    push_image(docker_client, f"{name}:1", tag_of=busybox_image, remove=True)
    try:
        repo.config("docker.image", ref)
        repo.config("docker.pull", "missing")
        repo.write("dvc.yaml", f"stages:\n  s:\n    cmd: {MARK_CMD} > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n")
        repo.dvc("repro")  # pulls the absent image first
        first = records(repo)["s"][1]
        assert first.startswith(f"{name}@sha256:"), first  # the registry digest, not the image ID
        assert not trailing_space(repo.lock()), repo.lock()  # a pulled image's repo line too (issue 17)
        assert first in docker_client.api.inspect_image(ref)["RepoDigests"]

        push_image(docker_client, f"{name}:1", tag_of=build_image("moved", "MOVED"), remove=True)  # the tag moves in the registry
        docker_client.images.get(first).tag(name, "1")  # locally it still names the first image
        assert status(repo) == {}  # status never pulls: the local tag has not moved
        assert "Pulling" not in repo.dvc("status").stderr
        repo.config("docker.pull", "always")
        proc = repo.dvc("repro")
        assert "Pulling image" in proc.stderr + proc.stdout and "in a container" in proc.stdout
        assert repo.read("out.txt") == "MOVED\n"
        second = records(repo)["s"][1]
        assert second.startswith(f"{name}@sha256:") and second != first
    finally:  # the tag and the digests the pulls gave busybox's image: references only, the image stays
        remove_repository(docker_client, name)


# --- issue 17: stages DVC creates without the loader; nothing recorded is no error ---------------


def test_stage_add_run_then_status_is_clean_and_the_run_cache_restores_without_a_container(repo, docker_client):
    """`dvc stage add --run` records the image like `dvc repro`; the run-cache key is the reloaded stage's."""
    repo.dvc("stage", "add", "--run", "-n", "copy", "-d", "in.txt", "-o", "out.txt", "cp in.txt out.txt")
    assert lock_identity(repo, "copy") == image_id(docker_client, "dvc-docker-exec-test/busybox:latest")
    assert status(repo) == {} and "Data and pipelines are up to date" in repo.dvc("status").stdout
    assert not trailing_space(repo.lock())
    (repo.path / "out.txt").unlink()
    (repo.path / "dvc.lock").unlink()
    with containers_created(docker_client, repo) as created:
        proc = repo.dvc("repro")
    assert "Stage 'copy' is cached - skipping run" in proc.stdout, proc.stdout
    assert created == []
    assert repo.read("out.txt") == "in\n" and status(repo) == {}


def test_commit_of_a_stage_run_without_commit_and_of_one_run_by_hand(repo):
    """`Repo.run(no_commit=True)` (DVC's run_copy) then `dvc commit`: no prompt, as without the plugin."""
    api = ("from dvc.repo import Repo; Repo('.').run(name='copy', cmd='cp in.txt out.txt', deps=['in.txt'],"
           " outs=['out.txt'], no_commit=True)")
    repo.run(sys.executable, "-c", api)
    proc = repo.dvc("commit", check=False)
    assert proc.returncode == 0, proc.stderr
    assert lock_identity(repo, "copy") and status(repo) == {}
    # a stage added, its command run by hand on the host, committed (-f: DVC asks for it, natively too)
    repo.stage_add("-n", "hand", "-d", "in.txt", "-o", "hand.txt", "cp in.txt hand.txt")
    repo.write("hand.txt", "in\n")
    repo.dvc("commit", "-f", "hand")
    assert lock_identity(repo, "hand") and status(repo) == {}


def test_params_show_with_no_record_is_no_error(repo):
    """Stages that never ran in a container: nothing recorded is never an error (issue 17, group 2)."""
    repo.write("params.yaml", "lr: 1\n")
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: echo x > out.txt\n    deps: [in.txt]\n    params: [lr]\n"
               "    outs: [out.txt]\n    meta: {docker: false}\n")
    repo.dvc("repro")
    assert params_show(repo) == {"params.yaml": {"lr": 1}}
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "host")
    assert json.loads(repo.dvc("params", "diff", "--all", "--json").stdout) == {"params.yaml": {"lr": {"old": 1, "new": 1, "diff": 0}}}
    assert "!" not in repo.dvc("exp", "show", "--csv").stdout


# --- issue 16, P8: one record; what is reported agrees with dvc.lock ----------------------------------


FORGE = "sha256:" + "f" * 64


def test_a_stage_cannot_make_status_doctor_and_exp_show_disagree_with_dvc_lock(repo, docker_client, busybox_image):
    """A stage forges another stage's identity, in the file earlier versions read and in dvc.lock itself."""
    real = image_id(docker_client, busybox_image)
    repo.write("dvc.yaml", f"""stages:
  s:
    cmd: echo s > s.txt
    deps: [in.txt]
    outs: [s.txt]
  forger:
    cmd:
    - "echo 's:' > dvc.docker.lock"
    - "echo '  image: {busybox_image}' >> dvc.docker.lock"
    - "echo '  id: {FORGE}' >> dvc.docker.lock"
    - sed -i 's/{real[7:]}/{FORGE[7:]}/' dvc.lock
    - echo f > f.txt
    deps: [in.txt, s.txt]
    outs: [f.txt]
""")
    repo.dvc("repro")
    assert lock_identity(repo, "s") == FORGE  # the stage did rewrite dvc.lock (the repository is writable)
    # every report reads dvc.lock: the forgery shows, and `dvc status` calls the stage changed
    text = repo.dvc("status").stdout
    assert f"{short_identity(FORGE)} -> {short_identity(real)}" in text, text
    images = json.loads(repo.dvc("docker", "images", "--json").stdout)
    assert {row["stage"]: row["recorded"] for row in images}["s"] == FORGE
    doctor = repo.dvc("docker", "doctor", check=False).stdout
    assert f"dvc.lock records {short_identity(FORGE)}" in doctor, doctor
    assert "'dvc.docker.lock' is not read" in doctor  # the file of earlier versions is named, not trusted
    repo.run("git", "add", "-A")
    repo.run("git", "commit", "-qm", "forged")
    assert short_id(FORGE) in repo.dvc("exp", "show", "--csv").stdout
    repo.dvc("repro")  # reruns s under the real image: the record is true again
    assert lock_identity(repo, "s") == real and status(repo) == {}


def test_a_machine_track_true_wins_over_the_repository(repo, image_b):
    repo.write("dvc.yaml", "stages:\n  s:\n    cmd: echo x > out.txt\n    deps: [in.txt]\n    outs: [out.txt]\n"
               "    meta: {docker: {track: false}}\n")
    repo.config("docker.track", "true", local=True)
    proc = repo.dvc("repro")
    assert "docker.track false from dvc.yaml (meta.docker) is ignored" in proc.stderr, proc.stderr
    assert lock_identity(repo, "s")
    repo.config("docker.image", image_b)
    assert set(status(repo)) == {"s"}  # tracked: the image change makes it changed
    repo.config("docker.track", local=True)
    repo.config("docker.track", "false")  # the repository's .dvc/config alone: its word stands
    repo.write("dvc.yaml", repo.read("dvc.yaml").replace("    meta: {docker: {track: false}}\n", ""))
    assert status(repo) == {}

"""How the stage's image reaches the Swarm nodes: a registry, pinned by the recorded digest (issue 11).

The registry lives on the swarm's bridge (swarm-netns.sh); images are built on a
node FROM the busybox test image, with a marker file `/variant`, and pushed from
that node. Node 1 is the manager: the plugin asks its engine for the image's
identity (and applies `docker.pull` there), and each task's image is
`repo@sha256:<digest>` when that identity is a registry digest.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Iterator, List, Optional

import pytest

from tests.conftest import BUSYBOX, DvcRepo, daemon_events, push_image, start_dvc, wait_until
from tests.integration.swarm.conftest import write_pipeline
from tests.helpers import records, status

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

VARIANT_CMD = 'cat /variant > {out}; echo "$DVC_DOCKER_NODE" >> {out}'


@pytest.fixture
def repository(swarm_clean) -> str:
    """A repository of this test in the swarm's registry."""
    return f"{swarm_clean.registry}/dde-img-{uuid.uuid4().hex[:8]}/stage"


@pytest.fixture
def variant(swarm_clean, repository, tmp_path) -> Iterator[Callable[..., Optional[str]]]:
    """variant(node, marker, push=True) -> the registry digest `repository@sha256:..` (None unpushed).

    Builds `repository:1` on that node's engine with /variant = marker (offline,
    FROM the busybox test image every node holds) and pushes it from there.
    Afterwards every node forgets every image of `repository`.
    """
    ref = f"{repository}:1"

    def build(node: int, marker: str, push: bool = True) -> Optional[str]:
        ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
        ctx.mkdir()
        (ctx / "variant").write_text(marker + "\n")
        (ctx / "Dockerfile").write_text(f"FROM {BUSYBOX}\nCOPY variant /variant\n")
        engine = swarm_clean.node(node)
        engine.images.build(path=str(ctx), tag=ref, network_mode="none", rm=True)
        if not push:
            return None
        push_image(engine, ref)
        digests = [d for d in engine.api.inspect_image(ref)["RepoDigests"] if d.startswith(f"{repository}@")]
        assert len(digests) == 1, digests
        return digests[0]

    yield build
    for node in (1, 2, 3):
        engine = swarm_clean.node(node)
        for image in engine.images.list(all=True):
            names = (image.attrs.get("RepoTags") or []) + (image.attrs.get("RepoDigests") or [])
            if any(n.startswith((f"{repository}:", f"{repository}@")) for n in names):
                engine.images.remove(image.id, force=True)


def holds(swarm, node: int, reference: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        swarm.node(node).images.get(reference)
        return True
    except ImageNotFound:
        return False


def task_images(swarm, node: int, since: int, repo: DvcRepo) -> List[str]:
    """The image reference of every task container of `repo`'s stages created on `node` since `since` (its engine's events)."""
    events = daemon_events(swarm.node(node), since, type="container", event="create", label=f"dvc-docker-exec.repo={repo.path}")
    return [e["Actor"]["Attributes"]["image"] for e in events if "com.docker.swarm.service.id" in e["Actor"]["Attributes"]]


def use_image(repo: DvcRepo, reference: str, pull: str = "missing") -> None:
    repo.config("docker.image", reference)
    repo.config("docker.pull", pull)
    repo.write("in.txt", "in\n")


def placed(stage_cmd: str, out: str, node: str, deps: Optional[list] = None) -> dict:
    return {"cmd": stage_cmd, "deps": deps or ["in.txt"], "outs": [out], "meta": {"docker": {"constraints": f"node.labels.dde=={node}"}}}


def test_a_node_without_the_image_pulls_the_recorded_digest(swarm_repo, swarm_clean, variant, repository):
    digest = variant(1, "A")  # on the manager and in the registry only
    ref = f"{repository}:1"
    assert not any(holds(swarm_clean, n, name) for n in (2, 3) for name in (ref, digest))
    use_image(swarm_repo, ref)
    write_pipeline(swarm_repo, {"s": placed(VARIANT_CMD.format(out="s.txt"), "s.txt", "n3")})
    since = int(time.time())
    proc = swarm_repo.dvc("repro")
    assert "WARNING" not in proc.stderr, proc.stderr  # e.g. no false "tasks ... still being removed"

    marker, node = swarm_repo.read("s.txt").split()
    assert (marker, node) == ("A", swarm_clean.nodes["n3"])
    assert records(swarm_repo)["s"] == (ref, digest)  # the identity recorded for provenance...
    assert task_images(swarm_clean, 3, since, swarm_repo) == [digest]  # ...is the image node 3's task was given
    assert holds(swarm_clean, 3, digest)
    assert digest in swarm_clean.node(3).api.inspect_image(digest)["RepoDigests"]
    assert status(swarm_repo) == {}


def test_a_tag_moved_between_two_stages_still_runs_the_recorded_digest(swarm_repo, swarm_clean, variant, repository):
    """Stage `first` (node 3) waits until the tag has moved in the registry; `second` (node 2) still runs A."""
    first_digest = variant(1, "A")
    ref = f"{repository}:1"
    use_image(swarm_repo, ref)
    wait = 'touch "$DVC_ROOT/first-ran"; n=0; while [ ! -e "$DVC_ROOT/moved" ] && [ $n -lt 600 ]; do sleep 0.2; n=$((n+1)); done'
    write_pipeline(
        swarm_repo,
        {
            "first": placed(VARIANT_CMD.format(out="first.txt") + "; " + wait, "first.txt", "n3"),
            "second": placed(VARIANT_CMD.format(out="second.txt"), "second.txt", "n2", deps=["first.txt"]),
        },
    )
    since = int(time.time())
    stdout = swarm_repo.path.parent / "repro-stdout.txt"
    proc, stderr = start_dvc(swarm_repo, "repro", stdout=stdout)
    try:
        wait_until(lambda: (swarm_repo.path / "first-ran").exists(), "stage 'first' running", proc, timeout=180)
        moved_digest = variant(2, "B")  # node 2 pushes another image under the same tag
        assert moved_digest != first_digest
        assert holds(swarm_clean, 2, ref) and swarm_clean.node(2).images.get(ref).id != swarm_clean.node(1).images.get(ref).id
        (swarm_repo.path / "moved").touch()
        proc.wait(timeout=300)
        out, err = stdout.read_text(), stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + err

    assert swarm_repo.read("first.txt").split() == ["A", swarm_clean.nodes["n3"]]
    # node 2's own tag names B and the registry's tag too: it ran A, by digest
    assert swarm_repo.read("second.txt").split() == ["A", swarm_clean.nodes["n2"]]
    assert task_images(swarm_clean, 2, since, swarm_repo) == [first_digest]
    assert records(swarm_repo) == {"first": (ref, first_digest), "second": (ref, first_digest)}

    # `dvc status` asks the manager, which still holds A under the tag: nothing changed
    # (it never pulls); `docker.pull always` makes the manager pull the moved tag
    assert status(swarm_repo) == {}
    swarm_repo.config("docker.pull", "always")
    proc = swarm_repo.dvc("repro")
    assert f"Pulling image '{ref}'..." in proc.stderr.splitlines()
    assert swarm_repo.read("first.txt").split()[0] == "B" and swarm_repo.read("second.txt").split()[0] == "B"
    assert records(swarm_repo) == {"first": (ref, moved_digest), "second": (ref, moved_digest)}


def test_the_manager_pulls_an_image_it_lacks_and_pins_it(swarm_repo, swarm_clean, variant, repository):
    """docker.pull missing (the default): the manager's engine pulls it once to learn its digest."""
    digest = variant(2, "A")  # in the registry and on node 2 only
    ref = f"{repository}:1"
    assert not holds(swarm_clean, 1, ref)
    use_image(swarm_repo, ref, pull="missing")
    write_pipeline(swarm_repo, {"s": placed(VARIANT_CMD.format(out="s.txt"), "s.txt", "n3")})
    since = int(time.time())
    proc = swarm_repo.dvc("repro")
    assert f"Pulling image '{ref}'..." in proc.stderr.splitlines()
    assert holds(swarm_clean, 1, digest)
    assert swarm_repo.read("s.txt").split()[0] == "A"
    assert records(swarm_repo)["s"] == (ref, digest)
    assert task_images(swarm_clean, 3, since, swarm_repo) == [digest]


@pytest.mark.parametrize("pull", ["never", "missing"])
@pytest.mark.parametrize("track", [True, False], ids=["tracked", "untracked"])
def test_an_image_the_manager_cannot_get_fails_with_one_line(swarm_repo, swarm_clean, variant, repository, pull, track):
    """On node 3 only, in no registry: the manager can tell no identity, so no node is asked to run it."""
    variant(3, "A", push=False)
    ref = f"{repository}:1"
    use_image(swarm_repo, ref, pull=pull)
    if not track:
        swarm_repo.config("docker.track", "false")
    write_pipeline(swarm_repo, {"s": placed(VARIANT_CMD.format(out="s.txt"), "s.txt", "n3")})
    since = int(time.time())
    proc = swarm_repo.dvc("repro", check=False, timeout=180)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"image '{ref}'" in errors[0] and "the Swarm manager" in errors[0], errors[0]
    if pull == "never":
        assert "docker.pull is 'never'" in errors[0]
    else:
        assert f"cannot pull image '{ref}' from {swarm_clean.registry}" in errors[0]
    assert not (swarm_repo.path / "s.txt").exists() and swarm_repo.lock() is None
    assert task_images(swarm_clean, 3, since, swarm_repo) == []  # no service was made
    if track:  # `dvc status`: a change (nothing ran, nothing is here), and where it looked
        out = swarm_repo.dvc("status").stdout
        assert f"image '{ref}' is not on the Swarm manager '{swarm_clean.host}'" in out, out


def test_an_image_only_the_manager_holds_is_rejected_by_the_node(swarm_repo, swarm_clean, variant, repository):
    """Built on the manager, never pushed: its identity is a local image ID, so it runs by tag, and node 3 lacks it."""
    variant(1, "A", push=False)
    ref = f"{repository}:1"
    use_image(swarm_repo, ref, pull="never")
    write_pipeline(swarm_repo, {"s": placed(VARIANT_CMD.format(out="s.txt"), "s.txt", "n3")})
    proc = swarm_repo.dvc("repro", check=False, timeout=180)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, proc.stderr
    assert "Swarm rejected the task" in errors[0] and swarm_clean.nodes["n3"][:12] in errors[0]
    assert "No such image" in errors[0] and "push it to a registry the nodes reach" in errors[0]


def test_dvc_docker_pull_puts_the_recorded_digest_back_on_the_manager(swarm_repo, swarm_clean, variant, repository):
    """The manager's tag moved (someone pulled it): `dvc status` says so; `dvc docker pull` restores the record."""
    first_digest = variant(1, "A")
    ref = f"{repository}:1"
    use_image(swarm_repo, ref)
    write_pipeline(swarm_repo, {"s": placed(VARIANT_CMD.format(out="s.txt"), "s.txt", "n3")})
    swarm_repo.dvc("repro")
    moved_digest = variant(3, "B")  # the registry's tag moves; node 3 holds B under the tag
    swarm_clean.node(1).images.pull(repository, tag="1")  # and the manager pulls it
    changed = status(swarm_repo)["s"][0]["changed deps"]
    assert changed == {f"docker:{ref}": {f"image '{ref}' {_short(first_digest)} -> {_short(moved_digest)}": "modified"}}

    swarm_repo.dvc("docker", "pull")  # by the digest dvc.lock records, onto the manager
    assert first_digest in swarm_clean.node(1).images.get(ref).attrs["RepoDigests"]
    assert status(swarm_repo) == {}
    since = int(time.time())
    swarm_repo.dvc("repro", "-f")
    assert swarm_repo.read("s.txt").split() == ["A", swarm_clean.nodes["n3"]]  # not node 3's own B
    assert task_images(swarm_clean, 3, since, swarm_repo) == [first_digest]
    assert records(swarm_repo)["s"] == (ref, first_digest)


def _short(identity: str) -> str:
    from dvc_docker_exec.types.provenance import short_identity

    return short_identity(identity)

"""image_help: the one line for an image that is not on this machine (issue 20, item 2)."""

from __future__ import annotations

import pytest

from dvc_docker_exec.api.image_help import LocalImage, close_names, local_images, made_here, pull_reason, recorded_here, unavailable

IRIS = LocalImage(("nu-iris:1",), "sha256:" + "a" * 64)
OTHERS = [IRIS, LocalImage(("python:3.12-slim", "python:3.12"), "sha256:" + "b" * 64, ("python@sha256:" + "c" * 64,))]
NO_HOST = (
    'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host'
)


def test_typo_suggests_the_close_local_name() -> None:
    assert close_names("nu-irs:1", OTHERS) == ["nu-iris:1"]
    assert close_names("docker.io/library/python:3.12-slm", OTHERS)[0] == "python:3.12-slim"
    assert close_names("entirely-else:9", OTHERS) == []
    assert close_names("nu-iris:1", OTHERS) == []  # itself is no suggestion


def test_recorded_identity_found_by_id_or_digest() -> None:
    assert recorded_here(IRIS.id, OTHERS) is IRIS
    assert recorded_here("python@sha256:" + "c" * 64, OTHERS) is OTHERS[1]
    assert recorded_here("sha256:" + "d" * 64, OTHERS) is None and recorded_here(None, OTHERS) is None


@pytest.mark.parametrize(
    "detail, words",
    [
        (NO_HOST, "'registry-1.docker.io' does not resolve"),
        ('Get "http://localhost:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused', "connection refused"),
        ("manifest for x:1 not found: manifest unknown: manifest unknown", "no such image or tag"),
        ("pull access denied for nu-irs, repository does not exist or may require 'docker login'", "docker login"),
        ("something new\nsecond line", "something new"),
    ],
)
def test_pull_reason_is_short(detail: str, words: str) -> None:
    reason = pull_reason(detail)
    assert words in reason and "\n" not in reason and len(reason) < 100


def test_the_line_a_new_user_needed() -> None:
    line = unavailable("nu-irs:1", OTHERS, pull_failure=NO_HOST, registry="docker.io")
    assert line.startswith("image 'nu-irs:1' is not present on this machine, and pulling it from docker.io failed")
    assert "'registry-1.docker.io' does not resolve" in line and "10.255.255.53" not in line
    assert "did you mean 'nu-iris:1'?" in line
    # Docker Hub may have it: the pull failed before the registry answered
    assert "`dvc docker pull` once docker.io is reachable" in line
    assert "\n" not in line and len(line) < 220, len(line)


def test_the_recorded_image_under_another_tag_is_named_with_the_retag() -> None:
    line = unavailable("nu-irs:1", OTHERS, recorded=IRIS.id, policy="never")
    assert "is not present locally and docker.pull is 'never'" in line
    assert "is here as 'nu-iris:1': `docker tag nu-iris:1 nu-irs:1`" in line
    assert "did you mean" not in line  # the same name is not suggested twice
    assert line.endswith("`docker tag nu-iris:1 nu-irs:1`")  # what ran is here: the one fix


def test_local_images_tolerates_a_refusing_daemon() -> None:
    class Refusing:
        class api:  # noqa: N801
            @staticmethod
            def images():
                raise RuntimeError("403 from a socket proxy")

    assert local_images(Refusing()) == []


def test_a_shared_prefix_does_not_make_every_name_a_suggestion() -> None:
    team = [LocalImage((f"team/{name}:latest",), f"sha256:{i}") for i, name in enumerate(["busybox", "runner", "runner-venv"])]
    assert close_names("team/busybx:latest", team) == ["team/busybox:latest"]


def test_the_recorded_image_is_named_by_its_tag_most_like_the_asked_name() -> None:
    same = LocalImage(("127.0.0.1:5000/elsewhere:9", "team/busybox:latest"), "sha256:" + "e" * 64)
    line = unavailable("team/busybx:latest", [same], recorded=same.id, policy="never")
    assert "`docker tag team/busybox:latest team/busybx:latest`" in line


# --- `dvc docker pull` only where a registry could have the image ---------------------------------
LOCAL_BUILD = LocalImage(("egs-trial-pre:v1",), "sha256:" + "f" * 64)  # `docker build -t egs-trial-pre:v1 .`
PUSHED_ELSEWHERE = LocalImage(("egs-trial-pre:v2",), "sha256:" + "1" * 64, ("127.0.0.1:5000/other@sha256:" + "2" * 64,))


def test_made_here_is_evidence_not_a_guess_from_the_name() -> None:
    assert not made_here("python:3.12", [])  # on Docker Hub, though it looks like any local name
    assert not made_here("egs-trial-pre:nope", [])  # nothing says where it comes from
    assert made_here("egs-trial-pre:nope", [LOCAL_BUILD])  # its repository's tags here were built here
    assert made_here("egs-trial-pre:nope", [PUSHED_ELSEWHERE])  # a digest of another repository does not count
    assert not made_here("python:3.11", OTHERS)  # python's tags here came from a registry (python@sha256:...)
    assert made_here("team/x:1", [], recorded="sha256:" + "3" * 64)  # what ran had no registry digest
    assert not made_here("team/x:1", [], recorded="team/x@sha256:" + "3" * 64)


@pytest.mark.parametrize(
    "image, images, pull_failure, expected",
    [
        ("python:3.12", [], None, "`dvc docker pull` (or `dvc config docker.pull missing`)"),
        ("python:3.12", [], NO_HOST, "`dvc docker pull` once docker.io is reachable"),
        ("egs-trial-pre:nope", [LOCAL_BUILD], None, None),
        ("egs-trial-pre:nope", [LOCAL_BUILD], NO_HOST, None),
        ("nope:1", [], "manifest for nope:1 not found: manifest unknown", None),  # the registry answered: it has none
    ],
)
def test_pull_is_advised_only_where_a_registry_could_have_it(image, images, pull_failure, expected) -> None:
    line = unavailable(image, images, pull_failure=pull_failure, registry="docker.io", policy="never")
    if expected:
        assert expected in line, line
    else:
        assert "dvc docker pull" not in line, line
    assert f"`docker build -t {image} .` or `docker load -i FILE`" in line or "did you mean" in line, line


def test_the_line_for_a_local_looking_tag_is_short() -> None:
    line = unavailable("egs-trial-pre:nope", [LOCAL_BUILD], pull_failure=NO_HOST, registry="docker.io")
    assert line == (
        "image 'egs-trial-pre:nope' is not present on this machine, and pulling it from docker.io failed "
        "('registry-1.docker.io' does not resolve: no network?); did you mean 'egs-trial-pre:v1'?; "
        "`docker build -t egs-trial-pre:nope .` or `docker load -i FILE`"
    )
    assert len(unavailable("egs-trial-pre:nope", [], policy="never")) < 200

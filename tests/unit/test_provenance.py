"""Unit tests of the identity resolution and the record format (no daemon)."""

import os

import pytest
from docker.errors import ImageNotFound

from dvc_docker_exec import provenance as p

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
IMAGE_ID = "sha256:" + "c" * 64


def test_identity_is_the_registry_digest_of_the_references_repository():
    attrs = {"Id": IMAGE_ID, "RepoDigests": [f"zzz/mirror@{OTHER}", f"python@{DIGEST}"]}
    assert p.identity_from_inspect("python:3.12-slim", attrs) == f"python@{DIGEST}"
    assert p.identity_from_inspect("docker.io/library/python:3.12", attrs) == f"python@{DIGEST}"


def test_identity_ignores_digests_of_other_repositories():
    """A copy pushed elsewhere does not change what a stage ran in."""
    attrs = {"Id": IMAGE_ID, "RepoDigests": [f"127.0.0.1:45121/probe@{OTHER}", f"aaa/x@{DIGEST}"]}
    assert p.identity_from_inspect("my/built:latest", attrs) == IMAGE_ID
    assert p.identity_from_inspect("built:latest", {"Id": IMAGE_ID, "RepoDigests": []}) == IMAGE_ID
    assert p.identity_from_inspect("built:latest", {"Id": IMAGE_ID}) == IMAGE_ID
    two = {"Id": IMAGE_ID, "RepoDigests": [f"aaa/x@{OTHER}", f"aaa/x@{DIGEST}"]}
    assert p.identity_from_inspect("aaa/x:1", two) == f"aaa/x@{DIGEST}"  # the smallest: stable


def test_repository_of_a_reference_with_a_registry_port():
    assert p._repository("localhost:5000/a/b:tag") == "localhost:5000/a/b"
    assert p._repository("localhost:5000/a/b") == "localhost:5000/a/b"
    assert p._repository(f"python:3@{DIGEST}") == "python"


class _Api:
    def __init__(self, images):
        self.images = images
        self.calls = 0

    def inspect_image(self, ref):
        self.calls += 1
        if ref not in self.images:
            raise ImageNotFound(f"No such image: {ref}")
        return self.images[ref]


class _Client:
    def __init__(self, images):
        self.api = _Api(images)


def test_resolve_identity_absent_is_none():
    client = _Client({"a:1": {"Id": IMAGE_ID}})
    assert p.resolve_identity(client, "a:1") == IMAGE_ID
    assert p.resolve_identity(client, "b:1") is None


def test_identity_cache_inspects_each_image_once():
    client = _Client({"a:1": {"Id": IMAGE_ID}, "b:1": {"Id": OTHER}})
    cache = p.IdentityCache(client)
    for _ in range(50):
        assert cache.identity("a:1") == IMAGE_ID
        assert cache.identity("b:1") == OTHER
        assert cache.identity("gone:1") is None
    assert client.api.calls == cache.inspects == 3
    cache.forget("a:1")
    cache.identity("a:1")
    assert client.api.calls == 4


def test_identity_changed():
    assert p.identity_changed(IMAGE_ID, IMAGE_ID) is False
    assert p.identity_changed(IMAGE_ID, OTHER) is True
    assert p.identity_changed(None, OTHER) is True
    assert p.identity_changed(IMAGE_ID, None) is None


def test_short_identity_and_change_words():
    assert p.short_identity(IMAGE_ID) == "sha256:cccccccccccc"
    assert p.short_identity(f"python@{DIGEST}") == "python@sha256:aaaaaaaaaaaa"
    assert p.describe_change("b:1", IMAGE_ID, OTHER) == "image 'b:1' sha256:cccccccccccc -> sha256:bbbbbbbbbbbb"
    assert "not recorded" in p.describe_change("b:1", None, OTHER)


def test_keys_have_no_dots():
    assert p.record_key("train@0.1") == "train@0_1"
    assert p.param_key("train") == "train.id"


def test_record_file_round_trip_and_stable_text(tmp_path):
    path = str(tmp_path / p.RECORD_FILE)
    assert p.read_record_file(path) == {}
    recs = {"train": p.Record("train", "python:3.12", f"python@{DIGEST}"), "a@1": p.Record("a@1", "x y", IMAGE_ID)}
    assert p.write_record_file(path, recs) is True
    assert p.write_record_file(path, dict(reversed(list(recs.items())))) is False  # same text
    assert p.read_record_file(path) == recs
    text = open(path).read()
    assert text.startswith("#") and text.index("\na@1:\n") < text.index("\ntrain:\n")
    odd = {"yes": p.Record("yes", "i", IMAGE_ID), "a b": p.Record("a b", "i", IMAGE_ID)}
    p.write_record_file(path, odd)
    assert p.read_record_file(path) == odd  # keys YAML would read otherwise are quoted
    import yaml  # YAML 1.1 as well

    assert set(yaml.safe_load(open(path))) == {"yes", "a b"}


def test_record_file_is_yaml_dvc_reads_as_params(tmp_path):
    from dvc.dependency.param import read_param_file
    from dvc.fs import LocalFileSystem

    path = str(tmp_path / p.RECORD_FILE)
    p.write_record_file(path, {"train": p.Record("train", "busybox", IMAGE_ID)})
    assert read_param_file(LocalFileSystem(), path, ["train.id"], flatten=True) == {"train.id": IMAGE_ID}


def test_update_record_file_and_removal(tmp_path):
    path = str(tmp_path / p.RECORD_FILE)
    assert p.update_record_file(path, "s", p.Record("s", "i", IMAGE_ID)) is True
    assert p.update_record_file(path, "s", p.Record("s", "i", IMAGE_ID)) is False
    assert p.update_record_file(path, "t", None) is False
    assert p.update_record_file(path, "s", None) is True
    assert not os.path.exists(path)


def test_bad_record_file_is_an_error(tmp_path):
    path = tmp_path / p.RECORD_FILE
    path.write_text("- a\n")
    with pytest.raises(ValueError):
        p.read_record_file(str(path))
    path.write_text("train: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        p.read_record_file(str(path))
    path.write_text("train: {image: x}\n")
    with pytest.raises(ValueError, match="no 'id'"):
        p.read_record_file(str(path))


def test_read_records_of_a_repo(tmp_path):
    p.write_record_file(str(tmp_path / p.RECORD_FILE), {"a": p.Record("a", "i", IMAGE_ID)})
    (tmp_path / "sub").mkdir()
    (tmp_path / ".dvc").mkdir()
    p.write_record_file(str(tmp_path / "sub" / p.RECORD_FILE), {"b": p.Record("b", "j", OTHER)})
    p.write_record_file(str(tmp_path / ".dvc" / p.RECORD_FILE), {"c": p.Record("c", "j", OTHER)})
    assert p.read_records(str(tmp_path)) == {
        "a": p.Record("a", "i", IMAGE_ID),
        os.path.join("sub", "dvc.yaml") + ":b": p.Record("b", "j", OTHER),
    }

"""Unit tests of the identity resolution and the record format (no daemon)."""

from docker.errors import ImageNotFound

from dvc_docker_exec.types import provenance as p

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


def test_record_round_trips_through_the_lock_entry():
    for identity in (f"python@{DIGEST}", IMAGE_ID, "reg:5000/team/x@" + DIGEST, "sha512:" + "d" * 128):
        rec = p.Record("train", "python:3.12", identity)
        lock = {"deps": [{"path": p.dep_path("python:3.12"), "dataset": p.lock_entry(rec)}]}
        assert p.record_from_lock("train", lock) == rec
    assert p.lock_entry(p.Record("t", "i", f"python@{DIGEST}")) == {"repo": "python", "sha256": "a" * 64}
    assert p.lock_entry(p.Record("t", "i", IMAGE_ID)) == {"sha256": "c" * 64}


def test_nothing_recorded_is_none_never_an_error():
    assert p.record_from_lock("train", None) is None
    assert p.record_from_lock("train", {}) is None
    assert p.record_from_lock("train", {"deps": [{"path": "data.csv", "md5": "x"}]}) is None
    assert p.record_from_lock("train", {"deps": [{"path": "docker:busybox"}]}) is None  # added, never run
    assert p.record_from_lock("train", {"deps": "garbage", "params": []}) is None


def test_record_of_earlier_versions_is_read_from_the_params_entry():
    lock = {"params": {p.LEGACY_RECORD_FILE: {"train_1.id": IMAGE_ID}}}
    assert p.record_from_lock("train.1", lock) == p.Record("train.1", "", IMAGE_ID)


def test_lock_entry_lines_fit_80_columns_no_trailing_space():
    """DVC's YAML writer moves a longer value onto the next line after `key: ` (a trailing space)."""
    import io

    from dvc.utils.serialize._yaml import _get_yaml

    rec = p.Record("a-rather-long-stage-name", "x", "dvc-docker-exec-test/busybox@" + DIGEST)
    lock = {"stages": {rec.stage: {"cmd": "c", "deps": [{"path": p.dep_path("busybox"), "dataset": p.lock_entry(rec)}]}}}
    text = io.StringIO()
    _get_yaml().dump(lock, text)
    assert all(len(line) <= 80 and not line.endswith(" ") for line in text.getvalue().splitlines()), text.getvalue()


def test_short_id_is_twelve_hex_digits():
    assert p.short_id(f"python@{DIGEST}") == "a" * 12
    assert p.short_id(IMAGE_ID) == "c" * 12
    assert p.short_id(None) == ""




def test_a_built_images_record_round_trips_and_its_key_is_the_identity_only():
    """docker.build: the Dockerfile, inputs and produced image ID sit in the dependency's dvc.lock entry."""
    inputs = {"dockerfile": DIGEST, "context": OTHER, "args": DIGEST, "target": "", "bases": {"python:3": f"python@{DIGEST}"}}
    rec = p.Record("train", "dvc-build/x", "build:" + DIGEST, build="env/Dockerfile", inputs=inputs, image_id=IMAGE_ID)
    entry = p.lock_entry(rec)
    assert entry == {"build": "env/Dockerfile", "sha256": "a" * 64, "built": "c" * 64,
                     "file": "a" * 64, "files": "b" * 64, "args": "a" * 64,
                     "bases": [{"ref": "python:3", "repo": "python", "sha": "a" * 64}]}
    assert p.record_from_lock("train", {"deps": [{"path": p.dep_path("dvc-build/x"), "dataset": entry}]}) == rec
    # the run-cache key: another machine's build of the same inputs has another image ID
    assert p.lock_entry(rec, identity_only=True) == {"build": "env/Dockerfile", "sha256": "a" * 64}
    assert p.identity_from_entry(p.lock_entry(rec, identity_only=True)) == "build:" + DIGEST
    assert p.short_id("build:" + DIGEST) == "a" * 12
    bare = p.Record("train", "dvc-build/x", "build:" + DIGEST, build="env/Dockerfile")
    assert p.record_from_entry("train", "dvc-build/x", p.lock_entry(bare)) == bare


def test_a_built_images_lock_lines_fit_80_columns_and_the_old_form_is_still_read():
    """No trailing whitespace in dvc.lock (issue 17): DVC's YAML writer wraps a line longer than 80 columns
    after `key: `. Every identity of a build (its inputs, each base's identity) stays complete."""
    from dvc.utils.serialize import dumps_yaml

    bases = {"python:3.12-slim": f"python@{DIGEST}", "local/base:1": IMAGE_ID, "odd:1": "other-form-identity"}
    inputs = {"dockerfile": DIGEST, "context": OTHER, "args": IMAGE_ID, "target": "prod", "bases": bases}
    rec = p.Record("train", "dvc-build/x", "build:" + DIGEST, build="env/Dockerfile", inputs=inputs, image_id=IMAGE_ID)
    lock = {"schema": "2.0", "stages": {"train": {"cmd": "python train.py", "deps": [
        {"path": p.dep_path("dvc-build/x"), "dataset": p.lock_entry(rec)}]}}}
    text = dumps_yaml(lock)
    assert all(len(line) <= 80 and line == line.rstrip() for line in text.splitlines()), text
    from ruamel.yaml import YAML

    assert p.record_from_lock("train", YAML(typ="safe").load(text)["stages"]["train"]) == rec
    # a lock written before: the inputs as one nested mapping
    old = {"build": "env/Dockerfile", "sha256": "a" * 64, "built": "c" * 64, "inputs": inputs}
    assert p.record_from_lock("train", {"deps": [{"path": p.dep_path("dvc-build/x"), "dataset": old}]}) == rec
    # no target, no base (FROM scratch): as_record's "" and {} come back
    plain = {**inputs, "target": "", "bases": {}}
    rec = p.Record("train", "dvc-build/x", "build:" + DIGEST, build="env/Dockerfile", inputs=plain)
    assert "target" not in p.lock_entry(rec) and "bases" not in p.lock_entry(rec)
    assert p.record_from_entry("train", "dvc-build/x", p.lock_entry(rec)) == rec

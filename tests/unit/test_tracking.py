"""The image dependency inside DVC, without a daemon (the identity is faked).

Real DVC objects: a repo in a temp dir, stages loaded through DVC's own
loader (patched by the hook), DVC's serializers. Pins the patch points on the
DVC version under test (tox -e lowest,latest).
"""

from __future__ import annotations

import logging
from typing import Optional

import pytest

from dvc_docker_exec import image_dep, provenance

ID_A = "sha256:" + "a" * 64
ID_B = "sha256:" + "b" * 64

PIPELINE = """stages:
  box:
    cmd: echo x > box.txt
    deps: [in.txt]
    outs: [box.txt]
  host:
    cmd: echo x > host.txt
    deps: [in.txt]
    outs: [host.txt]
    meta: {docker: false}
  untracked:
    cmd: echo x > u.txt
    deps: [in.txt]
    outs: [u.txt]
    meta: {docker: {track: false}}
  download:
    cmd: echo x > d.txt
    outs: [d.txt]
  callback:
    cmd: echo x
"""


@pytest.fixture
def dvc_repo(tmp_path, monkeypatch):
    from dvc.repo import Repo

    monkeypatch.chdir(tmp_path)
    repo = Repo.init(str(tmp_path), no_scm=True)
    with repo.config.edit() as conf:
        conf["docker"] = {"image": "img:1"}
    (tmp_path / "in.txt").write_text("in\n")
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    identities = {"img:1": ID_A}

    def fake(image: str, pull: str, backend: str = "engine", platform: Optional[str] = None, recorded=None) -> str:
        if image not in identities:
            raise image_dep.ImageNotChecked("it is not present locally")
        return identities[image]

    monkeypatch.setattr(image_dep, "current_identity", fake)
    yield Repo(str(tmp_path)), identities


def stages(repo) -> dict:
    return {stage.name: stage for stage in repo.index.stages}


def image_deps(stage) -> list:
    return [d for d in stage.deps if isinstance(d, image_dep.ImageDependency)]


def test_only_container_stages_with_dependencies_get_the_image_dependency(dvc_repo):
    repo, _ = dvc_repo
    found = {name: image_deps(stage) for name, stage in stages(repo).items()}
    assert [len(found[n]) for n in ("box", "download", "host", "untracked", "callback")] == [1, 1, 0, 0, 0]
    (dep,) = found["box"]
    assert dep.def_path == provenance.RECORD_FILE and dep.params == ["box.id"] and dep.image == "img:1"
    assert stages(repo)["callback"].is_callback  # DVC still reruns it every time


def test_status_words_and_values(dvc_repo, caplog):
    repo, identities = dvc_repo
    box = stages(repo)["box"]
    (dep,) = image_deps(box)
    status = dep.status()
    assert status == {provenance.RECORD_FILE: {f"image 'img:1' {ID_A[:19]} (not recorded before)": "new"}}
    dep.save()
    assert dep.recorded() == ID_A and dep.status() == {}
    identities["img:1"] = ID_B
    assert dep.status() == {provenance.RECORD_FILE: {f"image 'img:1' {ID_A[:19]} -> {ID_B[:19]}": "modified"}}
    del identities["img:1"]
    with caplog.at_level(logging.WARNING, logger="dvc"):
        assert dep.status() == {}  # not checked is not changed
    assert "stage 'box': image 'img:1' not checked: it is not present locally" in caplog.text


def test_lock_and_run_cache_key_hold_the_identity_and_dvc_yaml_never(dvc_repo):
    from dvc.stage import serialize
    from dvc.stage.cache import _get_stage_hash

    repo, identities = dvc_repo
    box = stages(repo)["box"]
    box.save_deps()
    lock = serialize.to_single_stage_lockfile(box)
    assert lock["params"] == {provenance.RECORD_FILE: {"box.id": ID_A}}
    assert lock["cmd"] == "echo x > box.txt"
    assert serialize.to_pipeline_file(box)["box"].get("params") is None
    assert image_deps(box)  # and it is still there afterwards
    key_a = _get_stage_hash(box)
    identities["img:1"] = ID_B
    box.save_deps()
    assert _get_stage_hash(box) != key_a


def test_a_stage_without_own_dependencies_stays_out_of_the_run_cache(dvc_repo, tmp_path):
    from dvc.stage.cache import _can_hash

    repo, _ = dvc_repo
    (tmp_path / "d.txt").write_text("x\n")
    (tmp_path / "box.txt").write_text("x\n")
    found = stages(repo)
    for name in ("box", "download"):
        found[name].save()
    assert _can_hash(found["box"]) is True
    assert _can_hash(found["download"]) is False  # as without the plugin: no deps, no run cache


def test_a_stage_turned_host_is_changed_once_then_records_nothing(dvc_repo, tmp_path):
    from dvc.repo import Repo
    from dvc.stage import serialize
    from dvc.utils.serialize import dump_yaml

    lock = {"schema": "2.0", "stages": {"host": {"cmd": "echo x > host.txt", "params": {
        provenance.RECORD_FILE: {"host.id": ID_A}}}}}
    dump_yaml(str(tmp_path / "dvc.lock"), lock)
    host = stages(Repo(str(tmp_path)))["host"]
    (dep,) = image_deps(host)
    assert dep.image is None
    assert dep.status() == {
        provenance.RECORD_FILE: {f"image {ID_A[:19]} no longer used (the stage runs on the host)": "deleted"}
    }
    host.save_deps()
    assert dep.status() == {}  # saved: the host run is what the lock holds now
    assert "params" not in serialize.to_single_stage_lockfile(host)
    assert bool(dep.get_hash())  # DVC's run cache needs every dep to hash


def test_records_follow_the_lock(dvc_repo, tmp_path):
    from dvc_docker_exec.tracking import write_records

    repo, _ = dvc_repo
    found = stages(repo)
    found["box"].save_deps()
    write_records(found["box"].dvcfile, [found["box"], found["host"]])
    assert provenance.read_record_file(str(tmp_path / provenance.RECORD_FILE)) == {
        "box": provenance.Record("box", "img:1", ID_A)
    }
    write_records(found["box"].dvcfile, [found["host"]])  # untouched: host has no entry
    assert set(provenance.read_record_file(str(tmp_path / provenance.RECORD_FILE))) == {"box"}


def test_a_damaged_record_file_is_a_one_line_error(dvc_repo, tmp_path):
    from dvc_docker_exec.errors import DockerExecError
    from dvc_docker_exec.tracking import write_records

    repo, _ = dvc_repo
    (tmp_path / provenance.RECORD_FILE).write_text("box: [unclosed\n")
    box = stages(repo)["box"]
    box.save_deps()
    with pytest.raises(DockerExecError, match="not valid YAML.*delete it and run `dvc commit`"):
        write_records(box.dvcfile, [box])

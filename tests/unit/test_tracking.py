"""The image dependency inside DVC, without a daemon (the identity is faked).

Real DVC objects: a repo in a temp dir, stages loaded through DVC's own
loader (patched by the hook), DVC's serializers. Pins the patch points on the
DVC version under test (tox -e lowest,latest).
"""

from __future__ import annotations

import logging
from typing import Optional

import pytest

from dvc_docker_exec.dependency import image as image_dep
from dvc_docker_exec.types import provenance

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
        if identities.get("unreachable"):
            raise image_dep.ImageNotChecked("cannot reach the Docker daemon")
        if image not in identities:
            hints = ["did you mean 'img:2'?"] if identities.get("hint") else []
            raise image_dep.ImageAbsent(f"image '{image}' is not on this machine", hints)
        return identities[image]

    monkeypatch.setattr(image_dep, "current_identity", fake)
    yield Repo(str(tmp_path)), identities


def stages(repo) -> dict:
    return {stage.name: stage for stage in repo.index.stages}


def image_deps(stage) -> list:
    return [d for d in stage.deps if isinstance(d, image_dep.ImageDependency)]


DEP = provenance.dep_path("img:1")


def test_only_container_stages_with_dependencies_get_the_image_dependency(dvc_repo):
    repo, _ = dvc_repo
    found = {name: image_deps(stage) for name, stage in stages(repo).items()}
    assert [len(found[n]) for n in ("box", "download", "host", "untracked", "callback")] == [1, 1, 0, 0, 0]
    (dep,) = found["box"]
    assert dep.def_path == "docker:img:1" and dep.image == "img:1" and dep.recorded() is None
    # not a file: DVC (3.50's `exp run` too) must not look for it in the workspace or .gitignore it
    assert dep.exists and not dep.is_in_repo and not dep.use_scm_ignore and dep.protocol == "local"
    assert stages(repo)["callback"].is_callback  # DVC still reruns it every time


def test_status_words_and_values(dvc_repo, caplog):
    repo, identities = dvc_repo
    box = stages(repo)["box"]
    (dep,) = image_deps(box)
    status = dep.status()
    assert status == {DEP: {f"image 'img:1' {ID_A[:19]} (not recorded before)": "new"}}
    dep.save()
    assert dep.recorded() == ID_A and dep.status() == {}
    identities["img:1"] = ID_B
    assert dep.status() == {DEP: {f"image 'img:1' {ID_A[:19]} -> {ID_B[:19]}": "modified"}}
    del identities["img:1"]
    # absent: what ran is not here, as a deleted file dependency (never "up to date")
    assert dep.status() == {DEP: {"image 'img:1' is not on this machine": "deleted"}}
    identities["hint"] = True
    with caplog.at_level(logging.WARNING, logger="dvc"):
        dep.status()
    assert "stage 'box': image 'img:1' is not on this machine: did you mean 'img:2'?" in caplog.text
    identities["unreachable"] = True
    with caplog.at_level(logging.WARNING, logger="dvc"):
        assert dep.status() == {}  # the daemon cannot tell: not checked is not changed
    assert "stage 'box': image 'img:1' not checked: cannot reach the Docker daemon" in caplog.text


def test_absent_image_never_recorded_is_new(dvc_repo):
    repo, identities = dvc_repo
    (dep,) = image_deps(stages(repo)["box"])
    del identities["img:1"]
    assert dep.status() == {DEP: {"image 'img:1' is not on this machine": "new"}}


def test_lock_and_run_cache_key_hold_the_identity_and_dvc_yaml_never(dvc_repo):
    from dvc.stage import serialize
    from dvc.stage.cache import _get_stage_hash

    repo, identities = dvc_repo
    box = stages(repo)["box"]
    box.save_deps()
    lock = serialize.to_single_stage_lockfile(box)
    assert lock["deps"][0] == {"path": DEP, "dataset": {"sha256": "a" * 64}}
    assert "params" not in lock and lock["cmd"] == "echo x > box.txt"
    assert serialize.to_pipeline_file(box)["box"]["deps"] == ["in.txt"]
    assert image_deps(box)  # and it is still there afterwards
    key_a = _get_stage_hash(box)
    identities["img:1"] = ID_B
    box.save_deps()
    assert _get_stage_hash(box) != key_a


def test_the_lock_entry_is_read_back(dvc_repo, tmp_path):
    from dvc.repo import Repo

    repo, identities = dvc_repo
    box = stages(repo)["box"]
    (tmp_path / "box.txt").write_text("x\n")
    box.save()
    box.dump(update_lock=True)
    text = (tmp_path / "dvc.lock").read_text()
    assert not [line for line in text.splitlines() if line.endswith(" ")], text
    (dep,) = image_deps(stages(Repo(str(tmp_path)))["box"])
    assert dep.recorded() == ID_A and dep.status() == {}
    assert dep.record() == provenance.Record("box", "img:1", ID_A)


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


def _lock_with(tmp_path, stage: str, cmd: str, identity: str, image: str = "img:1") -> None:
    from dvc.utils.serialize import dump_yaml

    entry = provenance.lock_entry(provenance.Record(stage, image, identity))
    lock = {"schema": "2.0", "stages": {stage: {"cmd": cmd, "deps": [{"path": provenance.dep_path(image), "dataset": entry}]}}}
    dump_yaml(str(tmp_path / "dvc.lock"), lock)


def test_a_stage_turned_host_is_changed_once_then_records_nothing(dvc_repo, tmp_path):
    from dvc.repo import Repo
    from dvc.stage import serialize

    _lock_with(tmp_path, "host", "echo x > host.txt", ID_A)
    host = stages(Repo(str(tmp_path)))["host"]
    (dep,) = image_deps(host)
    assert dep.image is None
    assert dep.status() == {DEP: {f"image {ID_A[:19]} no longer used (the stage runs on the host)": "deleted"}}
    host.save_deps()
    assert dep.status() == {}  # saved: the host run is what the lock holds now
    assert [d["path"] for d in serialize.to_single_stage_lockfile(host)["deps"]] == ["in.txt"]
    assert bool(dep.get_hash())  # DVC's run cache needs every dep to hash


def test_the_record_of_earlier_versions_counts(dvc_repo, tmp_path):
    """A dvc.lock written by an earlier version (params on dvc.docker.lock) is not a rerun."""
    from dvc.repo import Repo
    from dvc.utils.serialize import dump_yaml

    lock = {"schema": "2.0", "stages": {"box": {"cmd": "echo x > box.txt", "params": {
        provenance.LEGACY_RECORD_FILE: {"box.id": ID_A}}}}}
    dump_yaml(str(tmp_path / "dvc.lock"), lock)
    (dep,) = image_deps(stages(Repo(str(tmp_path)))["box"])
    assert dep.recorded() == ID_A and dep.status() == {}


def test_stages_created_by_dvc_get_the_dependency(dvc_repo, tmp_path):
    """`dvc stage add`, `dvc run` and `Repo.run` create stages without the loader (issue 17, group 1)."""
    from dvc.repo import Repo

    repo, _ = dvc_repo
    stage = repo.stage.create(name="made", cmd="echo y > made.txt", deps=["in.txt"], outs=["made.txt"])
    (dep,) = image_deps(stage)
    assert dep.image == "img:1" and dep.recorded() is None
    meta_host = repo.stage.create(name="box", cmd="c", deps=["in.txt"], outs=["x.txt"], force=True)
    assert image_deps(meta_host)  # box has no meta here: the repo's image
    (tmp_path / "dvc.yaml").write_text(PIPELINE.replace("meta: {docker: false}", "meta: {docker: other:2}"))
    again = Repo(str(tmp_path)).stage.create(name="host", cmd="c", deps=["in.txt"], outs=["host.txt"], force=True)
    (dep,) = image_deps(again)  # meta restored from dvc.yaml (restore_fields) chooses the image
    assert dep.image == "other:2"


def test_machine_track_true_is_not_switched_off_by_the_repository(dvc_repo, tmp_path, caplog):
    """issue 16, P8: the repository's `track: false` (meta or .dvc/config) yields to this machine's `track true`."""
    from dvc.repo import Repo

    from dvc_docker_exec.stage import settings as stage_settings

    repo, _ = dvc_repo
    assert not image_deps(stages(repo)["untracked"])  # no machine word: the repository's false stands
    with repo.config.edit("local") as conf:
        conf["docker"] = {"track": "true"}
    stage_settings._snapshots.clear()
    with caplog.at_level(logging.WARNING, logger="dvc"):
        (dep,) = image_deps(stages(Repo(str(tmp_path)))["untracked"])
    assert dep.image == "img:1"
    assert "docker.track false from dvc.yaml (meta.docker) is ignored" in caplog.text
    stage_settings._snapshots.clear()


def test_exp_show_gets_one_short_column_per_image(dvc_repo, tmp_path):
    from dvc.repo import Repo
    from dvc.repo.experiments.serialize import SerializableExp

    from dvc_docker_exec.dependency.tracking import image_columns

    repo, _ = dvc_repo
    found = stages(repo)
    for name in ("box", "download"):
        (tmp_path / f"{name[0]}.txt").write_text("x\n")
        (tmp_path / "box.txt").write_text("x\n")
        found[name].save()
        found[name].dump(update_lock=True)
    fresh = Repo(str(tmp_path))
    assert image_columns(fresh) == {DEP: "a" * 12}  # two stages, one image: one column
    exp = SerializableExp.from_repo(fresh, rev="workspace")
    assert exp.deps[DEP].hash == "a" * 12 and "in.txt" in exp.deps
    assert "dvc.docker.lock" not in exp.params


def test_a_host_stage_follows_the_machine_track_rule_too(dvc_repo, tmp_path):
    """The repository's .dvc/config `track false` does not drop a recorded image while this machine says true."""
    from dvc.repo import Repo

    from dvc_docker_exec.stage import settings as stage_settings

    repo, _ = dvc_repo
    _lock_with(tmp_path, "host", "echo x > host.txt", ID_A)
    with repo.config.edit("repo") as conf:
        conf["docker"]["track"] = "false"
    stage_settings._snapshots.clear()
    assert not image_deps(stages(Repo(str(tmp_path)))["host"])  # the repository's word alone: off
    with repo.config.edit("local") as conf:
        conf["docker"] = {"track": "true"}
    stage_settings._snapshots.clear()
    (dep,) = image_deps(stages(Repo(str(tmp_path)))["host"])
    assert dep.image is None and dep.recorded() == ID_A
    stage_settings._snapshots.clear()


def test_a_built_images_run_cache_key_is_its_identity_not_the_image_id_it_produced(dvc_repo):
    """dvc.lock keeps a build's Dockerfile, inputs and image ID; the run-cache key only the inputs' hash."""
    from dvc.stage import serialize
    from dvc.stage.cache import _get_stage_hash
    from dvc_data.hashfile.hash_info import HashInfo

    repo, _ = dvc_repo
    box = stages(repo)["box"]
    box.save_deps()
    dep = image_deps(box)[0]
    keys = set()
    for built in ("c" * 64, "d" * 64):  # the same inputs built on two machines
        entry = {"build": "env/Dockerfile", "sha256": "e" * 64, "built": built, "inputs": {"dockerfile": ID_A}}
        dep.hash_info = HashInfo(dep.PARAM_DATASET, entry)
        assert serialize.to_single_stage_lockfile(box)["deps"][0] == {"path": DEP, "dataset": entry}
        assert dep.record().image_id == f"sha256:{built}" and dep.recorded() == "build:sha256:" + "e" * 64
        keys.add(_get_stage_hash(box))
    assert len(keys) == 1

"""Unit tests for the one mount plan (dvc_docker_exec.types.mounts): rules apply at every alias."""

from __future__ import annotations

from typing import Dict

import pytest
from docker.types import Mount

from dvc_docker_exec.config import DockerSettings
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.types.mounts import StageFacts, check_plan, mode_at, plan_mounts

RULES = (
    ("/repo/.dvc", True),
    ("/repo/.git", True),
    ("/repo/sub", False),
    ("/repo/sub/.dvc", True),
    ("/repo/.dvc/tmp", False),
    ("/repo/.dvc/tmp/exps", True),
)


def identity(path: str, read_only: bool) -> Mount:
    return Mount(target=path, source=path, type="bind", read_only=read_only)


def plan(volumes: str = "", rules=RULES, **facts) -> Dict[str, Mount]:
    settings = DockerSettings.from_mapping({"image": "b", **({"volumes": volumes} if volumes else {})})
    stage = StageFacts("s", "/repo", "/repo", ("/repo",), protected=rules, **facts)
    mounts = plan_mounts(stage, settings.volumes, identity)
    check_plan(mounts, rules, identity)
    return {m["Target"]: m for m in mounts}


def test_rules_are_mounted_over_the_repo() -> None:
    found = plan()
    assert not found["/repo"].get("ReadOnly")
    assert found["/repo/.git"]["ReadOnly"] and found["/repo/.dvc"]["ReadOnly"]
    assert not found["/repo/.dvc/tmp"]["ReadOnly"] and found["/repo/.dvc/tmp/exps"]["ReadOnly"]
    assert not found["/repo/sub"]["ReadOnly"]  # a pin: a mount point, so `mv sub x` is EBUSY


@pytest.mark.parametrize(
    ("volume", "ro_targets", "rw_targets"),
    [
        (".dvc:/d", ["/d", "/d/tmp/exps"], ["/d/tmp"]),  # break 2: the folder itself
        (".git/hooks:/h", ["/h"], []),  # break 2: inside it
        ("/repo/.git:/g", ["/g"], []),
        (".:/alias", ["/alias/.dvc", "/alias/.git", "/alias/sub/.dvc"], ["/alias", "/alias/sub", "/alias/.dvc/tmp"]),
        ("sub:/s", ["/s/.dvc"], ["/s"]),
        (".dvc/tmp:/t", ["/t/exps"], ["/t"]),
    ],
)
def test_every_alias_gets_the_same_covers(volume, ro_targets, rw_targets) -> None:
    found = plan(volume)
    for target in ro_targets:
        assert found[target]["ReadOnly"], target
    for target in rw_targets:
        assert not found[target].get("ReadOnly"), target


def test_a_read_only_volume_stays_read_only_beneath() -> None:
    found = plan(".:/alias:ro")
    assert found["/alias"]["ReadOnly"] and found["/alias/.dvc/tmp"]["ReadOnly"]


def test_mode_at_takes_the_deepest_rule() -> None:
    assert mode_at("/repo/.dvc/config", RULES) is True
    assert mode_at("/repo/.dvc/tmp/x", RULES) is False
    assert mode_at("/repo/.dvc/tmp/exps/a", RULES) is True
    assert mode_at("/repo/data", RULES) is None


def test_check_plan_refuses_a_writable_read_only_place() -> None:
    with pytest.raises(DockerExecError, match="refusing to mount '/d' writable"):
        check_plan([Mount(target="/d", source="/repo/.dvc", type="bind")], RULES, identity)
    with pytest.raises(DockerExecError, match="would expose '/repo/.dvc'"):
        check_plan([identity("/repo", False)], RULES, identity)


def test_extra_binds_and_tmpfs_go_through_the_plan() -> None:
    found = plan(extra_binds=(("/repo/.dvc/lease", "/run/lease", False),), tmpfs=(("/scratch", 0o1777),))
    assert found["/run/lease"]["ReadOnly"]  # inside .dvc: read-only like any other mount
    assert found["/scratch"]["Type"] == "tmpfs"


def test_environment_values_do_not_create_mounts() -> None:
    settings = DockerSettings.from_mapping({"image": "b", "env": "DVC_ROOT=/etc"})
    mounts = plan_mounts(StageFacts("s", "/repo", "/repo", ("/repo",)), settings.volumes, identity)
    assert [m["Target"] for m in mounts] == ["/repo"]

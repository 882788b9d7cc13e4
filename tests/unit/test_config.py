"""Unit tests for dvc_docker_exec.config: parsers, DVC schema, DockerSettings.

The last part drives DVC's real config code: in-process through
``dvc.config.Config.validate`` and, a few times, the real ``dvc config`` CLI
in a temporary Git+DVC repo (each such call costs about a second).
"""

from __future__ import annotations

import re
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import voluptuous

from dvc_docker_exec.config import DEFAULT_NETWORK, DEFAULT_SHELL, PARSERS, Device, DockerSettings, Gpus, SettingError, Tmpfs, Ulimit, Volume, dvc_schema, env_items, parse_volume, parse_volumes

# --- parsers: good values ------------------------------------------------------

GOOD: list = [
    ("enabled", True, True),
    ("enabled", False, False),
    ("enabled", "yes", True),
    ("enabled", "On", True),
    ("enabled", "1", True),
    ("enabled", " false ", False),
    ("enabled", "no", False),
    ("enabled", "0", False),
    ("enabled", "off", False),
    ("image", "python:3.12-slim", "python:3.12-slim"),
    ("image", " busybox ", "busybox"),
    ("image", "localhost:5000/team/img@sha256:" + "a" * 64, "localhost:5000/team/img@sha256:" + "a" * 64),
    ("pull", "missing", "missing"),
    ("pull", "Always", "always"),
    ("pull", " never ", "never"),
    ("user", "1000", "1000"),
    ("user", "1000:1000", "1000:1000"),
    ("user", "root", "root"),
    ("user", "app-user:staff", "app-user:staff"),
    ("env", "HF_TOKEN", ("HF_TOKEN",)),
    ("env", "A, B,C", ("A", "B", "C")),
    ("env", ["A", " B "], ("A", "B")),
    ("env", ["A", "MODE=fast", "_X1"], ("A", "MODE=fast", "_X1")),
    ("env", "URL=http://x/?a=b", ("URL=http://x/?a=b",)),
    ("env", "", ()),
    ("network", "host", "host"),
    ("network", "bridge", "bridge"),
    ("network", "none", "none"),
    ("network", "my_net-1.x", "my_net-1.x"),
    ("network", "container:abc123", "container:abc123"),
    ("gpus", "all", Gpus(count=-1)),
    ("gpus", "ALL", Gpus(count=-1)),
    ("gpus", "2", Gpus(count=2)),
    ("gpus", 1, Gpus(count=1)),
    ("gpus", "device=0,1", Gpus(device_ids=("0", "1"))),
    ("gpus", "device=GPU-3a2b", Gpus(device_ids=("GPU-3a2b",))),
    # configobj reads an unquoted `gpus = device=0,1` as a list
    ("gpus", ["device=0", "1"], Gpus(device_ids=("0", "1"))),
    ("cpus", "2", 2.0),
    ("cpus", 0.5, 0.5),
    ("cpus", "1.5", 1.5),
    ("memory", "512m", 512 * 1024**2),
    ("memory", "2g", 2 * 1024**3),
    ("memory", "2G", 2 * 1024**3),
    ("memory", "1.5GB", int(1.5 * 1024**3)),
    ("memory", "6m", 6 * 1024**2),
    ("memory", "1t", 1024**4),
    ("memory", 6 * 1024**2, 6 * 1024**2),
    ("shm_size", "64k", 64 * 1024),
    ("shm_size", "100", 100),
    ("shm_size", "100b", 100),
    ("shm_size", 4096, 4096),
    ("cpus", "0.01", 0.01),
    ("cpus", 1, 1.0),
    ("user", 1000, "1000"),
    ("image", "busybox", "busybox"),
    ("image", "Registry.Example.com:5000/team/img:V1.2_x", "Registry.Example.com:5000/team/img:V1.2_x"),
    ("image", "[::1]:5000/img", "[::1]:5000/img"),
    ("image", "a__b-c---d.e/f_g:latest", "a__b-c---d.e/f_g:latest"),
    ("image", "sha256:" + "b" * 64, "sha256:" + "b" * 64),
    ("image", "x" * 255 + ":t", "x" * 255 + ":t"),
    ("allow_repo_settings", "true", True),
    ("shell", "/bin/bash", "/bin/bash"),
    ("shell", " /bin/sh ", "/bin/sh"),
    ("host_root", "/srv/repo", "/srv/repo"),
    ("host_root", "/srv/repo/", "/srv/repo"),
    ("host_root", "/srv//a/../repo", "/srv/repo"),
    ("backend", "Swarm", "swarm"),
    ("backend", "engine", "engine"),
    ("constraints", "node.labels.gpu==true", ("node.labels.gpu==true",)),
    ("constraints", "node.role != manager, node.hostname==n1", ("node.role != manager", "node.hostname==n1")),
    ("constraints", ["node.platform.os==linux"], ("node.platform.os==linux",)),
    ("allow_unlimited", "yes", True),
    ("allow_unlimited", "false", False),
    # container options (issue 21)
    ("platform", "linux/amd64", "linux/amd64"),
    ("platform", " Linux/ARM64/v8 ", "linux/arm64/v8"),
    ("platform", "linux", "linux"),
    ("devices", "/dev/fuse", (Device("/dev/fuse", "/dev/fuse", "rwm"),)),
    ("devices", "/dev/sda:/dev/xvda:r", (Device("/dev/sda", "/dev/xvda", "r"),)),
    ("devices", "/dev/fuse:rw", (Device("/dev/fuse", "/dev/fuse", "rw"),)),
    ("devices", ["/dev/fuse", "/dev/net/tun:/dev/net/tun:rwm"], (
        Device("/dev/fuse", "/dev/fuse"), Device("/dev/net/tun", "/dev/net/tun"))),
    ("cap_add", "SYS_ADMIN", ("SYS_ADMIN",)),
    ("cap_add", "cap_sys_admin, net_raw, SYS_ADMIN", ("SYS_ADMIN", "NET_RAW")),
    ("cap_drop", ["ALL"], ("ALL",)),
    ("cap_drop", "", ()),
    ("ipc", "host", "host"),
    ("ipc", "Shareable", "shareable"),
    ("ipc", "private", "private"),
    ("ulimits", "memlock=-1", (Ulimit("memlock", -1, -1),)),
    ("ulimits", "nofile=1024:4096, stack=unlimited", (Ulimit("nofile", 1024, 4096), Ulimit("stack", -1, -1))),
    ("ulimits", ["core=0", "core=10"], (Ulimit("core", 10, 10),)),  # the last one wins, like --ulimit
    ("ulimits", "nproc=100:-1", (Ulimit("nproc", 100, -1),)),
    ("tmpfs", "/scratch", (Tmpfs("/scratch"),)),
    ("tmpfs", "/scratch:size=64m,mode=700", (Tmpfs("/scratch", 64 * 1024**2, 0o700),)),
    # configobj splits `/a:size=1m,mode=1777, /b` at the commas: an option continues its path
    ("tmpfs", ["/a:size=1m", "mode=1777", "/b"], (Tmpfs("/a", 1024**2, 0o1777), Tmpfs("/b"))),
    ("extra_hosts", "db:10.0.0.5", (("db", "10.0.0.5"),)),
    ("extra_hosts", "host.docker.internal:host-gateway, v6:::1", (
        ("host.docker.internal", "host-gateway"), ("v6", "::1"))),
    ("extra_hosts", ["a:[fe80::1]"], (("a", "fe80::1"),)),
    ("pids_limit", "512", 512),
    ("pids_limit", 64, 64),
    ("runtime", "nvidia", "nvidia"),
    ("runtime", "io.containerd.runsc.v1", "io.containerd.runsc.v1"),
    ("read_only", "true", True),
]


@pytest.mark.parametrize(("key", "value", "expected"), GOOD, ids=lambda v: repr(v)[:40])
def test_parsers_accept(key: str, value: Any, expected: Any) -> None:
    assert PARSERS[key](value) == expected


# --- parsers: bad values: SettingError quoting the value ---------------------------

BAD: list = [
    ("enabled", "maybe"),
    ("track", "sometimes"),
    ("enabled", "2"),
    ("image", ""),
    ("image", "my image"),
    ("image", "-v"),
    ("image", "--privileged"),
    ("image", "Python:3.12"),
    ("image", "team/MyImage"),
    ("image", "x" * 256),
    ("image", "img:-tag"),
    ("image", "img@sha256:short"),
    ("image", "img:" + "t" * 129),
    ("image", "a//b"),
    ("image", "a_/b"),
    ("allow_repo_settings", "sure"),
    ("pull", "sometimes"),
    ("pull", ""),
    ("user", "1000:"),
    ("user", ":1000"),
    ("user", "a:b:c"),
    ("user", "john doe"),
    ("env", "1BAD"),
    ("env", "OK, BAD-NAME"),
    ("env", "=value"),
    ("env", ["A", "has space"]),
    ("volumes", "a:b:c:d"),
    ("volumes", "/only-one-part"),
    ("volumes", "/a:/b:rx"),
    ("volumes", ":/b"),
    ("volumes", "/a:"),
    ("network", "my net"),
    ("network", "-bad"),
    ("network", ""),
    ("gpus", "many"),
    ("gpus", "0"),
    ("gpus", "-1"),
    ("gpus", "1.5"),
    ("gpus", "device="),
    ("gpus", ""),
    ("cpus", "lots"),
    ("cpus", "0"),
    ("cpus", "-1"),
    ("cpus", "nan"),
    ("cpus", "inf"),
    ("cpus", ""),
    ("cpus", "1e-12"),  # issue 7 hole 10: rounded to 0 nano-CPUs, which means no limit
    ("cpus", "0.009"),
    ("memory", "lots"),
    ("memory", "0"),
    ("memory", "0g"),
    ("memory", "-1g"),
    ("memory", "2x"),
    ("memory", "0.5"),  # less than one byte
    ("memory", ""),
    ("memory", "64k"),  # below Docker's minimum: a raw 400 at run time otherwise
    ("memory", "100"),
    ("shm_size", "big"),
    ("shell", "bash"),
    ("shell", "bin/sh"),
    ("host_root", "relative/path"),
    ("host_root", "~/repo"),
    ("backend", "k8s"),
    ("backend", ""),
    ("constraints", "gpu"),
    ("constraints", "node.labels.gpu=true"),
    ("constraints", "==x"),
    ("allow_unlimited", "sometimes"),
    ("platform", "linux amd64"),
    ("platform", "linux/amd64/v8/x"),
    ("platform", "/amd64"),
    ("devices", "fuse"),
    ("devices", "/dev/a:/dev/b:rx"),
    ("devices", "/dev/a:dev/b"),
    ("devices", "/dev/a:/dev/b:rw:x"),
    ("devices", "/dev/a:rr"),
    ("cap_add", "SYS_GODMODE"),
    ("cap_drop", "NET_RAW, bogus"),
    ("ipc", "none"),
    ("ipc", "container:abc"),
    ("ulimits", "nofile"),
    ("ulimits", "files=10"),
    ("ulimits", "nofile=ten"),
    ("ulimits", "nofile=1:2:3"),
    ("ulimits", "memlock=-2"),
    ("tmpfs", "scratch"),
    ("tmpfs", "/s:size=lots"),
    ("tmpfs", "/s:mode=999"),
    ("extra_hosts", "db"),
    ("extra_hosts", "db:not-an-ip"),
    ("extra_hosts", "-db:10.0.0.1"),
    ("extra_hosts", "db:10.0.0.300"),
    ("pids_limit", "0"),
    ("pids_limit", "-1"),
    ("pids_limit", "many"),
    ("runtime", "my runtime"),
    ("runtime", "-x"),
    ("read_only", "perhaps"),
    ("build", "../outside/Dockerfile"),
    ("build", "/etc"),
    ("build_args", "NOEQUALS"),
    ("target", "two words"),
    ("registry", "no-host"),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=lambda v: repr(v))
def test_parsers_reject_quoting_the_value(key: str, value: Any) -> None:
    with pytest.raises(SettingError) as info:
        PARSERS[key](value)
    # for several entries the message quotes the offending one
    bad = value[-1] if isinstance(value, list) else value.split(", ")[-1]
    assert f"'{bad}'" in str(info.value)


def test_ulimit_soft_above_hard_is_refused() -> None:
    with pytest.raises(SettingError, match=r"soft limit of ulimit 'nofile=4096:1024' is above its hard limit"):
        PARSERS["ulimits"]("nofile=4096:1024")


def test_tmpfs_options_other_than_size_and_mode_are_refused() -> None:
    with pytest.raises(SettingError, match=r"tmpfs '/s:noexec': only the options size= and mode= .*'noexec'"):
        PARSERS["tmpfs"]("/s:noexec")


def test_from_levels_remembers_this_machines_values() -> None:
    settings = DockerSettings.from_levels(
        [("global", {"image": "busybox", "cap_drop": "NET_RAW"}), ("local", {"pids_limit": "64"}),
         ("repo", {"cap_drop": "", "pids_limit": "100"})]
    )
    assert settings.cap_drop == () and settings.pids_limit == 100
    assert settings.machine == {"image": "busybox", "cap_drop": ("NET_RAW",), "pids_limit": 64}


def test_relative_container_path_is_refused() -> None:
    with pytest.raises(SettingError, match=r"container path of volume '/data:data' must be absolute"):
        parse_volume("/data:data")


def test_every_key_has_a_bad_value_in_the_table() -> None:
    assert {key for key, _ in BAD} == set(PARSERS)


def test_parse_volume_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/me")
    assert parse_volume("/data:/data") == Volume("/data", "/data", False)
    assert parse_volume("/data:/data:ro") == Volume("/data", "/data", True)
    assert parse_volume("/data:/data:rw") == Volume("/data", "/data", False)
    assert parse_volume("data:/mnt/x/") == Volume("data", "/mnt/x", False)  # relative source: vs repo root later
    assert parse_volume("~/ds:/ds:ro") == Volume("/home/me/ds", "/ds", True)
    assert Volume("/a", "/b", True).spec() == "/a:/b:ro"
    assert Volume("/a", "/b").spec() == "/a:/b"


@pytest.mark.parametrize("value", ["/a:/a, /b:/b:ro", ["/a:/a", "/b:/b:ro"], ("/a:/a", "/b:/b:ro")])
def test_parse_volumes_string_or_list(value: Any) -> None:
    # DVC's configobj gives a list for `a, b`, keeps a quoted "a,b" a string
    assert parse_volumes(value) == (Volume("/a", "/a"), Volume("/b", "/b", True))


def test_gpus_cli() -> None:
    assert Gpus(count=-1).cli() == "all"
    assert Gpus(count=2).cli() == "2"
    assert Gpus(device_ids=("0", "1")).cli() == '"device=0,1"'


# --- DVC schema through voluptuous ---------------------------------------------------


def test_dvc_schema_covers_every_key() -> None:
    assert set(dvc_schema()) == set(PARSERS)


@pytest.mark.parametrize(("key", "value"), BAD, ids=lambda v: repr(v))
def test_dvc_schema_rejects_naming_the_key(key: str, value: Any) -> None:
    schema = voluptuous.Schema(dvc_schema())
    with pytest.raises(voluptuous.Invalid) as info:
        schema({key: value})
    assert f"docker.{key}:" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("image", " busybox "),
        ("pull", "Always"),
        ("memory", "2g"),
        ("gpus", ["device=0", "1"]),
        ("volumes", ["/a:/a", "/b:/b:ro"]),
        ("env", "A, B=1"),
        ("enabled", "yes"),
        ("cpus", "1.5"),
    ],
)
def test_dvc_schema_returns_good_values_unchanged(key: str, value: Any) -> None:
    assert voluptuous.Schema(dvc_schema())({key: value}) == {key: value}


def test_dvc_schema_refuses_unknown_keys() -> None:
    with pytest.raises(voluptuous.Invalid, match="extra keys not allowed"):
        voluptuous.Schema(dvc_schema())({"no_such_key": "1"})


# --- DockerSettings -----------------------------------------------------------------


def test_defaults() -> None:
    settings = DockerSettings()
    assert settings.image is None and settings.enabled
    assert settings.pull == "missing"
    assert settings.network == DEFAULT_NETWORK == "host"
    assert settings.shell == DEFAULT_SHELL == "/bin/sh"
    assert not settings.active


def test_from_mapping_parses_every_key() -> None:
    raw = {
        "image": "busybox",
        "enabled": "true",
        "pull": "never",
        "user": "1000:1000",
        "env": ["A", "B=2"],
        "volumes": "/d:/d:ro",
        "network": "bridge",
        "gpus": "all",
        "cpus": "2",
        "memory": "1g",
        "shm_size": "64m",
        "shell": "/bin/bash",
        "host_root": "/srv/repo/",
    }
    settings = DockerSettings.from_mapping(raw)
    assert settings == DockerSettings(
        image="busybox",
        enabled=True,
        pull="never",
        user="1000:1000",
        env=("A", "B=2"),
        volumes=(Volume("/d", "/d", True),),
        network="bridge",
        gpus=Gpus(count=-1),
        cpus=2.0,
        memory=1024**3,
        shm_size=64 * 1024**2,
        shell="/bin/bash",
        host_root="/srv/repo",
    )
    assert settings.raw == raw


def test_from_mapping_unknown_key() -> None:
    with pytest.raises(SettingError, match=r"unknown key 'docker\.imag' \(known: image, enabled,"):
        DockerSettings.from_mapping({"imag": "busybox"})


def test_from_mapping_bad_value_names_where_and_key() -> None:
    with pytest.raises(SettingError, match=r"^docker\.memory: expected a size .* got 'lots'$"):
        DockerSettings.from_mapping({"memory": "lots"})


@pytest.mark.parametrize(
    ("data", "active"),
    [
        ({}, False),
        ({"image": "busybox"}, True),
        ({"image": "busybox", "enabled": "false"}, False),
        ({"enabled": "true"}, False),
    ],
)
def test_active(data: dict, active: bool) -> None:
    assert DockerSettings.from_mapping(data).active is active


BASE = DockerSettings.from_mapping({"image": "busybox", "memory": "1g", "env": "A"})


def test_override_none_keeps_settings() -> None:
    assert BASE.override(None, "train") is BASE


def test_override_false_runs_on_the_host() -> None:
    settings = BASE.override(False, "train")
    assert not settings.enabled and not settings.active
    assert settings.image == "busybox"


def test_override_true_reenables() -> None:
    disabled = DockerSettings.from_mapping({"image": "busybox", "enabled": "no"})
    assert disabled.override(True, "train").active
    # True without any image anywhere still runs on the host
    assert not DockerSettings().override(True, "train").active


def test_override_image_string_implies_enabled() -> None:
    disabled = DockerSettings.from_mapping({"image": "busybox", "enabled": "no"})
    settings = disabled.override(" python:3.12 ", "train")
    assert settings.image == "python:3.12" and settings.active
    assert BASE.override("alpine", "train").memory == BASE.memory  # other keys untouched


def test_override_image_string_bad() -> None:
    with pytest.raises(SettingError, match=r"^stage 'train' meta\.docker: .*got 'a b'$"):
        BASE.override("a b", "train")


def test_override_mapping_changes_only_given_keys() -> None:
    settings = BASE.override({"memory": "2g", "gpus": "device=1"}, "train")
    assert settings.memory == 2 * 1024**3
    assert settings.gpus == Gpus(device_ids=("1",))
    assert settings.image == "busybox" and settings.env == ("A",)
    assert settings.raw == {"image": "busybox", "memory": "2g", "env": "A", "gpus": "device=1"}


def test_override_mapping_with_image_implies_enabled() -> None:
    disabled = DockerSettings.from_mapping({"image": "busybox", "enabled": "false"})
    assert disabled.override({"image": "alpine"}, "s").active
    assert disabled.override({"image": "alpine"}, "s").image == "alpine"
    # ... unless the mapping says otherwise
    assert not disabled.override({"image": "alpine", "enabled": False}, "s").active
    # an image for a repo without docker.image
    assert DockerSettings().override({"image": "alpine"}, "s").active


def test_override_mapping_enabled_false() -> None:
    assert not BASE.override({"enabled": False}, "s").active


def test_override_mapping_invalid_names_the_stage() -> None:
    with pytest.raises(SettingError, match=r"^stage 'prepare@1' meta\.docker\.memory: .*got 'lots'$"):
        BASE.override({"memory": "lots"}, "prepare@1")


def test_override_mapping_unknown_key_names_the_stage() -> None:
    with pytest.raises(SettingError, match=r"unknown key 'stage 'train' meta\.docker\.imag'"):
        BASE.override({"imag": "x"}, "train")


@pytest.mark.parametrize("key", ["host_root", "allow_repo_settings"])
def test_override_refuses_machine_keys(key: str) -> None:
    with pytest.raises(SettingError, match=rf"meta\.docker\.{key}: can only be set on this machine, with `dvc config --local docker\.{key}`"):
        BASE.override({key: "/srv"}, "train")


@pytest.mark.parametrize("key", ["cpus", "memory", "shm_size", "user", "network", "image", "shell", "env", "volumes", "gpus"])
def test_yaml_true_is_not_a_value(key: str) -> None:
    """`meta.docker.cpus: true` once meant 1 CPU (issue 7, hole 10); no key but `enabled` takes a boolean."""
    with pytest.raises(SettingError, match=rf"^stage 'train' meta\.docker\.{key}: expected .*, got 'True'$"):
        BASE.override({key: True}, "train")


def test_from_levels_later_level_shadows_and_origins_are_kept() -> None:
    settings = DockerSettings.from_levels(
        [("system", {"image": "a", "memory": "1g"}), ("repo", {"image": "b"}), ("local", {"user": "1:1"})]
    )
    assert (settings.image, settings.memory, settings.user) == ("b", 1024**3, "1:1")
    assert settings.origins == {"image": "repo", "memory": "system", "user": "local"}
    staged = settings.override({"memory": "2g", "network": "none"}, "s")
    assert staged.origins == {"image": "repo", "memory": "meta", "user": "local", "network": "meta"}
    assert settings.override("c", "s").origins["image"] == "meta"
    assert settings.override(False, "s").origins["enabled"] == "meta"


def test_docker_reference_messages() -> None:
    with pytest.raises(SettingError, match="repository name must be lowercase"):
        PARSERS["image"]("Python:3.12")
    with pytest.raises(SettingError, match="at most 255 characters"):
        PARSERS["image"]("x" * 256)
    with pytest.raises(SettingError, match="at least 0.01"):
        PARSERS["cpus"]("1e-12")


@pytest.mark.parametrize("meta", [3, ["busybox"], 1.5])
def test_override_other_types(meta: Any) -> None:
    with pytest.raises(SettingError, match=r"^stage 'train' meta\.docker: expected false, an image name or a mapping"):
        BASE.override(meta, "train")


def test_env_items() -> None:
    host = {"A": "1", "HF_TOKEN": "secret", "UNRELATED": "x"}
    assert env_items(("A", "MISSING", "MODE=fast", "EMPTY=", "X=a=b"), host) == {
        "A": "1",
        "MODE": "fast",
        "EMPTY": "",
        "X": "a=b",
    }
    assert env_items((), host) == {}


# --- DVC's own config code, in-process --------------------------------------------------


def test_dvc_schema_is_registered() -> None:
    import dvc.config_schema

    assert "docker" in dvc.config_schema.SCHEMA
    assert set(dvc.config_schema.SCHEMA["docker"]) == set(PARSERS)


def test_dvc_config_validate_rejects_bad_value() -> None:
    from dvc.config import Config, ConfigError

    with pytest.raises(ConfigError) as info:
        Config.validate({"docker": {"memory": "lots"}})
    assert "docker.memory" in str(info.value) and "'lots'" in str(info.value)


def test_dvc_config_validate_rejects_unknown_key() -> None:
    from dvc.config import Config, ConfigError

    with pytest.raises(ConfigError, match="extra keys not allowed"):
        Config.validate({"docker": {"no_such_key": "1"}})


def test_dvc_config_validate_accepts_good_section() -> None:
    from dvc.config import Config

    section = {"image": "busybox", "memory": "2g", "volumes": ["/a:/a", "/b:/b:ro"], "gpus": "all"}
    assert Config.validate({"docker": dict(section)})["docker"] == section


def test_dvc_config_in_a_repo_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Config read from files (no subprocess): a bad value in .dvc/config is refused on load."""
    from dvc.config import Config, ConfigError

    monkeypatch.setenv("DVC_GLOBAL_CONFIG_DIR", str(tmp_path / "global"))
    monkeypatch.setenv("DVC_SYSTEM_CONFIG_DIR", str(tmp_path / "system"))
    dvc_dir = tmp_path / ".dvc"
    dvc_dir.mkdir()
    (dvc_dir / "config").write_text("[docker]\n    image = busybox\n    volumes = /a:/a, /b:/b:ro\n")
    config = Config(dvc_dir=str(dvc_dir))
    assert config["docker"] == {"image": "busybox", "volumes": ["/a:/a", "/b:/b:ro"]}
    settings = DockerSettings.from_mapping(config["docker"])
    assert settings.volumes == (Volume("/a", "/a"), Volume("/b", "/b", True))

    (dvc_dir / "config").write_text("[docker]\n    memory = lots\n")
    with pytest.raises(ConfigError, match="docker.memory"):
        Config(dvc_dir=str(dvc_dir))


# --- the real `dvc config` CLI ---------------------------------------------------------


class CliRepo:
    def __init__(self, root: Path):
        self.root = root
        self.path = root / "repo"
        self.global_dir = root / "global"
        self.system_dir = root / "system"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
        env.update(
            HOME=str(root / "home"),
            DVC_NO_ANALYTICS="1",
            DVC_GLOBAL_CONFIG_DIR=str(self.global_dir),
            DVC_SYSTEM_CONFIG_DIR=str(self.system_dir),
            DVC_SITE_CACHE_DIR=str(root / "site-cache"),
        )
        self.env = env
        for path in (self.path, self.global_dir, self.system_dir, root / "home"):
            path.mkdir()

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=120)

    def dvc(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args)

    def config_text(self, level: str = "repo") -> str:
        path = {
            "repo": self.path / ".dvc" / "config",
            "local": self.path / ".dvc" / "config.local",
            "global": self.global_dir / "config",
            "system": self.system_dir / "config",
        }[level]
        return path.read_text() if path.exists() else ""


@pytest.fixture(scope="module")
def cli_repo(tmp_path_factory: pytest.TempPathFactory) -> CliRepo:
    """One repo for the module (`dvc init` costs a second); each test writes other keys or levels."""
    repo = CliRepo(tmp_path_factory.mktemp("cli"))
    assert repo.run("git", "init", "-q").returncode == 0
    proc = repo.dvc("init", "-q")
    assert proc.returncode == 0, proc.stderr
    return repo


def test_cli_config_set_unknown_and_bad(cli_repo: CliRepo) -> None:
    proc = cli_repo.dvc("config", "docker.image", "busybox:1.36")
    assert proc.returncode == 0, proc.stderr
    written = cli_repo.config_text()
    assert "[docker]" in written and "image = busybox:1.36" in written

    proc = cli_repo.dvc("config", "docker.no_such_key", "1")
    assert proc.returncode != 0
    assert "no_such_key" in proc.stderr
    assert cli_repo.config_text() == written

    proc = cli_repo.dvc("config", "docker.memory", "lots")
    assert proc.returncode != 0
    assert "docker.memory" in proc.stderr and "'lots'" in proc.stderr
    assert cli_repo.config_text() == written

    proc = cli_repo.dvc("config", "docker.image")
    assert (proc.returncode, proc.stdout.strip()) == (0, "busybox:1.36")


@pytest.mark.parametrize("level", ["global", "system", "local"])
def test_cli_config_levels(cli_repo: CliRepo, level: str) -> None:
    repo_config = cli_repo.config_text()
    proc = cli_repo.dvc("config", f"--{level}", "docker.gpus", "device=0,1")
    assert proc.returncode == 0, proc.stderr
    assert "[docker]" in cli_repo.config_text(level)
    assert "device=0" in cli_repo.config_text(level)

    before = cli_repo.config_text(level)
    proc = cli_repo.dvc("config", f"--{level}", "docker.pull", "sometimes")
    assert proc.returncode != 0
    assert "docker.pull" in proc.stderr and "'sometimes'" in proc.stderr
    assert cli_repo.config_text(level) == before
    assert cli_repo.config_text() == repo_config  # the repo level is untouched


@pytest.mark.parametrize("level", ["local", "global", "system"])
@pytest.mark.parametrize("meta", [True, "alpine", {"image": "alpine"}, {"enabled": True}, {"image": "alpine", "enabled": True}])
def test_machine_enabled_false_wins_over_the_repository(level: str, meta: object) -> None:
    """Issue 20, item 1: this machine's `enabled false` is final; meta.docker cannot turn containers back on."""
    settings = DockerSettings.from_levels([("repo", {"image": "busybox"}), (level, {"enabled": "false"})])
    assert settings.off_here
    assert not settings.override(meta, "train").active


def test_repo_enabled_false_a_stage_may_turn_on() -> None:
    """`.dvc/config` comes with the repository, as meta.docker does: the stage's choice is the more specific."""
    settings = DockerSettings.from_levels([("repo", {"image": "busybox", "enabled": "false"})])
    assert not settings.off_here
    assert settings.override("alpine", "train").active
    # this machine turning it back on wins over the repository's false
    on_again = DockerSettings.from_levels([("repo", {"image": "b", "enabled": "false"}), ("local", {"enabled": "true"})])
    assert on_again.active and not on_again.off_here


def test_shared_file_is_read_and_checked(tmp_path) -> None:
    """Issue 20, item 6: .dvc/docker.yaml, the settings plain DVC ignores."""
    from dvc_docker_exec.errors import DockerExecError
    from dvc_docker_exec.stage.settings import shared_section

    path = tmp_path / "docker.yaml"
    assert shared_section(str(path)) == {}  # absent: nothing
    path.write_text("image: python:3.12-slim\nenv: [A, B]\n")
    assert shared_section(str(path)) == {"image": "python:3.12-slim", "env": ["A", "B"]}
    for text, words in [("imag: x\n", "unknown key 'docker.imag'"), ("memory: lots\n", "docker.memory"),
                        ("- a\n", "expected a mapping"), ("a: [\n", "not valid YAML")]:
        path.write_text(text)
        with pytest.raises(DockerExecError, match=re.escape(str(path))) as info:
            shared_section(str(path))
        assert words in str(info.value)


def test_shared_file_counts_as_the_repository() -> None:
    """Its settings come with the repository: .dvc/config shadows it, and it may not widen host access."""
    from dvc_docker_exec.stage import trust

    settings = DockerSettings.from_levels([("shared", {"image": "a", "pull": "never"}), ("repo", {"image": "b"})])
    assert settings.image == "b" and settings.pull == "never" and settings.origins["pull"] == "shared"
    widened = DockerSettings.from_levels([("shared", {"image": "a", "network": "my-net"})])
    with pytest.raises(SettingError, match=r"docker.network from the repository's .dvc/docker.yaml"):
        trust.check(widened, "s", trust.Invoker(1000, 1000, ("/r",)))

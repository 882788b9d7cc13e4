"""The ``docker`` config section: schema for DVC's config and value objects.

One parser per key. The same parsers back two front doors:

* ``DVC_SCHEMA`` is registered into DVC's config schema (``dvc.config_schema``),
  so ``dvc config docker.memory lots`` is refused by DVC itself, with DVC's
  error, before anything is written. Its validators check a value and return
  it unchanged, so ``dvc config docker.memory`` shows what the user typed.
* ``DockerSettings.from_mapping`` turns the merged section (plus a stage's
  ``meta.docker``) into a frozen, parsed value object for ``spec``.

This module imports voluptuous (a DVC dependency) but neither dvc nor docker.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

PULL_POLICIES = ("missing", "always", "never")
DEFAULT_NETWORK = "host"  # why: see docs/stage-environment.md "Networking" (fastest start, same as a host run)
DEFAULT_SHELL = "/bin/sh"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SIZE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[bkmgt]?)b?\Z", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


class SettingError(ValueError):
    """A bad value for one key; the message quotes the value and what was expected."""


# --- parsers: raw config value -> python value (raise SettingError) ---------


def _as_list(value: Any) -> list:
    # DVC's configobj reads `a, b` as a list and keeps `"a,b"` a string;
    # YAML meta gives real lists. Accept all three.
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _scalar(value: Any, expected: str) -> str:
    """The text of a scalar value; a YAML `true`/`false`, a list or a mapping is refused.

    Why: `meta.docker: {cpus: true}` would otherwise read as 1 CPU and
    `user: true` as a user named 'True' (issue 7, hole 10).
    """
    if value is None or isinstance(value, (bool, list, tuple, dict)):
        raise SettingError(f"expected {expected}, got '{value}'")
    return str(value).strip()


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingError(f"expected true or false, got '{value}'")


# Docker's reference grammar (github.com/distribution/reference, regexp.go):
#   reference := name [ ":" tag ] [ "@" digest ];  name := [domain "/"] path-component ["/" path-component]*
# Only the domain may hold uppercase letters; the name is at most 255 characters.
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?\Z",
    re.ASCII,
)
NAME_MAX = 255


def parse_image(value: Any) -> str:
    """An image reference Docker can use, checked with Docker's own grammar."""
    text = _scalar(value, "an image reference like 'python:3.12-slim'")
    match = _REFERENCE.match(text)
    if match is None:
        hint = "a name, ':tag' and/or '@sha256:digest', like 'python:3.12-slim'"
        if _REFERENCE.match(text.lower()):
            hint = "the repository name must be lowercase"
        raise SettingError(f"expected an image reference Docker accepts ({hint}), got '{value}'")
    if len(match["name"]) > NAME_MAX:
        raise SettingError(f"the repository name must be at most {NAME_MAX} characters, got '{value}'")
    return text


def parse_pull(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in PULL_POLICIES:
        raise SettingError(f"expected one of {', '.join(PULL_POLICIES)}, got '{value}'")
    return text


def parse_user(value: Any) -> str:
    text = _scalar(value, "'uid[:gid]' or 'name[:group]'")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+)?", text):
        raise SettingError(f"expected 'uid[:gid]' or 'name[:group]', got '{value}'")
    return text


def parse_env(value: Any) -> Tuple[str, ...]:
    """Names of host variables to pass through, or NAME=VALUE to set one."""
    if not isinstance(value, (list, tuple)):
        _scalar(value, "variable names like 'HF_TOKEN' or 'NAME=value'")
    items = _as_list(value)
    for item in items:
        name = item.split("=", 1)[0]
        if not _ENV_NAME.match(name):
            raise SettingError(f"expected variable names like 'HF_TOKEN' or 'NAME=value', got '{item}'")
    return tuple(items)


@dataclass(frozen=True)
class Volume:
    """An extra bind mount `host:container[:ro|rw]`."""

    source: str
    target: str
    read_only: bool = False

    def spec(self) -> str:
        return f"{self.source}:{self.target}" + (":ro" if self.read_only else "")


def parse_volume(item: str) -> Volume:
    parts = item.split(":")
    mode = "rw"
    if len(parts) == 3:
        mode = parts.pop()
    if len(parts) != 2 or not all(parts) or mode not in ("ro", "rw"):
        raise SettingError(f"expected a volume like '/host/path:/container/path[:ro]', got '{item}'")
    source, target = parts
    if not os.path.isabs(target):
        raise SettingError(f"the container path of volume '{item}' must be absolute")
    return Volume(os.path.expanduser(source), os.path.normpath(target), mode == "ro")


def parse_volumes(value: Any) -> Tuple[Volume, ...]:
    if not isinstance(value, (list, tuple)):
        _scalar(value, "volumes like '/host/path:/container/path[:ro]'")
    return tuple(parse_volume(item) for item in _as_list(value))


def parse_network(value: Any) -> str:
    text = _scalar(value, "a network name such as host, bridge or none")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:-]*", text):
        raise SettingError(f"expected a network name such as host, bridge or none, got '{value}'")
    return text


@dataclass(frozen=True)
class Gpus:
    """What `docker run --gpus` takes: `all`, a count, or `device=0,1`."""

    count: int = 0  # -1 means all
    device_ids: Tuple[str, ...] = ()

    def cli(self) -> str:
        if self.device_ids:
            return f'"device={",".join(self.device_ids)}"'
        return "all" if self.count == -1 else str(self.count)


def parse_gpus(value: Any) -> Gpus:
    expected = "'all', a number of GPUs or 'device=0,1'"
    text = ",".join(_as_list(value)) if isinstance(value, (list, tuple)) else _scalar(value, expected)
    if text.lower() == "all":
        return Gpus(count=-1)
    if text.isdigit() and int(text) > 0:
        return Gpus(count=int(text))
    if text.startswith("device="):
        ids = tuple(i.strip() for i in text[len("device=") :].split(",") if i.strip())
        if ids:
            return Gpus(device_ids=ids)
    raise SettingError(f"expected 'all', a number of GPUs or 'device=0,1', got '{value}'")


MIN_CPUS = 0.01  # Docker's minimum ("Range of CPUs is from 0.01 to N"); less rounds to 0 = no limit
MIN_MEMORY = 6 * 1024**2  # Docker's minimum memory limit (6 MiB)


def parse_cpus(value: Any) -> float:
    expected = f"a number of CPUs of at least {MIN_CPUS} like 2 or 0.5"
    try:
        cpus = float(_scalar(value, expected))
    except ValueError:
        cpus = 0.0
    if not MIN_CPUS <= cpus < float("inf"):  # nan and inf too: docker's NanoCpus is an int
        raise SettingError(f"expected {expected}, got '{value}'")
    return cpus


def parse_size(value: Any) -> int:
    """`512m`, `2g`, `1.5GB`, or a number of bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(_scalar(value, "a size like '512m' or '2g'"))
    size = int(float(match["num"]) * _UNITS[match["unit"].lower()]) if match else 0
    if size <= 0:  # also '0.5' (bytes): 0 would silently mean "no limit"
        raise SettingError(f"expected a size like '512m' or '2g', got '{value}'")
    return size


def parse_memory(value: Any) -> int:
    size = parse_size(value)
    if size < MIN_MEMORY:  # the daemon refuses less with a raw 400 at run time
        raise SettingError(f"expected a memory limit of at least 6m (Docker's minimum), got '{value}'")
    return size


def parse_shell(value: Any) -> str:
    text = _scalar(value, "an absolute path to a shell in the image like /bin/bash")
    if not os.path.isabs(text):
        raise SettingError(f"expected an absolute path to a shell in the image like /bin/bash, got '{value}'")
    return text


def parse_build(value: Any) -> str:
    """A Dockerfile, or a folder holding one, relative to the repository root (issue 19).

    Why relative and inside: the build context is read from the repository
    (a clone brings it); an absolute path or `..` would send host files to
    the daemon. Symlinks are judged where the context is read (build.py).
    """
    expected = "a Dockerfile or a folder holding one, relative to the repository root, like 'env/Dockerfile'"
    text = _scalar(value, expected).replace("\\", "/")
    norm = os.path.normpath(text) if text else ""
    if not text or os.path.isabs(text) or norm == ".." or norm.startswith("../"):
        raise SettingError(f"expected {expected}, got '{value}'")
    return norm


def parse_build_args(value: Any) -> Tuple[Tuple[str, str], ...]:
    """`NAME=value` items, comma-separated (Docker's --build-arg)."""
    expected = "build arguments like 'PYTHON=3.12,DEBUG=0'"
    if not isinstance(value, (list, tuple)):
        _scalar(value, expected)
    out = []
    for item in _as_list(value):
        name, sep, arg = item.partition("=")
        if not sep or not _ENV_NAME.match(name.strip()):
            raise SettingError(f"expected {expected}, got '{item}'")
        out.append((name.strip(), arg.strip()))
    return tuple(out)


def _plain_name(value: Any, expected: str) -> str:
    """A name of letters, digits, `_`, `.` and `-` (a build stage, a runtime): nothing a CLI could misread."""
    text = _scalar(value, expected)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
        raise SettingError(f"expected {expected}, got '{value}'")
    return text


def parse_target(value: Any) -> str:
    return _plain_name(value, "the name of a build stage of the Dockerfile (FROM ... AS name)")


_REGISTRY = re.compile(rf"{_DOMAIN}(?:/{_PATH_COMPONENT})*\Z", re.ASCII)


def parse_registry(value: Any) -> str:
    """Where built images are pushed for Swarm nodes: `host[:port][/path]` (a registry every node reaches)."""
    expected = "a registry like 'registry.example.com:5000' or 'host:5000/team'"
    text = _scalar(value, expected).rstrip("/")
    if not _REGISTRY.match(text) or "/" not in text + "/" or ("." not in text.split("/")[0] and ":" not in text.split("/")[0]
                                                                 and text.split("/")[0] != "localhost"):
        raise SettingError(f"expected {expected}, got '{value}'")
    return text


# Where stage commands run (backend.make_backend builds one of each): kept here,
# with the other values, so that config depends on no runner module.
BACKENDS = ("engine", "swarm")


def parse_backend(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in BACKENDS:
        raise SettingError(f"expected one of {', '.join(BACKENDS)}, got '{value}'")
    return text


_CONSTRAINT = re.compile(r"([A-Za-z0-9_.-]+)\s*(==|!=)\s*(\S+)")


def split_constraint(item: str) -> Optional[Tuple[str, str, str]]:
    """`node.labels.gpu == true` -> ('node.labels.gpu', '==', 'true'); None if it is not a constraint."""
    parsed = _CONSTRAINT.fullmatch(item.strip())
    return None if parsed is None else (parsed[1], parsed[2], parsed[3])


def parse_constraints(value: Any) -> Tuple[str, ...]:
    """Swarm placement constraints like `node.labels.gpu==true`, comma-separated."""
    items = _as_list(value)
    for item in items:
        if split_constraint(item) is None:
            raise SettingError(f"expected placement constraints like 'node.labels.gpu==true', got '{item}'")
    return tuple(items)


def parse_host_root(value: Any) -> str:
    text = _scalar(value, "the absolute host path of the repo root")
    if not os.path.isabs(text):
        raise SettingError(f"expected the absolute host path of the repo root, got '{value}'")
    return os.path.normpath(text)


# --- container options (issue 21): platform, devices, capabilities, ipc, ulimits, tmpfs, hosts ---


_PLATFORM = re.compile(r"[a-z0-9_]+(?:/[a-z0-9_]+(?:/[a-z0-9_]+)?)?\Z")


def parse_platform(value: Any) -> str:
    """`os[/arch[/variant]]` as Docker takes it: `linux/amd64`, `linux/arm64/v8`."""
    text = _scalar(value, "a platform like 'linux/amd64'").lower()
    if not _PLATFORM.match(text):
        raise SettingError(f"expected a platform like 'linux/amd64' or 'linux/arm64/v8', got '{value}'")
    return text


@dataclass(frozen=True)
class Device:
    """A host device node made available in the container (`--device`)."""

    source: str
    target: str
    permissions: str = "rwm"

    def cli(self) -> str:
        return f"{self.source}:{self.target}:{self.permissions}"

    def api(self) -> dict:
        """HostConfig.Devices entry (docker-py passes a mapping through as it is)."""
        return {"PathOnHost": self.source, "PathInContainer": self.target, "CgroupPermissions": self.permissions}


_PERMISSIONS = re.compile(r"(?!.*(.).*\1)[rwm]{1,3}\Z")  # r, w, m, each at most once


def parse_device(item: str) -> Device:
    expected = f"expected a device like '/dev/fuse', '/dev/x:/dev/y' or '/dev/x:/dev/y:rw', got '{item}'"
    parts = item.split(":")
    permissions = "rwm"
    if len(parts) > 1 and _PERMISSIONS.match(parts[-1]):
        permissions = parts.pop()
    if len(parts) == 1:
        parts.append(parts[0])
    if len(parts) != 2 or not all(os.path.isabs(part) for part in parts):
        raise SettingError(expected)
    return Device(os.path.normpath(parts[0]), os.path.normpath(parts[1]), permissions)


def parse_devices(value: Any) -> Tuple[Device, ...]:
    if not isinstance(value, (list, tuple)):
        _scalar(value, "devices like '/dev/fuse'")
    return tuple(parse_device(item) for item in _as_list(value))


# The kernel's capabilities (capability.h) as Docker names them, plus Docker's ALL.
CAPABILITIES = frozenset(
    """AUDIT_CONTROL AUDIT_READ AUDIT_WRITE BLOCK_SUSPEND BPF CHECKPOINT_RESTORE CHOWN DAC_OVERRIDE
    DAC_READ_SEARCH FOWNER FSETID IPC_LOCK IPC_OWNER KILL LEASE LINUX_IMMUTABLE MAC_ADMIN MAC_OVERRIDE
    MKNOD NET_ADMIN NET_BIND_SERVICE NET_BROADCAST NET_RAW PERFMON SETFCAP SETGID SETPCAP SETUID
    SYSLOG SYS_ADMIN SYS_BOOT SYS_CHROOT SYS_MODULE SYS_NICE SYS_PACCT SYS_PTRACE SYS_RAWIO
    SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG WAKE_ALARM ALL""".split()
)


def parse_capabilities(value: Any) -> Tuple[str, ...]:
    """Capability names like `SYS_ADMIN` (or `CAP_SYS_ADMIN`, any case), kept as Docker's short names."""
    if not isinstance(value, (list, tuple)):
        _scalar(value, "capabilities like 'SYS_ADMIN'")
    names = []
    for item in _as_list(value):
        name = item.upper()
        name = name[len("CAP_") :] if name.startswith("CAP_") else name
        if name not in CAPABILITIES:
            raise SettingError(f"expected capabilities like 'SYS_ADMIN' or 'NET_RAW', got '{item}'")
        names.append(name)
    return tuple(dict.fromkeys(names))


IPC_MODES = ("private", "shareable", "host")


def parse_ipc(value: Any) -> str:
    text = _scalar(value, f"one of {', '.join(IPC_MODES)}").lower()
    if text not in IPC_MODES:
        raise SettingError(f"expected one of {', '.join(IPC_MODES)}, got '{value}'")
    return text


# Docker's ulimit names (go-units ulimit.go); -1 means unlimited, as for `docker run --ulimit`.
ULIMIT_NAMES = (
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
    "rss", "rtprio", "rttime", "sigpending", "stack",
)
UNLIMITED = -1


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int

    def cli(self) -> str:
        return f"{self.name}={self.soft}:{self.hard}"


def _limit(text: str) -> Optional[int]:
    if text.lower() in ("unlimited", "-1"):
        return UNLIMITED
    return int(text) if text.isdigit() else None


def parse_ulimit(item: str) -> Ulimit:
    name, sep, values = item.partition("=")
    soft_text, _, hard_text = values.partition(":")
    soft, hard = _limit(soft_text.strip()), _limit((hard_text or soft_text).strip())
    name = name.strip().lower()
    if not sep or name not in ULIMIT_NAMES or soft is None or hard is None:
        raise SettingError(
            f"expected ulimits like 'memlock=-1' or 'nofile=1024:4096' (names: {', '.join(ULIMIT_NAMES)}), got '{item}'"
        )
    if hard != UNLIMITED and (soft == UNLIMITED or soft > hard):
        raise SettingError(f"the soft limit of ulimit '{item}' is above its hard limit")
    return Ulimit(name, soft, hard)


def parse_ulimits(value: Any) -> Tuple[Ulimit, ...]:
    if not isinstance(value, (list, tuple)):
        _scalar(value, "ulimits like 'memlock=-1'")
    by_name = {}
    for item in _as_list(value):
        ulimit = parse_ulimit(item)
        by_name[ulimit.name] = ulimit  # the last one wins, as with repeated --ulimit
    return tuple(by_name.values())


@dataclass(frozen=True)
class Tmpfs:
    """A tmpfs mount (`--mount type=tmpfs`): only size and mode, which is what Swarm services take too."""

    target: str
    size: Optional[int] = None
    mode: Optional[int] = None


def parse_tmpfs_item(item: str) -> Tmpfs:
    target, _, options = item.partition(":")
    expected = f"expected a tmpfs like '/scratch' or '/scratch:size=1g,mode=1777', got '{item}'"
    if not os.path.isabs(target):
        raise SettingError(expected)
    size = mode = None
    for option in (o.strip() for o in options.split(",") if o.strip()):
        key, _, val = option.partition("=")
        if key == "size":
            try:
                size = parse_size(val)
            except SettingError:
                raise SettingError(expected) from None
        elif key == "mode" and re.fullmatch(r"[0-7]{3,4}", val):
            mode = int(val, 8)
        else:
            raise SettingError(f"tmpfs '{item}': only the options size= and mode= are supported (got '{option}')")
    return Tmpfs(os.path.normpath(target), size, mode)


def parse_tmpfs(value: Any) -> Tuple[Tmpfs, ...]:
    """Paths with optional `:size=...,mode=...`; in a comma-separated string an option continues its path."""
    if not isinstance(value, (list, tuple)):
        _scalar(value, "tmpfs paths like '/scratch'")
    items: list = []
    for piece in _as_list(value):
        if items and not piece.startswith("/") and ":" in items[-1]:
            items[-1] += "," + piece  # `/a:size=1g,mode=700` was split at its comma
        else:
            items.append(piece)
    return tuple(parse_tmpfs_item(item) for item in items)


HOST_GATEWAY = "host-gateway"  # the daemon puts the host's address there
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z")


def parse_extra_host(item: str) -> Tuple[str, str]:
    import ipaddress

    name, _, address = item.partition(":")
    ok = bool(_HOST_NAME.match(name)) and (address == HOST_GATEWAY)
    if not ok and _HOST_NAME.match(name):
        try:
            ipaddress.ip_address(address.strip("[]"))
            ok = True
        except ValueError:
            pass
    if not ok:
        raise SettingError(f"expected extra hosts like 'db:10.0.0.5' or 'host.docker.internal:host-gateway', got '{item}'")
    return name, address.strip("[]")


def parse_extra_hosts(value: Any) -> Tuple[Tuple[str, str], ...]:
    if not isinstance(value, (list, tuple)):
        _scalar(value, "extra hosts like 'db:10.0.0.5'")
    return tuple(parse_extra_host(item) for item in _as_list(value))


def parse_pids_limit(value: Any) -> int:
    text = _scalar(value, "a number of processes like 512")
    if not text.isdigit() or int(text) < 1:
        raise SettingError(f"expected a positive number of processes like 512, got '{value}'")
    return int(text)


def parse_runtime(value: Any) -> str:
    return _plain_name(value, "a runtime name like runc, nvidia or runsc")


PARSERS: Mapping[str, Callable[[Any], Any]] = {
    "image": parse_image,
    "enabled": parse_bool,
    "track": parse_bool,
    "pull": parse_pull,
    "user": parse_user,
    "env": parse_env,
    "volumes": parse_volumes,
    "network": parse_network,
    "gpus": parse_gpus,
    "cpus": parse_cpus,
    "memory": parse_memory,
    "shm_size": parse_size,
    "shell": parse_shell,
    "host_root": parse_host_root,
    "backend": parse_backend,
    "constraints": parse_constraints,
    "allow_repo_settings": parse_bool,
    # run anyway, with a warning, where the engine cannot enforce memory/cpus (engine.check_limits)
    "allow_unlimited": parse_bool,
    "platform": parse_platform,
    "devices": parse_devices,
    "cap_add": parse_capabilities,
    "cap_drop": parse_capabilities,
    "ipc": parse_ipc,
    "ulimits": parse_ulimits,
    "tmpfs": parse_tmpfs,
    "extra_hosts": parse_extra_hosts,
    "pids_limit": parse_pids_limit,
    "runtime": parse_runtime,
    "read_only": parse_bool,
    # the image as code (build.py): a Dockerfile of the repository, its args and target
    "build": parse_build,
    "build_args": parse_build_args,
    "target": parse_target,
    # Swarm: where images built here are pushed so that every node gets them (machine-level only)
    "registry": parse_registry,
}

# Keys a stage may not set in `meta.docker` (they describe the machine, not the stage).
_REPO_ONLY = ("host_root", "allow_repo_settings", "registry")

# Where a value came from (DVC's config levels, plus a stage's meta.docker).
MACHINE_LEVELS = ("system", "global", "local")  # chosen by whoever runs dvc on this machine
REPO_LEVEL = "repo"  # .dvc/config: comes with the repository (a branch, a clone)
SHARED = "shared"  # .dvc/docker.yaml (SHARED_FILE): comes with the repository, and plain DVC ignores it
SHARED_FILE = "docker.yaml"  # in the project's .dvc folder
META = "meta"  # meta.docker in dvc.yaml: comes with the repository
TRACKED = "tracked:"  # + path: a machine-level file (e.g. .dvc/config.local) that Git tracks: the repository's


# --- DVC schema --------------------------------------------------------------


def _checker(key: str, parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    from voluptuous import Invalid

    def check(value: Any) -> Any:
        try:
            parse(value)
        except SettingError as exc:
            raise Invalid(f"docker.{key}: {exc}") from None
        return value

    check.__name__ = f"check_{key}"
    return check


def dvc_schema() -> dict:
    """The `docker` section for DVC's config SCHEMA (voluptuous dict)."""
    return {key: _checker(key, parse) for key, parse in PARSERS.items()}


# --- value object -------------------------------------------------------------


@dataclass(frozen=True)
class DockerSettings:
    """The parsed, validated settings for one stage."""

    image: Optional[str] = None
    enabled: bool = True
    track: bool = True  # record the image identity and rerun when it changes (docs/provenance.md)
    pull: str = "missing"
    user: Optional[str] = None
    env: Tuple[str, ...] = ()
    volumes: Tuple[Volume, ...] = ()
    network: str = DEFAULT_NETWORK
    gpus: Optional[Gpus] = None
    cpus: Optional[float] = None
    memory: Optional[int] = None
    shm_size: Optional[int] = None
    shell: str = DEFAULT_SHELL
    host_root: Optional[str] = None
    backend: str = "engine"
    constraints: Tuple[str, ...] = ()
    allow_repo_settings: bool = False
    allow_unlimited: bool = False
    platform: Optional[str] = None
    devices: Tuple[Device, ...] = ()
    cap_add: Tuple[str, ...] = ()
    cap_drop: Tuple[str, ...] = ()
    ipc: Optional[str] = None
    ulimits: Tuple[Ulimit, ...] = ()
    tmpfs: Tuple[Tmpfs, ...] = ()
    extra_hosts: Tuple[Tuple[str, str], ...] = ()
    pids_limit: Optional[int] = None
    runtime: Optional[str] = None
    read_only: bool = False
    build: Optional[str] = None  # repo-relative Dockerfile (or folder): the image is built (build.py)
    build_args: Tuple[Tuple[str, str], ...] = ()
    target: Optional[str] = None
    registry: Optional[str] = None  # Swarm: built images are pushed there and pinned by digest
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # key -> where its value came from: a DVC config level or META (see `trust`)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # key -> the value this machine's config levels give it (what a repository value is
    # compared with: `trust` lets the repository narrow, not widen, e.g. cap_drop)
    machine: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "docker", origin: str = "") -> "DockerSettings":
        """Parse a config mapping; unknown keys and bad values name `where.key`."""
        values: dict = {}
        for key, raw in data.items():
            if key not in PARSERS:
                raise SettingError(f"unknown key '{where}.{key}' (known: {', '.join(PARSERS)})")
            try:
                values[key] = PARSERS[key](raw)
            except SettingError as exc:
                raise SettingError(f"{where}.{key}: {exc}") from None
        return cls(raw=dict(data), origins={key: origin for key in data}, **values)

    @classmethod
    def from_levels(cls, levels: Sequence[Tuple[str, Mapping[str, Any]]]) -> "DockerSettings":
        """Merge the `docker` sections of DVC's levels (later shadows earlier), remembering each key's level."""
        merged: dict = {}
        origins: dict = {}
        machine: dict = {}
        for level, section in levels:
            merged.update(section)
            origins.update({key: level for key in section})
            if level in MACHINE_LEVELS:
                machine.update(section)
        settings = cls.from_mapping(merged)
        parsed_machine = {key: _reraise(PARSERS[key], value, f"docker.{key}") for key, value in machine.items() if key in PARSERS}
        return replace(settings, origins=origins, machine=parsed_machine)

    @property
    def active(self) -> bool:
        """Stages go into containers when an image (or a Dockerfile to build) is set and not disabled."""
        return bool(self.image or self.build) and self.enabled

    def with_build_tag(self, project: str) -> "DockerSettings":
        """Resolve `image` for a stage whose image is built (`build` set).

        `image` is the tag the build gets when it comes from the same place
        as `build` (or a closer one: then it names another image to run and the
        build is off); from a farther level it is a default meant for other
        stages, so the tag is derived from the project and the Dockerfile.
        """
        if not self.build:
            return self
        build_rank, image_rank = _rank(self.origins.get("build")), _rank(self.origins.get("image"))
        if self.image and image_rank > build_rank:
            return replace(self, build=None, build_args=(), target=None)
        if self.image and image_rank == build_rank:
            return self
        return replace(self, image=derived_tag(project, self.build))

    @property
    def off_here(self) -> bool:
        """`enabled false` set on this machine (`--local`, `--global`, `--system`): final for every stage.

        Why: whoever runs dvc here decides whether a daemon is used at all; an
        image the repository chooses (`.dvc/config`, `meta.docker`, a templated
        `${image}`) must not turn containers back on (issue 20, item 1).
        """
        return not self.enabled and self.origins.get("enabled") in MACHINE_LEVELS

    def override(self, stage_meta: Any, stage: str) -> "DockerSettings":
        """Apply a stage's `meta.docker`: false, an image, or a mapping of keys.

        A stage may turn containers on where the repository's `.dvc/config`
        says `enabled false`, never where this machine's config does (`off_here`).
        """
        where = f"stage '{stage}' meta.docker"
        if stage_meta is None or self.off_here:
            return self
        if isinstance(stage_meta, bool):
            return replace(self, enabled=stage_meta, origins={**self.origins, "enabled": META})
        if isinstance(stage_meta, str):
            image = _reraise(parse_image, stage_meta, where)
            return replace(self, image=image, enabled=True, origins={**self.origins, "image": META, "enabled": META})
        if not isinstance(stage_meta, Mapping):
            raise SettingError(f"{where}: expected false, an image name or a mapping of docker keys, got '{stage_meta}'")
        for key in _REPO_ONLY:
            if key in stage_meta:
                raise SettingError(
                    f"{where}.{key}: can only be set on this machine, with `dvc config --local docker.{key}` "
                    "(or --global, --system)"
                )
        parsed = DockerSettings.from_mapping(stage_meta, where=where)
        changes = {f.name: getattr(parsed, f.name) for f in fields(self) if f.name in stage_meta}
        if "image" in stage_meta and "enabled" not in stage_meta:
            changes["enabled"] = True
        origins = {**self.origins, **{key: META for key in changes}}
        return replace(self, raw={**self.raw, **stage_meta}, origins=origins, **changes)


_CLOSENESS = ("system", "global", REPO_LEVEL, "local", META)  # farther to closer (DVC's LEVELS, then meta)


def _rank(origin: Optional[str]) -> int:
    return _CLOSENESS.index(origin) if origin in _CLOSENESS else -1


def _slug(text: str) -> str:
    """A Docker path component: lowercase letters and digits joined by single dashes."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def derived_tag(project: str, dockerfile: str) -> str:
    """`dvc-build/<project>/<dockerfile path>:latest`: stable per project and Dockerfile, a valid reference."""
    name = f"dvc-build/{_slug(project)}/{_slug(dockerfile)}"
    return name[:NAME_MAX]


def derived_lock_name(dockerfile: str) -> str:
    """`dvc-build/<dockerfile path>`: what dvc.lock calls an image whose tag is derived (`docker:<this>`).

    Why not the tag: its project part is the checkout's folder name, so two
    clones of one repository would write different dvc.lock lines.
    """
    return f"dvc-build/{_slug(dockerfile)}"[:NAME_MAX]


def _reraise(parse: Callable[[Any], Any], value: Any, where: str) -> Any:
    try:
        return parse(value)
    except SettingError as exc:
        raise SettingError(f"{where}: {exc}") from None


def env_items(names: Sequence[str], host_env: Mapping[str, str]) -> dict:
    """Resolve `env` entries: NAME passes the host value through (if set), NAME=VALUE sets it."""
    out: dict = {}
    for item in names:
        name, sep, value = item.partition("=")
        if sep:
            out[name] = value
        elif name in host_env:
            out[name] = host_env[name]
    return out

"""Pure translation: settings + stage facts + one command -> container spec.

Nothing here talks to Docker or reads DVC objects, so it is unit-tested
without a daemon (like docker-py's ``_create_container_args``). The spec
renders both the docker-py ``create_container`` kwargs and the equivalent
``docker run`` line shown by ``dvc repro --dry`` / ``-v``, with a note of what
pasting it does not reproduce (``ContainerSpec.run_line_differences``).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from docker.types import DeviceRequest, Mount

from .config import DockerSettings, env_items
from .errors import DockerExecError
from .lease import LeaseRef, command as lease_command

LABEL = "dvc-docker-exec"  # every container carries it: `docker ps -a --filter label=dvc-docker-exec`
HOME_IN_CONTAINER = "/tmp/dvc-docker-exec-home"

# DVC variables a stage always gets, whatever `docker.env` says. Why: without
# DVC_ROOT/DVC_STAGE/DVC_EXP_* dvclive inside a stage believes it runs outside
# a pipeline, saves its own experiment and corrupts .dvc/tmp/rwlock.
DVC_VARS = ("DVC_ROOT", "DVC_STAGE")


@dataclass(frozen=True)
class StageFacts:
    """What spec needs to know about a DVC stage (gathered by `dvc_glue`)."""

    addressing: str
    wdir: str
    repo_root: str
    mount_paths: Tuple[str, ...]  # directories/files to make visible at the same path
    config_overlays: Tuple[Tuple[str, str], ...] = ()  # (filtered copy, path it hides)
    linked_paths: Tuple[Tuple[str, str], ...] = ()  # (where a symlink lookup leaves the mounts, its target)
    # (path, read_only) mounted again over the mounts above, outermost first:
    # DVC's config folders read-only, the parts a stage may write inside them writable
    protected: Tuple[Tuple[str, bool], ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    entrypoint: Tuple[str, ...]
    command: Tuple[str, ...]
    working_dir: str
    user: Optional[str]
    environment: Mapping[str, str]
    mounts: Tuple[Mount, ...]
    labels: Mapping[str, str]
    name: str
    network_mode: str
    tty: bool
    device_requests: Tuple[DeviceRequest, ...] = ()
    nano_cpus: Optional[int] = None
    mem_limit: Optional[int] = None
    shm_size: Optional[int] = None
    gpus_cli: Optional[str] = None
    constraints: Tuple[str, ...] = ()  # Swarm placement (backend swarm only)
    # variables whose value comes from the host environment (docker.env NAME): never printed
    passthrough: FrozenSet[str] = frozenset()
    # the lease the command is wrapped in: it stops when the dvc process that started it is gone (lease.py)
    lease: Optional[LeaseRef] = None

    def argv(self) -> Tuple[str, ...]:
        """What follows the entrypoint in the container: the command, wrapped in its lease watcher."""
        return lease_command(self.entrypoint[0], self.command[-1], self.lease) if self.lease else self.command

    def host_config_kwargs(self) -> dict:
        kwargs: dict = {
            "mounts": list(self.mounts),
            "network_mode": self.network_mode,
            # why: PID 1 ignores SIGINT/SIGTERM unless it installs handlers;
            # docker-init forwards them so Ctrl-C stops the command (field notes #3).
            "init": True,
            # The daemon removes the container when it exits (like `--rm`); the
            # runner learns the exit code from a wait registered before start.
            "auto_remove": True,
            # A stage must not gain privileges through setuid binaries in the image.
            "security_opt": ["no-new-privileges"],
        }
        if self.device_requests:
            kwargs["device_requests"] = list(self.device_requests)
        if self.nano_cpus:
            kwargs["nano_cpus"] = self.nano_cpus
        if self.mem_limit:
            kwargs["mem_limit"] = self.mem_limit
        if self.shm_size:
            kwargs["shm_size"] = self.shm_size
        return kwargs

    def create_kwargs(self, host_config: object) -> dict:
        """kwargs for docker-py `APIClient.create_container` (host_config built by the caller)."""
        return {
            "image": self.image,
            "entrypoint": list(self.entrypoint),
            "command": list(self.argv()),
            "working_dir": self.working_dir,
            "user": self.user or "",
            "environment": dict(self.environment),
            "labels": dict(self.labels),
            "name": self.name,
            "tty": self.tty,
            "stdin_open": False,
            "host_config": host_config,
        }

    def docker_run_line(self) -> str:
        """The `docker run` command that creates the same container (see `run_line_differences`).

        Values are shown except those of variables passed from the host
        (`docker.env NAME`) or named like secrets: `-e NAME` takes the pasting
        shell's value. `--mount` fields are quoted as the CLI's CSV parser
        reads them, so paths with commas, quotes or newlines survive.
        """
        if self.image.startswith("-"):  # config.parse_image refuses it; never print an option as the image
            raise DockerExecError(f"'{self.image}' is not an image reference")
        args: List[str] = ["docker", "run", "--rm", "--init", "--security-opt", "no-new-privileges"]
        if self.tty:
            args.append("-t")
        args += ["--network", self.network_mode]
        if self.user:
            args += ["--user", self.user]
        for mount in self.mounts:
            args += ["--mount", _mount_cli(mount)]
        args += ["--workdir", self.working_dir]
        for name in sorted(self.environment):
            hidden = name in self.passthrough or _SECRET_NAME.search(name)
            args += ["-e", name if hidden else f"{name}={self.environment[name]}"]
        if self.gpus_cli:
            args += ["--gpus", self.gpus_cli]
        if self.nano_cpus:
            # nine decimals at most: the CLI refuses more ("value is too precise") and rounds nothing
            args += ["--cpus", f"{self.nano_cpus / 1e9:.9f}".rstrip("0").rstrip(".")]
        if self.mem_limit:
            args += ["--memory", str(self.mem_limit)]
        if self.shm_size:
            args += ["--shm-size", str(self.shm_size)]
        args += ["--entrypoint", self.entrypoint[0], self.image, *self.entrypoint[1:], *self.command]
        return shlex.join(args)

    def run_line_differences(self) -> List[str]:
        """What pasting `docker_run_line()` does not reproduce, one short clause each."""
        notes = []
        hidden = sorted(n for n in self.environment if n in self.passthrough or _SECRET_NAME.search(n))
        if hidden:
            notes.append(f"{', '.join(hidden)} take their value from your shell")
        overlays = [m["Target"] for m in self.mounts if m["Target"].endswith(("/.dvc/config", "/.dvc/config.local"))]
        if overlays:
            notes.append("the filtered copies of .dvc/config mounted read-only exist only while the stage runs")
        notes.append(f"the plugin also sets the container name and {LABEL} labels")
        if self.lease:
            notes.append("it wraps the command in a watcher that stops it when this dvc process is gone")
        return notes


_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH", re.IGNORECASE)


def _csv_field(field: str) -> str:
    """One field as Go's encoding/csv (the CLI's `--mount` parser) reads it back unchanged."""
    if any(c in field for c in ',"\r\n') or field[:1].isspace():
        return '"' + field.replace('"', '""') + '"'
    return field


def _mount_cli(mount: Mount) -> str:
    parts = [f"type={mount['Type']}"]
    if mount.get("Source"):
        parts.append(f"source={mount['Source']}")
    parts.append(f"target={mount['Target']}")
    if mount.get("ReadOnly"):
        parts.append("readonly")
    if (mount.get("VolumeOptions") or {}).get("NoCopy"):
        parts.append("volume-nocopy")
    mode = (mount.get("TmpfsOptions") or {}).get("Mode")
    if mode is not None:
        parts.append(f"tmpfs-mode={mode:o}")
    return ",".join(_csv_field(part) for part in parts)


def container_name(addressing: str, pid: int, token: Optional[str] = None) -> str:
    """Unique per run: parallel queue workers run the same stage at once."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", addressing).strip("-.")[:40] or "stage"
    return f"dvc-{slug}-{pid}-{token or secrets.token_hex(3)}"


def container_env(
    dvc_env: Mapping[str, str],
    run_env: Optional[Mapping[str, str]],
    settings: DockerSettings,
    host_env: Mapping[str, str],
    home: Optional[str],
) -> Dict[str, str]:
    """DVC's own variables always, the experiment variables DVC passes, then the allow-list.

    `dvc_env` is the env DVC prepared for a host run (it fills DVC_ROOT and
    DVC_STAGE); the rest of the host environment is deliberately not passed.
    """
    env = {name: dvc_env[name] for name in DVC_VARS if name in dvc_env}
    env.update({k: v for k, v in (run_env or {}).items() if v is not None})
    env.update(env_items(settings.env, host_env))
    env["SHELL"] = settings.shell
    if home:
        env["HOME"] = home
    return env


def dedupe_mounts(mounts: Sequence[Mount]) -> Tuple[Mount, ...]:
    """Drop mounts that an outer mount already provides (same storage, same place).

    Kept: a nested mount with other storage (e.g. a cache volume inside the
    repo mount in the socket pattern) and file overlays. Docker refuses two
    mounts at one target: several paths on one named volume all become that
    whole volume at one target, so those merge (read-write wins); two kinds of
    storage for one target are a conflict.
    """
    by_target: Dict[str, Mount] = {}
    for mount in mounts:
        target = os.path.normpath(mount["Target"])
        seen = by_target.get(target)
        if seen is None:
            by_target[target] = mount
        elif (seen["Type"], seen.get("Source")) != (mount["Type"], mount.get("Source")):
            raise DockerExecError(
                f"conflicting mounts for '{target}' in the stage container: "
                f"'{seen.get('Source')}' and '{mount.get('Source')}'; mount them at different paths"
            )
        elif seen.get("ReadOnly") and not mount.get("ReadOnly"):
            by_target[target] = mount
    kept: List[Mount] = []
    for mount in sorted(by_target.values(), key=lambda m: (m["Target"].count("/"), m["Target"])):
        if not any(_covers(outer, mount) for outer in kept):
            kept.append(mount)
    return tuple(kept)


def _covers(outer: Mount, inner: Mount) -> bool:
    rel = _relative(inner["Target"], outer["Target"])
    if rel is None or outer["Type"] != inner["Type"]:
        return False
    # a read-only outer mount cannot stand in for a writable inner one, nor a
    # writable one for a read-only one (`docker.volumes: data:/repo/data:ro`)
    if bool(outer.get("ReadOnly", False)) != bool(inner.get("ReadOnly", False)):
        return False
    if inner["Type"] == "volume":
        return outer["Source"] == inner["Source"]
    return os.path.normpath(os.path.join(outer["Source"], rel)) == os.path.normpath(inner["Source"])


def _relative(path: str, parent: str) -> Optional[str]:
    path, parent = os.path.normpath(path), os.path.normpath(parent)
    if path == parent:
        return "."
    prefix = parent.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def resolve_user(settings: DockerSettings, uid: int, gid: int) -> Tuple[Optional[str], bool]:
    """The user to run as and whether it needs a HOME of its own.

    Default: the invoking uid:gid, so outputs belong to the user, not root
    (field notes #1). Such a uid usually has no passwd entry in the image, so
    it gets a writable HOME.
    """
    user = settings.user or f"{uid}:{gid}"
    is_root = user.split(":")[0] in ("0", "root")
    return user, not is_root


def build_spec(
    settings: DockerSettings,
    facts: StageFacts,
    cmd: str,
    env: Mapping[str, str],
    mount_for: Callable[[str, bool], Mount],
    *,
    uid: int,
    gid: int,
    pid: int,
    tty: bool,
    user_name: str = "dvc",
    host: str = "",
    name_token: Optional[str] = None,
    lease: Optional[LeaseRef] = None,
) -> ContainerSpec:
    """The container for one command line of a stage.

    `mount_for(path, read_only)` maps a path as DVC sees it to a Mount whose
    target is that same path (identity on a host, translated in the socket pattern).
    """
    assert settings.image, "build_spec needs an image"
    user, needs_home = resolve_user(settings, uid, gid)
    environment = dict(env)
    mounts: List[Mount] = [mount_for(path, False) for path in facts.mount_paths]
    for target, real in facts.linked_paths:
        mounts.append(_retarget(mount_for(real, False), target, False))
    for volume in settings.volumes:
        source = volume.source if os.path.isabs(volume.source) else os.path.join(facts.repo_root, volume.source)
        base = mount_for(os.path.normpath(source), volume.read_only)
        mounts.append(_retarget(base, volume.target, volume.read_only))
    mounts = list(dedupe_mounts(mounts))
    binds = [m for m in mounts if m["Type"] == "bind"]
    extra: List[Mount] = []
    for path, read_only in facts.protected:
        source = mount_for(path, read_only)
        # A path inside a named volume cannot be mounted on its own (README: socket pattern).
        if source["Type"] == "bind":
            extra += _at_every_alias(source["Source"], source, binds, read_only)
    for copy, hidden in facts.config_overlays:
        overlay, original = mount_for(copy, True), mount_for(hidden, True)
        # A file inside a named volume cannot be bind-mounted on its own; the
        # stage then sees the unfiltered config (README: socket pattern).
        if overlay["Type"] == "bind" and original["Type"] == "bind":
            extra += _at_every_alias(original["Source"], overlay, binds, True)
    taken = {os.path.normpath(m["Target"]) for m in mounts}
    for mount in extra:
        target = os.path.normpath(mount["Target"])
        if target not in taken:  # a user's volume at that very place wins; Docker refuses two
            taken.add(target)
            mounts.append(mount)
    if needs_home:
        environment.setdefault("HOME", HOME_IN_CONTAINER)
        # the uid usually has no passwd entry in the image: getpwuid() fails
        # there (DVC and git call it) unless USER/LOGNAME name the user
        environment.setdefault("USER", user_name)
        environment.setdefault("LOGNAME", user_name)
        mounts.append(Mount(target=HOME_IN_CONTAINER, source=None, type="tmpfs", tmpfs_mode=0o1777))

    gpus = settings.gpus
    device_requests: Tuple[DeviceRequest, ...] = ()
    if gpus is not None:
        device_requests = (
            DeviceRequest(
                count=None if gpus.device_ids else gpus.count,
                device_ids=list(gpus.device_ids) or None,
                capabilities=[["gpu"]],
            ),
        )
    labels = {
        LABEL: "1",
        f"{LABEL}.stage": facts.addressing,
        f"{LABEL}.repo": facts.repo_root,
        f"{LABEL}.pid": str(pid),
        # the pid is only meaningful on the machine (or runner container) named here
        f"{LABEL}.host": host,
    }
    return ContainerSpec(
        image=settings.image,
        entrypoint=(settings.shell,),
        # why: one shell per command line, like DVC; the command is an argv
        # element, never re-parsed by a host shell (quoting, pipes, $VAR intact).
        command=("-c", cmd),
        working_dir=facts.wdir,
        user=user,
        environment=environment,
        mounts=tuple(mounts),
        labels=labels,
        name=container_name(facts.addressing, pid, name_token),
        network_mode=settings.network,
        tty=tty,
        device_requests=device_requests,
        nano_cpus=round(settings.cpus * 1e9) if settings.cpus else None,
        mem_limit=settings.memory,
        shm_size=settings.shm_size,
        gpus_cli=gpus.cli() if gpus else None,
        constraints=settings.constraints,
        passthrough=frozenset(item for item in settings.env if "=" not in item),
        lease=lease,
    )


def _at_every_alias(host_path: str, storage: Mount, binds: Sequence[Mount], read_only: bool) -> List[Mount]:
    """`storage` mounted wherever a bind mount shows `host_path` (the repo at its path, a volume `.:/work`).

    Why every alias: a config folder made read-only at one place must not
    stay writable through another mount of the same host folder.
    """
    found = []
    for bind in binds:
        rel = _relative(host_path, bind["Source"])
        if rel is not None:
            target = os.path.normpath(os.path.join(bind["Target"], rel))
            found.append(_retarget(storage, target, read_only or bool(bind.get("ReadOnly"))))
    return found


def _retarget(mount: Mount, target: str, read_only: bool) -> Mount:
    """Same storage, other place in the container (extra volumes, config overlays).

    A read-only source stays read-only whatever was asked.
    """
    read_only = read_only or bool(mount.get("ReadOnly"))
    if mount["Type"] == "volume":
        # A path inside a named volume cannot be mounted on its own (no subpath
        # on Docker 20.10): mount the whole volume where asked.
        return Mount(target=target, source=mount["Source"], type="volume", read_only=read_only, no_copy=True)
    return Mount(target=target, source=mount["Source"], type="bind", read_only=read_only)

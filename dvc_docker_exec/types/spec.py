"""Pure translation: settings + stage facts + one command -> container spec.

Nothing here talks to Docker or reads DVC objects, so it is unit-tested
without a daemon (like docker-py's ``_create_container_args``). The spec
renders both the docker-py ``create_container`` kwargs and the equivalent
``docker run`` line shown by ``dvc repro --dry`` / ``-v``, with a note of what
pasting it does not reproduce (``ContainerSpec.run_line_differences``).
"""

from __future__ import annotations

import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple

from docker.types import DeviceRequest, Mount, Ulimit

from dvc_docker_exec.config import Device, DockerSettings, Ulimit as UlimitSetting, env_items
from dvc_docker_exec.errors import DockerExecError
from dvc_docker_exec.types.mounts import StageFacts, plan_mounts
from dvc_docker_exec.types.options import plan_option_mounts, refuse_socket_device
from dvc_docker_exec.types.lease import LeaseRef, command as lease_command

LABEL = "dvc-docker-exec"  # every container carries it: `docker ps -a --filter label=dvc-docker-exec`
HOME_IN_CONTAINER = "/tmp/dvc-docker-exec-home"

# DVC variables a stage always gets, whatever `docker.env` says. Why: without
# DVC_ROOT/DVC_STAGE/DVC_EXP_* dvclive inside a stage believes it runs outside
# a pipeline, saves its own experiment and corrupts .dvc/tmp/rwlock.
DVC_VARS = ("DVC_ROOT", "DVC_STAGE")


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
    # container options of issue 21 (docs/configuration.md "Container options"); None/() = Docker's default
    platform: Optional[str] = None
    devices: Tuple[Device, ...] = ()
    cap_add: Tuple[str, ...] = ()
    cap_drop: Tuple[str, ...] = ()
    ipc_mode: Optional[str] = None
    ulimits: Tuple[UlimitSetting, ...] = ()
    extra_hosts: Tuple[Tuple[str, str], ...] = ()
    pids_limit: Optional[int] = None
    runtime: Optional[str] = None
    read_only: bool = False
    # the local image ID the engine creates the container from (read in the same
    # inspect as the recorded identity: a tag moved since then does not matter);
    # `image` (the tag) stays for messages and the label
    image_id: Optional[str] = None
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
        optional = {
            "devices": [device.api() for device in self.devices],
            "cap_add": list(self.cap_add),
            "cap_drop": list(self.cap_drop),
            "ipc_mode": self.ipc_mode,
            "ulimits": [Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in self.ulimits],
            "extra_hosts": [f"{name}:{address}" for name, address in self.extra_hosts],
            "pids_limit": self.pids_limit,
            "runtime": self.runtime,
            "read_only": self.read_only,
        }
        kwargs.update({key: value for key, value in optional.items() if value})
        return kwargs

    def create_kwargs(self, host_config: object) -> dict:
        """kwargs for docker-py `APIClient.create_container` (host_config built by the caller)."""
        return {
            "image": self.image_id or self.image,
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
            # the daemon refuses (or, for a tag, pulls) an image of another platform
            **({"platform": self.platform} if self.platform else {}),
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
        args += self._option_args()
        args += ["--entrypoint", self.entrypoint[0], self.image, *self.entrypoint[1:], *self.command]
        return shlex.join(args)

    def _option_args(self) -> List[str]:
        """The container options of issue 21 as `docker run` flags (tmpfs mounts are among --mount)."""
        args: List[str] = []
        if self.platform:
            args += ["--platform", self.platform]
        if self.read_only:
            args.append("--read-only")
        for device in self.devices:
            args += ["--device", device.cli()]
        for flag, caps in (("--cap-add", self.cap_add), ("--cap-drop", self.cap_drop)):
            for cap in caps:
                args += [flag, cap]
        if self.ipc_mode:
            args += ["--ipc", self.ipc_mode]
        for ulimit in self.ulimits:
            args += ["--ulimit", ulimit.cli()]
        for name, address in self.extra_hosts:
            args += ["--add-host", f"{name}:{address}"]
        if self.pids_limit:
            args += ["--pids-limit", str(self.pids_limit)]
        if self.runtime:
            args += ["--runtime", self.runtime]
        return args

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
    size = (mount.get("TmpfsOptions") or {}).get("SizeBytes")
    if size is not None:
        parts.append(f"tmpfs-size={size}")
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
    check_device: Callable[[Device], None] = refuse_socket_device,
    image_id: Optional[str] = None,
    lease: Optional[LeaseRef] = None,
) -> ContainerSpec:
    """The container for one command line of a stage.

    `mount_for(path, read_only)` maps a path as DVC sees it to a Mount whose
    target is that same path (identity on a host, translated in the socket pattern).
    """
    assert settings.image, "build_spec needs an image"
    user, needs_home = resolve_user(settings, uid, gid)
    environment = dict(env)
    if needs_home:
        # the uid usually has no passwd entry in the image: getpwuid() fails
        # there (DVC and git call it) unless USER/LOGNAME name the user
        environment.setdefault("USER", user_name)
        environment.setdefault("LOGNAME", user_name)
    # a read-only root: root's own HOME is not writable either
    home = HOME_IN_CONTAINER if needs_home or settings.read_only else None
    if home:
        environment.setdefault("HOME", home)
    # every mount comes from the one plan (mounts.py); the options' tmpfs and devices
    # (types/options.py) are planned against its targets and checked by the socket rule
    planned = plan_mounts(facts, settings.volumes, mount_for, home=home)
    options = plan_option_mounts(settings, [m["Target"] for m in planned], check_device)
    mounts = (*planned, *options.tmpfs)

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
        # the reference as configured (the container is created from `image_id` when known)
        f"{LABEL}.image": settings.image,
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
        mounts=mounts,
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
        platform=settings.platform,
        devices=options.devices,
        cap_add=settings.cap_add,
        cap_drop=settings.cap_drop,
        ipc_mode=settings.ipc,
        ulimits=settings.ulimits,
        extra_hosts=settings.extra_hosts,
        pids_limit=settings.pids_limit,
        runtime=settings.runtime,
        read_only=settings.read_only,
        image_id=image_id,
        lease=lease,
    )

"""`dvc docker doctor`: is this setup able to run the pipeline's stages in containers?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Optional, Tuple

from dvc_docker_exec.commands.base import CmdDocker, add_command, add_json
from dvc_docker_exec.errors import DockerExecError

if TYPE_CHECKING:
    from dvc_docker_exec.commands.checks import Check

PROXY_FIX = "allow it in the socket proxy, or use a socket that allows it"
HELP = "Check the Docker setup for this repo's pipeline: one line per check, with a fix."
DESCRIPTION = (
    HELP + "\n\nChecks the endpoint and where it came from, the socket permission, the daemon, the engine kind"
    " and its resource limits, the path translation when DVC runs in a container, and every stage's image"
    " and settings. Exits non-zero when a check is an error."
)


class CmdDockerDoctor(CmdDocker):
    def run(self) -> int:
        from dvc.ui import ui

        from dvc_docker_exec.commands.checks import ERROR, summary

        checks = list(self.checks())
        failed = any(c.level == ERROR for c in checks)
        if self.args.json:
            ui.write_json({"ok": not failed, "checks": [c.as_dict() for c in checks]})
        else:
            for check in checks:
                ui.write(check.line())
            ui.write(summary(checks))
        return 1 if failed else 0

    def checks(self) -> Iterator[Check]:
        from dvc_docker_exec.commands.checks import ERROR, OK, Check, socket_check

        try:
            endpoint = self.endpoint
        except DockerExecError as exc:
            yield Check("endpoint", ERROR, str(exc), "`docker context ls` lists the contexts; `docker context use default`")
            return
        yield Check("endpoint", OK, endpoint.describe())
        socket = socket_check(endpoint.socket_path)
        if socket is not None:
            yield socket
        client, daemon = self._connect()
        yield daemon
        stages, stage_checks = self._stages()
        if client is not None:
            yield from self._guarded("engine", lambda: self._engine_checks(client, stages))
            yield from self._guarded("paths", lambda: [self._paths_check(client)])
        yield from stage_checks
        yield from self._guarded("images", lambda: self._stage_checks(client, stages))

    @staticmethod
    def _guarded(name: str, checks: Callable[[], Iterable[Check]]) -> Iterator[Check]:
        """A daemon call refused midway (a socket proxy's rules) is that check's error line, not the end of doctor."""
        from dvc_docker_exec.commands.checks import ERROR, Check

        try:
            yield from list(checks())
        except DockerExecError as exc:
            yield Check(name, ERROR, str(exc), PROXY_FIX)

    def _connect(self) -> Tuple[Optional[Any], Any]:
        from docker.errors import DockerException

        from dvc_docker_exec.commands.checks import ERROR, Check, daemon_check
        from dvc_docker_exec.backends.runner import connect_failure

        try:
            client = self.endpoint.client()
            client.ping()
            version = client.version()
        except DockerException as exc:
            from dvc_docker_exec.stage.settings import off_here

            what, fix = connect_failure(self.endpoint, exc, host_run_hint=lambda: not off_here(self.repo))
            return None, Check("daemon", ERROR, what, fix)
        except DockerExecError as exc:  # e.g. a socket proxy that denies VERSION
            return None, Check("daemon", ERROR, str(exc), PROXY_FIX)
        self._client = client
        return client, daemon_check(version)

    def _stages(self) -> Tuple[List[Tuple[Any, Any]], List[Check]]:
        """(stage, settings) of the stages in containers, and an error line for each stage with bad settings."""
        from dvc_docker_exec.commands.checks import ERROR, Check

        def name(stage: Any) -> str:
            return f"stage '{stage.addressing}'"

        errors: List[Check] = []
        found = self.container_stages(
            on_error=lambda stage, exc: errors.append(
                Check(name(stage), ERROR, str(exc).replace(f"{name(stage)} ", "", 1), "fix the setting it names")
            )
        )
        return found, errors

    def _engine_checks(self, client: Any, stages: List[Tuple[Any, Any]]) -> Iterator[Check]:
        from docker.errors import APIError

        from dvc_docker_exec.commands.checks import engine_check, gpus_check, limits_check, runtime_check
        from dvc_docker_exec.api.engine import from_api

        try:
            info: Optional[dict] = client.info()
        except (APIError, DockerExecError):  # a socket proxy that denies INFO
            info = None
        engine = from_api(client.version(), info)
        yield engine_check(engine, info)
        # stages whose limits this engine would refuse to run without (docker.allow_unlimited)
        yield limits_check(engine, [s.addressing for s, st in stages if (st.memory or st.cpus) and not st.allow_unlimited])
        from dvc_docker_exec.backends.session import backend_class

        # the endpoint's GPUs and runtimes are a stage's only where its backend runs it (not Swarm's nodes)
        here = [(s, st) for s, st in stages if backend_class(st.backend).RUNS_HERE]
        engine_gpus = [s.addressing for s, st in here if st.gpus]
        gpus = gpus_check(info, engine_gpus) if info is not None else None
        if gpus is not None:
            yield gpus
        runtimes = [(s.addressing, st.runtime) for s, st in here if st.runtime]
        runtime = runtime_check(info, runtimes) if info is not None else None
        if runtime is not None:
            yield runtime
        elsewhere = [(s, st) for s, st in stages if not backend_class(st.backend).RUNS_HERE]
        swarm_gpus = [(s.addressing, 0 if st.gpus.device_ids else st.gpus.count) for s, st in elsewhere if st.gpus]
        if swarm_gpus:
            yield from self._swarm_gpus_checks(client, swarm_gpus)

    @staticmethod
    def _swarm_gpus_checks(client: Any, used_by: List[Tuple[str, int]]) -> Iterator[Check]:
        """The nodes' GPUs, from the manager: what `docker.gpus N` reserves on Swarm."""
        from docker.errors import APIError

        from dvc_docker_exec.commands.checks import ERROR, Check, swarm_gpus_checks
        from dvc_docker_exec.backends.swarm import node_capacity

        try:
            nodes = client.api.nodes()
        except APIError as exc:  # not a manager, or a proxy that denies NODES
            yield Check("gpus", ERROR, f"cannot list the Swarm nodes: {exc.explanation or exc}", "point DOCKER_HOST at a manager")
            return
        yield from swarm_gpus_checks([node_capacity(n) for n in nodes], used_by)

    def _paths_check(self, client: Any) -> Check:
        from dvc_docker_exec.commands.checks import ERROR, OK, WARNING, Check
        from dvc_docker_exec.config import DockerSettings, SettingError
        from dvc_docker_exec.stage.settings import SECTION, repo_git_root
        from dvc_docker_exec.boundary.paths import IdentityPaths, detect_host_paths, in_container

        root = repo_git_root(self.repo)
        fix = "if DVC runs in a container, run it with the project on a bind mount or a named volume, or set `dvc config docker.host_root HOST_PATH`"
        try:
            host_root = DockerSettings.from_mapping(self.repo.config.get(SECTION) or {}).host_root
            paths = detect_host_paths(client, repo_root=root, host_root=host_root, endpoint=self.endpoint)
            if isinstance(paths, IdentityPaths):
                if paths.beside:
                    return Check("paths", OK, f"{paths.reason}: {root} is mounted at the same path, no translation")
                if in_container():
                    return Check(
                        "paths",
                        WARNING,
                        f"DVC looks like it runs in a container ({paths.reason}): paths are mounted as they are,"
                        " which is right only if DVC runs on the Docker host",
                        fix,
                    )
                return Check("paths", OK, f"DVC runs on the Docker host: {root} is mounted at the same path")
            mount = paths.mount(root)
        except (DockerExecError, SettingError) as exc:
            return Check("paths", ERROR, str(exc), fix)
        target = f" at {mount['Target']}" if mount["Target"] != root else ""
        return Check("paths", OK, f"{paths.describe()}; {root} -> {mount['Type']} {mount['Source']}{target}")

    def _stage_checks(self, client: Optional[Any], stages: List[Tuple[Any, Any]]) -> Iterator[Check]:
        from dvc_docker_exec.commands.checks import ERROR, OK, WARNING, Check, volume_checks
        from dvc_docker_exec.types.provenance import short_identity
        from dvc_docker_exec.dependency.image_rows import image_rows

        yield from _legacy_record_checks(self.repo.root_dir, stages)
        rows = {row.stage: row for row in image_rows(client, stages)} if client is not None else {}
        for stage, settings in stages:
            yield from volume_checks(stage.addressing, [v.source for v in settings.volumes])
            row = rows.get(stage.addressing)
            if row is None:
                continue
            name = f"stage '{row.stage}'"
            recorded = f"dvc.lock records {short_identity(row.recorded)}" if row.recorded else "nothing recorded yet"
            if row.build:
                yield built_check(name, row)
            elif row.present and not row.changed:
                as_recorded = "as recorded" if row.recorded else "not recorded yet: the stage has not run in a container"
                yield Check(name, OK, f"image '{row.image}' is present, identity {short_identity(row.current)} ({as_recorded})")
            elif row.present:
                yield Check(
                    name,
                    WARNING,
                    f"image '{row.image}' is {short_identity(row.current)} but {recorded}: `dvc repro` reruns the stage",
                    f"`dvc docker pull {row.stage}` to get the recorded image, or `dvc repro {row.stage}` to record this one",
                )
            elif row.pull == "never":
                yield Check(
                    name,
                    ERROR,
                    f"image '{row.image}' is not present and docker.pull is 'never' ({recorded})",
                    f"`dvc docker pull {row.stage}` or `docker build -t {row.image} .`",
                )
            else:
                yield Check(
                    name,
                    WARNING,
                    f"image '{row.image}' is not present: the first run pulls it (docker.pull {row.pull}; {recorded})",
                    f"`dvc docker pull {row.stage}`",
                )


def built_check(name: str, row: Any) -> "Check":
    """A stage whose image is built from its Dockerfile: are its inputs as recorded, is it built here?"""
    from dvc_docker_exec.commands.checks import OK, WARNING, Check
    from dvc_docker_exec.types.provenance import short_identity

    what = f"image built from {row.build} ('{row.image}')"
    if row.changes:
        return Check(name, WARNING, f"{what}: {'; '.join(row.changes)}",
                     f"`dvc repro {row.stage}` rebuilds it and reruns the stage")
    if not row.built:
        return Check(name, OK, f"{what}: inputs as recorded, not built here: built when the stage must run",
                     f"`dvc docker build {row.stage}` builds it now")
    return Check(name, OK, f"{what}: inputs as recorded, built here as {short_identity(row.built)}")


def _legacy_record_checks(root: str, stages: List[Tuple[Any, Any]]) -> Iterator[Check]:
    """A dvc.docker.lock of an earlier version is no longer read: say so (a reader might trust it, P8)."""
    import os

    from dvc_docker_exec.commands.checks import WARNING, Check
    from dvc_docker_exec.types.provenance import LEGACY_RECORD_FILE

    folders = sorted({os.path.dirname(os.path.abspath(stage.path)) for stage, _ in stages})
    for path in (os.path.join(folder, LEGACY_RECORD_FILE) for folder in folders):
        if os.path.lexists(path):
            rel = os.path.relpath(path, root)
            yield Check(
                "provenance",
                WARNING,
                f"'{rel}' is not read (earlier versions wrote it): the image each stage ran in is recorded in dvc.lock",
                f"`git rm {rel}`",
            )


def add_parser(subparsers, parent_parser):
    parser = add_command(subparsers, parent_parser, "doctor", HELP, DESCRIPTION)
    add_json(parser)
    parser.set_defaults(func=CmdDockerDoctor)

"""What every `dvc docker` subcommand shares: the repo, the daemon, the pipeline's stages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional, Sequence, Tuple

from dvc.cli import formatter
from dvc.cli.command import CmdBase

if TYPE_CHECKING:
    import docker

    from dvc_docker_exec.config import DockerSettings
    from dvc_docker_exec.api.endpoint import Endpoint


class CmdDocker(CmdBase):
    """A DVC command in a DVC repo (DVC's own error outside one) that talks to the daemon."""

    @property
    def endpoint(self) -> "Endpoint":
        from dvc_docker_exec.backends import session

        return session.endpoint()

    @property
    def client(self) -> "docker.DockerClient":
        """A pinged client, or DVC's one-line error naming the endpoint (unreachable, permission)."""
        from dvc_docker_exec.backends import session
        from dvc_docker_exec.stage.settings import off_here

        return session.client(host_run_hint=lambda: not off_here(self.repo))  # asked only if it fails

    def stages(self, targets: Sequence[str] = ()) -> List[Any]:
        """The pipeline's stages, or the targets and what they depend on (what `dvc repro` would run)."""
        every = list(self.repo.index.stages)
        if not targets:
            return every
        wanted = {stage.addressing for target in targets for stage in self.repo.stage.collect(target, with_deps=True)}
        return [stage for stage in every if stage.addressing in wanted]  # in dvc.yaml order, each once

    def container_stages(
        self, targets: Sequence[str] = (), on_error: Optional[Callable[[Any, Exception], None]] = None
    ) -> List[Tuple[Any, "DockerSettings"]]:
        """(stage, settings) of every stage that runs in a container.

        A bad setting is DVC's one-line error, or with `on_error` reported
        there and the stage skipped (doctor reports every stage).
        """
        from dvc_docker_exec.stage.settings import settings_for
        from dvc_docker_exec.errors import DockerExecError

        found = []
        for stage in self.stages(targets):
            if not getattr(stage, "cmd", None):
                continue  # .dvc files and stages without a command run nothing
            try:
                settings = settings_for(stage)
            except DockerExecError as exc:
                if on_error is None:
                    raise
                on_error(stage, exc)
                continue
            if settings is not None:
                found.append((stage, settings))
        return found


def add_command(subparsers: Any, parent_parser: Any, name: str, help: str, description: str) -> Any:
    """The parser of one `dvc docker NAME` command, in DVC's style (its common options, raw description)."""
    return subparsers.add_parser(
        name,
        parents=[parent_parser],
        description=description,
        help=help,
        formatter_class=formatter.RawDescriptionHelpFormatter,
    )


def add_targets(parser: Any, what: str) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="<target>",
        help=f"Stages (and the stages they depend on) whose {what}. All stages of the pipeline by default.",
    )


def add_json(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", default=False, help="Show output in JSON format.")


def unique(items: Iterable[str]) -> List[str]:
    return list(dict.fromkeys(items))

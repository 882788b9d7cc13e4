"""`dvc docker build`: build the images of the stages that have a Dockerfile (docker.build), without running them."""

from __future__ import annotations

from dvc_docker_exec.commands.base import CmdDocker, add_command, add_targets

HELP = "Build the images of the pipeline's stages that set docker.build (or of the targets), without running them."
DESCRIPTION = (
    HELP + "\n\nEach Dockerfile is built once (an image of the same inputs is reused, whatever its tag, unless"
    " --force). `dvc repro` builds the same way when a stage has to run; `dvc status` tells, without building,"
    " whether a stage's build inputs changed."
)


class CmdDockerBuild(CmdDocker):
    def run(self) -> int:
        from dvc.ui import ui

        from dvc_docker_exec.backends import session
        from dvc_docker_exec.types.provenance import short_identity
        from dvc_docker_exec.stage.settings import build_spec_for

        specs = {}
        for stage, settings in self.container_stages(self.args.targets):
            spec = build_spec_for(stage, settings)
            if spec is not None:
                specs.setdefault((spec.key, spec.tag), spec)
        if not specs:
            ui.write("No stage of this pipeline builds its image (docker.build): nothing to build.")
            return 0
        self.client  # noqa: B018 - connect first: the daemon's error, not a build's
        builder = session.builder()
        for spec in specs.values():
            before = set(builder.built_now)
            identity, image_id = builder.ensure(spec, force=self.args.force)
            done = "Built" if builder.built_now - before else "Up to date:"
            ui.write(f"{done} {spec.tag} from {spec.dockerfile}: image {short_identity(image_id)}, inputs {short_identity(identity)}")
        return 0


def add_parser(subparsers, parent_parser):
    parser = add_command(subparsers, parent_parser, "build", HELP, DESCRIPTION)
    parser.add_argument(
        "-f", "--force", action="store_true", default=False,
        help="Build again even when an image of the same inputs exists (Docker's layer cache still applies).",
    )
    add_targets(parser, "images to build")
    parser.set_defaults(func=CmdDockerBuild)

"""`dvc docker pull`: pull every image the pipeline (or the targets) needs, in parallel."""

from __future__ import annotations

import logging

from dvc.cli import formatter

from .cli_base import CmdDocker, add_targets, unique

logger = logging.getLogger(f"dvc.{__name__}")

HELP = "Pull the images of the pipeline's stages (or of the targets), each once."
DESCRIPTION = HELP + "\n\nA progress bar per image on a terminal; one line per layer otherwise."


class CmdDockerPull(CmdDocker):
    def run(self) -> int:
        from concurrent.futures import ThreadPoolExecutor

        from dvc.ui import ui

        from .errors import DockerExecError
        from .pulling import pull_image

        images = unique(settings.image for _, settings in self.container_stages(self.args.targets))
        if not images:
            ui.write("No stage of this pipeline runs in a container: nothing to pull.")
            return 0
        api = self.client.api
        jobs = max(1, min(self.args.jobs or 4, len(images)))
        failed = []
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [(image, pool.submit(pull_image, api, image, None, i if jobs > 1 else None)) for i, image in enumerate(images)]
            for image, future in futures:
                try:
                    future.result()
                except DockerExecError as exc:
                    logger.error("%s", exc)
                    failed.append(image)
        pulled = len(images) - len(failed)
        if failed:
            raise DockerExecError(f"{len(failed)} of {len(images)} images could not be pulled: {', '.join(failed)}")
        ui.write(f"{pulled} image{'s' if pulled != 1 else ''} pulled: {', '.join(images)}")
        return 0


def add_parser(subparsers, parent_parser):
    parser = subparsers.add_parser(
        "pull", parents=[parent_parser], description=DESCRIPTION, help=HELP, formatter_class=formatter.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="<number>",
        help="Number of images to pull at once (default: 4).",
    )
    add_targets(parser, "images to pull")
    parser.set_defaults(func=CmdDockerPull)

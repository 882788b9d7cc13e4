"""`dvc docker pull`: pull every image the pipeline (or the targets) needs, by the recorded digest."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from dvc_docker_exec.commands.base import CmdDocker, add_command, add_targets

if TYPE_CHECKING:
    from dvc_docker_exec.dependency.image_rows import Pull

logger = logging.getLogger(f"dvc.{__name__}")

HELP = "Pull the images of the pipeline's stages (or of the targets), each once, by the digest dvc.lock records."
DESCRIPTION = (
    HELP + "\n\nAn image whose registry digest is recorded is pulled by that digest and tagged with the reference"
    " the stage names, so `dvc repro` runs exactly the recorded environment. A progress bar per image on a"
    " terminal; one line per layer otherwise."
)


class CmdDockerPull(CmdDocker):
    def run(self) -> int:
        from concurrent.futures import ThreadPoolExecutor

        from dvc.ui import ui

        from dvc_docker_exec.errors import DockerExecError
        from dvc_docker_exec.dependency.image_rows import image_rows, pull_plan

        stages = self.container_stages(self.args.targets)
        if not stages:
            ui.write("No stage of this pipeline runs in a container: nothing to pull.")
            return 0
        plan, skipped = pull_plan(image_rows(self.client, stages))
        for image in skipped:
            ui.write(f"Skipped {image}: built here (no registry digest), present")
        if not plan:
            return 0
        jobs = max(1, min(self.args.jobs or 4, len(plan)))
        failed = []
        done = {}
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [(item, pool.submit(self._pull, item, i if jobs > 1 else None)) for i, item in enumerate(plan)]
            for item, future in futures:
                try:
                    done[item] = future.result()
                except DockerExecError as exc:
                    logger.error("%s", exc)
                    failed.append(item.source)
        if failed:
            raise DockerExecError(f"{len(failed)} of {len(plan)} images could not be pulled: {', '.join(failed)}")
        for item in plan:
            ui.write(done[item])
        return 0

    def _pull(self, item: "Pull", position: Optional[int]) -> str:
        """Pull (or tag, see _tag_recorded) one plan item; returns the line that says what was done."""
        from dvc_docker_exec.errors import DockerExecError
        from dvc_docker_exec.api.image_help import local_images, unavailable
        from dvc_docker_exec.api.pulling import PullFailed, pull_image

        api = self.client.api
        if item.recorded_id:
            tagged = self._tag_recorded(item)
            if tagged:
                return tagged
        try:
            pull_image(api, item.source, position=position, platform=item.platform)
        except PullFailed as exc:
            logger.debug("%s", exc)
            raise DockerExecError(
                unavailable(item.source, local_images(self.client), recorded=item.recorded_id,
                            pull_failure=exc.detail, registry=exc.registry) + exc.hint
            ) from None
        if item.tag_as:
            self._tag(item.source, item.tag_as)
        return f"Pulled {item.source}" + (f" as {item.tag_as}" if item.tag_as else "")

    def _tag_recorded(self, item: "Pull") -> Optional[str]:
        """The recorded image is here under another name (or none): tag it, no registry needed.

        Why tag rather than pull: the recorded identity is a local image ID (a
        `docker build`/`docker load` here or on the machine that recorded it),
        so no registry has it, and the ID names exactly the recorded bytes.
        """
        from docker.errors import ImageNotFound

        from dvc_docker_exec.api.image_help import local_images, recorded_here
        from dvc_docker_exec.types.provenance import short_identity

        try:
            self.client.api.inspect_image(item.recorded_id)
        except ImageNotFound:
            return None
        same = recorded_here(item.recorded_id, local_images(self.client))
        names = f" (here as {', '.join(same.tags)})" if same is not None and same.tags else ""
        self._tag(str(item.recorded_id), item.source)
        return f"Tagged {short_identity(item.recorded_id)}{names} as {item.source}: the image dvc.lock records"

    def _tag(self, source: str, reference: str) -> None:
        from docker.errors import APIError
        from docker.utils import parse_repository_tag

        from dvc_docker_exec.errors import DockerExecError

        repository, tag = parse_repository_tag(reference)
        try:
            self.client.api.tag(source, repository, tag or "latest", force=True)
        except APIError as exc:
            raise DockerExecError(f"cannot tag '{source}' as '{reference}': {exc.explanation or exc}") from None


def add_parser(subparsers, parent_parser):
    parser = add_command(subparsers, parent_parser, "pull", HELP, DESCRIPTION)
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="<number>",
        help="Number of images to pull at once (default: 4).",
    )
    add_targets(parser, "images to pull")
    parser.set_defaults(func=CmdDockerPull)

"""`dvc docker pull`: pull every image the pipeline (or the targets) needs, by the recorded digest."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Set, Tuple

from dvc.cli import formatter

from .cli_base import CmdDocker, ImageRow, add_targets, image_rows

logger = logging.getLogger(f"dvc.{__name__}")

HELP = "Pull the images of the pipeline's stages (or of the targets), each once, by the digest dvc.docker.lock records."
DESCRIPTION = (
    HELP + "\n\nAn image whose registry digest is recorded is pulled by that digest and tagged with the reference"
    " the stage names, so `dvc repro` runs exactly the recorded environment. A progress bar per image on a"
    " terminal; one line per layer otherwise."
)


@dataclass(frozen=True)
class Pull:
    source: str  # what to pull: "repo@sha256:..." or the reference as configured
    tag_as: Optional[str] = None  # the stage's reference, pointed at the pulled digest


def built_here(row: ImageRow) -> bool:
    """Present as an image that no registry named (its identity is a local ID) and no digest is recorded."""
    return bool(row.current) and "@" not in str(row.current) and not (row.recorded and "@" in row.recorded)


def pull_plan(rows: Sequence[ImageRow]) -> Tuple[List[Pull], List[str]]:
    """One pull per distinct image: by the recorded registry digest when exactly one is recorded for it.

    Returns (pulls, images skipped because they were built here). An image
    built here (`docker build`, `docker load`) has no registry to come from:
    pulling its name would fail, or fetch another image of that name. A
    stage recording a local image ID while the image is absent gets its
    reference as configured. Two stages recording different digests for one
    reference get both digests and no tag.
    """
    digests: Dict[str, Set[str]] = {}
    skipped: List[str] = []
    for row in rows:
        if built_here(row):
            if row.image not in skipped:
                skipped.append(row.image)
            continue
        found = digests.setdefault(row.image, set())
        if row.recorded and "@" in row.recorded:
            found.add(row.recorded)
    plan = []
    for image, recorded in digests.items():
        if len(recorded) == 1:
            plan.append(Pull(next(iter(recorded)), tag_as=image))
        elif not recorded:
            plan.append(Pull(image))
        else:
            plan.extend(Pull(digest) for digest in sorted(recorded))
    pulled: Set[str] = set()  # each source once (one digest recorded under two references)
    return [item for item in plan if not (item.source in pulled or pulled.add(item.source))], skipped


class CmdDockerPull(CmdDocker):
    def run(self) -> int:
        from concurrent.futures import ThreadPoolExecutor

        from dvc.ui import ui

        from .errors import DockerExecError

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
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [(item, pool.submit(self._pull, item, i if jobs > 1 else None)) for i, item in enumerate(plan)]
            for item, future in futures:
                try:
                    future.result()
                except DockerExecError as exc:
                    logger.error("%s", exc)
                    failed.append(item.source)
        if failed:
            raise DockerExecError(f"{len(failed)} of {len(plan)} images could not be pulled: {', '.join(failed)}")
        for item in plan:
            ui.write(f"Pulled {item.source}" + (f" as {item.tag_as}" if item.tag_as else ""))
        return 0

    def _pull(self, item: Pull, position: Optional[int]) -> None:
        from docker.errors import APIError
        from docker.utils import parse_repository_tag

        from .errors import DockerExecError
        from .pulling import pull_image

        api = self.client.api
        pull_image(api, item.source, position=position)
        if item.tag_as:
            repository, tag = parse_repository_tag(item.tag_as)
            try:
                api.tag(item.source, repository, tag or "latest", force=True)
            except APIError as exc:
                raise DockerExecError(f"cannot tag '{item.source}' as '{item.tag_as}': {exc.explanation or exc}") from None


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

"""`dvc docker images`: stage -> image -> identity recorded / now -> present locally."""

from __future__ import annotations

from dvc.cli import formatter

from .cli_base import CmdDocker, add_json, add_targets, image_id

HELP = "List the image of every stage that runs in a container, and whether it is present."


class CmdDockerImages(CmdDocker):
    def run(self) -> int:
        from dvc.ui import ui

        rows = []
        for stage, settings in self.container_stages(self.args.targets):
            present = image_id(self.client, settings.image)
            rows.append({"stage": stage.addressing, "image": settings.image, "id": present, "present": bool(present)})
        if self.args.json:
            ui.write_json(rows)
            return 0
        if not rows:
            ui.write("No stage of this pipeline runs in a container.")
            return 0
        ui.table(
            [[r["stage"], r["image"], (r["id"] or "-")[:19], "yes" if r["present"] else "no"] for r in rows],
            headers=["Stage", "Image", "Image ID", "Present"],
        )
        return 0


def add_parser(subparsers, parent_parser):
    parser = subparsers.add_parser(
        "images", parents=[parent_parser], description=HELP, help=HELP, formatter_class=formatter.RawDescriptionHelpFormatter
    )
    add_targets(parser, "images to list")
    add_json(parser)
    parser.set_defaults(func=CmdDockerImages)

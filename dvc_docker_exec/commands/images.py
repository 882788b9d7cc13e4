"""`dvc docker images`: stage -> image -> identity recorded / now -> present locally."""

from __future__ import annotations

from dvc_docker_exec.commands.base import CmdDocker, add_command, add_json, add_targets

HELP = "List the image of every stage in a container: its identity as recorded in dvc.lock, now, and whether it is present."


class CmdDockerImages(CmdDocker):
    def run(self) -> int:
        from dvc.ui import ui

        from dvc_docker_exec.types.provenance import short_identity
        from dvc_docker_exec.dependency.image_rows import image_rows

        stages = self.container_stages(self.args.targets)
        rows = image_rows(self.client, stages) if stages else []
        if self.args.json:
            ui.write_json([row.as_dict() for row in rows])
            return 0
        if not rows:
            ui.write("No stage of this pipeline runs in a container.")
            return 0
        table = []
        for row in rows:
            if row.build:
                table.append(built_cells(row))
                continue
            now = short_identity(row.current) if row.present else "-"
            if row.changed:
                now += " (changed)"
            table.append([row.stage, row.image, short_identity(row.recorded), now, "yes" if row.present else "no"])
        ui.table(table, headers=["Stage", "Image", "Recorded", "Now", "Present"])
        return 0


def built_cells(row) -> list:
    """A built image: its inputs' identity recorded (and the image ID that run used), now, and whether it is built here."""
    from dvc_docker_exec.types.provenance import short_identity

    recorded = short_identity(row.recorded)
    if row.recorded_id:
        recorded += f" (image {short_identity(row.recorded_id)})"
    now = short_identity(row.current) if row.current else "?"
    if row.changes:
        now += f" ({'; '.join(row.changes)})"
    present = f"built {short_identity(row.built)}" if row.built else "not built here"
    return [row.stage, f"{row.image} (built from {row.build})", recorded, now, present]


def add_parser(subparsers, parent_parser):
    parser = add_command(subparsers, parent_parser, "images", HELP, HELP)
    add_targets(parser, "images to list")
    add_json(parser)
    parser.set_defaults(func=CmdDockerImages)

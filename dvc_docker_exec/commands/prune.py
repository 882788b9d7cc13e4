"""`dvc docker prune`: remove this repo's containers whose dvc process is gone."""

from __future__ import annotations

from dvc_docker_exec.commands.base import CmdDocker, add_command

HELP = "Remove this repo's containers whose dvc process is gone."
DESCRIPTION = (
    HELP + "\n\nSuch orphans are rare: a container stops by itself when its dvc process dies (its lease),"
    " and the next run of the repo removes what is left. What remains (a dvc killed between the"
    " create and the start, a remote engine) is removed here, with its anonymous volumes."
)


class CmdDockerPrune(CmdDocker):
    def run(self) -> int:
        from docker.errors import NotFound
        from dvc.ui import ui

        from dvc_docker_exec.backends.containers import list_containers

        chosen = [c for c in list_containers(self.client, self.repo.root_dir) if self.args.all or c.orphaned]
        verb = "Would remove" if self.args.dry else "Removed"
        for c in chosen:
            if not self.args.dry:
                try:
                    c.remove(self.client)
                except NotFound:
                    continue  # it ended and the daemon removed it meanwhile
            ui.write(f"{verb} {c.kind} {c.short_id} of stage '{c.stage}' (dvc process {c.dvc_process()})")
        if not chosen:
            what = "containers" if self.args.all else "orphaned containers"
            ui.write(f"No {what} of dvc-docker-exec for this repo.")
        return 0


def add_parser(subparsers, parent_parser):
    parser = add_command(subparsers, parent_parser, "prune", HELP, DESCRIPTION)
    parser.add_argument(
        "-a",
        "--all",
        action="store_true",
        default=False,
        help="Remove every container of this repo, also those of running dvc processes (their stages fail).",
    )
    parser.add_argument(
        "--dry", action="store_true", default=False, help="Only print what would be removed."
    )
    parser.set_defaults(func=CmdDockerPrune)

"""`dvc docker ps`: the plugin's containers of this repo, and whether their dvc process is gone."""

from __future__ import annotations

from dvc_docker_exec.commands.base import CmdDocker, add_command, add_json

HELP = "List the containers that dvc-docker-exec started for this repo."
DESCRIPTION = (
    HELP + "\n\nA container whose dvc process is gone (killed with SIGKILL) is an orphan:"
    " `dvc docker prune` removes it."
)


class CmdDockerPs(CmdDocker):
    def run(self) -> int:
        from dvc.ui import ui

        from dvc_docker_exec.backends.containers import list_containers

        found = list_containers(self.client, None if self.args.all_repos else self.repo.root_dir)
        if self.args.json:
            ui.write_json(
                [
                    {
                        "id": c.id,
                        "name": c.name,
                        "stage": c.stage,
                        "repo": c.repo,
                        "state": c.state,
                        "kind": c.kind,
                        "created": c.created,
                        "dvc_process": c.dvc_process(),
                    }
                    for c in found
                ]
            )
            return 0
        if not found:
            ui.write("No containers of dvc-docker-exec" + ("." if self.args.all_repos else " for this repo."))
            return 0
        rows = [[c.short_id, c.stage, c.state, c.age(), c.dvc_process(), c.repo] for c in found]
        ui.table(rows, headers=["Container", "Stage", "State", "Age", "DVC process", "Repo"])
        return 0


def add_parser(subparsers, parent_parser):
    parser = add_command(subparsers, parent_parser, "ps", HELP, DESCRIPTION)
    parser.add_argument(
        "-A", "--all-repos", action="store_true", default=False, help="List the plugin's containers of every repo."
    )
    add_json(parser)
    parser.set_defaults(func=CmdDockerPs)

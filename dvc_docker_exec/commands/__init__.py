"""`dvc docker ...`: the plugin's own DVC commands, built like `dvc queue`.

This module is what the import hook appends to DVC's COMMANDS list, so it is
imported by every `dvc` invocation: the subcommand modules import only DVC's
CLI helpers at module level; docker-py and the plugin's engine code load in
their `run()`.
"""

from dvc.cli import formatter

from dvc_docker_exec.commands import build, doctor, images, prune, ps, pull

SUB_COMMANDS = [doctor, images, pull, build, ps, prune]  # one module per command, in `dvc docker --help` order
DOCKER_HELP = "Run stages in Docker containers: check the setup, list, pull and build the pipeline's images, list and remove containers."


def add_parser(subparsers, parent_parser):
    docker_parser = subparsers.add_parser(
        "docker",
        parents=[parent_parser],
        description=DOCKER_HELP,
        formatter_class=formatter.RawDescriptionHelpFormatter,
        help="Commands of the dvc-docker-exec plugin (stages in containers).",
    )
    docker_subparsers = docker_parser.add_subparsers(
        dest="cmd",
        help="Use `dvc docker CMD --help` to display command-specific help.",
        required=True,
    )
    for cmd in SUB_COMMANDS:
        cmd.add_parser(docker_subparsers, parent_parser)

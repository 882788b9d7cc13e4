"""Errors raised by the plugin, all one-line DVC errors (no traceback)."""

from dvc.exceptions import DvcException


class DockerExecError(DvcException):
    """A fault of the docker execution: bad config, daemon, image, paths."""


class StageInterruptedError(DvcException):
    """The stage was stopped by a signal (SIGTERM, `dvc queue kill`)."""

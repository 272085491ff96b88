"""The build's errors that the command reports as one line (exit 2)."""

from __future__ import annotations


class LaunchError(RuntimeError):
    """A problem with how the build was asked for; the message says what to do."""


class OutputExists(LaunchError):
    """The output directory already holds a build and --overwrite was not given."""

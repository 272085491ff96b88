"""What the commands print: warnings, and errors that end the command (exit 2)."""

from __future__ import annotations

import sys

import click


def warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)

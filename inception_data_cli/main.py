"""The `inception-data` command: the click group, with the commands of build_commands,
data_commands and tool_commands added to it. Shared options are in options.py, process
handling (signals, workers, one-line errors) in processes.py, messages in messages.py; the
command modules import those, never this module, so there is no import cycle.

Commands import the pipelines (and so Beam and TensorFlow) inside their bodies, so that
`inception-data --help` or `inspect` does not pay seconds for imports they do not use.
"""

from __future__ import annotations

import logging
import os

import click

import inception_data

# TensorFlow's C++ start-up chatter buries the messages that matter; set before TensorFlow is
# imported here or in any worker process (they inherit the environment).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from inception_data_cli import build_commands, data_commands, tool_commands  # noqa: E402


@click.group()
@click.version_option(inception_data.__version__)
@click.option("--debug", is_flag=True, help="Show whole tracebacks instead of one-line errors.")
def main(debug):
    """Turn image folders into sharded TFRecords for Inception, and inspect them."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


for _command in (build_commands.build, build_commands.imagenet, build_commands.boxes,
                 data_commands.relabel_validation, data_commands.download,
                 tool_commands.inspect, tool_commands.benchmark_input, tool_commands.index):
    main.add_command(_command)

"""The `inception-data` click group and what its commands share: messages, exit codes and the
options every build command takes (defined once here).

Options a command does not know (e.g. `--runner DataflowRunner --project P`) are passed to Beam
untouched. Commands import the pipelines (and so Beam and TensorFlow) inside their bodies, so
that `inception-data --help` or `inspect` does not pay seconds for imports they do not use.
"""

from __future__ import annotations

import logging
import os
import sys

import click

import inception_data

# TensorFlow's C++ start-up chatter buries the messages that matter; set before TensorFlow is
# imported here or in any worker process (they inherit the environment).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BEAM_ARGS = {"ignore_unknown_options": True, "allow_extra_args": True}


class ShardCount(click.ParamType):
    """A positive integer or `auto` (about 1024 images per shard)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if value is None or str(value).lower() == "auto":
            return None
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"{value!r} is not a positive integer or 'auto'", param, ctx)
        return number


def warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


def fail(message: str) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(2)


_BUILD_OPTIONS = [
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffle."),
    click.option("--verify", type=click.Choice(["fast", "decode"]), default="fast",
                 show_default=True,
                 help="fast: header + end-of-image marker; decode: full decode."),
    click.option("--exif-orientation", type=click.Choice(["apply", "ignore"]), default="apply",
                 show_default=True, help="Rotate JPEGs with an EXIF orientation upright."),
    click.option("--max-rejects", type=float,
                 help="Fail when more files are rejected per split: a count (>= 1) or a "
                      "fraction (< 1)."),
    click.option("--overwrite", is_flag=True, help="Replace an earlier build in --output-dir."),
    click.option("--resume", is_flag=True, help="Finish an interrupted build: keep its "
                                                "committed shards, write the missing ones."),
    click.option("--progress/--no-progress", default=True, show_default=True),
    click.option("--workers", type=int, help="Local worker processes (default: one process "
                                             "below ~1 GB of input, one per core above)."),
]


def build_options(command):
    """The options `build` and `imagenet` share."""
    for option in reversed(_BUILD_OPTIONS):
        command = option(command)
    return command


def beam_args(ctx: click.Context) -> list[str]:
    """The extra arguments of a command, for Beam. An option Beam does not know either is a
    usage error naming it and the nearest real option: Beam would drop it without a word, so
    `--shard 5` or `--verfy decode` would build with the defaults."""
    import difflib

    from pipelines import launch

    unknown = launch.unknown_options(ctx.args)
    if unknown:
        ours = [name for param in ctx.command.params for name in getattr(param, "opts", [])
                if name.startswith("--")]
        close = difflib.get_close_matches(unknown[0], ours + launch.beam_option_names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise click.UsageError(f"no such option: {unknown[0]}{hint}; options this command "
                               f"does not define must be Beam pipeline options", ctx)
    return list(ctx.args)


def run_and_report(run, output_dir: str) -> None:
    """Runs a build function; known failures become one-line errors (exit 2), and the result
    a summary per split."""
    from inception_data import labels as labels_lib
    from pipelines import launch, report

    try:
        manifest = run()
    except (labels_lib.LabelError, launch.LaunchError, report.TooManyRejects,
            FileNotFoundError) as err:
        fail(str(err))
    if manifest is None:
        click.echo(f"the runner returned before the build finished (a template, or a job that "
                   f"runs on); when it is done, run the same command with --resume to check it "
                   f"and write {output_dir}/manifest.json")
        return
    for split, summary in manifest["splits"].items():
        click.echo(f"{split}: {summary['written']} written to {summary['num_shards']} shard(s), "
                   f"{summary['rejected']} rejected (see {output_dir}/{summary['rejects_file']})")
    click.echo(launch.summary_line(manifest))


@click.group()
@click.version_option(inception_data.__version__)
def main():
    """Turn image folders into sharded TFRecords for Inception, and inspect them."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


# The commands register themselves on `main` when imported.
from inception_data_cli import build_commands, data_commands, tool_commands  # noqa: E402,F401

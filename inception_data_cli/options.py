"""The options of the build commands: the shared build options made from
`inception_data.build_options.BuildOptions` (defined there, once), shard counts, and the extra
arguments passed to Beam (checked, so a mistyped option is an error rather than ignored).

Options a command does not know (e.g. `--runner DataflowRunner --project P`) are passed to Beam
untouched.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import click

from inception_data.build_options import BuildOptions
from inception_data_cli.messages import fail

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


def _click_option(field: dataclasses.Field):
    """The click option of one BuildOptions field, named after the field."""
    meta = field.metadata
    kwargs = dict(meta["click"])
    flag_values = kwargs.pop("flag_values", None)
    low, high = kwargs.pop("min_value", None), kwargs.pop("max_value", None)
    if low is not None or high is not None:
        kwargs["type"] = click.IntRange(low, high)
    if meta["choices"]:
        kwargs["type"] = click.Choice(meta["choices"])
    if flag_values:  # a --x/--no-x switch whose two sides stand for two values
        on, off = flag_values
        kwargs["callback"] = lambda ctx, param, value: on if value else off
        default = field.default == on
    else:
        default = field.default
    show = default is not None and not kwargs.get("is_flag")
    return click.option(*meta["flags"], field.name, default=default, show_default=show,
                        help=meta["help"], **kwargs)


def build_options(command):
    """The options `build` and `imagenet` share: one per BuildOptions field."""
    for field in reversed(dataclasses.fields(BuildOptions)):
        command = _click_option(field)(command)
    return command


def build_options_of(params: dict) -> BuildOptions:
    """The BuildOptions in a command's parameters (a usage error when they conflict)."""
    names = {f.name for f in dataclasses.fields(BuildOptions)}
    try:
        return BuildOptions(**{k: v for k, v in params.items() if k in names})
    except ValueError as err:
        fail(str(err))


GCP_EXTRA = "pip install 'inception-data[gcp]'"


def gcp_installed() -> bool:
    """Whether Beam's Google Cloud support (the [gcp] extra) is installed: its Cloud Storage
    filesystem and Dataflow client."""
    try:
        return all(importlib.util.find_spec(name) is not None
                   for name in ("google.cloud.storage", "google.cloud.dataflow"))
    except ModuleNotFoundError:  # no google.cloud package at all
        return False


def _require_gcp(ctx: click.Context) -> None:
    """A gs:// path or the Dataflow runner without the [gcp] extra: an error naming the extra
    (Beam's own would name apache-beam[gcp], or come as an import error mid-way)."""
    users = [f"{value}" for value in ctx.params.values()
             if isinstance(value, str) and value.startswith("gs://")]
    users += [arg for arg in ctx.args if "DataflowRunner" in arg]
    if users and not gcp_installed():
        fail(f"{users[0]} needs Google Cloud support, an optional part of inception-data: "
             f"{GCP_EXTRA}")


def beam_args(ctx: click.Context) -> list[str]:
    """The extra arguments of a command, for Beam. An option Beam does not know either is a
    usage error naming it and the nearest real option: Beam would drop it without a word, so
    `--shard 5` or `--verfy decode` would build with the defaults. gs:// paths and Dataflow
    need the [gcp] extra."""
    import difflib

    from pipelines import runner

    _require_gcp(ctx)
    unknown = runner.unknown_options(ctx.args)
    if unknown:
        ours = [name for param in ctx.command.params for name in getattr(param, "opts", [])
                if name.startswith("--")]
        close = difflib.get_close_matches(unknown[0], ours + runner.beam_option_names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise click.UsageError(f"no such option: {unknown[0]}{hint}; options this command "
                               f"does not define must be Beam pipeline options", ctx)
    return list(ctx.args)



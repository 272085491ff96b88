"""The `inception-data` click group and what its commands share: messages, exit codes and the
options every build command takes (defined once here).

Options a command does not know (e.g. `--runner DataflowRunner --project P`) are passed to Beam
untouched. Commands import the pipelines (and so Beam and TensorFlow) inside their bodies, so
that `inception-data --help` or `inspect` does not pay seconds for imports they do not use.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import re
import signal
import sys
import tempfile
import threading

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
    click.option("--max-size", type=click.IntRange(min=1), metavar="PIXELS",
                 help="Scale images whose longer side exceeds PIXELS down to it (aspect kept, "
                      "Lanczos, re-encoded); smaller images keep their bytes. Default: no "
                      "limit. 512 suits phone and camera photos (see README)."),
    click.option("--jpeg-quality", type=click.IntRange(1, 100), default=95, show_default=True,
                 help="Quality of every JPEG the build encodes (never of kept bytes)."),
    click.option("--progressive", type=click.Choice(["keep", "baseline"]), default="keep",
                 show_default=True,
                 help="baseline: re-encode progressive JPEGs as baseline ones (faster to "
                      "decode; what GPU hardware JPEG decoders accept)."),
    click.option("--background/--no-background", default=True, show_default=True,
                 help="--no-background numbers labels 0..N-1 (models with N outputs, such as "
                      "Keras applications' 1000-way ImageNet heads) instead of 1..N with 0 "
                      "for the background class."),
    click.option("--duplicates", type=click.Choice(["report", "drop", "off"]), default="report",
                 show_default=True,
                 help="Exact duplicate files within and across splits: report lists them in "
                      "duplicates.jsonl; drop also keeps one copy per split and no validation "
                      "copy of a training image (reads every file twice); off skips hashing."),
    click.option("--near-duplicates", is_flag=True,
                 help="Also report near duplicates (resized or re-encoded copies) by a "
                      "perceptual hash; decodes every image (extra: inception-data[near-"
                      "duplicates])."),
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


def config_options(*, seed: int = 0, verify: str = "fast", exif_orientation: str = "apply",
                   max_size: int | None = None, jpeg_quality: int = 95,
                   progressive: str = "keep", background: bool = True,
                   duplicates: str = "report", near_duplicates: bool = False,
                   max_rejects: float | None = None, resume: bool = False) -> dict:
    """The BuildConfig keyword arguments of the options every build command shares (defined
    once above), with their defaults."""
    from inception_data import images
    from inception_data import labels as labels_lib

    if near_duplicates:
        if duplicates != "report":
            fail("--near-duplicates reports near duplicates while writing: use it with "
                 "--duplicates report (the default)")
        if importlib.util.find_spec("imagehash") is None:
            fail("--near-duplicates needs the imagehash package, an optional part of "
                 "inception-data: pip install 'inception-data[near-duplicates]'")
    return {"seed": seed, "verify": verify, "exif": exif_orientation,
            "max_rejects": max_rejects, "resume": resume,
            "policy": images.SizePolicy(max_size=max_size, jpeg_quality=jpeg_quality,
                                        progressive=progressive),
            "label_offset": labels_lib.WITH_BACKGROUND if background
            else labels_lib.NO_BACKGROUND,
            "duplicates": duplicates, "near_duplicates": near_duplicates}


def build_options(command):
    """The options `build` and `imagenet` share."""
    for option in reversed(_BUILD_OPTIONS):
        command = option(command)
    return command


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

    from pipelines import launch

    _require_gcp(ctx)
    unknown = launch.unknown_options(ctx.args)
    if unknown:
        ours = [name for param in ctx.command.params for name in getattr(param, "opts", [])
                if name.startswith("--")]
        close = difflib.get_close_matches(unknown[0], ours + launch.beam_option_names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise click.UsageError(f"no such option: {unknown[0]}{hint}; options this command "
                               f"does not define must be Beam pipeline options", ctx)
    return list(ctx.args)


class Interrupted(Exception):
    """SIGTERM (or SIGINT) arrived while a build ran."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM and SIGINT raise Interrupted in the main thread, so that clean-up (scratch
    directories, worker processes) runs; afterwards the runner's threads (gRPC servers, worker
    monitors) fail as their workers go, and their tracebacks are not printed."""
    interrupted = threading.Event()

    def handler(signum, _frame):
        interrupted.set()
        raise Interrupted(signum)

    def thread_hook(args):
        if not interrupted.is_set():
            default_hook(args)

    default_hook = threading.excepthook
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    threading.excepthook = thread_hook
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        threading.excepthook = default_hook


@contextlib.contextmanager
def _worker_output_set_aside(keep: bool):
    """Runs with file descriptor 2 pointing at an anonymous temporary file, and sys.stderr at the
    real one: the worker processes the local runner starts inherit fd 2, and on Ctrl-C, which
    reaches them too, each prints its KeyboardInterrupt and gRPC tracebacks (174 lines on two
    workers); this process's messages and progress bar still reach the terminal."""
    if keep or not hasattr(sys.stderr, "fileno"):
        yield
        return
    try:
        if sys.stderr.fileno() != 2:
            raise ValueError
    except (OSError, ValueError):  # not the process's real stderr (e.g. click's CliRunner)
        yield
        return
    original, saved = sys.stderr, os.dup(2)
    with tempfile.TemporaryFile() as aside:
        sys.stderr.flush()
        os.dup2(aside.fileno(), 2)
        sys.stderr = os.fdopen(saved, "w", buffering=1, closefd=False)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sys.stderr = original


def _descendants(pid: int) -> list[int]:
    """Process ids of every descendant of `pid` (Linux /proc; elsewhere none are found)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def stop_workers() -> None:
    """Terminates the local runner's worker processes (they would go on committing shards and
    printing gRPC errors after the launcher is gone)."""
    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ([^:'\n]+)(?::\s*'([^'\n]+)')?")
_HINTS = {errno.ENOSPC: "free some space or choose another --output-dir",
          errno.EROFS: "choose a writable --output-dir",
          errno.EACCES: "check the permissions, or choose another folder",
          errno.EDQUOT: "free some space or choose another --output-dir"}


def one_line(err: BaseException) -> str:
    """An error as one line naming the path and what to do, when it is an OS error (possibly
    wrapped by Beam, which reports worker failures as text)."""
    if isinstance(err, OSError) and err.strerror:
        code, text, path = err.errno, err.strerror, err.filename
    else:
        found = _ERRNO_TEXT.search(str(err))
        if not found:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            return lines[-1][:300] if lines else type(err).__name__
        code, text, path = int(found[1]), found[2].strip(), found[3]
    hint = _HINTS.get(code)
    return f"{path + ': ' if path else ''}{text}{'; ' + hint if hint else ''}"


def run_and_report(run, output_dir: str) -> None:
    """Runs a build function; known failures become one-line errors (exit 2), signals exit
    130/143 after stopping the workers, anything else is one line unless --debug, and the
    result a summary per split."""
    from inception_data import labels as labels_lib
    from pipelines import launch, report

    debug = click.get_current_context().find_root().params.get("debug", False)
    try:
        with _signals_raise(), _worker_output_set_aside(keep=debug):
            manifest = run()
    except (KeyboardInterrupt, Interrupted) as err:
        threading.excepthook = lambda args: None  # the runner's threads die with their workers
        stop_workers()
        signum = getattr(err, "signum", signal.SIGINT)
        click.secho(f"error: interrupted ({signal.Signals(signum).name}); committed shards are "
                    f"kept: run the same command with --resume to finish", fg="red", err=True)
        sys.exit(128 + signum)
    except (labels_lib.LabelError, launch.LaunchError, report.TooManyRejects,
            FileNotFoundError) as err:
        fail(str(err))
    except Exception as err:
        if debug:
            raise
        stop_workers()
        fail(f"{one_line(err)} (--debug shows the whole traceback)")
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
@click.option("--debug", is_flag=True, help="Show whole tracebacks instead of one-line errors.")
def main(debug):
    """Turn image folders into sharded TFRecords for Inception, and inspect them."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("apache_beam").setLevel(logging.ERROR)


# The commands register themselves on `main` when imported.
from inception_data_cli import build_commands, data_commands, tool_commands  # noqa: E402,F401

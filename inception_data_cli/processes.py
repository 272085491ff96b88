"""Running a build from the command line: signals (SIGINT/SIGTERM stop the build, its worker
processes too, and exit 130/143 with one line), the workers' stderr set aside, and failures as
one line naming the path and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import sys
import tempfile
import threading

import click
import psutil

from inception_data_cli.messages import fail


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived while a build ran. A BaseException, as KeyboardInterrupt is:
    raised in the main thread wherever it happens to be, and a one-worker build runs its
    DoFns there, an `except Exception` (the image checks') caught it: the photo being decoded
    was rejected as "JPEG data is corrupt: Interrupted: SIGTERM" and the build went on to
    exit 0."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise(received: list):
    """SIGTERM and SIGINT raise Interrupted in the main thread, so that clean-up (scratch
    directories, worker processes) runs; afterwards the runner's threads (gRPC servers, worker
    monitors) fail as their workers go, and their tracebacks are not printed. The signal is
    also appended to `received`: a build running in this process (one worker) gets the
    Interrupted inside Beam, which re-raises it wrapped in its own error."""
    interrupted = threading.Event()

    def handler(signum, _frame):
        interrupted.set()
        received.append(signum)
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
    """Process ids of every descendant of `pid`."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_workers() -> None:
    """Terminates the local runner's worker processes (they would go on committing shards and
    printing gRPC errors after the launcher is gone)."""
    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


# "[Errno 28] No space left on device: '/out/x' [while running 'Stage']", as Beam reports a
# worker's OSError (the path and the stage are optional)
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] ([^:'\n\[]+)(?::\s*'([^'\n]+)')?")
_HINTS = {errno.ENOSPC: "free some space or choose another --output-dir",
          errno.EROFS: "choose a writable --output-dir",
          errno.EACCES: "check the permissions, or choose another folder",
          errno.EDQUOT: "free some space or choose another --output-dir"}


def one_line(err: BaseException, where: str | None = None) -> str:
    """An error as one line naming the path and what to do, when it is an OS error (possibly
    wrapped by Beam, which reports worker failures as text); `where` (the output folder) is
    named when the error names no path."""
    if isinstance(err, OSError) and err.strerror:
        code, text, path = err.errno, err.strerror, err.filename
    else:
        found = _ERRNO_TEXT.search(str(err))
        if not found:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            return lines[-1][:300] if lines else type(err).__name__
        code, text, path = int(found[1]), found[2].strip(), found[3]
    hint = _HINTS.get(code)
    path = path or (where if hint else None)
    return f"{path + ': ' if path else ''}{text}{'; ' + hint if hint else ''}"


def _interrupted(signum: int, output_dir: str) -> None:
    """Stops the workers, removes the temporary files they left in `output_dir`, and exits
    128 + the signal (130 for SIGINT, 143 for SIGTERM)."""
    from pipelines import output_folder

    threading.excepthook = lambda args: None  # the runner's threads die with their workers
    stop_workers()
    output_folder.remove_temporaries(output_dir, [])  # (a worker may have been writing a shard)
    click.secho(f"error: interrupted ({signal.Signals(signum).name}); committed shards are "
                f"kept: run the same command with --resume to finish", fg="red", err=True)
    sys.exit(128 + signum)


def run_and_report(run, output_dir: str) -> None:
    """Runs a build function; known failures become one-line errors (exit 2), signals exit
    130/143 after stopping the workers, anything else is one line unless --debug, and the
    result a summary per split (or, with --dry-run, the plan it returned)."""
    from inception_data import labels as labels_lib
    from pipelines import launch, report
    from pipelines.errors import LaunchError
    from pipelines.plan import BuildPlan

    debug = click.get_current_context().find_root().params.get("debug", False)
    received = []  # signals, whatever exception they end up wrapped in
    try:
        with _signals_raise(received), _worker_output_set_aside(keep=debug):
            manifest = run()
    except (KeyboardInterrupt, Interrupted) as err:
        _interrupted(getattr(err, "signum", signal.SIGINT), output_dir)
    except (labels_lib.LabelError, LaunchError, report.TooManyRejects,
            FileNotFoundError) as err:
        fail(str(err))
    except Exception as err:
        if received:
            _interrupted(received[0], output_dir)
        if debug:
            raise
        stop_workers()
        fail(f"{one_line(err, output_dir)} (--debug shows the whole traceback)")
    if received:  # a signal whose exception something swallowed: still a stop, not a success
        _interrupted(received[0], output_dir)
    if isinstance(manifest, BuildPlan):  # --dry-run: the plan, nothing written
        click.echo(manifest.describe())
        click.echo(f"dry run: nothing written to {output_dir}")
        return
    if manifest is None:
        click.echo(f"the runner returned before the build finished (a template, or a job that "
                   f"runs on); when it is done, run the same command with --resume to check it "
                   f"and write {output_dir}/manifest.json")
        return
    for split, summary in manifest["splits"].items():
        click.echo(f"{split}: {summary['written']} written to {summary['num_shards']} shard(s), "
                   f"{summary['rejected']} rejected (see {output_dir}/{summary['rejects_file']})")
    click.echo(launch.summary_line(manifest))

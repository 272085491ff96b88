"""SIGTERM and Ctrl-C end train.py within seconds, whatever it is doing, with one line and the
exit codes of the `inception-data` command (143, 130).

A Python signal handler runs only when the main thread runs Python code; train.py's main thread
spends its time in TensorFlow (a step, a collective that waits for a peer that is gone, the
multi-worker strategy waiting for its cluster), where a handler waited for minutes (measured:
SIGTERM ignored for 4 minutes while waiting for a worker). So `install` blocks both signals in
every thread and one thread takes them with sigwait, whatever the others do. Its answer is an
exit at once: checkpoints and run.json are written whole or not at all, and a killed run
resumes exactly (docs/training.md, "Resuming"), so there is nothing a slower stop would save.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)
where: dict = {}  # what the line names: "train_dir", set when it is known
_installed = threading.Event()


def install() -> None:
    """Called first in train.py's `__main__`, before TensorFlow starts its threads (they
    inherit the blocked signals). Not for a process that runs other programs (a child process
    would inherit them blocked): tests call train.main() directly and keep their signals."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    threading.Thread(target=_watch, name="signal watcher", daemon=True).start()
    _installed.set()


@contextlib.contextmanager
def abruptly():
    """The block runs with the signals delivered to the main thread and their default action
    (the kernel ends the process: exit codes 143 and 130, without a line): for TensorFlow calls
    that hold Python's lock while they wait, when no Python code (the watcher) can run. A no-op
    unless `install` ran."""
    if not _installed.is_set():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        signal.signal(signal.SIGINT, previous)


def _watch() -> None:
    signum = signal.sigwait(SIGNALS)
    print(line(signal.Signals(signum).name), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(128 + signum)


def line(name: str) -> str:
    """The one line a stop prints: where the run can go on from."""
    train_dir = where.get("train_dir")
    if not train_dir:
        return f"stopped by {name}"
    from trainer import checkpoints

    try:
        found = checkpoints.listing(train_dir)
    except Exception:  # (a stop must not fail on a file system that fails)
        found = []
    resume = (f"the newest checkpoint is step {found[-1][0]}; the same command resumes there"
              if found else "no checkpoint yet: the same command starts again")
    return f"stopped by {name}: {resume} ({train_dir})"

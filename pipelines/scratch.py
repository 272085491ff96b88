"""A build's scratch directory: its spilled listings and the temporary files of Beam and of the
local worker processes, removed afterwards, and left-overs of killed builds removed by the next
build."""

from __future__ import annotations

import os
import shutil
import tempfile

import psutil

SCRATCH_PREFIX = "inception-data-"


class Scratch:
    """This build's scratch directory, `$TMPDIR/inception-data-<pid>-*`, removed afterwards.

    It holds a local build's spilled listings (the path is None for a distributed build: its
    workers cannot see this machine's disk), and, for every build, the temporary files of Beam
    and of the local worker processes (TMPDIR points here meanwhile), which Beam would
    otherwise leave in $TMPDIR when the build is killed. A build that could not clean up (killed
    with SIGKILL) is cleaned up by the next one: scratch directories whose process is gone.
    """

    def __init__(self, plan):
        remove_stale_scratch(tempfile.gettempdir())
        self._dir = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")
        self.path = self._dir if plan.local_runner else None
        self._saved = None

    def __enter__(self):
        self._saved = (tempfile.tempdir, os.environ.get("TMPDIR"))
        tempfile.tempdir = os.environ["TMPDIR"] = self._dir
        return self.path

    def __exit__(self, *_):
        tempfile.tempdir, previous = self._saved
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous
        shutil.rmtree(self._dir, ignore_errors=True)


def remove_stale_scratch(folder: str) -> list[str]:
    """Removes scratch directories in `folder` whose build process no longer runs."""
    removed = []
    for name in os.listdir(folder):
        pid = name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not name.startswith(SCRATCH_PREFIX) or not pid.isdigit() or psutil.pid_exists(int(pid)):
            continue
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        removed.append(name)
    return removed

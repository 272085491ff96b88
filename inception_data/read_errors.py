"""The errors `input_fn` raises: each one line that names the file, the numbers that disagree
and what to do.

Most are raised when `input_fn` is called, from the shards' names, sizes, manifests and index
files (no pass over the data). Damage inside a shard whose size is right (a flipped byte) only
shows when that record is read, inside tf.data, where TensorFlow turns every error into its own
`tf.errors` type; `input_fn` then fails with an InvalidArgumentError whose message is the
line, and `from_tf_error` gives back the typed error behind it.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading

SKIPS = "reads the records before the damage and the other shards"
REBUILD = "rebuild it (delete it and run the same build with --resume) or copy it again"


class ReadError(ValueError):
    """A problem with the shards that the user must fix. `detail` says what and how;
    `skip`, when on_error="skip" would read past it, what that reads."""

    def __init__(self, detail: str, *, skip: str | None = None):
        self.detail, self.skip = detail, skip
        super().__init__(f"input_fn: {detail}"
                         + (f"; with on_error=skip, input_fn {skip}" if skip else ""))

    def advice(self, flag: str = "--on-error skip") -> str:
        """The line in a command's words: `detail`, and what `flag` would read."""
        return self.detail + (f"; {flag} {self.skip}" if self.skip else "")


class IncompleteShards(ReadError):
    """Shards that the names or the manifest promise are missing or empty."""


class ShardMismatch(ReadError):
    """A shard's manifest count, index and size disagree, or a shard does not belong to the
    set (a stray `-of-N` name, two builds mixed)."""


class UndecodableRecords(ReadError):
    """Records that a saved decode check found undecodable (on_error="raise")."""


class DamagedShard(ReadError):
    """A shard whose bytes are damaged, or that cannot be read, where a record should be."""


class StartBeyondEnd(ReadError):
    """`start_batch` lies past the end of a finite stream."""


_FOUND: collections.deque = collections.deque(maxlen=64)  # typed errors met inside tf.data
_LOCK = threading.Lock()


def record(error: ReadError) -> str:
    """Keeps `error` for `from_tf_error` and returns its message, for the in-graph Assert
    (without quote marks, which Assert's message escapes)."""
    with _LOCK:
        _FOUND.append(error)
    return str(error)


def from_tf_error(err: BaseException) -> ReadError | None:
    """The typed error behind a TensorFlow error that an `input_fn` pipeline failed with, or
    None when the error is not one of ours (a record that does not decode, say)."""
    message = getattr(err, "message", str(err))
    with _LOCK:
        for found in reversed(_FOUND):
            if str(found) in message:
                return found
    return None


_WARNED: set[str] = set()


@contextlib.contextmanager
def named():
    """Re-raises an error that an `input_fn` pipeline failed with inside tf.data as the typed
    ReadError behind it: one line, without TensorFlow's wrapping ("{{function_node
    __wrapped__IteratorGetNext...}} assertion failed: [...]"). Errors that are not input_fn's
    (a record that does not decode) pass unchanged.

        with read_errors.named():
            for images, labels in dataset: ...
    """
    try:
        yield
    except Exception as err:
        typed = from_tf_error(err)
        if typed is None:
            raise
        raise typed from None


def warn(line: str, *, once: bool = False) -> None:
    """One warning line on stderr (on_error="skip" and allow_incomplete say what they leave
    out); with `once`, a line already printed by this process is not printed again (what
    input_fn finds when it is called: a trainer makes several datasets of one split)."""
    with _LOCK:
        if once and line in _WARNED:
            return
        _WARNED.add(line)
    print(f"warning: {line}", file=sys.stderr, flush=True)

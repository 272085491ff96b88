"""A build's warnings, as data: the code that finds something to warn about calls `note()`;
the skeleton collects the notes of the planning phase (`collected()`) into the plan, and of
the finished run, and the command reports each list once. A note made outside a collection
(a distributed build's workers list in the pipeline) is logged, as it was before.

(A context variable rather than a `warn` function passed down every signature: the functions
that note are several calls below the one that reports.)
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator, Sequence

log = logging.getLogger("pipelines")
_NOTES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("notes", default=None)


def note(message: str) -> None:
    """Records a warning for the user in the current collection (else logs it)."""
    notes = _NOTES.get()
    if notes is None:
        log.warning(message)
    else:
        notes.append(message)


def note_each(messages: Sequence[str], limit: int = 5) -> None:
    """The first `limit` messages and a count of the rest (a 10-class subset of ImageNet must
    not print 990 lines)."""
    for message in messages[:limit]:
        note(message)
    if len(messages) > limit:
        note(f"... and {len(messages) - limit} more like these")


@contextlib.contextmanager
def collected() -> Iterator[list[str]]:
    """The notes made inside the block, in order."""
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)

"""User paths taken literally where APIs expect glob patterns.

Beam's `FileSystems.match` and TensorFlow's `gfile.glob` treat `*`, `?` and `[` as wildcards,
and neither can quote them; a folder named `photos [2024]` would match nothing. A character
class holding the one character (`[[]`) matches it literally in both.
"""

from __future__ import annotations

import warnings

_SPECIAL = {"*": "[*]", "?": "[?]", "[": "[[]"}


def glob_escape(path: str) -> str:
    """`path` as a pattern that matches exactly `path`."""
    return "".join(_SPECIAL.get(c, c) for c in path)


def beam_match(patterns):
    """FileSystems.match without the FutureWarning Python's re gives for a `[[]` class."""
    from apache_beam.io.filesystems import FileSystems

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Possible nested set", FutureWarning)
        return FileSystems.match(list(patterns))


def beam_delete(files) -> None:
    """FileSystems.delete of exactly `files` (delete() matches its arguments as patterns)."""
    from apache_beam.io.filesystems import FileSystems

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Possible nested set", FutureWarning)
        FileSystems.delete([glob_escape(f) for f in files])

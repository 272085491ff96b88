"""Committing output files: written under a temporary name, made visible only when complete.

Local and other filesystems write a hidden temporary name and rename it, which is atomic.
Object stores make an object visible only when its upload completes, and a failed upload leaves
nothing, so there the final name is written directly: a rename would be a copy and a delete
(twice the I/O, through batch calls that storage emulators do not support).
"""

from __future__ import annotations

import json
import uuid

from apache_beam.io.filesystems import FileSystems

from inception_data import paths

OBJECT_STORES = ("gs", "s3", "azfs")


def is_object_store(path: str) -> bool:
    return "://" in path and path.split("://", 1)[0] in OBJECT_STORES


def temp_name(output_dir: str, name: str) -> str:
    """Where to write `name` before commit(): a hidden temporary name in `output_dir` that no
    `train-*` style pattern matches, or the final name itself on object stores."""
    if is_object_store(output_dir):
        return FileSystems.join(output_dir, name)
    return FileSystems.join(output_dir, f".tmp-{name}-{uuid.uuid4().hex}")


def commit(tmp_path: str, final_path: str) -> None:
    """Makes a fully written temporary file visible under its final name."""
    if tmp_path != final_path:
        FileSystems.rename([tmp_path], [final_path])


def delete_quietly(path: str) -> None:
    try:
        paths.beam_delete([path])
    except Exception:  # nothing to clean up, or the filesystem is gone: the error that matters
        pass           # is the one being raised


def write_text(path: str, text: str) -> None:
    """Writes a small text file atomically (temporary name, then commit). Names that were not
    valid UTF-8 on disk (surrogate escapes) are written as their original bytes."""
    directory, name = path.rsplit("/", 1)
    tmp = temp_name(directory, name)
    with FileSystems.create(tmp) as handle:
        handle.write(text.encode("utf-8", "surrogateescape"))
    commit(tmp, path)


def json_line(row) -> str:
    """One line of a .jsonl file (keys sorted, so the same row gives the same bytes)."""
    return json.dumps(row, sort_keys=True) + "\n"


def read_json(path: str):
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode())


INDEX_DIR = "index"


def index_path(output_dir: str, shard: str) -> str:
    """Where a shard's record index goes: `index/<shard>.idx`, in the format of DALI's
    tfrecord2idx (one `offset size` line per record), which the `tfrecord` package's PyTorch
    reader also takes. A sub-folder, so that `train-*` patterns match only shards."""
    return FileSystems.join(output_dir, INDEX_DIR, f"{shard}.idx")


def stats_name(shard: str) -> str:
    """The hidden per-shard record of counts and rejects that makes --resume possible."""
    return f".stats-{shard}.json"

"""Where every record of a set of shards lies, without reading the records.

From the index files a build writes beside its shards (`index/<shard>.idx`: one `offset size`
line per record, DALI's tfrecord2idx format) or, for shards without one (another tool's, or a
copy that left the index folder behind), from the record headers: 12 bytes read per record,
the data skipped (on a local disk 3.5 us a record: 2,934 ImageNet-size records in 10 ms,
ImageNet's 1.28M in ~5 s; on gs:// each header is a request: write the index files once with
`inception-data index`).

In: shard paths (local or any file system TensorFlow reads). Out: per shard its `Spans` (each
record's byte offset and framed size, and the file's size), and a `ShardIndex` over several
shards: record r of the set is in shard `shard_of(r)` at byte `offsets[r]`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from inception_data import tfrecord

INDEX_DIR = "index"
THREADS = 16  # shards looked at in parallel: on gs:// each stat and read is a round trip


def index_file(shard: str) -> str:
    """`<folder>/index/<shard>.idx`: a sub-folder, so that `train-*` patterns match shards
    only."""
    folder, name = os.path.split(shard)
    return os.path.join(folder, INDEX_DIR, f"{name}.idx")


@dataclasses.dataclass(frozen=True)
class Spans:
    """One shard's records: `offsets[i]` and `sizes[i]` (framing included) of record i."""

    path: str
    offsets: np.ndarray
    sizes: np.ndarray
    file_bytes: int | None  # the shard's size; None: it cannot be read
    source: str  # "index" (its index file) or "headers" (read from the shard)
    damage: str | None = None  # what stopped reading the headers, if anything

    @property
    def records(self) -> int:
        return len(self.offsets)

    @property
    def end(self) -> int:
        """The byte after its last record."""
        return int(self.offsets[-1] + self.sizes[-1]) if self.records else 0

    def whole(self) -> Spans:
        """The records that lie within the file as it is (all of them, unless it is
        truncated)."""
        if self.file_bytes is None:
            return dataclasses.replace(self, offsets=self.offsets[:0], sizes=self.sizes[:0])
        keep = self.offsets + self.sizes <= self.file_bytes
        return dataclasses.replace(self, offsets=self.offsets[keep], sizes=self.sizes[keep])

    def problem(self, counted: int | None = None) -> tuple[str, str] | None:
        """(kind, one phrase that starts with the path) of what is wrong with this shard, or
        None. "damaged": it cannot be read, is shorter than its index says, or its record
        headers do not read to its end; "mismatch": it has bytes its index does not list, or
        its manifest counts (`counted`) other than its records."""
        where = self.path
        if self.file_bytes is None:
            return "damaged", f"{where} cannot be read"
        if self.damage:
            return "damaged", f"{where} is damaged: {self.damage}, after its record {self.records}"
        if self.end > self.file_bytes:
            inside = int(np.sum(self.offsets + self.sizes <= self.file_bytes))
            return "damaged", (f"{where} is truncated: it has {self.file_bytes} bytes, its index "
                               f"ends at byte {self.end} ({inside} of its {self.records} "
                               f"records are whole)")
        if self.end < self.file_bytes:
            return "mismatch", (f"{where} has {self.file_bytes} bytes, but its index lists "
                                f"records up to byte {self.end} only")
        if counted is not None and counted != self.records:
            return "mismatch", (f"{where} holds {self.records} records (by its "
                                f"{'index file' if self.source == 'index' else 'record headers'}"
                                f"), its manifest counts {counted}")
        return None


def file_stat(path: str) -> tuple[int, int] | None:
    """(size, modification time in ns) of a file, or None when it cannot be read. Local files
    through os.stat: TensorFlow's stat rounds the time to the second, and a shard rewritten
    within the second it was checked in would pass for the checked one."""
    if "://" not in path:
        try:
            found = os.stat(path)
        except OSError:
            return None
        return found.st_size, found.st_mtime_ns
    import tensorflow as tf

    try:
        found = tf.io.gfile.stat(path)
    except tf.errors.OpError:
        return None
    return int(found.length), int(found.mtime_nsec)


def _stat(path: str) -> int | None:
    found = file_stat(path)
    return None if found is None else found[0]


def _index_lines(path: str) -> np.ndarray | None:
    """[[offset, size], ...] from an index file, or None when there is none."""
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            text = handle.read()
    except tf.errors.NotFoundError:
        return None
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        values = np.array([1])  # an odd count: reported below
    if values.size % 2:
        raise tfrecord.CorruptRecord(f"{path} is not an index file (one 'offset size' line per "
                                     f"record): delete it, and `inception-data index` writes "
                                     f"it again")
    return values.reshape(-1, 2)


def _open(path: str):
    """The shard for reading headers: local files unbuffered (TensorFlow's GFile refills a large
    buffer at every seek, reading the data it skips: 309 us a 110 KB record against a few)."""
    if "://" not in path:
        return open(path, "rb", buffering=0)
    import tensorflow as tf

    return tf.io.gfile.GFile(path, "rb")


def _from_headers(path: str, file_bytes: int) -> Spans:
    import tensorflow as tf

    spans, damage = [], None
    try:
        with _open(path) as handle:
            for span in tfrecord.record_spans(handle, path):
                spans.append(span)
    except tfrecord.CorruptRecord as err:
        damage = str(err).split(": ", 1)[-1]
    except (tf.errors.OpError, OSError) as err:
        damage = f"a read failed ({getattr(err, 'message', None) or err})"
    array = np.array(spans, dtype=np.int64).reshape(-1, 2)
    return Spans(path, array[:, 0], array[:, 1], file_bytes, "headers", damage)


def spans_of(path: str, scan: bool = True) -> Spans | None:
    """One shard's Spans, from its index file, or else from its record headers (None without
    an index file when not `scan`)."""
    file_bytes = _stat(path)
    lines = _index_lines(index_file(path))
    if lines is not None:
        return Spans(path, lines[:, 0], lines[:, 1], file_bytes, "index")
    if file_bytes is None:
        return Spans(path, np.zeros(0, np.int64), np.zeros(0, np.int64), None, "headers")
    return _from_headers(path, file_bytes) if scan else None


def read(paths: Sequence[str], scan: bool = True) -> list[Spans | None]:
    """The Spans of each of `paths`, in that order (shards looked at in parallel)."""
    with concurrent.futures.ThreadPoolExecutor(min(THREADS, max(1, len(paths)))) as pool:
        return list(pool.map(lambda path: spans_of(path, scan), paths))


@dataclasses.dataclass(frozen=True)
class ShardIndex:
    """Every record of several shards, numbered in shard order: shard i holds records
    first[i] .. first[i + 1] - 1."""

    paths: tuple[str, ...]
    first: np.ndarray  # int64 [shards + 1]
    offsets: np.ndarray  # int64 [records]
    sizes: np.ndarray  # int64 [records], framing included

    @classmethod
    def of(cls, spans: Sequence[Spans]) -> ShardIndex:
        counts = [s.records for s in spans]
        first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        empty = np.zeros(0, np.int64)
        return cls(tuple(s.path for s in spans), first,
                   np.concatenate([s.offsets for s in spans] or [empty]).astype(np.int64),
                   np.concatenate([s.sizes for s in spans] or [empty]).astype(np.int64))

    @property
    def records(self) -> int:
        return int(self.first[-1])

    @property
    def total_bytes(self) -> int:
        return int(self.sizes.sum())

    def shard_of(self, record: int) -> int:
        return int(np.searchsorted(self.first, record, side="right") - 1)

    def without(self, drop: Mapping[str, Iterable[int]]) -> ShardIndex:
        """The index without the records `drop` lists ({shard path: [index in shard]})."""
        keep = np.ones(self.records, bool)
        for shard, path in enumerate(self.paths):
            for index in drop.get(path, ()):
                if 0 <= index < self.first[shard + 1] - self.first[shard]:
                    keep[self.first[shard] + index] = False
        shard_ids = np.searchsorted(self.first, np.arange(self.records), side="right") - 1
        counts = np.bincount(shard_ids[keep], minlength=len(self.paths))
        first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return ShardIndex(self.paths, first, self.offsets[keep], self.sizes[keep])


def write_index(path: str, overwrite: bool = False) -> tuple[str, int] | None:
    """Writes `index/<shard>.idx` for the shard at `path` from its record headers (DALI's
    format, what builds write): (index path, records), or None when one is there and not
    `overwrite`. Written under a temporary name and renamed, so that no reader sees half of it.

    Raises:
        tfrecord.CorruptRecord: the shard is damaged (its index would not cover it).
    """
    import tensorflow as tf

    target = index_file(path)
    if not overwrite and tf.io.gfile.exists(target):
        return None
    file_bytes = _stat(path)
    if file_bytes is None:
        raise tfrecord.CorruptRecord(f"{path} cannot be read")
    spans = _from_headers(path, file_bytes)
    if spans.damage:
        raise tfrecord.CorruptRecord(f"{path} is damaged: {spans.damage}, after its record "
                                     f"{spans.records}; rebuild it or copy it again")
    tf.io.gfile.makedirs(os.path.dirname(target))
    with tf.io.gfile.GFile(target + ".tmp", "w") as handle:
        handle.write("".join(f"{o} {s}\n" for o, s in zip(spans.offsets, spans.sizes)))
    tf.io.gfile.rename(target + ".tmp", target, overwrite=True)
    return target, spans.records


def footer_digest(spans: Spans) -> str:
    """sha256 of the data CRCs of a shard's records (the 4 bytes that end each): what a decode
    verdict keeps of the bytes it checked. A record rewritten changes its CRC, so the digest;
    it costs one 4-byte read a record instead of reading every byte (measured below)."""
    import hashlib

    digest = hashlib.sha256()
    with _open(spans.path) as handle:
        for offset, size in zip(spans.offsets, spans.sizes):
            handle.seek(int(offset + size - 4))
            digest.update(handle.read(4))
    return digest.hexdigest()

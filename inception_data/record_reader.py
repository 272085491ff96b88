"""Records by number, for the training order: record r is read where the shard index says it is,
so a pipeline that starts at position q reads nothing before it.

In: a `shard_index.ShardIndex` and record numbers. Out: the serialized records (framing and
CRCs checked), or, for a record that cannot be read whole, an empty record and one line that
names the shard, the record and what to do.

Why Python, and not tf.data: TensorFlow reads a TFRecord at an offset only by making a dataset
per record (`tf.raw_ops.TFRecordDatasetV2` with `byte_offsets`, inside a map or interleave), and
a dataset's construction costs more than the read: measured on 2,934 ImageNet-size records,
~200 us of CPU per record that way, ~100 us for a plain sequential TFRecordDataset and ~100 us
here (groups of records per `tf.py_function` call; per record an `os.pread` and a CRC, a few
microseconds of Python). A dataset per record also cannot report a shard that was deleted: its
`ignore_errors` retries the open for ever. The cost of the Python way: the pipeline holds a
`py_function`, so it runs in the process that made it (not on tf.data service).
"""

from __future__ import annotations

import concurrent.futures
import os
import struct
import threading

import numpy as np

from inception_data import read_errors, shard_index, tfrecord

_FOOTER = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")
REMOTE_THREADS = 64  # concurrent reads per call on remote file systems (latency-bound)


def _is_local(path: str) -> bool:
    return "://" not in path


class RecordSource:
    """Reads records of `index` by number. With `cache`, each record read is kept (the caller
    checked that the split fits the memory it allows), so that later epochs read no file.
    `on_error`: "raise" or "skip" ("skip" prints each problem once)."""

    def __init__(self, index: shard_index.ShardIndex, *, cache: bool, on_error: str,
                 parallelism: int = REMOTE_THREADS):
        self.index, self.on_error = index, on_error
        self._cache: dict[int, bytes] | None = {} if cache else None
        self._pool = None if all(map(_is_local, index.paths)) else \
            concurrent.futures.ThreadPoolExecutor(parallelism)
        self._reported: set[int] = set()
        self._lock = threading.Lock()

    def read(self, records: np.ndarray) -> tuple[list[bytes], list[bytes]]:
        """(payloads, problems) for `records`: the Example bytes of each, and "" or the line
        that says why it could not be read (its payload is then empty)."""
        shards = np.searchsorted(self.index.first, records, side="right") - 1
        jobs = [(int(r), int(s)) for r, s in zip(records, shards)]
        if self._pool is None:
            done = [self._one(r, s) for r, s in jobs]
        else:
            done = list(self._pool.map(lambda job: self._one(*job), jobs))
        return [payload for payload, _ in done], [problem for _, problem in done]

    def _one(self, record: int, shard: int) -> tuple[bytes, bytes]:
        cache = self._cache
        if cache is not None and record in cache:
            return cache[record], b""
        path = self.index.paths[shard]
        offset, size = int(self.index.offsets[record]), int(self.index.sizes[record])
        try:
            framed = _read_at(path, offset, size)
            payload = _payload(framed, size)
        except (OSError, tfrecord.CorruptRecord) as err:
            return b"", self._problem(record, shard, offset, err).encode()
        if cache is not None:
            cache[record] = payload
        return payload, b""

    def _problem(self, record: int, shard: int, offset: int, err: Exception) -> str:
        path = self.index.paths[shard]
        number = record - int(self.index.first[shard])
        count = int(self.index.first[shard + 1] - self.index.first[shard])
        what = getattr(err, "strerror", None) or str(err)
        fix = "rebuild it (delete it and run the same build with --resume) or copy it again"
        line = f"{path}: its record {number} of {count} (at byte {offset}) cannot be read ({what})"
        if self.on_error == "raise":
            return read_errors.record(read_errors.DamagedShard(
                f"{line}: {fix}", skip="leaves such records out and reads the others"))
        with self._lock:
            first = record not in self._reported
            self._reported.add(record)
        if first:
            read_errors.warn(f"input_fn: {line}: it is left out (on_error='skip'); {fix}")
        return line


def _read_at(path: str, offset: int, size: int) -> bytes:
    if _is_local(path):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            return os.pread(descriptor, size, offset)
        finally:
            os.close(descriptor)
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(size)
    except tf.errors.OpError as err:
        raise OSError(err.message) from None


def _payload(framed: bytes, size: int) -> bytes:
    """The record's data, its length and both CRCs checked."""
    if len(framed) < size:
        raise tfrecord.CorruptRecord(f"the file ends {size - len(framed)} bytes into it")
    if tfrecord.masked_crc(framed[:8]) != _FOOTER.unpack_from(framed, 8)[0]:
        raise tfrecord.CorruptRecord("no record starts there: its length CRC does not hold")
    if _LENGTH.unpack_from(framed)[0] != size - tfrecord.FRAMING:
        raise tfrecord.CorruptRecord("the record there is not the one the index lists (the "
                                     "index is not this shard's)")
    payload = framed[12:-4]
    if tfrecord.masked_crc(payload) != _FOOTER.unpack_from(framed, size - 4)[0]:
        raise tfrecord.CorruptRecord("its data CRC does not hold: the bytes are damaged")
    return payload

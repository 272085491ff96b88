"""The read stage of training: records by number, where the shard index says they are.

In: a `shard_index.ShardIndex` and a dataset of (t, position, record number), t counting this
pipeline's records from its start. Out: (position, serialized record, shard path), in order.

Two ways, chosen by the split's size:

- in memory (splits within ReadOptions.cache_bytes): every record is read once, its CRCs
  checked, into a lookup table that every dataset of the split in the process shares (a trainer
  makes three), and each element is a table lookup;
- from the files: each record is read on its own, by TensorFlow's TFRecord reader started at
  its offset (`tf.raw_ops.TFRecordDatasetV2` with `byte_offsets`: one small dataset per record,
  measured at ~100 us of CPU more per record than a sequential read, a few percent of what
  decoding and distorting an image costs).

A record that cannot be read there (a flipped byte, a shard deleted while training) fails inside
tf.data, where TensorFlow's error names no shard ("corrupted record at 1679"). The read drops it
(tf.data's ignore_errors on the read's own map, element by element; never on a file reader,
which retries a file that does not open for ever), and a count of the records that came finds
the gap: after every GROUP records comes a marker that cannot fail, so a gap shows even when
every read fails. Only then a Python call reads the missing records again and says what is
wrong with each: "raise" fails with that line, "skip" prints it and goes on (but fails when a
whole group is missing: nothing can be read). Reading every record in Python was as fast, but a
`py_function` running when the interpreter exits deadlocks it (measured: 1 exit in 6), so
Python runs here only after a failure.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import weakref
from collections.abc import Callable

import tensorflow as tf

from inception_data import read_errors, shard_index, tfrecord
from inception_data.shard_index import ShardIndex

_FOOTER = struct.Struct("<I")
_LENGTH = struct.Struct("<Q")
plain = tf.autograph.experimental.do_not_convert  # tf ops only: nothing for AutoGraph
_MARK = -1  # the position of the marker after each group of records
GROUP = 64
SKIPS = "leaves such records out and reads the others"


def payload(framed: bytes, size: int) -> bytes:
    """The record's data out of its framed bytes, its length and both CRCs checked.

    Raises:
        tfrecord.CorruptRecord: what is wrong, in a phrase.
    """
    if len(framed) < size:
        raise tfrecord.CorruptRecord(f"the file ends {size - len(framed)} bytes into it")
    if tfrecord.masked_crc(framed[:8]) != _FOOTER.unpack_from(framed, 8)[0]:
        raise tfrecord.CorruptRecord("no record starts there: its length CRC does not hold")
    if _LENGTH.unpack_from(framed)[0] != size - tfrecord.FRAMING:
        raise tfrecord.CorruptRecord("the record there is not the one the index lists")
    data = framed[12:-4]
    if tfrecord.masked_crc(data) != _FOOTER.unpack_from(framed, size - 4)[0]:
        raise tfrecord.CorruptRecord("its data CRC does not hold: the bytes are damaged")
    return data


def _place(index: ShardIndex, record: int) -> str:
    shard = index.shard_of(record)
    return (f"{index.paths[shard]}: its record {record - int(index.first[shard])} of "
            f"{int(index.first[shard + 1] - index.first[shard])} (at byte "
            f"{int(index.offsets[record])})")


def what_is_wrong(index: ShardIndex, record: int) -> str:
    """Reads `record` again and says what is wrong with it."""
    path = index.paths[index.shard_of(record)]
    offset, size = int(index.offsets[record]), int(index.sizes[record])
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            handle.seek(offset)
            payload(handle.read(size), size)
    except tfrecord.CorruptRecord as err:
        return str(err)
    except tf.errors.OpError as err:
        return f"the shard cannot be read: {err.message}"
    return "a read error: it reads whole now, so reading again may work"


def unreadable(index: ShardIndex, record: int, reason: str, on_error: str) -> str:
    """A record that cannot be read: "raise" returns the line of its DamagedShard error (kept
    for read_errors.from_tf_error), "skip" prints one line and returns ""."""
    place = _place(index, record)
    if on_error == "raise":
        return read_errors.record(read_errors.DamagedShard(
            f"{place} cannot be read ({reason}): {read_errors.REBUILD}", skip=SKIPS))
    read_errors.warn(f"input_fn: {place} cannot be read ({reason}): it is left out "
                     f"(on_error='skip'); {read_errors.REBUILD}")
    return ""


# ---------------------------------------------------------------------------- in memory


class MemoryTable:
    """A split's records in a lookup table (key(shard, offset) -> serialized Example), and
    those that could not be read ({record: what is wrong}), which the table lacks."""

    def __init__(self, table, unread: dict[int, str]):
        self.table, self.unread = table, unread


def key(shard, offset):
    """The table's key of the record at byte `offset` of shard `shard` (numpy or tf int64):
    with record numbers, the key would change when records are left out of the order."""
    return shard * (1 << 40) + offset  # shards below 1 TB, fewer than 2**23 of them


_TABLES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_TABLES_LOCK = threading.Lock()


def memory_table(index: ShardIndex) -> MemoryTable:
    """The split's records, read once per process (the same shards, sizes and times) into a
    table."""
    key = (_file_identity(index.paths), hashlib.sha256(
        index.offsets.tobytes() + index.sizes.tobytes()).hexdigest())
    with _TABLES_LOCK:
        table = _TABLES.get(key)
        if table is None:
            table = _TABLES[key] = _load(index)
    return table


def _file_identity(paths) -> tuple:
    return tuple((path, shard_index.file_stat(path)) for path in paths)


def _load(index: ShardIndex) -> MemoryTable:
    with tf.init_scope(), tf.device("/cpu:0"):
        table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.string, default_value="")
    unread = {}
    for shard in range(len(index.paths)):
        numbers, payloads = _shard_payloads(index, shard, unread)
        if numbers:  # one shard at a time: the memory peak is the table and one shard
            keys = key(shard, index.offsets[numbers])
            with tf.init_scope(), tf.device("/cpu:0"):
                table.insert(tf.constant(keys, tf.int64), tf.constant(payloads))
    return MemoryTable(table, unread)


def _shard_payloads(index: ShardIndex, shard: int, unread: dict) -> tuple[list, list]:
    begin, end = int(index.first[shard]), int(index.first[shard + 1])
    numbers, payloads = [], []
    try:
        with tf.io.gfile.GFile(index.paths[shard], "rb") as handle:
            for record in range(begin, end):  # in file order: one sequential read
                handle.seek(int(index.offsets[record]))
                size = int(index.sizes[record])
                try:
                    payloads.append(payload(handle.read(size), size))
                    numbers.append(record)
                except tfrecord.CorruptRecord as err:
                    unread[record] = str(err)
    except tf.errors.OpError as err:
        unread.update({record: f"the shard cannot be read: {err.message}"
                       for record in range(begin, end) if record not in numbers})
    return numbers, payloads


# ----------------------------------------------------------------------------- the stage


def _path_of(index: ShardIndex):
    first, paths = tf.constant(index.first), tf.constant(index.paths)

    def shard_and_path(record):
        shard = tf.searchsorted(first, record[None], side="right")[0] - 1
        return shard, tf.gather(paths, shard)

    return shard_and_path


def from_memory(index: ShardIndex, table: MemoryTable):
    """record number -> (serialized record, shard path), a table lookup: a function for the
    map that also parses and decodes (one tf.data stage per record, not three)."""
    shard_and_path, offsets = _path_of(index), tf.constant(index.offsets)

    def read(record):
        shard, path = shard_and_path(record)
        return table.table.lookup(key(tf.cast(shard, tf.int64), tf.gather(offsets, record))), path

    return read


def left_out(index: ShardIndex, unread: dict[int, str], on_error: str) -> ShardIndex:
    """The index without the records that could not be read into memory: "raise" fails with
    the first one's line, "skip" prints each and leaves them out of the order."""
    for record, reason in sorted(unread.items()):
        line = unreadable(index, record, reason, on_error)
        if line:
            raise read_errors.from_tf_error(RuntimeError(line))
    drop: dict[str, list[int]] = {}
    for record in unread:
        shard = index.shard_of(record)
        drop.setdefault(index.paths[shard], []).append(record - int(index.first[shard]))
    return index.without(drop)


def from_files(index: ShardIndex, place: Callable, *, first_t: int, count: int | None,
               on_error: str, parallelism: int):
    """This pipeline's records from the t-th on, each read from its shard: (a dataset of (t,
    position, serialized record, shard path), the function that makes each (position, record,
    path)), in order. `place(t)`: (position, record number) of the t-th, as tensors or ints;
    `count`: the t past the last record of a finite stream (None: endless)."""
    shard_and_path = _path_of(index)
    offsets, sizes = tf.constant(index.offsets), tf.constant(index.sizes)
    spec = tf.TensorSpec([], tf.string)

    def from_file(record):
        path = shard_and_path(record)[1]
        variant = tf.raw_ops.TFRecordDatasetV2(
            filenames=path, compression_type="", buffer_size=tf.gather(sizes, record),
            byte_offsets=tf.gather(offsets, record))
        return tf.data.experimental.from_variant(variant, spec).take(1).get_single_element(), path

    def fetch(u):  # u counts the records and a marker after every GROUP of them
        group, within = u // (GROUP + 1), u % (GROUP + 1)
        t = first_t + group * GROUP + within  # (a marker's: the t of the record after it)
        mark = tf.equal(within, GROUP) if count is None else \
            tf.equal(within, GROUP) | (t >= count)
        position, record = place(t)
        data, path = tf.cond(mark, lambda: (tf.constant(b""), tf.constant("")),  # reads nothing
                             lambda: from_file(record))
        return t, tf.where(mark, tf.constant(_MARK, tf.int64), position), data, path

    steps = tf.data.Dataset.counter()
    if count is not None:  # each record, and a marker after each group and after the last
        steps = steps.take((count - first_t) + -(-(count - first_t) // GROUP))
    # deterministic: the gap check counts the records in order (the decode may reorder)
    dataset = steps.map(plain(fetch), num_parallel_calls=parallelism, deterministic=True)
    named = _gaps_named(dataset.ignore_errors(), index, on_error, first_t,
                        lambda t: int(place(t)[1]))
    return named, lambda t, position, data, path: (position, data, path)


def _gaps_named(dataset: tf.data.Dataset, index: ShardIndex, on_error: str, first_t: int,
                record_of: Callable[[int], int]) -> tf.data.Dataset:
    """The read's elements without the markers, each record the read dropped (a gap in t)
    named: "raise" fails with its line, "skip" prints it (and fails when a whole group is
    missing)."""
    def name(expected, t):  # a Python call, made only after a record failed
        missing = range(int(expected), int(t))
        lines = [unreadable(index, record_of(u), what_is_wrong(index, record_of(u)), on_error)
                 for u in missing]
        if on_error == "skip" and len(missing) >= GROUP:
            return (f"input_fn: no record of {len(missing)} in a row could be read (the "
                    f"warnings above say why): nothing to skip to").encode()
        return "; ".join(line for line in lines if line).encode()

    def step(expected, element):
        t, position = element[0], element[1]
        line = tf.cond(tf.equal(t, expected), lambda: tf.constant(""),
                       lambda: tf.py_function(name, [expected, t], tf.string))
        with tf.control_dependencies([tf.debugging.Assert(tf.equal(line, ""), [line])]):
            following = tf.where(tf.equal(position, _MARK), t, t + 1)  # a marker holds the next t
        return following, element

    return (dataset.scan(tf.constant(first_t, tf.int64), plain(step))
            .filter(plain(lambda t, position, data, path: tf.not_equal(position, _MARK))))

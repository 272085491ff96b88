"""Evaluation's reader: every record of a set of shards once, shard after shard, each shard's
damage named.

In: shard paths, and what is known of them (records a saved verdict found bad, each shard's
count). Out: a dataset of (record, shard path). TensorFlow's reader names no file in its errors
("corrupted record at 2238228"), and an error cannot be caught inside tf.data; so each shard's
own reader ignores its errors (its next read after a damaged record ends the shard) and the
bytes it read are added up: a shard that ends before its file's end is damaged, and is named.
Training reads by record number instead (record_reader.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from inception_data import read_errors, tfrecord

# Ends a shard's records; a serialized tf.train.Example never starts with a NUL byte (field 0
# does not exist), so no real record equals it.
_END_OF_SHARD = b"\0inception-data: end of shard"


def reader(bad: dict, on_error: str, counts: dict):
    """filename -> a dataset of (record, filename) of that shard, without the records listed in
    `bad` ({file: [(index, reason)]}, from a saved verdict).

    A shard that ends before its file's end is damaged, and is named with what is wrong there and
    how many records it lost (`counts`: {file: records its build counted, or None}): "raise"
    stops with an error, "skip" prints one line and goes on. Whether a shard opens is checked
    before its reader is made, as ignore_errors would retry opening it for ever
    (`TFRecordDataset('/nonexistent').ignore_errors()` never ends): "raise" reads it without
    ignore_errors (TensorFlow's NotFoundError names it), "skip" prints one line and skips it."""
    listed = [f"{path}\0{index}" for path, rows in bad.items() for index, _ in rows]
    skipped = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        listed, tf.ones([len(listed)], tf.int64)), default_value=0) if listed else None

    # py_functions, called once per shard and pass: file system calls, no per-record cost
    def opened(filename):
        """The file's size, or -1 when it cannot be read (printed, with "skip")."""
        path = filename.numpy().decode()
        try:
            with tf.io.gfile.GFile(path, "rb") as handle:
                handle.read(1)
                return handle.size()
        except (tf.errors.OpError, OSError) as err:
            if on_error == "skip":  # ("raise": TensorFlow's own error, below)
                read_errors.warn(f"input_fn: {path} cannot be read "
                                 f"({getattr(err, 'message', err)}): its records are skipped "
                                 f"(on_error='skip')")
            return -1

    def ended(filename, records, consumed, size):
        """What stopped the reader of a shard that ended at byte `consumed` of `size`."""
        path = filename.numpy().decode()
        return _damage(path, int(records), int(consumed), int(size), counts.get(path),
                       on_error)

    def shard(filename):  # flat_map's function: runs just before the file is opened
        size = tf.py_function(opened, [filename], tf.int64)
        name = tf.data.Dataset.from_tensors(filename)
        records = name.filter(lambda _: size >= 0).flat_map(
            lambda path: tf.data.TFRecordDataset(path).ignore_errors(log_warning=True))
        if on_error == "raise":  # read without ignore_errors: TensorFlow's own error names it
            records = records.concatenate(name.filter(lambda _: size < 0).flat_map(
                tf.data.TFRecordDataset))

        def add(state, record):
            index, consumed = state
            length = tf.cast(tf.strings.length(record), tf.int64) + tfrecord.FRAMING
            return (index + 1, consumed + length), (index, consumed, record)

        def at_end(index, consumed):  # the sentinel is dropped after this check
            problem = tf.cond(consumed < size, lambda: tf.py_function(
                ended, [filename, index, consumed, size], tf.string), lambda: "")
            # "raise": an InvalidArgumentError with that text (an exception raised in the
            # py_function would come out as UnknownError, its Python traceback in the
            # message); "skip": `ended` printed it
            check = (tf.debugging.Assert(tf.equal(problem, ""), [problem])
                     if on_error == "raise" else problem)
            with tf.control_dependencies([check]):
                return tf.constant(False)

        def keep(index, consumed, record):
            if skipped is None:
                unlisted = tf.constant(True)
            else:
                key = tf.strings.join([filename, tf.strings.as_string(index)], "\0")
                unlisted = skipped.lookup(key) == 0
            return tf.cond(tf.equal(record, _END_OF_SHARD), lambda: at_end(index, consumed),
                           lambda: unlisted)

        return (records.concatenate(tf.data.Dataset.from_tensors(tf.constant(_END_OF_SHARD)))
                .scan((tf.constant(0, tf.int64), tf.constant(0, tf.int64)), add)
                .filter(keep).map(lambda index, consumed, record: (record, filename)))

    def tagged(filename):
        # the check runs when the shard's reading starts, not when interleave makes its
        # dataset (possibly long before): a shard deleted in between would make
        # ignore_errors retry for ever; what is left is the instant from check to open
        return tf.data.Dataset.from_tensors(filename).flat_map(shard)

    return tagged


def _damage(path: str, records: int, consumed: int, size: int, count: int | None,
            on_error: str) -> str:
    """One line on the shard at `path`, whose reader stopped at byte `consumed` of `size`,
    after `records` records (its build counted `count`): what is wrong there and what to do,
    to fail with ("raise": no quotes, which Assert's message escapes), or "" once printed
    ("skip")."""
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            what = tfrecord.damage_at(handle, consumed)
    except (tf.errors.OpError, OSError):
        what = None
    where = (f"{path} is {what} at byte {consumed} of {size}" if what else
             f"{path} could not be read past byte {consumed} of {size} (a read error: the "
             f"record there reads whole now, so reading again may work; TensorFlow logs its "
             f"reason as a warning)")
    after = f"after its record {records}" + (f" of {count}" if count is not None else "")
    lost = (f"the other {count - records} record(s) of that shard are skipped" if count
            is not None else f"the rest of that shard ({size - consumed} bytes) is skipped")
    fix = read_errors.REBUILD
    if on_error == "raise":
        return read_errors.record(read_errors.DamagedShard(f"{where}, {after}: {fix}",
                                                           skip=read_errors.SKIPS))
    read_errors.warn(f"input_fn: {where}, {after}: {lost} (on_error='skip'); {fix}")
    return ""


def records(files: Sequence[str], tagged, *, cycle_length: int, num_parallel_calls,
            deterministic: bool) -> tf.data.Dataset:
    """(record, file) of every shard, `cycle_length` shards interleaved (`tagged`: `reader`'s
    function)."""
    return tf.data.Dataset.from_tensor_slices(list(files)).interleave(
        tagged, cycle_length=min(cycle_length, len(files)), num_parallel_calls=num_parallel_calls,
        deterministic=deterministic)

"""`input_fn`: TFRecord shards -> batches of (images, labels) for Inception, with tf.data.

files (this replica's share) -> interleaved TFRecordDatasets -> shuffle -> parse with the schema
-> decode (fused decode + crop) -> distort or centre-crop -> scale to [-1, 1] -> batch ->
prefetch. Works on local paths and gs:// (TensorFlow's file I/O), on shards written by this
project and by the original Inception scripts (same keys).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from typing import Sequence

import tensorflow as tf

from inception_data import paths
from inception_data import preprocessing as ops
from inception_data import schema, shard_set, tfrecord

log = logging.getLogger(__name__)

_MISSING = -1
PREPROCESSING = ("inception", "small")


def list_files(file_pattern: str | Sequence[str]) -> list[str]:
    """Sorted files matching the pattern(s). Raises FileNotFoundError naming an empty pattern."""
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = []
    for pattern in patterns:
        matched = tf.io.gfile.glob(pattern)
        if not matched:  # a folder named like a pattern ("out [2024]/train-*") taken literally
            folder, name = os.path.split(pattern)
            matched = tf.io.gfile.glob(os.path.join(paths.glob_escape(folder), name))
        if not matched:
            raise FileNotFoundError(f"{pattern} does not match any files")
        folders = [path for path in matched if tf.io.gfile.isdir(path)]
        if folders:  # `inspect out/` means the shards in it
            raise FileNotFoundError(
                f"{folders[0]} is a folder, not a shard file: give the shards, e.g. "
                f"'{os.path.join(folders[0], 'train-*')}'")
        files += matched
    return sorted(set(files))


def shard_files(files: list[str], input_context) -> list[str]:
    """This input pipeline's files: every num_input_pipelines-th, starting at its id."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    pipelines = input_context.num_input_pipelines
    if len(files) < pipelines:
        raise ValueError(
            f"{len(files)} file(s) for {pipelines} input pipelines: each pipeline needs at least "
            f"one file; write more shards (--shards) or use fewer workers")
    return files[input_context.input_pipeline_id::pipelines]


ON_ERROR = ("raise", "skip")


class IncompleteShards(ValueError):
    """The shard set lacks shards its names or manifest promise (input_fn's allow_incomplete)."""


def _check_complete(shards: shard_set.ShardSet, allow_incomplete: bool) -> None:
    gaps = shards.incomplete()
    if not gaps:
        return
    if allow_incomplete:
        for gap in gaps:
            log.warning("input_fn: %s; reading the shards that are there (allow_incomplete)",
                        gap)
        return
    shown = "; ".join(gaps[:3]) + (f"; and {len(gaps) - 3} more" if len(gaps) > 3 else "")
    raise IncompleteShards(f"the shard set is incomplete: {shown}. Rebuild or copy the missing "
                           f"shards (`inception-data build ... --resume` finishes an "
                           f"interrupted build), or pass allow_incomplete=True to read what is "
                           f"there")
# Without the records cached, a tenth of the shuffle buffer is read ahead of the decoding, so that
# refilling the buffer at an epoch boundary overlaps with decoding instead of stalling it.
PREFETCH_SHARE = 10


SKIP_ADVICE = "with on_error=skip, input_fn"  # the advice a shard's error ends with
SKIPS = "reads the records before the damage and the other shards"

# Ends a shard's records; a serialized tf.train.Example never starts with a NUL byte (field 0
# does not exist), so no real record equals it.
_END_OF_SHARD = b"\0inception-data: end of shard"


def _reader(bad: dict, on_error: str, counts: dict):
    """filename -> a dataset of (record, filename) of that shard, without the records listed in
    `bad` ({file: [(index, reason)]}, from a saved verdict).

    TensorFlow's reader names no file in its errors ("corrupted record at 2238228"), and an
    error cannot be caught inside tf.data; so each shard's own reader ignores its errors (its
    next read after a damaged record ends the shard) and the bytes it read are added up. A
    shard that ends before its file's end is damaged, and is named with what is wrong there and
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
                _warn(f"input_fn: {path} cannot be read ({getattr(err, 'message', err)}): its "
                      f"records are skipped (on_error='skip')")
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


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


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
    fix = "rebuild it (delete it and run the same build with --resume) or copy it again"
    if on_error == "raise":
        return f"input_fn: {where}, {after}: {fix}; {SKIP_ADVICE} {SKIPS}"
    _warn(f"input_fn: {where}, {after}: {lost} (on_error='skip'); {fix}")
    return ""


def _records(files: Sequence[str], tagged, *, shuffle: bool, seed, cycle_length: int,
             num_parallel_calls, deterministic: bool,
             reshuffle: bool = True) -> tf.data.Dataset:
    """(record, file) of every shard, interleaved (the file order shuffled when `shuffle`,
    anew at each iteration when `reshuffle`)."""
    dataset = tf.data.Dataset.from_tensor_slices(list(files))
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=reshuffle)
    return dataset.interleave(tagged, cycle_length=min(cycle_length, len(files)),
                              num_parallel_calls=num_parallel_calls, deterministic=deterministic)


def _epoch_seed(seed: int, epoch):
    return tf.constant(seed, tf.int64) * 1_000_003 + epoch


def _seeded_epochs(files, tagged, *, seed: int, shuffle_buffer: int, repeat: bool,
                   cache: bool, **read) -> tf.data.Dataset:
    """A seeded training stream whose epoch e is shuffled by (seed, e) alone.

    tf.data's reshuffling draws each epoch's order from a generator that every iterator of
    the dataset advances; Keras' fit creates more than one iterator of the training dataset
    on several towers, and which of them draws first is a race: a seeded 2-tower run gave one
    of two loss sequences (1 run in ~10 under load). Here each epoch is a fresh, non-reshuffling
    shuffle seeded by its index, so every iterator yields the same stream."""
    if cache:  # the records once in memory; the buffer holds them all, a full shuffle
        records = _records(files, tagged, shuffle=False, seed=None, **read).cache()

        def epoch(index):
            return records.shuffle(shuffle_buffer, seed=_epoch_seed(seed, index),
                                   reshuffle_each_iteration=False)
    else:
        def epoch(index):
            epoch_seed = _epoch_seed(seed, index)
            return _records(files, tagged, shuffle=True, seed=epoch_seed, reshuffle=False,
                            **read).shuffle(shuffle_buffer, seed=epoch_seed,
                                            reshuffle_each_iteration=False)

    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    return epochs.flat_map(epoch)


def _spec(keys) -> dict:
    """The schema's spec for `keys`, with sentinels for the required ones so that a missing one
    is reported (with its file) instead of failing inside parse_single_example."""
    full = schema.parse_spec()
    spec = {key: full[key] for key in keys}
    spec[schema.ENCODED] = tf.io.FixedLenFeature([], tf.string, default_value=b"")
    spec[schema.LABEL] = tf.io.FixedLenFeature([], tf.int64, default_value=_MISSING)
    return spec


_TRAIN_KEYS = (schema.ENCODED, schema.LABEL) + schema.BBOX_KEYS
_EVAL_KEYS = (schema.ENCODED, schema.LABEL)
_METADATA_KEYS = (schema.FILENAME, schema.TEXT, schema.SYNSET, schema.HEIGHT, schema.WIDTH)


def decode_record(serialized, filename, *, num_classes: int | None = None,
                  boxes: bool = True, metadata: bool = False, label_offset: int = 1) -> dict:
    """Serialized Example -> dict of the tensors the reader needs (only those are parsed).

    A record without `image/encoded` or `image/class/label`, or with a label outside
    0..num_classes - 1 + label_offset (num_classes: N, the classes without the background),
    fails with an error that names the values and the shard file.
    """
    keys = (_TRAIN_KEYS if boxes or metadata else _EVAL_KEYS) + (_METADATA_KEYS if metadata else ())
    fields = tf.io.parse_single_example(serialized, _spec(keys))
    label, length = fields[schema.LABEL], tf.strings.length(fields[schema.ENCODED])
    highest = num_classes - 1 + label_offset if num_classes is not None else tf.int64.max
    convention = ("1..N, 0 = background" if label_offset else "0..N-1, no background class")
    check = tf.debugging.Assert(
        (length > 0) & (label >= 0) & (label <= highest),
        [f"bad record: it needs {schema.ENCODED} (non-empty) and {schema.LABEL} in 0..{highest} "
         f"({convention}; -1 means the key is missing). {schema.LABEL}:", label,
         f"{schema.ENCODED} bytes:", length, "in file", filename])
    with tf.control_dependencies([check]):
        out = {key: tf.identity(value) for key, value in fields.items()
               if not isinstance(value, tf.SparseTensor)}
    if boxes or metadata:
        # [N, 4] as (ymin, xmin, ymax, xmax), the order tf.image's box ops use
        out["boxes"] = tf.stack([tf.sparse.to_dense(fields[k]) for k in schema.BBOX_KEYS], -1)
    out["source_file"] = filename
    return out


def input_fn(file_pattern: str | Sequence[str], is_training: bool, batch_size: int, *,
             image_size: int = 299, shuffle_buffer: int = 10_000, repeat: bool | None = None,
             drop_remainder: bool | None = None, seed: int | None = None,
             deterministic: bool | None = None, cache: bool | None = None,
             num_parallel_calls: int = tf.data.AUTOTUNE, distortions: str | None = "fast",
             input_context=None, num_classes: int | None = None,
             label_offset: int | None = None,
             with_metadata: bool = False, cycle_length: int = 16,
             preprocessing: str = "inception", flip: bool = True,
             min_crop_area: float = 0.05, on_error: str = "raise",
             allow_incomplete: bool = False) -> tf.data.Dataset:
    """A tf.data.Dataset of (images, labels) batches, or (images, labels, metadata).

    Args:
        file_pattern: glob(s) of TFRecord shards, local or gs://.
        is_training: random crops, flips and colour jitter, shuffled, repeated; otherwise the
            central crop, in file order, each example exactly once.
        batch_size: per replica when `input_context` is given (its global batch / replicas).
        image_size: output height and width (299 for Inception v3).
        shuffle_buffer: records in the shuffle buffer (training).
        repeat: repeat forever; default True when training, False otherwise.
        drop_remainder: default True when training (static batch shapes), False otherwise (the
            final partial batch is kept, so evaluation sees every example).
        seed: two runs give identical batches (stateless random ops, seeded shuffles, and
            deterministic order unless `deterministic=False` is passed).
        deterministic: elements in a fixed order. Default: True when evaluating or seeded;
            False when training unseeded (full speed: a parallel stage hands on whichever
            element is ready, so near an epoch boundary an element of the next epoch may come
            a few places before the last ones of the current epoch; each epoch itself holds
            every example exactly once).
        cache: keep the records in memory after the first epoch. None (default): when
            training on shards whose records all fit in the shuffle buffer (their manifests
            count them), which then holds them all at each epoch start anyway: later epochs
            start without re-reading the files (that refill stalled the first batch of each
            epoch ~6x the median on 2,934 photos).
        distortions: "fast" (default), "inception" (TF's colour ops) or None (crop/flip only);
            see preprocessing.py for the difference.
        input_context: a tf.distribute.InputContext: this pipeline reads every
            num_input_pipelines-th file; fewer files than pipelines is an error.
        num_classes: N, the number of classes (without the background class); when given, a
            label above the highest of the shards' convention fails naming the file.
        label_offset: the label of the first class: 1 (label 0 is the background class, as
            the original scripts numbered them) or 0 (`build --no-background`). None: read
            from the shards' manifest.json (1 where there is none).
        with_metadata: also yield a dict with file name, text, synset, size and boxes (ragged).
        preprocessing: "inception" (the crops above, for photos) or "small" (for MNIST/CIFAR-
            size images: pad 4 px and crop at random plus flip for training, the whole image
            for evaluation; resized to image_size when it differs).
        flip: random left-right flips in training with the "small" preset (off for digits).
        min_crop_area: the smallest share of the image a training crop covers (the original's
            0.05; larger values make short runs on small datasets learn faster).
        on_error: a record whose image does not decode (or does not parse): "raise" stops
            with TensorFlow's error, "skip" drops it and logs TensorFlow's reason
            (`ignore_errors(log_warning=True)` after the decode). Each image is decoded once,
            by the training decode itself: nothing is checked in advance. Shards checked once
            with `inception-data inspect --verify --save-verdict` (or built with `--verify
            decode`) are known: the records the check found bad are named here, before any
            reading - "raise" refuses them at once, "skip" leaves exactly them out (logged
            with file and index). A damaged or truncated shard is named in both modes, with
            the byte and the records before the damage: "raise" stops with an
            InvalidArgumentError saying so, "skip" reads the shard up to the damage, skips the
            rest of it and prints one line (with how many records were lost, from the
            manifest's count). A shard that cannot be opened: "raise" gives TensorFlow's
            error (it names the file), "skip" names it and reads the other shards.
        allow_incomplete: read a shard set that lacks shards (by its `-of-N` names or its
            manifest) or holds an empty shard the manifest counts records in; each gap is
            logged. Default: such a set is an error naming what is missing (a subset on
            purpose, e.g. one shard for a quick test, needs this).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; expected one of {ON_ERROR}")
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing={preprocessing!r}; expected one of {PREPROCESSING}")
    repeat = is_training if repeat is None else repeat
    drop_remainder = is_training if drop_remainder is None else drop_remainder
    if deterministic is None:
        deterministic = not is_training or seed is not None
    every_file = list_files(file_pattern)
    everything = shard_set.ShardSet.read(every_file)  # each folder's small files read once
    _check_complete(everything, allow_incomplete)
    files = shard_files(every_file, input_context)
    known = shard_set.ShardSet(tuple(files), everything.folders)
    if label_offset is None:
        label_offset = known.label_offset()
    bad = _known_bad(known, on_error)
    records = known.records()
    if cache is None:
        cache = is_training and records is not None and records <= shuffle_buffer

    tagged = _reader(bad, on_error, {path: known.shard_records(path) for path in files})
    read = dict(cycle_length=cycle_length, num_parallel_calls=num_parallel_calls,
                deterministic=deterministic)
    if is_training and seed is not None:
        dataset = _seeded_epochs(files, tagged, seed=seed, shuffle_buffer=shuffle_buffer,
                                 repeat=repeat, cache=cache, **read)
    else:
        dataset = _records(files, tagged, shuffle=is_training, seed=seed, **read)
        if cache:
            dataset = dataset.cache()
        if is_training:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed)
        if repeat:
            dataset = dataset.repeat()
    if is_training and not cache:
        dataset = dataset.prefetch(max(1, shuffle_buffer // PREFETCH_SHARE))
    # A stateless seed pair per example: (run seed, position in the stream). Without a seed the
    # run seed is drawn here, so unseeded runs differ.
    run_seed = seed if seed is not None else secrets.randbits(63)
    dataset = dataset.enumerate()

    def prepare(position, record_and_file):
        example_seed = tf.stack([tf.constant(run_seed, tf.int64), position])
        fields = decode_record(*record_and_file, num_classes=num_classes,
                               label_offset=label_offset,
                               boxes=is_training and preprocessing == "inception",
                               metadata=with_metadata)
        image = _preprocess(fields, example_seed, is_training, image_size, distortions,
                            preprocessing, flip, min_crop_area)
        label = tf.cast(fields[schema.LABEL], tf.int32)
        if not with_metadata:
            return image, label
        return image, label, _metadata(fields)

    dataset = dataset.map(prepare, num_parallel_calls=num_parallel_calls,
                          deterministic=deterministic)
    if on_error == "skip" and not known.checked():
        dataset = dataset.ignore_errors(log_warning=True)
    if with_metadata:
        dataset = dataset.ragged_batch(batch_size, drop_remainder=drop_remainder)
    else:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder,
                                num_parallel_calls=num_parallel_calls,
                                deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


class UndecodableRecords(ValueError):
    """The shards hold records that their saved decode check found undecodable."""


def _known_bad(known: shard_set.ShardSet, on_error: str) -> dict:
    """The records the shards' saved verdicts found bad: "raise" refuses them here, naming each
    (file, index, reason); "skip" logs them and returns them to be left out."""
    bad = known.bad_records()
    if not bad:
        return {}
    rows = [f"{path} record {index}: {reason.rstrip('.')}" for path, found in bad.items()
            for index, reason in found]
    if on_error == "raise":
        raise UndecodableRecords(
            f"{len(rows)} record(s) do not decode in TensorFlow (found by `inception-data "
            f"inspect --verify`, saved in {shard_set.VERDICT}): " + "; ".join(rows[:10])
            + ("; ..." if len(rows) > 10 else "") + ". Pass on_error='skip' (train.py: "
            "--on-error skip) to leave them out, or rebuild those shards")
    for row in rows:
        log.warning("input_fn: skipping %s (%s)", row, shard_set.VERDICT)
    return bad


def _preprocess(fields, seed, is_training, image_size, distortions, preset, flip, min_area):
    encoded = fields[schema.ENCODED]
    if preset == "small":
        if is_training:
            return ops.preprocess_small_train(encoded, seed, image_size=image_size, flip=flip)
        return ops.preprocess_small_eval(encoded, image_size=image_size)
    if is_training:
        return ops.preprocess_train(encoded, fields["boxes"], seed, image_size=image_size,
                                    distortions=distortions, min_crop_area=min_area)
    return ops.preprocess_eval(encoded, image_size=image_size)


def _metadata(fields) -> dict:
    return {"filename": fields[schema.FILENAME], "text": fields[schema.TEXT],
            "synset": fields[schema.SYNSET], "height": fields[schema.HEIGHT],
            "width": fields[schema.WIDTH], "boxes": fields["boxes"],
            "source_file": fields["source_file"]}

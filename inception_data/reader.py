"""`input_fn`: TFRecord shards -> batches of (images, labels) for Inception, with tf.data.

The dataset is a short chain of named stages:

    list     the pattern's shards, checked against their manifest and index files (names,
             sizes and small files only: no record is read)
    order    training: this pipeline's positions in the stream from `start_batch` on, each a
             record number drawn from (seed, epoch) (order.py); evaluation: file order
    read     training: each record where the index says it is (record_reader.py);
             evaluation: shard after shard (shard_reader.py)
    parse    the Example's image, label and boxes (parsing.py)
    decode and distort   the fused decode + crop, flip, resize, colour jitter, [-1, 1]
             (preprocessing.py); evaluation: the central crop
    batch    and prefetch

Works on local paths and gs:// (TensorFlow's file I/O), on shards written by this project and by
the original Inception scripts (same keys).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Sequence

import tensorflow as tf

from inception_data import (
    order,
    parsing,
    paths,
    read_errors,
    record_reader,
    schema,
    shard_index,
    shard_reader,
    shard_set,
    split_check,
)
from inception_data import preprocessing as ops
from inception_data.read_errors import IncompleteShards, UndecodableRecords
from inception_data.read_options import FIELDS, ON_ERROR, ReadOptions

__all__ = ["input_fn", "list_files", "ReadOptions", "IncompleteShards", "UndecodableRecords"]

log = logging.getLogger(__name__)
# the stages' functions use tf ops only (no Python control flow on tensors): not converted by
# AutoGraph, which warned about lambdas it could not find the source of
plain = tf.autograph.experimental.do_not_convert

decode_record = parsing.parse_record  # its name before the parse stage had a module of its own
REMOTE_READS = 64  # records read at once from other file systems than the local one (gs://:
# each read waits on the network)


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
    """Evaluation: this input pipeline's files, every num_input_pipelines-th from its id."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    pipelines = input_context.num_input_pipelines
    if len(files) < pipelines:
        raise ValueError(
            f"{len(files)} file(s) for {pipelines} input pipelines: each pipeline needs at least "
            f"one file; write more shards (--shards) or use fewer workers")
    return files[input_context.input_pipeline_id::pipelines]


def input_fn(file_pattern: str | Sequence[str], is_training: bool, batch_size: int, *,
             image_size: int = 299, seed: int | None = None, start_batch: int = 0,
             on_error: str = "raise", input_context=None, options: ReadOptions | None = None,
             **removed) -> tf.data.Dataset:
    """A tf.data.Dataset of (images, labels) batches, or (images, labels, metadata).

    Args:
        file_pattern: glob(s) of TFRecord shards, local or gs://.
        is_training: Inception's random crops, flips and colour jitter, in an order that is a
            new permutation of the whole split every epoch (each record once per epoch),
            repeated; otherwise the central crop, in file order, each record exactly once.
        batch_size: per replica when `input_context` is given (its global batch / replicas).
        image_size: output height and width (299 for Inception v3).
        seed: training: the order of every epoch and every random distortion follow from
            (seed, epoch) and (seed, position): the same seed gives the same batches, in any
            process. None: a seed is drawn, so unseeded datasets differ.
        start_batch: training with a seed: the stream begins where it was after this many
            batches (equal, image for image, to the stream from 0 with them dropped), at a cost
            that does not depend on it: the records before it are neither read nor decoded.
            Under an `input_context` it counts global steps, each replica's batches (what a
            training loop's step counter says), whatever the number of workers.
        on_error: "raise" (default) or "skip": a record that cannot be read or does not decode,
            or a damaged shard: stop with an error that names it, or leave it out (and what
            a damaged shard loses) with one warning line; see docs/reading.md.
        input_context: a tf.distribute.InputContext. Training: the pipelines read disjoint
            parts of one stream, whose union is every epoch. Evaluation: every
            num_input_pipelines-th file.
        options: the tuning knobs (ReadOptions: preprocessing, distortions, labels, metadata,
            repeat, caching, parallelism); the defaults are what the benchmarks measure.

    Raises:
        FileNotFoundError: the pattern matches no shard.
        read_errors.ReadError: the shards disagree with their names, manifest or index (a
            missing, stray, truncated or miscounted shard), or hold records a saved decode check
            found bad; each one line naming the file.
    """
    options = _options(options, removed)
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; expected one of {ON_ERROR}")
    if start_batch and (not is_training or seed is None):
        raise ValueError(f"start_batch={start_batch} resumes a seeded training stream: give "
                         f"is_training=True and the seed the stream was made with (evaluation "
                         f"reads each record once, in file order)")
    training = is_training  # (the name the stages below use)
    listed = _list(file_pattern, training=training, input_context=input_context,
                   options=options, on_error=on_error)
    label_offset = (options.label_offset if options.label_offset is not None
                    else listed.known.label_offset())
    deterministic = (options.deterministic if options.deterministic is not None
                     else not training or seed is not None)
    read = None  # with a split in memory, the records are read in the map that decodes them
    if training:
        seed = seed if seed is not None else secrets.randbits(63)
        records, read = _training_records(listed, order.Layout.of(batch_size, input_context),
                                          seed=seed, start_batch=start_batch, options=options,
                                          on_error=on_error)
    else:
        records = _evaluation_records(listed, options, on_error=on_error,
                                      deterministic=deterministic)
    prepare = _preparation(training, seed, image_size, options, label_offset)
    dataset = records.map(plain(prepare if read is None else lambda *x: prepare(*read(*x))),
                          num_parallel_calls=_parallel(options), deterministic=deterministic)
    if on_error == "skip" and not listed.known.checked():
        dataset = dataset.ignore_errors(log_warning=True)  # records that do not decode
    return _batched(dataset, batch_size, training, options, deterministic)


# ---------------------------------------------------------------------------------- list


@dataclasses.dataclass(frozen=True)
class _Listed:
    """What `input_fn` knows of its shards before reading any record."""

    files: tuple[str, ...]  # the shards this pipeline reads
    known: shard_set.ShardSet  # their manifests and decode verdicts
    spans: tuple[shard_index.Spans | None, ...]  # where their records lie (None: unknown)


def _list(file_pattern, *, training: bool, input_context, options: ReadOptions,
          on_error: str) -> _Listed:
    every_file = list_files(file_pattern)
    everything = shard_set.ShardSet.read(every_file)  # each folder's small files read once
    _check_names(everything, options.allow_incomplete)  # (two builds mixed: also incomplete)
    _check_complete(everything, options.allow_incomplete)
    files = every_file if training else shard_files(every_file, input_context)
    known = shard_set.ShardSet(tuple(files), everything.folders)
    # training reads by record number, so it needs every record's place: from the index
    # files, or the record headers; evaluation reads each shard through, and only checks
    # the shards that have index files
    spans = shard_index.read(files, scan=training)
    for shard in filter(None, spans):
        problem = shard.problem(known.shard_records(shard.path))
        if problem:
            _judge(*problem, on_error=on_error, allow_incomplete=options.allow_incomplete,
                   training=training)
    return _Listed(tuple(files), known, tuple(spans))


def _check_names(shards: shard_set.ShardSet, allow_incomplete: bool) -> None:
    """Shards that do not belong to the set, by their names or the manifest, and manifests
    whose counts disagree with themselves (split_check.py)."""
    lines = split_check.names(shards) + split_check.manifest_totals(shards)
    if lines and not allow_incomplete:
        shown = "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
        raise read_errors.ShardMismatch(f"{shown} (or pass allow_incomplete=True to read the "
                                        f"shards as they are)")
    for line in lines:
        read_errors.warn(f"input_fn: {line}; reading the shards as they are (allow_incomplete)",
                         once=True)


def _judge(kind: str, line: str, *, on_error: str, allow_incomplete: bool,
           training: bool) -> None:
    """Raises, or warns of, one shard's problem: damage follows `on_error` (with "skip",
    training reads the records before it; evaluation's reader finds and reports it itself), a
    shard that disagrees with its manifest or index follows `allow_incomplete`."""
    fix = read_errors.REBUILD
    if kind == "damaged":
        if on_error == "raise":
            raise read_errors.DamagedShard(f"{line}: {fix}", skip=read_errors.SKIPS)
        if training:
            read_errors.warn(f"input_fn: {line}: the records after the damage are left out "
                             f"(on_error='skip'); {fix}", once=True)
        return
    if not allow_incomplete:
        raise read_errors.ShardMismatch(f"{line}: {fix}, or pass allow_incomplete=True to "
                                        f"read the records that are there")
    read_errors.warn(f"input_fn: {line}; reading the records that are there (allow_incomplete)",
                     once=True)


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
            + ("; ..." if len(rows) > 10 else "") + ": rebuild those shards",
            skip="leaves exactly them out")
    for row in rows:
        log.warning("input_fn: skipping %s (%s)", row, shard_set.VERDICT)
    return bad


# ---------------------------------------------------------------------- order and read


def _training_records(listed: _Listed, layout: order.Layout, *, seed: int, start_batch: int,
                      options: ReadOptions, on_error: str):
    """(this pipeline's records from global step `start_batch` of the seeded stream, the
    function that makes each element of it (position, record, shard path) in the map that
    decodes it): splits within `cache_bytes` are read from memory in that map, larger ones
    each record from its shard (record_reader.py)."""
    bad = _known_bad(listed.known, on_error)
    index = shard_index.ShardIndex.of([s.whole() for s in listed.spans]).without(
        {path: [i for i, _ in rows] for path, rows in bad.items()})
    table = None
    if 0 < index.total_bytes <= options.cache_bytes:
        table = record_reader.memory_table(index)
        if table.unread:
            index = record_reader.left_out(index, table.unread, on_error)
    records = index.records
    if not records:
        raise read_errors.ShardMismatch(f"{', '.join(index.paths[:3])}: no records to read")
    repeat = True if options.repeat is None else options.repeat
    first_t = layout.first_batch(start_batch) * layout.batch_size
    count = None if repeat else layout.records_before(records)
    if count is not None and first_t >= count:
        raise read_errors.StartBeyondEnd(
            f"start_batch={start_batch} begins at position {layout.position(first_t)} of a "
            f"one-epoch stream of {records} records: nothing is left to read")

    def place(t):  # this pipeline's t-th record: its position, its record number
        position = layout.position(t)
        return position, order.record_at(position, seed=seed, records=records)

    if table is not None:
        lookup = record_reader.from_memory(index, table)

        def read(t):
            position, record = place(t)
            return (position, *lookup(record))

        return order.counted(layout, start_step=start_batch, count=count), read
    remote = any("://" in path for path in index.paths)
    return record_reader.from_files(
        index, place, first_t=first_t, count=count, on_error=on_error,
        parallelism=options.read_parallelism or (REMOTE_READS if remote else tf.data.AUTOTUNE))


def _evaluation_records(listed: _Listed, options: ReadOptions, *, on_error: str,
                        deterministic: bool) -> tf.data.Dataset:
    """(record, shard path) of every shard, in file order (repeated with options.repeat)."""
    bad = _known_bad(listed.known, on_error)
    counts = {path: listed.known.shard_records(path) for path in listed.files}
    dataset = shard_reader.records(listed.files, shard_reader.reader(bad, on_error, counts),
                                   cycle_length=options.cycle_length,
                                   num_parallel_calls=_parallel(options),
                                   deterministic=deterministic)
    return dataset.repeat() if options.repeat else dataset


# ----------------------------------------------------- parse, decode and distort, batch


def _preparation(training: bool, seed, image_size: int, options: ReadOptions,
                 label_offset: int):
    """The map from a read record to (image, label[, metadata]): training takes (position,
    record, shard) and seeds its distortions with (seed, position); evaluation (record,
    shard)."""
    boxes = training and options.preprocessing == "inception"

    def prepare(*read):
        position, record, path = read if training else (None, *read)
        fields = parsing.parse_record(record, path, num_classes=options.num_classes,
                                      label_offset=label_offset, boxes=boxes,
                                      metadata=options.with_metadata)
        example_seed = tf.stack([tf.constant(seed, tf.int64), position]) if training else None
        image = _preprocess(fields, example_seed, training, image_size, options)
        label = tf.cast(fields[schema.LABEL], tf.int32)
        if not options.with_metadata:
            return image, label
        return image, label, parsing.metadata(fields)

    return prepare


def _preprocess(fields, seed, training: bool, image_size: int, options: ReadOptions):
    encoded, output = fields[schema.ENCODED], options.output
    if options.preprocessing == "small":
        if training:
            return ops.preprocess_small_train(encoded, seed, image_size=image_size,
                                              flip=options.flip, output=output)
        return ops.preprocess_small_eval(encoded, image_size=image_size, output=output)
    if training:
        return ops.preprocess_train(encoded, fields["boxes"], seed, image_size=image_size,
                                    distortions=options.distortions,
                                    min_crop_area=options.min_crop_area, output=output)
    return ops.preprocess_eval(encoded, image_size=image_size, output=output)


def _batched(dataset: tf.data.Dataset, batch_size: int, training: bool, options: ReadOptions,
             deterministic: bool) -> tf.data.Dataset:
    drop = training if options.drop_remainder is None else options.drop_remainder
    if options.with_metadata:
        dataset = dataset.ragged_batch(batch_size, drop_remainder=drop)
    else:
        dataset = dataset.batch(batch_size, drop_remainder=drop,
                                num_parallel_calls=_parallel(options),
                                deterministic=deterministic)
    settings = tf.data.Options()
    settings.deterministic = deterministic
    return dataset.with_options(settings).prefetch(tf.data.AUTOTUNE)


def _parallel(options: ReadOptions) -> int:
    return options.num_parallel_calls or tf.data.AUTOTUNE


_MOVED = {"shuffle_buffer": "the training order is a new permutation of the whole split every "
                            "epoch, with no buffer: drop it",
          "cache": "use ReadOptions(cache_bytes=...): splits up to that size stay in memory"}


def _options(options: ReadOptions | None, removed: dict) -> ReadOptions:
    """`options`, or a clear TypeError for the keyword arguments input_fn took before
    ReadOptions gathered them."""
    for name in removed:
        if name in FIELDS:
            raise TypeError(f"input_fn(..., {name}=...) is now a field of ReadOptions: "
                            f"input_fn(..., options=inception_data.ReadOptions({name}=...))")
        if name in _MOVED:
            raise TypeError(f"input_fn(..., {name}=...): {_MOVED[name]}")
        raise TypeError(f"input_fn() got an unexpected keyword argument {name!r}")
    return options if options is not None else ReadOptions()

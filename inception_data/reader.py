"""`input_fn`: TFRecord shards -> batches of (images, labels) for Inception, with tf.data.

files (this replica's share) -> interleaved TFRecordDatasets -> shuffle -> parse with the schema
-> decode (fused decode + crop) -> distort or centre-crop -> scale to [-1, 1] -> batch ->
prefetch. Works on local paths and gs:// (TensorFlow's file I/O), on shards written by this
project and by the original Inception scripts (same keys).
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Sequence

import tensorflow as tf

from inception_data import paths
from inception_data import preprocessing as ops
from inception_data import schema

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


def _decodes(record):
    """Decodes a record's image at 1/8 scale: the entropy decoding, where damage shows, is
    complete, for less than half the cost of the real decode. Fails on what training would."""
    spec = {schema.ENCODED: tf.io.FixedLenFeature([], tf.string, default_value=b"")}
    encoded = tf.io.parse_single_example(record, spec)[schema.ENCODED]
    return tf.shape(tf.io.decode_jpeg(encoded, channels=3, ratio=8))


def _manifests(files: Sequence[str]) -> list[dict | None]:
    """The manifest.json beside each folder of `files` (None where there is none, e.g. shards
    of older builds or other tools)."""
    found = []
    for folder in sorted({os.path.dirname(f) for f in files}):
        try:
            with tf.io.gfile.GFile(os.path.join(folder, "manifest.json")) as handle:
                manifest = json.load(handle)
        except (tf.errors.OpError, ValueError):
            manifest = None
        found.append(manifest if isinstance(manifest, dict) else None)
    return found


def verified_by_build(files: Sequence[str], manifests: list | None = None) -> bool:
    """True when every file sits next to a manifest.json of `inception-data build --verify
    decode`, which decoded each stored image with TensorFlow's decoder: checking such records
    again would cost ~35% of the input pipeline's throughput for nothing. `manifests`: the
    files' _manifests, when already read."""
    return all(m is not None and m.get("settings", {}).get("verify") == "decode"
               for m in (manifests if manifests is not None else _manifests(files)))


def manifest_label_offset(files: Sequence[str], manifests: list | None = None) -> int:
    """The label convention of the shards, from their manifests: 1 = label 0 is the background
    class and the N classes are 1..N (also for shards without a manifest, the original
    scripts' format); 0 = the classes are 0..N-1 (`build --no-background`). `manifests`: the
    files' _manifests, when already read."""
    offsets = {(m or {}).get("label_offset", 1)
               for m in (manifests if manifests is not None else _manifests(files))}
    if len(offsets) > 1:
        raise ValueError(f"the files mix label conventions (label_offset {sorted(offsets)} in "
                         f"their manifests): one model cannot train on both; rebuild one of "
                         f"them with or without --no-background")
    return offsets.pop() if offsets else 1


def _checked_records(filename, on_error: str):
    """(record, filename) of one shard, in order, each checked to decode: "raise" fails naming
    the file and the record's position in it, "skip" drops it and logs the file, the position
    and how many of the file's records were skipped so far. TensorFlow cannot catch a failing
    op inside a graph, so each record's check runs in a one-element dataset whose errors are
    ignored: an empty result means it failed."""
    def outcome(index, record):
        decoded = tf.data.Dataset.from_tensors(record).map(_decodes).ignore_errors()
        flag = decoded.map(lambda _: True).concatenate(tf.data.Dataset.from_tensors(False))
        return flag.take(1).map(lambda ok: (index, record, ok))

    checked = tf.data.TFRecordDataset(filename).enumerate().flat_map(outcome)
    if on_error == "raise":
        def fail_on_bad(index, record, ok):
            check = tf.debugging.Assert(ok, [tf.strings.join([
                "input_fn: record ", tf.strings.as_string(index), " (0-based) of ", filename,
                f" does not decode: its {schema.ENCODED} is no JPEG TensorFlow reads; rebuild "
                "the shard with `inception-data build --verify decode`, or pass "
                "on_error='skip'"])])
            with tf.control_dependencies([check]):
                return tf.identity(record), filename
        return checked.map(fail_on_bad)

    def count(skipped, element):
        index, record, ok = element
        skipped += tf.cast(tf.logical_not(ok), tf.int64)

        def report():
            with tf.control_dependencies([tf.print(tf.strings.join([
                    "input_fn: skipped record ", tf.strings.as_string(index), " (0-based) of ",
                    filename, " - it does not decode; ", tf.strings.as_string(skipped),
                    " skipped in this file so far"]))]):
                return tf.constant(0)
        with tf.control_dependencies([tf.cond(ok, lambda: tf.constant(0), report)]):
            return skipped, (index, tf.identity(record), ok)

    return (checked.scan(tf.constant(0, tf.int64), count)
            .filter(lambda index, record, ok: ok)
            .map(lambda index, record, ok: (record, filename)))


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
             deterministic: bool | None = None, cache: bool = False,
             num_parallel_calls: int = tf.data.AUTOTUNE, distortions: str | None = "fast",
             input_context=None, num_classes: int | None = None,
             label_offset: int | None = None,
             with_metadata: bool = False, cycle_length: int = 16,
             preprocessing: str = "inception", flip: bool = True,
             min_crop_area: float = 0.05, on_error: str = "raise") -> tf.data.Dataset:
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
        seed: with `deterministic=True`, two runs give identical batches (stateless random ops,
            seeded shuffles, deterministic interleave).
        deterministic: default False when training (full speed), True otherwise.
        cache: cache parsed records in memory after the first epoch (small datasets).
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
        on_error: a record whose image does not decode: "raise" (an error naming the shard
            file and the record's position) or "skip" (dropped, each logged with file and
            position, and counted per file). Records are checked with a 1/8-scale decode,
            except in shards built with `--verify decode` (see verified_by_build), whose images
            all decode.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; expected one of {ON_ERROR}")
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing={preprocessing!r}; expected one of {PREPROCESSING}")
    repeat = is_training if repeat is None else repeat
    drop_remainder = is_training if drop_remainder is None else drop_remainder
    deterministic = (not is_training) if deterministic is None else deterministic
    files = shard_files(list_files(file_pattern), input_context)
    manifests = _manifests(files)  # read once (gs:// reads are slow) for both questions
    if label_offset is None:
        label_offset = manifest_label_offset(files, manifests)

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if is_training:
        dataset = dataset.shuffle(len(files), seed=seed)
    dataset = dataset.interleave(
        (lambda f: tf.data.TFRecordDataset(f).map(lambda r: (r, f)))
        if verified_by_build(files, manifests)
        else (lambda f: _checked_records(f, on_error)),
        cycle_length=min(cycle_length, len(files)), num_parallel_calls=num_parallel_calls,
        deterministic=deterministic)
    if cache:
        dataset = dataset.cache()
    if is_training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed)
    if repeat:
        dataset = dataset.repeat()
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
    if with_metadata:
        dataset = dataset.ragged_batch(batch_size, drop_remainder=drop_remainder)
    else:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder,
                                num_parallel_calls=num_parallel_calls,
                                deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


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

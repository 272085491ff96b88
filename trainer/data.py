"""What the trainer knows about a dataset, and its input pipelines (through `input_fn`).

In: a folder written by `inception-data build` / `imagenet` (shards, labels.txt,
manifest.json). Out: class and example counts, the preprocessing preset that fits its images
(full-size photos: the Inception crops; MNIST/CIFAR-size images: pad-and-crop), and
distributed datasets of (images, targets) for Keras.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import tensorflow as tf

import inception_data
from inception_data import labels as labels_lib
from inception_data import paths, read_errors, schema

SMALL_IMAGES = 64  # images no larger than this on both sides get the "small" preset
DIGITS = tuple(str(d) for d in range(10))


class DataError(RuntimeError):
    """The data folder is not what the trainer needs; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    data_dir: str
    names: tuple[str, ...]  # label i + label_offset is names[i]
    train_examples: int
    validation_examples: int
    image_size: int  # the longer side of the first training image (a probe, not a census)
    label_offset: int = labels_lib.WITH_BACKGROUND  # the manifest's: 1 = label 0 is background

    @property
    def num_classes(self) -> int:
        """Outputs of a model: the labels, plus the background class when label 0 is it (the
        one place the trainer decides this)."""
        return len(self.names) + self.label_offset

    @property
    def preprocessing(self) -> str:
        return "small" if self.image_size <= SMALL_IMAGES else "inception"

    @property
    def flip(self) -> bool:
        """Mirror images in training, except digits (a mirrored 2 is not a 2)."""
        return tuple(sorted(self.names)) != DIGITS

    def pattern(self, split: str) -> str:
        return os.path.join(paths.glob_escape(self.data_dir), f"{split}-*")


def load(data_dir: str) -> DatasetInfo:
    """Reads labels.txt and manifest.json and probes the first training record's size."""
    try:
        labels_path = os.path.join(data_dir, "labels.txt")
        with tf.io.gfile.GFile(labels_path) as handle:
            names = tuple(labels_lib.parse_labels(handle.read(), labels_path).names)
        with tf.io.gfile.GFile(os.path.join(data_dir, "manifest.json")) as handle:
            manifest = json.load(handle)
    except tf.errors.NotFoundError as err:
        raise DataError(f"{data_dir} lacks labels.txt or manifest.json; point --data-dir at the "
                        f"output of `inception-data build` ({err})") from None
    splits = manifest["splits"]
    written = {name: splits.get(name, {}).get("written", 0) for name in ("train", "validation")}
    return DatasetInfo(data_dir, names, written["train"], written["validation"],
                       _probe_size(os.path.join(paths.glob_escape(data_dir), "train-*")),
                       manifest.get("label_offset", labels_lib.WITH_BACKGROUND))


def _probe_size(pattern: str) -> int:
    # Imported here, not at the top: importing the reader builds TF constants, which fixes the
    # devices before make_strategy can split the CPU into towers.
    from inception_data import reader

    try:
        files = reader.list_files(pattern)
    except FileNotFoundError as err:
        raise DataError(f"{err}; build the training split first") from None
    spec = {key: schema.parse_spec()[key] for key in (schema.HEIGHT, schema.WIDTH)}
    for record in tf.data.TFRecordDataset(files[:1]).take(1):
        fields = tf.io.parse_single_example(record, spec)
        return int(max(fields[schema.HEIGHT], fields[schema.WIDTH]))
    raise DataError(f"{files[0]} holds no records")


def one_hot_targets(labels, num_classes: int, outputs: int):
    """Labels -> one target per model output (label smoothing needs one-hot targets)."""
    one_hot = tf.one_hot(labels, num_classes)
    return one_hot if outputs == 1 else (one_hot,) * outputs


def datasets(info: DatasetInfo, strategy, *, training: bool, global_batch: int,
             image_size: int, outputs: int, seed: int | None = None, start_step: int = 0,
             distortions: str | None = "fast", min_crop_area: float = 0.05,
             on_error: str):
    """A distributed dataset of (images, targets): training (distorted, repeated, from global
    step `start_step` of the stream of `seed`) or the whole validation split once (central
    crop, or the plain image for small images). `on_error`: input_fn's, for records that do
    not decode and damaged shards (no default: every dataset of a run reads the same way; the
    preview once read with "raise" under --on-error skip)."""
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise DataError(f"--batch-size {global_batch} does not split evenly across {replicas} "
                        f"towers; use a multiple of {replicas}")

    read = inception_data.ReadOptions(
        num_classes=len(info.names), label_offset=info.label_offset, distortions=distortions,
        preprocessing=info.preprocessing, flip=info.flip, min_crop_area=min_crop_area)

    def make(context):
        dataset = inception_data.input_fn(
            info.pattern("train" if training else "validation"), is_training=training,
            batch_size=global_batch // replicas if training else global_batch,
            image_size=image_size, seed=seed, start_batch=start_step if training else 0,
            on_error=on_error, input_context=context if training else None, options=read)
        return dataset.map(lambda images, labels: (
            images, one_hot_targets(labels, info.num_classes, outputs)))

    if not training:  # Keras spreads each batch over the towers: every example exactly once
        dataset = make(None)
        # and across workers, each worker the batches of its turn (by batch, not by file: any
        # number of validation shards splits exactly); the metrics are summed across workers
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        return dataset.with_options(options)
    return strategy.distribute_datasets_from_function(make)


class Counted:
    """A finite dataset that counts the examples it delivers (evaluation with --on-error skip
    says how many of the split's records it could not use): `reset()`, iterate, `count()`."""

    def __init__(self, dataset):
        self._examples = tf.Variable(0, dtype=tf.int64, trainable=False)

        def count(images, targets):
            self._examples.assign_add(tf.cast(tf.shape(images)[0], tf.int64))
            return images, targets

        self.dataset = dataset.map(count)

    def reset(self) -> None:
        self._examples.assign(0)

    def count(self) -> int:
        return int(self._examples.numpy())


def read_error(err, pattern: str) -> str:
    """A TensorFlow error met while reading `pattern`, as one line: input_fn's own for a shard
    that is damaged or does not open (read_errors keeps the typed error behind it); otherwise
    TensorFlow's reason and how to find a record that does not decode (input_fn cannot name
    it: TensorFlow's decoder fails inside the pipeline)."""
    typed = read_errors.from_tf_error(err)
    if typed is not None:
        return f"reading {pattern} failed: {typed.advice()}"
    lines = [line.strip() for line in err.message.splitlines() if line.strip()
             and not line.strip().startswith(("[[", "Detected at", "<stack", "Graph execution"))]
    reason = re.sub(r"^Error in user-defined function .*?Iterator::\S+: |\s*\[Op:.*$", "",
                    lines[-1] if lines else type(err).__name__)
    reason = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", reason)
    return (f"reading {pattern} failed: {reason.rstrip('.')}. If a record "
            f"does not decode, `inception-data inspect --verify --save-verdict '{pattern}'` "
            f"names it (shard and record) and saves the verdict, after which --on-error skip "
            f"leaves exactly such records out")

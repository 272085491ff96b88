"""How well the training order mixes a split whose shards each hold one class (users' own
TFRecords written class by class): the mean class entropy of a batch, against a uniform
permutation of the whole split, side by side in one run.

The shards: `--classes` classes of `--per-class` tiny records each (an 8x8 JPEG and the label),
one class per shard, written with the project's Example writer and TFRecord framing. Orders:

- input_fn: the training order (inception_data/order.py), read through input_fn itself, one
  epoch from a seed;
- before: what input_fn did until this order (as it is in git before b0d8485): the shard list
  shuffled, 16 shards interleaved, a 10,000-record shuffle buffer;
- perfect: a uniform permutation of the labels (numpy).

Usage: python benchmarks/order_quality.py [--classes 200] [--per-class 1000] [--batch 32]
"""

import argparse
import io
import pathlib
import tempfile

import numpy as np
import tensorflow as tf
from PIL import Image

import inception_data
from inception_data import ReadOptions, order, schema, tfrecord


def write_one_class_shards(folder: pathlib.Path, classes: int, per_class: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 60, 30)).save(buffer, "JPEG")
    image = buffer.getvalue()
    for label in range(classes):
        path = folder / f"train-{label:05d}-of-{classes:05d}"
        with open(path, "wb") as handle:
            for i in range(per_class):
                record = schema.ImageRecord(image, 8, 8, label + 1, f"class{label}",
                                            f"{label}-{i}.jpg")
                tfrecord.write_framed(handle, schema.example_pieces(record))
    return str(folder / "train-*")


def input_fn_labels(pattern: str, records: int, batch: int) -> np.ndarray:
    options = ReadOptions(repeat=False, drop_remainder=False, distortions=None)
    dataset = inception_data.input_fn(pattern, is_training=True, batch_size=batch, image_size=8,
                                      seed=1, options=options)
    return np.concatenate([labels.numpy() for _, labels in dataset])[:records]


def before_labels(pattern: str, records: int) -> np.ndarray:
    """The order input_fn made before: shuffled shard list, 16 shards interleaved, a
    10,000-record shuffle buffer."""
    spec = {schema.LABEL: tf.io.FixedLenFeature([], tf.int64)}
    files = sorted(tf.io.gfile.glob(pattern))
    dataset = (tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=1)
               .interleave(tf.data.TFRecordDataset, cycle_length=16)
               .shuffle(10_000, seed=1)
               .map(lambda record: tf.io.parse_single_example(record, spec)[schema.LABEL]))
    return np.fromiter(dataset.as_numpy_iterator(), np.int64, count=records)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    records = args.classes * args.per_class
    pattern = write_one_class_shards(pathlib.Path(tempfile.mkdtemp(prefix="order-quality-")),
                                     args.classes, args.per_class)
    perfect = order.batch_entropy(np.random.default_rng(0).permutation(
        np.repeat(np.arange(args.classes), args.per_class)), args.batch)
    print(f"{args.classes} shards of one class, {args.per_class} records each; mean class "
          f"entropy of a batch of {args.batch}, bits (a uniform permutation: {perfect:.3f})")
    for name, labels in (("input_fn", input_fn_labels(pattern, records, args.batch)),
                         ("before (16 shards, 10,000 buffer)", before_labels(pattern, records))):
        assert sorted(np.bincount(labels)[1:]) == [args.per_class] * args.classes, name
        entropy = order.batch_entropy(labels, args.batch)
        print(f"{name:36s} {entropy:.3f} bits = {entropy / perfect:.3f} of a uniform "
              f"permutation's")


if __name__ == "__main__":
    main()

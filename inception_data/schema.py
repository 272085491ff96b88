"""THE tf.train.Example schema of inception-data: feature keys, writing and parsing.

In: a plain dict of Python values for one image (`ImageRecord`). Out: serialized
`tf.train.Example` bytes, and the parse spec the reader uses to turn them back into tensors.

The keys and types are those of the original Inception scripts (build_image_data.py and
build_imagenet_data.py), so shards written here are read by existing Inception training code and
shards written by those scripts are read by `inception_data.input_fn`. This module is the only
place in the project that spells a feature key.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from inception_data import example_proto

SCHEMA_VERSION = 1

# Feature keys, exactly as the original scripts wrote them.
ENCODED = "image/encoded"
HEIGHT = "image/height"
WIDTH = "image/width"
COLORSPACE = "image/colorspace"
CHANNELS = "image/channels"
FORMAT = "image/format"
FILENAME = "image/filename"
LABEL = "image/class/label"
TEXT = "image/class/text"
SYNSET = "image/class/synset"
BBOX_XMIN = "image/object/bbox/xmin"
BBOX_YMIN = "image/object/bbox/ymin"
BBOX_XMAX = "image/object/bbox/xmax"
BBOX_YMAX = "image/object/bbox/ymax"
BBOX_LABEL = "image/object/bbox/label"
BBOX_KEYS = (BBOX_YMIN, BBOX_XMIN, BBOX_YMAX, BBOX_XMAX)  # the order tf.image box ops expect

REQUIRED_KEYS = (ENCODED, HEIGHT, WIDTH, LABEL)
# The keys to_example writes: every record, and an ImageNet record (synset given).
GENERIC_KEYS = (ENCODED, HEIGHT, WIDTH, COLORSPACE, CHANNELS, FORMAT, FILENAME, LABEL, TEXT)
IMAGENET_KEYS = GENERIC_KEYS + (SYNSET, BBOX_XMIN, BBOX_YMIN, BBOX_XMAX, BBOX_YMAX, BBOX_LABEL)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """Everything one Example holds. `encoded` is always an RGB-decodable JPEG."""

    encoded: bytes
    height: int
    width: int
    label: int
    text: str
    filename: str
    synset: str | None = None  # ImageNet only
    boxes: Sequence[tuple[float, float, float, float]] = ()  # (xmin, ymin, xmax, ymax), in [0, 1]


def _bytes(values):
    return example_proto.Feature(bytes_list=example_proto.BytesList(value=values))


def _ints(values):
    return example_proto.Feature(int64_list=example_proto.Int64List(value=values))


def _floats(values):
    return example_proto.Feature(float_list=example_proto.FloatList(value=values))


def _name_bytes(name: str) -> bytes:
    """UTF-8 bytes of a file or class name. A name that is not valid UTF-8 on disk arrives as a
    str with surrogate escapes (os.scandir, os.fsdecode); it is stored as its original bytes."""
    return name.encode("utf-8", "surrogateescape")


def to_example(record: ImageRecord) -> bytes:
    """Serializes `record` to tf.train.Example bytes, deterministically (map keys sorted)."""
    feature = {
        ENCODED: _bytes([record.encoded]),
        HEIGHT: _ints([record.height]),
        WIDTH: _ints([record.width]),
        COLORSPACE: _bytes([b"RGB"]),
        CHANNELS: _ints([3]),
        FORMAT: _bytes([b"JPEG"]),
        FILENAME: _bytes([_name_bytes(record.filename)]),
        LABEL: _ints([record.label]),
        TEXT: _bytes([_name_bytes(record.text)]),
    }
    if record.synset is not None:
        feature[SYNSET] = _bytes([record.synset.encode()])
        columns = list(zip(*record.boxes)) or [(), (), (), ()]
        for key, column in zip((BBOX_XMIN, BBOX_YMIN, BBOX_XMAX, BBOX_YMAX), columns):
            feature[key] = _floats(column)
        feature[BBOX_LABEL] = _ints([record.label] * len(record.boxes))
    example = example_proto.Example(features=example_proto.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def parse_spec(with_boxes: bool = True) -> dict:
    """The tf.io.parse_single_example spec for records written here or by the original scripts.

    Optional keys get defaults, so shards without ImageNet fields (build_image_data.py output,
    `inception-data build` output) parse with the same spec.
    """
    import tensorflow as tf

    spec = {
        ENCODED: tf.io.FixedLenFeature([], tf.string),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        WIDTH: tf.io.FixedLenFeature([], tf.int64),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        COLORSPACE: tf.io.FixedLenFeature([], tf.string, default_value=b"RGB"),
        CHANNELS: tf.io.FixedLenFeature([], tf.int64, default_value=3),
        FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=b"JPEG"),
        FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=b""),
        TEXT: tf.io.FixedLenFeature([], tf.string, default_value=b""),
        SYNSET: tf.io.FixedLenFeature([], tf.string, default_value=b""),
    }
    if with_boxes:
        for key in BBOX_KEYS:
            spec[key] = tf.io.VarLenFeature(tf.float32)
        spec[BBOX_LABEL] = tf.io.VarLenFeature(tf.int64)
    return spec


def from_example(serialized: bytes) -> dict:
    """Parses Example bytes into a dict of plain Python values (for tools and tests, not tf.data).

    Raises:
        ValueError: a required key is missing; the message names it.
    """
    example = example_proto.Example.FromString(serialized)
    features = example.features.feature
    missing = [key for key in REQUIRED_KEYS if key not in features]
    if missing:
        raise ValueError(f"record lacks required feature(s) {missing}; present: {sorted(features)}")
    out = {}
    for key, feature in features.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value) if kind else []
        scalar = key not in BBOX_KEYS and key != BBOX_LABEL
        out[key] = values[0] if scalar and len(values) == 1 else values
    return out

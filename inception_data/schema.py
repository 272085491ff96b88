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
import functools
import struct
from collections.abc import Sequence

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


def _name_bytes(name: str) -> bytes:
    """UTF-8 bytes of a file or class name. A name that is not valid UTF-8 on disk arrives as a
    str with surrogate escapes (os.scandir, os.fsdecode); it is stored as its original bytes."""
    return name.encode("utf-8", "surrogateescape")


# --- the wire format, written directly -------------------------------------------------------
# Building protobuf messages copies the encoded image into a BytesList and again when
# serializing (~110 us of the ~330 us per ImageNet image a build spends, measured with
# cProfile); writing the same wire bytes directly copies it once. The bytes are exactly what
# a tf.train.Example's SerializeToString(deterministic=True) gives (map entries sorted by key;
# packed int64 and float lists), checked by tests/test_schema.py against TensorFlow's classes.
_FLOATS = struct.Struct("<f")


_SMALL_VARINTS = tuple(bytes((i,)) for i in range(0x80))  # one byte each: most lengths, labels


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]
    value &= (1 << 64) - 1  # negative int64s are ten-byte two's complement varints
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_BYTES_LIST, _FLOAT_LIST, _INT64_LIST = 0x0A, 0x12, 0x1A  # Feature's oneof fields 1, 2, 3
_VALUE = 0x0A  # field 1 of BytesList / FloatList / Int64List
_ENTRY_KEY, _ENTRY_VALUE = 0x0A, 0x12  # a map entry's fields 1 and 2
_FEATURE_ENTRY = _FEATURES = 0x0A  # Features.feature, Example.features


def _delimited(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2) with a one-byte tag (small payloads: the image
    never goes through here, see _encoded_entry_header)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _bytes_wire(values) -> bytes:
    return _delimited(_BYTES_LIST, b"".join(_delimited(_VALUE, v) for v in values))


def _ints_wire(values) -> bytes:
    packed = b"".join(_varint(v) for v in values)
    return _delimited(_INT64_LIST, _delimited(_VALUE, packed) if values else b"")


def _int_wire(value: int) -> bytes:
    """_ints_wire([value]), the common case, without the lists."""
    packed = _varint(value)
    return b"".join((bytes((_INT64_LIST,)), _varint(len(packed) + 2), bytes((_VALUE,)),
                     _varint(len(packed)), packed))


@functools.lru_cache(maxsize=4096)
def _text_wire(text: str) -> bytes:
    """A class name's BytesList (the same few per build: cached)."""
    return _bytes_wire([_name_bytes(text)])


def _floats_wire(values) -> bytes:
    packed = b"".join(_FLOATS.pack(v) for v in values)
    return _delimited(_FLOAT_LIST, _delimited(_VALUE, packed) if values else b"")


@functools.cache
def _key_field(key: str) -> bytes:
    return _delimited(_ENTRY_KEY, key.encode())


def _entry(key: str, feature: bytes) -> bytes:
    """One Features.feature map entry."""
    return _delimited(_FEATURE_ENTRY, _key_field(key) + _delimited(_ENTRY_VALUE, feature))


# entries that are the same in every record
_CONSTANT_ENTRIES = {COLORSPACE: _entry(COLORSPACE, _bytes_wire([b"RGB"])),
                     CHANNELS: _entry(CHANNELS, _ints_wire([3])),
                     FORMAT: _entry(FORMAT, _bytes_wire([b"JPEG"]))}
_ENCODED_KEY = _delimited(_ENTRY_KEY, ENCODED.encode())


def _encoded_entry_header(size: int) -> bytes:
    """The bytes of the image/encoded entry that come before an image of `size` bytes; the
    image itself follows (copied once, by to_example's join)."""
    value = 1 + len(_varint(size)) + size  # BytesList.value
    feature = 1 + len(_varint(value)) + value  # Feature.bytes_list
    entry = len(_ENCODED_KEY) + 1 + len(_varint(feature)) + feature
    return b"".join((bytes((_FEATURE_ENTRY,)), _varint(entry), _ENCODED_KEY,
                     bytes((_ENTRY_VALUE,)), _varint(feature), bytes((_BYTES_LIST,)),
                     _varint(value), bytes((_VALUE,)), _varint(size)))


def _small_entries(record: ImageRecord) -> dict[str, bytes]:
    """The entries other than the image, by key."""
    entries = dict(_CONSTANT_ENTRIES)
    entries[HEIGHT] = _entry(HEIGHT, _int_wire(record.height))
    entries[WIDTH] = _entry(WIDTH, _int_wire(record.width))
    entries[FILENAME] = _entry(FILENAME, _bytes_wire([_name_bytes(record.filename)]))
    entries[LABEL] = _entry(LABEL, _int_wire(record.label))
    entries[TEXT] = _entry(TEXT, _text_wire(record.text))
    if record.synset is not None:
        entries[SYNSET] = _entry(SYNSET, _bytes_wire([record.synset.encode()]))
        columns = list(zip(*record.boxes)) or [(), (), (), ()]
        for key, column in zip((BBOX_XMIN, BBOX_YMIN, BBOX_XMAX, BBOX_YMAX), columns):
            entries[key] = _entry(key, _floats_wire(column))
        entries[BBOX_LABEL] = _entry(BBOX_LABEL, _ints_wire([record.label] * len(record.boxes)))
    return entries


@functools.cache
def _key_order(keys: frozenset) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The keys before and after image/encoded, in the sorted order of the map's entries."""
    ordered = sorted(keys)
    return (tuple(k for k in ordered if k < ENCODED), tuple(k for k in ordered if k > ENCODED))


def example_pieces(record: ImageRecord) -> tuple[bytes, bytes, bytes]:
    """to_example's bytes in three pieces - (what precedes the image, the image, what follows)
    - so that a writer can frame and write them without copying the image again."""
    entries = _small_entries(record)
    before_keys, after_keys = _key_order(frozenset(entries))
    before = b"".join([entries[key] for key in before_keys])
    after = b"".join([entries[key] for key in after_keys])
    header = _encoded_entry_header(len(record.encoded))
    total = len(before) + len(header) + len(record.encoded) + len(after)
    return (b"".join((bytes((_FEATURES,)), _varint(total), before, header)), record.encoded,
            after)


def to_example(record: ImageRecord) -> bytes:
    """Serializes `record` to tf.train.Example bytes, deterministically (map keys sorted)."""
    return b"".join(example_pieces(record))


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

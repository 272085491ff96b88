"""The parse stage of the reader: a serialized tf.train.Example -> the tensors `input_fn` needs.

Only the keys used are parsed (the image and label; the boxes for training crops; the
metadata on request), with the schema's spec. A record without the image or the label, or with
a label outside the shards' convention, fails with an error that names the values and the shard.
"""

from __future__ import annotations

import tensorflow as tf

from inception_data import schema

_MISSING = -1


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


def parse_record(serialized, filename, *, num_classes: int | None = None,
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


def metadata(fields) -> dict:
    return {"filename": fields[schema.FILENAME], "text": fields[schema.TEXT],
            "synset": fields[schema.SYNSET], "height": fields[schema.HEIGHT],
            "width": fields[schema.WIDTH], "boxes": fields["boxes"],
            "source_file": fields["source_file"]}

"""Writes golden-original-00000-of-00001: two records in the exact layout of the original
Inception writer (build_imagenet_data.py's _convert_to_example: the same keys and types, built
with plain tf.train.Example code, written by tf.io.TFRecordWriter). Committed, so a change that
breaks reading existing data fails tests/test_reader.py. Re-run only to change the golden data:

    python tests/data/make_golden.py
"""

import io
import pathlib

import numpy as np
import tensorflow as tf
from PIL import Image

HERE = pathlib.Path(__file__).parent


def _jpeg(width, height, value):
    pixels = np.full((height, width, 3), value, dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _example(data, height, width, label, synset, text, boxes, filename):
    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def raw(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    xmin, ymin, xmax, ymax = (list(c) for c in zip(*boxes)) if boxes else ([], [], [], [])
    return tf.train.Example(features=tf.train.Features(feature={
        "image/height": ints([height]), "image/width": ints([width]),
        "image/colorspace": raw(b"RGB"), "image/channels": ints([3]),
        "image/class/label": ints([label]), "image/class/synset": raw(synset),
        "image/class/text": raw(text),
        "image/object/bbox/xmin": floats(xmin), "image/object/bbox/xmax": floats(xmax),
        "image/object/bbox/ymin": floats(ymin), "image/object/bbox/ymax": floats(ymax),
        "image/object/bbox/label": ints([label] * len(boxes)),
        "image/format": raw(b"JPEG"), "image/filename": raw(filename),
        "image/encoded": raw(data)}))


def main():
    records = [
        _example(_jpeg(24, 16, 200), 16, 24, 1, b"n01440764", b"tench, Tinca tinca",
                 [(0.068, 0.3413, 0.86, 0.8133)], b"n01440764_96.JPEG"),
        _example(_jpeg(12, 20, 40), 20, 12, 1000, b"n15075141",
                 b"toilet tissue, toilet paper, bathroom tissue", [], b"n15075141_1.JPEG"),
    ]
    with tf.io.TFRecordWriter(str(HERE / "golden-original-00000-of-00001")) as writer:
        for example in records:
            writer.write(example.SerializeToString())


if __name__ == "__main__":
    main()

"""A baseline converter that works the way the original build_image_data.py did, for the
benchmark only (written for this project from the original's described behaviour, not copied):

* one TensorFlow graph and session shared by as many Python threads as cores, each thread owning
  a contiguous range of shards;
* every image decoded with TensorFlow just to learn its height and width;
* PNGs (detected from the file name, as the original did) re-encoded to JPEG by TensorFlow;
* records written with tf.io.TFRecordWriter.

Usage: python original_style_build.py TRAIN_DIR OUTPUT_DIR SHARDS THREADS
"""

import os
import random
import sys
import threading

import tensorflow as tf


class _Coder:
    """The original's ImageCoder: graph ops fed through placeholders in one shared session."""

    def __init__(self):
        graph = tf.Graph()
        with graph.as_default():
            self._png = tf.compat.v1.placeholder(tf.string)
            self._png_to_jpeg = tf.io.encode_jpeg(tf.io.decode_png(self._png, channels=3),
                                                  format="rgb", quality=100)
            self._jpeg = tf.compat.v1.placeholder(tf.string)
            self._decoded = tf.io.decode_jpeg(self._jpeg, channels=3)
        self._session = tf.compat.v1.Session(graph=graph)

    def png_to_jpeg(self, data):
        return self._session.run(self._png_to_jpeg, {self._png: data})

    def decode_jpeg(self, data):
        return self._session.run(self._decoded, {self._jpeg: data})


def _example(data, label, text, filename, height, width):
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/height": i(height), "image/width": i(width), "image/colorspace": b(b"RGB"),
        "image/channels": i(3), "image/class/label": i(label), "image/class/text": b(text),
        "image/format": b(b"JPEG"), "image/filename": b(filename), "image/encoded": b(data),
    })).SerializeToString()


def _worker(coder, files, ranges, out_dir, shards):
    for shard in ranges:
        chunk = files[shard::shards]
        path = os.path.join(out_dir, f"train-{shard:05d}-of-{shards:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for filename, label, text in chunk:
                data = tf.io.gfile.GFile(filename, "rb").read()
                if filename.lower().endswith(".png"):
                    data = coder.png_to_jpeg(data)
                height, width, _ = coder.decode_jpeg(data).shape
                writer.write(_example(data, label, text.encode(),
                                      os.path.basename(filename).encode(), height, width))


def main(train_dir, out_dir, shards, threads):
    shards, threads = int(shards), int(threads)
    labels = sorted(os.listdir(train_dir))
    files = [(os.path.join(train_dir, name, f), index, name)
             for index, name in enumerate(labels, start=1)
             for f in tf.io.gfile.listdir(os.path.join(train_dir, name))]
    random.Random(12345).shuffle(files)
    os.makedirs(out_dir, exist_ok=True)
    coder = _Coder()
    per_thread = [list(range(t, shards, threads)) for t in range(threads)]
    workers = [threading.Thread(target=_worker, args=(coder, files, r, out_dir, shards))
               for r in per_thread]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(f"wrote {len(files)} images")


if __name__ == "__main__":
    main(*sys.argv[1:])

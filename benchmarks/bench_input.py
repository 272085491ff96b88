"""Input-pipeline throughput, side by side on the same shards in one run, with ratios.

Pipelines: decode only (the floor: parse + full JPEG decode), the original recipe built the
straightforward way (decode the full image, convert to float, sample a crop, slice, resize, TF
colour ops, as image_processing.py did), input_fn with distortions="inception", input_fn's fast
default, and input_fn for evaluation. Shards are built from the 1000 real ImageNet samples in
../shared/data (median 500x375, ~0.19 megapixels) unless --pattern is given.

Usage: python benchmarks/bench_input.py [--pattern 'out/train-*'] [--batches 40]
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

import tensorflow as tf

from inception_data import preprocessing, reader, schema, throughput

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def build_shards(workdir: pathlib.Path) -> str:
    tree = workdir / "tree"
    for sample in sorted(SAMPLES.iterdir()):
        target = tree / sample.name.split("_")[0] / sample.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(sample, target)
    out = workdir / "out"
    subprocess.run([sys.executable, "-m", "inception_data_cli", "build", "--no-progress",
                    "--train-dir", str(tree), "--output-dir", str(out), "--shards", "8"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return str(out / "train-*")


def _records(pattern, batch_size, fn):
    files = reader.list_files(pattern)
    spec = schema.parse_spec()
    return (tf.data.Dataset.from_tensor_slices(files).repeat()
            .interleave(tf.data.TFRecordDataset, cycle_length=len(files),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .map(lambda r: fn(tf.io.parse_single_example(r, spec)),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def decode_only(pattern, batch_size, image_size):
    return _records(pattern, batch_size,
                    lambda f: (tf.shape(tf.io.decode_jpeg(f[schema.ENCODED], channels=3)),))


def original_recipe(pattern, batch_size, image_size):
    """image_processing.py's way: full decode, float, crop, resize, stateful TF colour ops.

    Like the original, the resize method cycles through bilinear, nearest, bicubic and area and
    the colour ops run in one of two orders (it picked both by preprocessing thread,
    `thread_id % 4` and `thread_id % 2`, so each was used equally; here each image draws them).
    """
    def fn(fields):
        image = tf.image.convert_image_dtype(
            tf.io.decode_jpeg(fields[schema.ENCODED], channels=3), tf.float32)
        boxes = tf.stack([tf.sparse.to_dense(fields[k]) for k in schema.BBOX_KEYS], -1)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image), tf.reshape(boxes, [1, -1, 4]), min_object_covered=0.1,
            aspect_ratio_range=(0.75, 1.33), area_range=(0.05, 1.0), max_attempts=100,
            use_image_if_no_bounding_boxes=True)
        image = tf.slice(image, begin, size)
        method = tf.random.uniform([], 0, len(preprocessing.RESIZE_METHODS), tf.int32)
        image = tf.switch_case(method, [
            lambda m=m: tf.image.resize(image, [image_size, image_size], method=m)
            for m in preprocessing.RESIZE_METHODS])
        image = tf.image.random_flip_left_right(image)

        def colour(order):
            image_ = tf.image.random_brightness(image, max_delta=32.0 / 255.0)
            if order == 0:
                image_ = tf.image.random_saturation(image_, lower=0.5, upper=1.5)
                image_ = tf.image.random_hue(image_, max_delta=0.2)
                return tf.image.random_contrast(image_, lower=0.5, upper=1.5)
            image_ = tf.image.random_contrast(image_, lower=0.5, upper=1.5)
            image_ = tf.image.random_saturation(image_, lower=0.5, upper=1.5)
            return tf.image.random_hue(image_, max_delta=0.2)

        image = tf.cond(tf.random.uniform([]) < 0.5, lambda: colour(0), lambda: colour(1))
        return (preprocessing.to_unit_range(tf.clip_by_value(image, 0.0, 1.0)),)
    return _records(pattern, batch_size, fn)


def ours(**kwargs):
    def make(pattern, batch_size, image_size):
        return reader.input_fn(pattern, batch_size=batch_size, image_size=image_size,
                               repeat=True, **kwargs)
    return make


PIPELINES = {
    "decode only (floor)": decode_only,
    "original recipe, straightforward": original_recipe,
    'input_fn distortions="inception"': ours(is_training=True, distortions="inception"),
    "input_fn fast default": ours(is_training=True),
    "input_fn eval": ours(is_training=False),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=299)
    args = parser.parse_args()
    pattern = args.pattern or build_shards(pathlib.Path(tempfile.mkdtemp(prefix="bench-input-")))
    cores = os.cpu_count() or 1
    samples = {name: [] for name in PIPELINES}
    for _ in range(args.rounds):  # interleaved rounds, median: this machine's speed wanders
        for name, make in PIPELINES.items():
            dataset = make(pattern, args.batch_size, args.image_size)
            samples[name].append(throughput.images_per_second(dataset, batches=args.batches)[0])
    rates = {name: statistics.median(values) for name, values in samples.items()}
    for name, rate in rates.items():
        spread = ", ".join(f"{v:.0f}" for v in samples[name])
        print(f"{name:34s} {rate:8.1f} images/s {rate / cores:8.1f} per core   (rounds: "
              f"{spread})", flush=True)
    base, floor = rates["original recipe, straightforward"], rates["decode only (floor)"]
    print(f"\nfast default / original recipe      x{rates['input_fn fast default'] / base:.2f}"
          f"   (target >= 2)")
    print(f"fast default / decode only          x{rates['input_fn fast default'] / floor:.2f}"
          f"   (target >= 0.6)")
    inception = rates['input_fn distortions="inception"']
    print(f"inception / original recipe         x{inception / base:.2f}   (target >= 1)")
    print(f"eval / decode only                  x{rates['input_fn eval'] / floor:.2f}"
          f"   (target >= 1)")


if __name__ == "__main__":
    main()

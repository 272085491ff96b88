"""Input-pipeline speed, side by side on the same shards in one run: images/s and the batch
times (median, p99, slowest) of each pipeline, with the ratios the project targets.

The shards: a flowers-size dataset (2,934 records in 5 classes, 4 shards, like the flower photos
of the original walkthrough) of the real ImageNet samples in ../shared/data (median 500x375,
cycled), built twice from the same tree: with default options (what users get, `--verify
fast`) and with `--verify decode`. `--records 12000` makes a dataset larger than input_fn's
shuffle buffer (10,000), whose records are not cached. `--pattern` measures your own shards.

Pipelines: decode only (the floor: parse + full JPEG decode, no shuffle), decode + one bilinear
resize to the output size + batch (the floor of any pipeline of float images that size), the
original recipe
built the straightforward way (image_processing.py: full decode, float, sampled crop, resize,
TF colour ops), input_fn training on the default build (on_error "raise", the default, and
"skip"), input_fn training on the --verify decode build, input_fn evaluation. Training
pipelines run `--batches` batches after 5 warm-up ones: 200 of 32 are 2+ epochs of 2,934
records, so each run crosses epoch boundaries, where the slowest batch shows a stall.
Then the read stage alone (records, no decode): a plain sequential TFRecordDataset against
training's reads by record number in the seeded order (inception_data/order.py and
record_reader.py), its cost per record as a share of the CPU a training image takes. Last, what
resuming costs: seconds from calling input_fn with `start_batch` at 10% and at 90% of an epoch
(and ten epochs on) to its first batch.

Usage: python benchmarks/bench_input.py [--records 2934] [--batches 200] [--rounds 3]
                                        [--pattern 'out/train-*']
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import tensorflow as tf

from inception_data import order, preprocessing, reader, schema, shard_set, throughput
from inception_data.read_options import ReadOptions

SAMPLES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-samples"


def build_shards(workdir: pathlib.Path, records: int, shards: int) -> dict[str, str]:
    """{build name: pattern} of a default and a --verify decode build of the same tree."""
    samples = sorted(SAMPLES.iterdir())
    tree = workdir / "tree"
    for i in range(records):
        target = tree / f"class{i % 5}" / f"{i:05d}-{samples[i % len(samples)].name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(samples[i % len(samples)], target)
    patterns = {}
    for name, extra in (("default", []), ("verify decode", ["--verify", "decode"])):
        out = workdir / name.replace(" ", "-")
        subprocess.run([sys.executable, "-m", "inception_data_cli", "build", "--no-progress",
                        "--train-dir", str(tree), "--output-dir", str(out), "--shards",
                        str(shards), *extra], check=True, stdout=subprocess.DEVNULL)
        patterns[name] = str(out / "train-*")
    return patterns


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


def decode_and_resize(pattern, batch_size, image_size):
    """The least any pipeline of float images of `image_size` does: decode, one bilinear
    resize (the cheapest of the four), batch. input_fn cannot beat it."""
    return _records(pattern, batch_size, lambda f: (tf.image.resize(
        tf.io.decode_jpeg(f[schema.ENCODED], channels=3), [image_size, image_size]),))


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


def ours(build: str, options: ReadOptions = ReadOptions(), **kwargs):
    def make(patterns, batch_size, image_size):
        return reader.input_fn(patterns[build], batch_size=batch_size, image_size=image_size,
                               options=options.replace(repeat=True), **kwargs)
    return make


def on(build: str, make):
    return lambda patterns, batch_size, image_size: make(patterns[build], batch_size,
                                                         image_size)


PIPELINES = {
    "decode only (floor)": on("default", decode_only),
    "decode + resize (float floor)": on("default", decode_and_resize),
    "original recipe": on("default", original_recipe),
    "input_fn train, default build": ours("default", is_training=True),
    "input_fn train, seeded": ours("default", is_training=True, seed=1),
    "input_fn train, default, skip": ours("default", is_training=True, on_error="skip"),
    "input_fn train, --verify decode": ours("verify decode", is_training=True),
    "input_fn eval, default build": ours("default", is_training=False),
    # a choice that changes the output (no colour jitter, scaling on the accelerator)
    "input_fn train, uint8 out": ours("default", reader.ReadOptions(distortions=None,
                                                                    output="uint8"),
                                      is_training=True),
}


def read_stage(pattern, by_number: bool) -> tf.data.Dataset:
    """The records alone, 3 passes, in batches of 256 lengths: as training reads them (by record
    number, in the seeded order) or with a plain TFRecordDataset per shard, in file order."""
    if by_number:
        listed = reader._list(pattern, training=True, input_context=None,
                              options=reader.ReadOptions(), on_error="raise")
        records, read = reader._training_records(  # (cache_bytes=0: from the files)
            listed, order.Layout(256), seed=1, start_batch=0,
            options=reader.ReadOptions(repeat=True, cache_bytes=0), on_error="raise")
        count = 3 * listed.known.records()
        return records.take(count).map(lambda *x: tf.strings.length(read(*x)[1])).batch(256)
    files = reader.list_files(pattern)
    return (tf.data.Dataset.from_tensor_slices(files)
            .interleave(tf.data.TFRecordDataset, cycle_length=16,
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .repeat(3).map(tf.strings.length).batch(256))


def first_batch_seconds(pattern, start: int, batch_size: int, image_size: int) -> float:
    """Seconds from calling input_fn at `start_batch` to its first batch."""
    began = time.perf_counter()
    dataset = reader.input_fn(pattern, is_training=True, batch_size=batch_size,
                              image_size=image_size, seed=1, start_batch=start)
    next(iter(dataset))
    return time.perf_counter() - began


def _ratio(label, value, target):
    print(f"{label:44s} x{value:.2f}   ({target})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", help="your shards (measured as the default build; the "
                                          "--verify decode rows then read them too)")
    parser.add_argument("--records", type=int, default=2934)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=299)
    args = parser.parse_args()
    if args.pattern:
        patterns = {"default": args.pattern, "verify decode": args.pattern}
    else:
        patterns = build_shards(pathlib.Path(tempfile.mkdtemp(prefix="bench-input-")),
                                args.records, args.shards)
    cores = os.cpu_count() or 1
    timings = {name: [] for name in PIPELINES}
    for _ in range(args.rounds):  # interleaved rounds: this machine's speed wanders
        for name, make in PIPELINES.items():
            dataset = make(patterns, args.batch_size, args.image_size)
            timings[name].append(throughput.time_batches(dataset, batches=args.batches))
    print(f"{args.batches} batches of {args.batch_size} after 5 warm-up, {cores} cores, "
          f"{args.rounds} rounds (the round with the median images/s shown):")
    median = {}
    for name, runs in timings.items():
        runs = sorted(runs, key=lambda t: t.images_per_second)
        median[name] = runs[len(runs) // 2]
        spread = ", ".join(f"{t.images_per_second:.0f}" for t in timings[name])
        print(f"{name:34s} {median[name].line()}   (rounds: {spread} images/s)", flush=True)
    rate = {name: t.images_per_second for name, t in median.items()}
    train = rate["input_fn train, default build"]
    print()
    _ratio("train default / original recipe", train / rate["original recipe"], "target >= 1.8")
    _ratio("train default / decode only", train / rate["decode only (floor)"], "target >= 0.5")
    _ratio("train seeded / train default", rate["input_fn train, seeded"] / train,
           "target >= 0.95")
    _ratio("decode + resize / decode only (the float floor's ratio)",
           rate["decode + resize (float floor)"] / rate["decode only (floor)"], "a ceiling")
    _ratio("train default / train --verify decode build",
           train / rate["input_fn train, --verify decode"], "target >= 0.95")
    _ratio("train skip / train raise", rate["input_fn train, default, skip"] / train,
           "target >= 0.95")
    _ratio("eval / decode only", rate["input_fn eval, default build"]
           / rate["decode only (floor)"], "target >= 1")
    _ratio("train uint8 out / decode only (an option, not the default)",
           rate["input_fn train, uint8 out"] / rate["decode only (floor)"], "for comparison")
    for name in [n for n in PIPELINES if "train" in n]:
        worst = statistics.median(t.slowest / t.median for t in timings[name])
        _ratio(f"slowest batch / median, {name[15:]}", worst, "target <= 3, median of rounds")

    # the order's read on its own: records by number against a sequential reader, interleaved
    reads = {False: [], True: []}
    for _ in range(max(3, args.rounds)):
        for by_number in reads:
            reads[by_number].append(throughput.images_per_second(
                read_stage(patterns["default"], by_number), batches=10_000, warmup=1)[0])
    plain, numbered = (statistics.median(reads[c]) for c in (False, True))
    if not plain or not numbered:
        print("\nread stage: too few records to time")
        return
    extra_us = (1 / numbered - 1 / plain) * 1e6
    per_image_us = cores / rate["input_fn train, default build"] * 1e6
    print(f"\nread stage (records only, median of {len(reads[True])} rounds): sequential "
          f"TFRecordDataset {plain:,.0f} records/s, by record number in the seeded order "
          f"{numbered:,.0f} records/s: {extra_us:.1f} us more per record = "
          f"{extra_us / per_image_us:.1%} of the {per_image_us:.0f} us of CPU a training image "
          f"takes here (target <= 3%)")

    # resuming: the first batch at 10% and 90% of an epoch, and ten epochs on
    records = shard_set.ShardSet.read(reader.list_files(patterns["default"])).records()
    per_epoch = records // args.batch_size
    starts = {"10% of an epoch": per_epoch // 10, "90% of an epoch": per_epoch * 9 // 10,
              "10.5 epochs": per_epoch * 21 // 2}
    seconds = {name: [] for name in starts}
    for _ in range(max(3, args.rounds)):
        for name, start in starts.items():
            seconds[name].append(first_batch_seconds(patterns["default"], start,
                                                     args.batch_size, args.image_size))
    print("resume (seconds from input_fn(start_batch=K) to its first batch, median of rounds): "
          + ", ".join(f"{name} (K={starts[name]}) {statistics.median(seconds[name]):.2f} s"
                      for name in starts))


if __name__ == "__main__":
    main()

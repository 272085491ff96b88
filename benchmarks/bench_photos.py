"""Real photo collections: a `--max-size 512` build against a full-size build, side by side.

The tree: the real 18-megapixel progressive photo in ../shared/data/odd-images, and ImageNet
samples from ../shared/data/imagenet-samples UPSCALED (Lanczos) to 3-12 megapixels and saved as
camera-like JPEGs (quality 92, 4:2:0 chroma, every third one progressive). Upscaled photos are
smoother than real camera photos of the same size, so they compress better and decode a little
faster: the full-size numbers here flatter the full-size build, if anything.

Measured in one run, on this machine's cores (interleaved rounds, medians):
- build: images/s (and per core) of the full-size build and of `--max-size 512` with and without
  libjpeg's DCT-scaled decoding (images.SizePolicy.dct_scaling), plus the conversion alone
  (images.normalise in one process) with and without it;
- shard bytes of each build;
- read: input_fn training (fast distortions) and evaluation images/s on the full-size shards,
  the --max-size 512 shards and shards of the same ImageNet samples at their own size (~0.19
  MP; as many records, since each epoch of a small dataset costs a shuffle-buffer fill), and
  training on full-size shards built with --verify decode (input_fn then skips its per-record
  1/8-scale decode check);
- a decode path for full-size records that input_fn does not use: the training crop decoded
  with tf.io.decode_jpeg(ratio=1/2/4/8) picked per image from the crop size (tf.switch_case),
  against input_fn's decode_and_crop_jpeg, on the full-size shards.

Usage: python benchmarks/bench_photos.py [--photos 72] [--rounds 3] [--workdir DIR]
"""

import argparse
import logging
import os
import pathlib
import random
import statistics
import sys
import tempfile
import time

import tensorflow as tf
from PIL import Image

from inception_data import images, preprocessing, reader, schema, throughput

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
MAX_SIZE = 512


def chosen_samples(photos: int, seed: int = 0) -> list[pathlib.Path]:
    """The ImageNet samples the photos are made from, plus one more (for the 18 MP photo)."""
    samples = sorted((DATA / "imagenet-samples").iterdir())
    return random.Random(seed).sample(samples, photos + 1)


def make_photo_tree(tree: pathlib.Path, chosen: list[pathlib.Path], seed: int = 0
                    ) -> list[pathlib.Path]:
    """<class>/<photo>.jpg: all but the last of `chosen` upscaled, in 4 classes, plus the real
    18 MP photo (see the module docstring)."""
    rng = random.Random(seed)
    paths = []
    for i, sample in enumerate(chosen[:-1]):
        with Image.open(sample) as image:
            image = image.convert("RGB")
            megapixels = rng.uniform(3, 12)
            scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
            big = image.resize((round(image.width * scale), round(image.height * scale)),
                               Image.LANCZOS)
        path = tree / f"class{i % 4}" / f"photo{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        big.save(path, "JPEG", quality=92, subsampling=2, progressive=i % 3 == 0)
        paths.append(path)
    real = tree / "class0" / "real-18mp.jpg"
    real.write_bytes((DATA / "odd-images" / "large-progressive-18mp.jpg").read_bytes())
    return paths + [real]


def imagenet_tree(tree: pathlib.Path, chosen: list[pathlib.Path]) -> None:
    """The same samples at their own size (as many images as the photo tree: a training epoch
    of a small dataset costs a shuffle-buffer fill, so record counts must match)."""
    for i, sample in enumerate(chosen):
        target = tree / f"class{i % 4}" / sample.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(sample, target)


def build(tree, out, policy: images.SizePolicy, workers: int, verify: str = "fast") -> float:
    """Builds in this process (so that dct_scaling, which has no option, can be set); returns
    the wall seconds."""
    from inception_data.build_options import BuildOptions
    from pipelines import image_folder

    options = BuildOptions(verify=verify, max_size=policy.max_size,
                           jpeg_quality=policy.jpeg_quality, progressive=policy.progressive,
                           overwrite=True, progress=False, workers=workers)
    # dct_scaling has no option: a BuildOptions' policy is computed once, so replace it
    options.__dict__["policy"] = policy
    config = image_folder.BuildConfig(output_dir=str(out), roots={"train": str(tree)},
                                      shards={"train": 4}, options=options)
    start = time.perf_counter()
    image_folder.run_build(config, [], warn=lambda message: None)
    return time.perf_counter() - start


def shard_bytes(out) -> int:
    return sum(p.stat().st_size for p in pathlib.Path(out).glob("train-*-of-*"))


def normalise_rate(paths, policy) -> float:
    """Images/s of the conversion alone (images.normalise), one process."""
    data = [p.read_bytes() for p in paths]
    start = time.perf_counter()
    for item in data:
        images.normalise(item, policy=policy)
    return len(data) / (time.perf_counter() - start)


def ratio_crop(encoded, window, image_size):
    """The training crop decoded at the coarsest DCT scale that still leaves the crop at least
    image_size pixels on its shorter side (the whole image at that scale, then sliced)."""
    shorter = tf.minimum(window[2], window[3])
    # index 3, 2, 1, 0 -> ratio 8, 4, 2, 1: the largest ratio with shorter / ratio >= size
    index = tf.reduce_sum(tf.cast(shorter // tf.constant([2, 4, 8]) >= image_size, tf.int32))

    def at(ratio):
        def decode():
            image = tf.io.decode_jpeg(encoded, channels=3, ratio=ratio)
            scaled = window // ratio
            return image[scaled[0]:scaled[0] + tf.maximum(scaled[2], 1),
                         scaled[1]:scaled[1] + tf.maximum(scaled[3], 1)]
        return decode

    return tf.switch_case(index, [at(1), at(2), at(4), at(8)])


def fused_crop(encoded, window, image_size):
    """input_fn's decode: decode_and_crop_jpeg, full scale, only the window's rows."""
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)


def crop_decode_only(decode_crop):
    """A training pipeline that samples input_fn's crop window, decodes it with `decode_crop`
    and resizes it (no colour distortions and no decode check, to isolate the decode)."""
    def make(pattern, batch_size, image_size):
        spec = schema.parse_spec()

        def fn(serialized, seed):
            encoded = tf.io.parse_single_example(serialized, spec)[schema.ENCODED]
            shape = tf.image.extract_jpeg_shape(encoded)[:2]
            window = preprocessing.distorted_crop_window(shape, tf.zeros([0, 4]), seed)
            crop = decode_crop(encoded, window, image_size)
            return tf.image.resize(tf.cast(crop, tf.float32), [image_size, image_size])

        return _train_dataset(reader.list_files(pattern), batch_size, fn)
    return make


def _train_dataset(files, batch_size, fn):
    records = (tf.data.Dataset.from_tensor_slices(files).repeat()
               .interleave(tf.data.TFRecordDataset, cycle_length=len(files),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=False))
    seeds = tf.data.Dataset.random(seed=0).batch(2)
    return (tf.data.Dataset.zip((records, seeds))
            .map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def input_fn(is_training):
    def make(pattern, batch_size, image_size):
        return reader.input_fn(pattern, is_training=is_training, batch_size=batch_size,
                               image_size=image_size, repeat=True)
    return make


def median_rates(pipelines: dict, rounds: int, batches: int, batch_size: int, size: int):
    samples = {name: [] for name in pipelines}
    for _ in range(rounds):  # interleaved: this machine's speed wanders
        for name, (make, pattern) in pipelines.items():
            dataset = make(pattern, batch_size, size)
            samples[name].append(throughput.images_per_second(dataset, batches=batches,
                                                              warmup=2)[0])
    return {name: statistics.median(values) for name, values in samples.items()}, samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=72, help="Upscaled photos to make.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workdir", help="Default: a new directory in /dev/shm or $TMPDIR.")
    args = parser.parse_args()
    logging.getLogger("apache_beam").setLevel(logging.ERROR)  # worker start-up chatter
    if not DATA.exists():
        sys.exit(f"{DATA} is absent: this benchmark needs the real samples")
    base = args.workdir or tempfile.mkdtemp(prefix="bench-photos-",
                                            dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    work = pathlib.Path(base)
    cores = os.cpu_count() or 1
    print(f"work directory {work}; {cores} cores", flush=True)

    tree = work / "photos"
    chosen = chosen_samples(args.photos)
    paths = make_photo_tree(tree, chosen)
    megapixels = []
    for path in paths:
        with Image.open(path) as image:
            megapixels.append(image.width * image.height / 1e6)
    print(f"tree: {len(paths)} photos ({args.photos} upscaled samples + the real 18 MP one), "
          f"{min(megapixels):.1f}-{max(megapixels):.1f} MP, median "
          f"{statistics.median(megapixels):.1f} MP, "
          f"{sum(p.stat().st_size for p in paths) / 1e6:.0f} MB", flush=True)
    samples_tree = work / "samples"
    imagenet_tree(samples_tree, chosen)

    # --- build ---
    builds = {
        "full size": images.SizePolicy(),
        f"--max-size {MAX_SIZE}": images.SizePolicy(max_size=MAX_SIZE),
        f"--max-size {MAX_SIZE}, no DCT scaling": images.SizePolicy(max_size=MAX_SIZE,
                                                                   dct_scaling=False),
    }
    seconds = {name: [] for name in builds}
    outs = {name: work / f"out-{i}" for i, name in enumerate(builds)}
    for _ in range(args.rounds):
        for name, policy in builds.items():
            seconds[name].append(build(tree, outs[name], policy, workers=cores))
    build(samples_tree, work / "out-samples", images.SizePolicy(), workers=cores)
    build(tree, work / "out-verified", images.SizePolicy(), workers=cores, verify="decode")
    print("\nbuild (whole command, in-process launcher, "
          f"{cores} workers; rounds in brackets):")
    for name in builds:
        wall = statistics.median(seconds[name])
        rate = len(paths) / wall
        print(f"  {name:34s} {wall:6.2f} s  {rate:6.1f} images/s  {rate / cores:6.1f} per core  "
              f"shards {shard_bytes(outs[name]) / 1e6:7.1f} MB  "
              f"({', '.join(f'{s:.2f}' for s in seconds[name])})", flush=True)
    print("  conversion alone (images.normalise, one process):")
    for name, policy in list(builds.items())[1:]:
        print(f"    {name:32s} {normalise_rate(paths, policy):6.1f} images/s per core",
              flush=True)

    # --- read ---
    full = str(outs["full size"] / "train-*")
    small = str(outs[f"--max-size {MAX_SIZE}"] / "train-*")
    imagenet = str(work / "out-samples" / "train-*")
    pipelines = {
        "train, full size": (input_fn(True), full),
        f"train, --max-size {MAX_SIZE}": (input_fn(True), small),
        "train, ImageNet samples": (input_fn(True), imagenet),
        "train, full size, --verify decode": (input_fn(True), str(work / "out-verified" /
                                                                  "train-*")),
        "eval, full size": (input_fn(False), full),
        f"eval, --max-size {MAX_SIZE}": (input_fn(False), small),
        "eval, ImageNet samples": (input_fn(False), imagenet),
        "crop decode only, full size": (crop_decode_only(fused_crop), full),
        "ratio decode only, full size": (crop_decode_only(ratio_crop), full),
    }
    rates, rounds = median_rates(pipelines, args.rounds, args.batches, args.batch_size, 299)
    print(f"\nread (input_fn, batch {args.batch_size}, 299 px; rounds in brackets):")
    for name, rate in rates.items():
        print(f"  {name:42s} {rate:7.1f} images/s  {rate / cores:6.1f} per core  "
              f"({', '.join(f'{v:.0f}' for v in rounds[name])})")

    full_bytes = shard_bytes(outs["full size"])
    small_bytes = shard_bytes(outs[f"--max-size {MAX_SIZE}"])
    print("\nratios (targets from issue #13):")
    for mode in ("train", "eval"):
        speedup = rates[f"{mode}, --max-size {MAX_SIZE}"] / rates[f"{mode}, full size"]
        against = rates[f"{mode}, ImageNet samples"] / rates[f"{mode}, --max-size {MAX_SIZE}"]
        print(f"  {mode}: --max-size {MAX_SIZE} / full size        x{speedup:6.2f}  (>= 10)")
        print(f"  {mode}: ImageNet samples / --max-size {MAX_SIZE} x{against:6.2f}  (<= 1.3)")
    print(f"  shard bytes: full size / --max-size {MAX_SIZE}    x{full_bytes / small_bytes:6.2f}"
          f"  (>= 5)")
    dct = statistics.median(seconds[f"--max-size {MAX_SIZE}, no DCT scaling"]) / \
        statistics.median(seconds[f"--max-size {MAX_SIZE}"])
    print(f"  build: DCT-scaled decoding speed-up         x{dct:6.2f}")
    ratio = rates["ratio decode only, full size"] / rates["crop decode only, full size"]
    print(f"  reader: ratio decode / input_fn's crop decode x{ratio:6.2f}")


if __name__ == "__main__":
    main()

"""Test data made in code: tiny image files and class-per-directory trees, and the real data
under ../shared/data when present.
"""

from __future__ import annotations

import io
import os
import pathlib
import random

import numpy as np
import pytest
from PIL import Image

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(*parts: str) -> pathlib.Path:
    """A path under ../shared/data, or a skip with the reason when it is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data {path} is absent (it ships beside the project in CI, not "
                    f"in a user's clone)")
    return path


def pixels(width: int, height: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """A smooth random image (compresses like a photo, unlike noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 4, channels), dtype=np.uint8)
    image = Image.fromarray(small.squeeze() if channels == 1 else small)
    return np.asarray(image.resize((width, height), Image.BILINEAR))


def jpeg_bytes(width=32, height=24, seed=0, mode="RGB", progressive=False, exif=None) -> bytes:
    image = Image.fromarray(pixels(width, height, seed, 1 if mode == "L" else 3))
    if mode == "CMYK":
        image = image.convert("CMYK")
    out = io.BytesIO()
    kwargs = {"quality": 90, "progressive": progressive}
    if exif is not None:
        info = Image.Exif()
        info[0x0112] = exif
        kwargs["exif"] = info.tobytes()
    image.save(out, "JPEG", **kwargs)
    return out.getvalue()


def png_bytes(width=32, height=24, seed=0, mode="RGB") -> bytes:
    base = Image.fromarray(pixels(width, height, seed))
    if mode == "RGBA":
        base = base.convert("RGBA")
        base.putalpha(Image.new("L", base.size, 0))  # fully transparent
    elif mode == "P":
        base = base.convert("P", palette=Image.ADAPTIVE, colors=16)
    elif mode == "I;16":
        array = (pixels(width, height, seed, 1).astype(np.uint16) * 257)
        base = Image.fromarray(array)
    elif mode != "RGB":
        base = base.convert(mode)
    out = io.BytesIO()
    base.save(out, "PNG")
    return out.getvalue()


def write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def image_tree(root: pathlib.Path, classes=("cats", "dogs", "fish"), per_class=4,
               odd=True) -> dict:
    """DIR/<class>/<image> with JPEGs of mixed extension case, and, with `odd`, a PNG, a CMYK
    JPEG, a grayscale JPEG, a truncated JPEG, an empty file and a text file.

    Returns {"good": [relpaths that must be written], "bad": [relpaths that must be rejected]}.
    """
    good, bad = [], []
    extensions = (".jpg", ".JPEG", ".jpeg", ".JPG")
    for c, name in enumerate(classes):
        for i in range(per_class):
            rel = f"{name}/img{i}{extensions[i % len(extensions)]}"
            write(root / rel, jpeg_bytes(20 + i, 16 + c, seed=c * 100 + i))
            good.append(rel)
    if odd:
        first = classes[0]
        for rel, data in ((f"{first}/real-png.jpg", png_bytes(18, 14, 1)),
                          (f"{classes[1]}/cmyk.jpg", jpeg_bytes(22, 12, 2, mode="CMYK")),
                          (f"{classes[-1]}/gray.jpeg", jpeg_bytes(15, 25, 3, mode="L"))):
            write(root / rel, data)
            good.append(rel)
        whole = jpeg_bytes(40, 40, 4)
        for rel, data in ((f"{first}/truncated.jpg", whole[: len(whole) // 2]),
                          (f"{classes[1]}/empty.jpg", b""),
                          (f"{classes[-1]}/notes.txt", b"not an image\n")):
            write(root / rel, data)
            bad.append(rel)
    return {"good": sorted(good), "bad": sorted(bad)}


def jpeg_tree(root: pathlib.Path, classes: int = 2, per_class: int = 6, size=(24, 16),
              name: str = "class{c}") -> pathlib.Path:
    """`root/<class>/<c><i>.jpg`: `classes` classes of `per_class` distinct JPEGs of `size`."""
    for c in range(classes):
        for i in range(per_class):
            write(root / name.format(c=c) / f"{c}{i}.jpg",
                  jpeg_bytes(*size, seed=10 * c + i))
    return root


def imagenet_tree(root: pathlib.Path, synsets: int = 1000) -> list[str]:
    """<synset>/<file> symlinks to the real ImageNet samples; returns the relpaths."""
    samples = shared_data("imagenet-samples")
    rels = []
    for path in sorted(samples.iterdir())[:synsets]:
        rel = f"{path.name.split('_')[0]}/{path.name}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(path, root / rel)
        rels.append(rel)
    return rels


SHUFFLING_RUNNER = ("--runner", "apache_beam.runners.portability.fn_api_runner.FnApiRunner")
"""CLI arguments that run a build through the distributed design (per-image GroupByKey), as on
Dataflow, instead of the local spilled-listing design: naming a runner selects it."""


def cli(*args, expect: int = 0):
    """Runs `inception-data ARGS` in this process (click's CliRunner) and checks the exit code."""
    from click.testing import CliRunner

    from inception_data_cli import main

    result = CliRunner().invoke(main.main, [*map(str, args)])
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


def build(*args, workers="1", expect: int = 0):
    """`inception-data build --no-progress --workers W ARGS` in this process (click's
    CliRunner); checks the exit code and returns click's result. The one way the tests run a
    folder build (`workers=None`: the build chooses)."""
    extra = () if workers is None else ("--workers", workers)
    return cli("build", "--no-progress", *extra, *args, expect=expect)


def build_command(train, out, *extra) -> list[str]:
    """The same build as a command line for a separate process (signals, concurrent builds)."""
    import sys

    return [sys.executable, "-m", "inception_data_cli", "build", "--no-progress", "--workers",
            "1", "--train-dir", str(train), "--output-dir", str(out), *map(str, extra)]


def same_outputs(one: pathlib.Path, two: pathlib.Path) -> list[str]:
    """Asserts two output directories hold the same files (sub-folders included), byte for
    byte; returns their relative paths."""
    names = sorted(str(p.relative_to(one)) for p in one.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(two)) for p in two.rglob("*") if p.is_file())
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    return names


def mutate(data: bytes, rng: random.Random):
    """Damaged copies of real image bytes: flipped bytes, cut tails, spliced headers."""
    choice = rng.randrange(4)
    out = bytearray(data)
    if choice == 0:
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif choice == 1:
        out = out[:rng.randrange(1, len(out))]
    elif choice == 2:
        start = rng.randrange(min(len(out), 2000))
        out[start:start + rng.randint(1, 64)] = bytes(rng.randrange(256) for _ in range(16))
    else:
        position = rng.randrange(min(len(out), 600))
        out[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    return bytes(out)


def fuzz_normalise(count: int, seed: int = 0):
    """Feeds `count` mutations of real images to normalise in both verify modes; returns
    {verify mode: (accepted, rejected, accepted that TensorFlow cannot decode)}, failing on any
    exception but ImageRejected."""
    odd = shared_data("odd-images")
    samples = sorted(shared_data("imagenet-samples").iterdir())[::50]
    sources = [p.read_bytes() for p in samples] + [
        (odd / name).read_bytes() for name in ("cmyk.jpg", "grayscale.png", "rgba-alpha.png",
                                               "animated.gif", "exif-orientation-6.jpg",
                                               "progressive-big-icc.jpg")]
    import tensorflow as tf

    from inception_data import images

    rng = random.Random(seed)
    counts = {verify: [0, 0, 0] for verify in images.VERIFY_MODES}
    for _ in range(count):
        data = mutate(rng.choice(sources), rng)
        for verify in images.VERIFY_MODES:
            try:
                encoded = images.normalise(data, verify=verify).encoded
            except images.ImageRejected:
                counts[verify][1] += 1
                continue
            counts[verify][0] += 1
            try:
                tf.io.decode_jpeg(encoded, channels=3)
            except tf.errors.OpError:
                counts[verify][2] += 1
    return {verify: tuple(c) for verify, c in counts.items()}


def shard_with_bad_records(path: pathlib.Path, records: int = 5, bad=(2,)) -> str:
    """A shard of `records` small JPEG records named <i>.jpg, of which those at the indexes
    `bad` have a bogus Huffman table: their headers pass `--verify fast`, TensorFlow cannot
    decode them."""
    from inception_data import schema, tfrecord

    encoded = []
    for i in range(records):
        data = bytearray(jpeg_bytes(40, 30, seed=i))
        if i in bad:
            table = data.index(b"\xff\xc4") + 5
            data[table:table + 16] = b"\xff" * 16
        encoded.append(bytes(data))
    path.write_bytes(b"".join(tfrecord.frame(schema.to_example(schema.ImageRecord(
        data, 30, 40, 1, "cats", f"{i}.jpg"))) for i, data in enumerate(encoded)))
    return str(path)


def fuzzed_shard(path: pathlib.Path, count: int, seed: int = 0) -> tuple[int, list[int]]:
    """A shard of the mutations of real JPEGs (see `mutate`) that `--verify fast` keeps, as a
    build would store them; returns (records, indexes of those TensorFlow cannot decode whole)."""
    import tensorflow as tf

    from inception_data import images, schema, tfrecord

    samples = sorted(shared_data("imagenet-samples").iterdir())[::50]
    sources = [p.read_bytes() for p in samples]
    rng = random.Random(seed)
    records, bad = [], []
    while len(records) < count:
        try:
            image = images.normalise(mutate(rng.choice(sources), rng), verify="fast")
        except images.ImageRejected:
            continue
        try:
            tf.io.decode_jpeg(image.encoded, channels=3)
        except tf.errors.OpError:
            bad.append(len(records))
        records.append(tfrecord.frame(schema.to_example(schema.ImageRecord(
            image.encoded, image.height, image.width, 1, "fuzz", f"{len(records)}.jpg"))))
    path.write_bytes(b"".join(records))
    return len(records), bad

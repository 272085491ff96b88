"""The size policy of a build: --max-size, --jpeg-quality, --progressive."""

import hashlib
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFile

from inception_data import images, schema
from tests import fabricate


def sof_markers(data: bytes) -> list[int]:
    """The start-of-frame markers (0xC0-0xCF except DHT/JPG/DAC) of a JPEG, walking its
    segments up to the first scan (a byte search could hit EXIF or ICC payloads)."""
    found, pos = [], 2
    while pos + 4 <= len(data):
        assert data[pos] == 0xFF, f"no marker at {pos}"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the frame header came before
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            found.append(marker)
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return found


def decoded(data: bytes) -> np.ndarray:
    return tf.io.decode_jpeg(data, channels=3).numpy()


@pytest.mark.parametrize("size, max_size, expected", [
    ((1000, 500, 512), None, None),
    ((1000, 500), 512, (512, 256)),
    ((500, 1000), 512, (256, 512)),
    ((600, 600), 512, (512, 512)),
    ((512, 400), 512, None),  # exactly the limit: kept
    ((513, 400), 512, (512, 399)),  # 399.22
    ((4, 3), 2, (2, 2)),  # 1.5 rounds up
    ((5, 3), 2, (2, 1)),  # 1.2 rounds down
    ((3, 5), 2, (1, 2)),
    ((1001, 3), 100, (100, 1)),  # 0.2997: at least one pixel
    ((5640, 3172), 512, (512, 288)),  # the real 18 MP photo: 287.96
])
def test_scaled_size_rounding(size, max_size, expected):
    if max_size is None:
        assert images.SizePolicy().target(*size[:2]) is None
        return
    assert images.scaled_size(*size, max_size) == expected
    assert images.SizePolicy(max_size=max_size).target(*size) == expected


def test_policy_rejects_nonsense():
    for kwargs in ({"max_size": 0}, {"jpeg_quality": 0}, {"jpeg_quality": 101},
                   {"progressive": "yes"}):
        with pytest.raises(ValueError):
            images.SizePolicy(**kwargs)


@pytest.mark.parametrize("dct_scaling", [True, False])
def test_large_jpeg_is_scaled_with_aspect_kept(dct_scaling):
    data = fabricate.jpeg_bytes(1600, 900, seed=3)
    policy = images.SizePolicy(max_size=400, dct_scaling=dct_scaling)
    result = images.normalise(data, policy=policy)
    assert (result.width, result.height) == (400, 225)
    assert result.reasons == ("size",) and "1600x900 scaled to 400x225" in result.converted
    pixels = decoded(result.encoded)
    assert pixels.shape == (225, 400, 3)
    # the same picture: compare with a plain Pillow downscale of the original
    reference = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((400, 225)))
    assert np.abs(pixels.astype(int) - reference).mean() < 3


def test_dct_scaling_decodes_at_the_smallest_sufficient_scale(monkeypatch):
    # 1600x900 to at most 400: 1/4 scale (400x225) is enough, 1/8 (200x113) is not
    data = fabricate.jpeg_bytes(1600, 900)
    seen = []
    real_load = ImageFile.ImageFile.load

    def spy(image):
        seen.append(image.size)
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    images.normalise(data, policy=images.SizePolicy(max_size=400))
    assert seen[0] == (400, 225)  # load() is called again by convert(), a no-op then
    seen.clear()
    images.normalise(data, policy=images.SizePolicy(max_size=401))
    assert seen[0] == (800, 450)  # 1/4 would give 400 < 401
    seen.clear()
    images.normalise(data, policy=images.SizePolicy(max_size=400, dct_scaling=False))
    assert seen[0] == (1600, 900)


def test_images_within_the_limit_keep_their_bytes():
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())[:40]
    policy = images.SizePolicy(max_size=4096, jpeg_quality=50, progressive="keep")
    for sample in samples:
        data = sample.read_bytes()
        result = images.normalise(data, policy=policy)
        assert result.encoded == data and result.reasons == (), sample.name


def test_progressive_to_baseline():
    progressive = fabricate.jpeg_bytes(64, 48, seed=1, progressive=True)
    assert sof_markers(progressive) == [0xC2]
    kept = images.normalise(progressive)
    assert kept.encoded == progressive  # "keep" is the default
    result = images.normalise(progressive, policy=images.SizePolicy(progressive="baseline"))
    assert result.reasons == ("progressive",)
    assert sof_markers(result.encoded) == [0xC0]
    assert np.abs(decoded(result.encoded).astype(int) - decoded(progressive)).mean() < 2
    baseline = fabricate.jpeg_bytes(64, 48, seed=1)
    assert images.normalise(baseline, policy=images.SizePolicy(progressive="baseline")
                            ).encoded == baseline


def test_real_progressive_photos_become_baseline():
    odd = fabricate.shared_data("odd-images")
    for name, size in (("progressive-big-icc.jpg", (425, 250)),
                       ("large-progressive-18mp.jpg", (512, 288))):
        policy = images.SizePolicy(max_size=512, progressive="baseline")
        result = images.normalise((odd / name).read_bytes(), policy=policy)
        assert sof_markers(result.encoded) == [0xC0], name
        assert (result.width, result.height) == size
        assert decoded(result.encoded).shape == (size[1], size[0], 3)


def test_exif_rotation_and_resize_compose():
    # stored 400x200 with orientation 6 (turn 90 degrees clockwise to view): left half red,
    # right half blue; upright it is 200x400 with red on top
    array = np.zeros((200, 400, 3), np.uint8)
    array[:, :200] = (255, 0, 0)
    array[:, 200:] = (0, 0, 255)
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(out, "JPEG", quality=95, exif=exif.tobytes())
    result = images.normalise(out.getvalue(), policy=images.SizePolicy(max_size=100))
    assert (result.width, result.height) == (50, 100)
    assert set(result.reasons) == {"exif", "size"}
    pixels = decoded(result.encoded).astype(int)
    assert pixels.shape == (100, 50, 3)
    top, bottom = pixels[:40].mean(axis=(0, 1)), pixels[60:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 50 and bottom[2] > 200 and bottom[0] < 50
    # exif="ignore": neither rotated nor, when re-encoded for size, turned after all
    ignored = images.normalise(out.getvalue(), exif="ignore",
                               policy=images.SizePolicy(max_size=100))
    assert (ignored.width, ignored.height) == (100, 50) and ignored.reasons == ("size",)


def test_exif_ignore_does_not_rotate_a_cmyk_jpeg():
    data = fabricate.jpeg_bytes(40, 20, mode="CMYK", exif=6)
    assert (lambda r: (r.width, r.height))(images.normalise(data)) == (20, 40)
    ignored = images.normalise(data, exif="ignore")
    assert (ignored.width, ignored.height) == (40, 20) and ignored.reasons == ("colour",)


@pytest.mark.parametrize("name, reasons, size", [
    ("cmyk.jpg", ("colour", "size"), (64, 64)),
    ("rgb-photo.png", ("format", "size"), (64, 64)),
    ("rgba-alpha.png", ("format", "size"), (64, 64)),
    ("grayscale.png", ("format", "size"), (64, 64)),
])
def test_odd_real_images_take_the_same_path(name, reasons, size):
    data = (fabricate.shared_data("odd-images") / name).read_bytes()
    full = images.normalise(data)
    result = images.normalise(data, policy=images.SizePolicy(max_size=64))
    assert result.reasons == reasons and (result.width, result.height) == size
    small = decoded(result.encoded).astype(int)
    reference = np.asarray(Image.fromarray(decoded(full.encoded)).resize(size, Image.LANCZOS))
    assert np.abs(small - reference).mean() < 6, name  # same colours as the full conversion


def test_sixteen_bit_and_alpha_pngs_resized():
    alpha = images.normalise(fabricate.png_bytes(300, 200, mode="RGBA"),
                             policy=images.SizePolicy(max_size=150))
    assert (alpha.width, alpha.height) == (150, 100)
    assert decoded(alpha.encoded).min() >= 250  # fully transparent: white
    deep = images.normalise(fabricate.png_bytes(300, 200, mode="I;16"),
                            policy=images.SizePolicy(max_size=150))
    assert (deep.width, deep.height) == (150, 100) and deep.reasons == ("format", "size")


def test_jpeg_quality_applies_to_encoded_images_only():
    png = fabricate.png_bytes(200, 150, seed=2)
    high = images.normalise(png, policy=images.SizePolicy(jpeg_quality=95))
    low = images.normalise(png, policy=images.SizePolicy(jpeg_quality=40))
    assert len(low.encoded) < len(high.encoded)
    jpeg = fabricate.jpeg_bytes(200, 150)
    assert images.normalise(jpeg, policy=images.SizePolicy(jpeg_quality=40)).encoded == jpeg


def test_megapixel_bins():
    assert images.megapixel_bin(500, 375) == "<0.25"
    assert images.megapixel_bin(500, 500) == "0.25-0.5"  # lower edges are inclusive
    assert images.megapixel_bin(1000, 1000) == "1-2"
    assert images.megapixel_bin(4000, 3000) == "8-16"
    assert images.megapixel_bin(5640, 3172) == ">=16"


# --- through the command ----------------------------------------------------------------------

build = fabricate.build


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """Two classes: small JPEGs (kept), large ones (scaled), a large progressive one, a PNG."""
    root = tmp_path_factory.mktemp("photos") / "train"
    for i in range(3):
        fabricate.write(root / "small" / f"s{i}.jpg", fabricate.jpeg_bytes(120, 90, seed=i))
    fabricate.write(root / "small" / "p.png", fabricate.png_bytes(100, 80, seed=9))
    fabricate.write(root / "large" / "l0.jpg", fabricate.jpeg_bytes(1200, 900, seed=4))
    fabricate.write(root / "large" / "l1.jpg", fabricate.jpeg_bytes(700, 1400, seed=5))
    fabricate.write(root / "large" / "l2.jpg",
                    fabricate.jpeg_bytes(1000, 1000, seed=6, progressive=True))
    fabricate.write(root / "large" / "l3.jpg", fabricate.jpeg_bytes(150, 100, seed=7,
                                                                    progressive=True))
    return root


def records(out):
    files = sorted(str(p) for p in out.glob("train-*-of-*"))
    return {r[schema.FILENAME].decode(): r for r in
            (schema.from_example(x) for x in tf.data.TFRecordDataset(files).as_numpy_iterator())}


def test_build_with_a_size_policy_counts_what_it_did(photo_tree, tmp_path):
    out = tmp_path / "out"
    build("--train-dir", photo_tree, "--output-dir", out, "--max-size", "256",
          "--progressive", "baseline", "--jpeg-quality", "90")
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: manifest["settings"][k] for k in ("max_size", "jpeg_quality", "progressive")} == \
        {"max_size": 256, "jpeg_quality": 90, "progressive": "baseline"}
    stored = manifest["splits"]["train"]["stored"]
    # kept: s0-s2; PNG: format; l0, l1: size; l2: size + progressive; l3: progressive
    assert stored["kept"] == 3 and stored["reencoded"] == 5 and stored["resized"] == 3
    assert stored["reasons"] == {"format": 1, "size": 3, "progressive": 2}
    assert stored["megapixels"] == [[label, 8 if label == "<0.25" else 0]
                                    for label in images.MEGAPIXEL_BINS]
    by_name = records(out)
    sizes = {name: (r[schema.WIDTH], r[schema.HEIGHT]) for name, r in by_name.items()}
    assert sizes == {"s0.jpg": (120, 90), "s1.jpg": (120, 90), "s2.jpg": (120, 90),
                     "p.png": (100, 80), "l0.jpg": (256, 192), "l1.jpg": (128, 256),
                     "l2.jpg": (256, 256), "l3.jpg": (150, 100)}
    for name, record in by_name.items():
        assert decoded(record[schema.ENCODED]).shape[:2] == (record[schema.HEIGHT],
                                                             record[schema.WIDTH])
        assert sof_markers(record[schema.ENCODED]) == [0xC0], name
    assert by_name["s0.jpg"][schema.ENCODED] == (photo_tree / "small" / "s0.jpg").read_bytes()


def test_default_build_histogram_and_counts(photo_tree, tmp_path):
    out = tmp_path / "out"
    build("--train-dir", photo_tree, "--output-dir", out)
    stored = json.loads((out / "manifest.json").read_text())["splits"]["train"]["stored"]
    assert stored["kept"] == 7 and stored["reasons"] == {"format": 1}
    assert dict(stored["megapixels"]) == {**dict.fromkeys(images.MEGAPIXEL_BINS, 0),
                                          "<0.25": 5, "0.5-1": 1, "1-2": 2}


def digests(out):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("train-*")}


def test_size_policy_builds_are_deterministic(photo_tree, tmp_path):
    args = ("--train-dir", photo_tree, "--max-size", "200", "--progressive", "baseline",
            "--shards", "2")
    build(*args, "--output-dir", tmp_path / "a", workers="1")
    build(*args, "--output-dir", tmp_path / "b", workers="1")
    build(*args, "--output-dir", tmp_path / "c", workers="2")
    build(*args, "--output-dir", tmp_path / "d", *fabricate.SHUFFLING_RUNNER)  # as on Dataflow
    fabricate.same_outputs(tmp_path / "a", tmp_path / "b")
    fabricate.same_outputs(tmp_path / "a", tmp_path / "c")
    fabricate.same_outputs(tmp_path / "a", tmp_path / "d")
    assert len(digests(tmp_path / "a")) == 2


def test_bad_policy_options_are_usage_errors(photo_tree, tmp_path):
    for option, value in (("--max-size", "0"), ("--jpeg-quality", "101"),
                          ("--progressive", "sometimes")):
        result = build("--train-dir", photo_tree, "--output-dir", tmp_path / "x", option, value,
                       expect=2)
        assert option in result.output


# --- telling the user -------------------------------------------------------------------------

def textured_jpeg(width, height, seed, progressive):
    """A JPEG with a photo's detail (noise on a smooth image): it decodes as slowly as one."""
    rng = np.random.default_rng(seed)
    array = fabricate.pixels(width, height, seed).astype(np.int16)
    array += rng.integers(-24, 25, size=array.shape, dtype=np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(
        out, "JPEG", quality=90, progressive=progressive)
    return out.getvalue()


@pytest.fixture(scope="module")
def large_build(tmp_path_factory):
    """Shards of 8 camera-size JPEGs (4.3 MP, two progressive), stored as they are."""
    root = tmp_path_factory.mktemp("large")
    for i in range(8):
        fabricate.write(root / "train" / f"c{i % 2}" / f"p{i}.jpg",
                        textured_jpeg(2400, 1800, seed=i, progressive=i % 4 == 0))
    build("--train-dir", root / "train", "--output-dir", root / "out", "--shards", "2")
    return root / "out"


def invoke(*args):
    return fabricate.cli(*args).output


def test_inspect_reports_sizes_and_what_max_size_would_save(large_build):
    output = invoke("inspect", large_build / "train-*", "--samples", "0")
    assert "image sizes: median 4.32 MP" in output and "2 progressive JPEG(s)" in output
    assert "      4-8 MP: 8" in output
    assert "8 of 8 images store more than 1 MP" in output
    assert "`build --max-size 512` would scale 8 images down; measured on 8 of them" in output
    saving = [line for line in output.splitlines() if "would take about" in line]
    assert saving, output


def test_inspect_estimate_is_measured(large_build):
    from inception_data import inspection

    sizes = inspection.SizeReport(max_size=256)
    for path in sorted(large_build.glob("train-*")):
        inspection.inspect_shard(str(path), sizes=sizes)
    saving = inspection.estimate_saving(sizes)
    assert saving["sampled"] == 8 and saving["decode_speedup"] > 3
    assert saving["bytes_after"] * 5 < saving["bytes_before"] == sizes.encoded_bytes


def test_inspect_says_nothing_about_max_size_for_small_images(tmp_path):
    fabricate.image_tree(tmp_path / "train", odd=False)
    build("--train-dir", tmp_path / "train", "--output-dir", tmp_path / "out")
    output = invoke("inspect", tmp_path / "out" / "train-*")
    assert "image sizes: median" in output and "--max-size" not in output


def test_benchmark_input_points_to_max_size_when_decode_bound(large_build, photo_tree, tmp_path):
    output = invoke("benchmark-input", large_build / "train-*", "--batch-size", "4",
                    "--batches", "3")
    assert "decode-bound: the sampled images are a median 4.3 MP (2 of 8 progressive)" in output
    assert "--max-size 512" in output
    build("--train-dir", photo_tree, "--output-dir", tmp_path / "small", "--max-size", "256")
    small = invoke("benchmark-input", tmp_path / "small" / "train-*", "--batch-size", "4",
                   "--batches", "3")
    assert "images/s" in small and "decode-bound" not in small

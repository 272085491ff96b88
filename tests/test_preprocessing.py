"""Preprocessing ops, each run eagerly and inside tf.data.map (the two differ), on real JPEGs."""

import numpy as np
import pytest
import tensorflow as tf

from inception_data import preprocessing as P
from tests import fabricate


def fast_colour(image, seed):
    """The fused colour jitter on `image` in [0, 1], clipped to [0, 1]: an unfused reference
    built from the module's parts, for comparison with TensorFlow's colour ops."""
    mean = tf.reduce_mean(image[::4, ::4], axis=[0, 1])
    return P._apply(image, *P._colour_transform(P._fast_factors(seed), mean), 0.0, 1.0)

def both_ways(fn, *args):
    """fn(*args) eagerly and inside Dataset.map; asserts they agree and returns the value."""
    eager = fn(*args)
    dataset = tf.data.Dataset.from_tensors(tuple(args)).map(lambda *a: fn(*a))
    graph = next(iter(dataset))
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), eager, graph)
    return eager


def real_jpeg(name="imagenet-samples/n01440764_tench.JPEG"):
    return tf.constant(fabricate.shared_data(*name.split("/")).read_bytes())


@pytest.mark.parametrize("name", [
    "imagenet-samples/n01440764_tench.JPEG", "odd-images/grayscale.jpg",
    "odd-images/progressive-big-icc.jpg", "odd-images/large-progressive-18mp.jpg"])
@pytest.mark.parametrize("distortions", P.DISTORTIONS)
def test_train_output_shape_dtype_range_on_real_jpegs(name, distortions):
    image = both_ways(lambda e, s: P.preprocess_train(e, tf.zeros([0, 4]), s, image_size=75,
                                                      distortions=distortions),
                      real_jpeg(name), tf.constant([1, 2], tf.int64))
    assert image.shape == (75, 75, 3) and image.dtype == tf.float32
    assert -1.0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 1.0


def test_cmyk_converted_by_the_build_is_preprocessed():
    from inception_data import images

    data = fabricate.shared_data("odd-images", "cmyk.jpg").read_bytes()
    encoded = tf.constant(images.normalise(data).encoded)
    assert both_ways(lambda e: P.preprocess_eval(e, image_size=64), encoded).shape == (64, 64, 3)


def test_eval_crop_equals_central_crop_by_hand():
    # 16 x 20 image: central_crop(0.875) removes 16 // 16 = 1 row top and bottom and
    # 20 // 16 = 1 column left and right, leaving 14 x 18 starting at (1, 1).
    encoded = tf.constant(fabricate.jpeg_bytes(20, 16))
    window = both_ways(lambda e: P.central_crop_window(P.image_shape(e)), encoded)
    assert window.numpy().tolist() == [1, 1, 14, 18]
    full = tf.io.decode_jpeg(encoded, channels=3)
    expected = tf.image.central_crop(full, 0.875)
    cropped = P._decode_crop(encoded, window)
    assert cropped.shape == expected.shape == (14, 18, 3)
    assert int(tf.reduce_max(tf.abs(tf.cast(cropped, tf.int32) - tf.cast(expected, tf.int32)))) <= 1
    evaluated = both_ways(lambda e: P.preprocess_eval(e, image_size=18), encoded)
    assert evaluated.shape == (18, 18, 3)


def test_eval_crop_on_real_image_matches_tf_central_crop_then_resize():
    encoded = real_jpeg()
    full = tf.image.convert_image_dtype(tf.io.decode_jpeg(encoded, channels=3), tf.float32)
    expected = (tf.image.resize(tf.image.central_crop(full, 0.875), [299, 299]) - 0.5) * 2
    got = P.preprocess_eval(encoded)
    assert float(tf.reduce_mean(tf.abs(got - expected))) < 0.01


def test_crops_respect_min_object_covered_for_a_known_box():
    box = tf.constant([[0.2, 0.3, 0.6, 0.7]])  # ymin, xmin, ymax, xmax in a 300 x 400 image
    shape = tf.constant([300, 400])
    for i in range(60):
        y, x, h, w = both_ways(lambda s: P.distorted_crop_window(shape, box, s),
                               tf.constant([i, 5], tf.int64)).numpy().tolist()
        if (h, w) == (300, 400):
            continue  # the documented fallback to the whole image
        iy = max(0, min(y + h, 180) - max(y, 60))
        ix = max(0, min(x + w, 280) - max(x, 120))
        covered = iy * ix / (120 * 160)
        assert covered >= 0.1 - 1e-6, (i, y, x, h, w, covered)
        assert 0.05 * 300 * 400 <= h * w * 1.01


def test_same_seed_same_image_other_seed_other_image():
    encoded, boxes = real_jpeg(), tf.zeros([0, 4])
    a = P.preprocess_train(encoded, boxes, tf.constant([3, 4], tf.int64), image_size=64)
    b = P.preprocess_train(encoded, boxes, tf.constant([3, 4], tf.int64), image_size=64)
    c = P.preprocess_train(encoded, boxes, tf.constant([9, 4], tf.int64), image_size=64)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_resize_methods_all_used():
    image = tf.random.stateless_uniform([40, 30, 3], [0, 1])
    seen = set()
    for i in range(40):
        seed = tf.constant([i, 0], tf.int64)
        choice = int(tf.random.stateless_uniform([], seed, 0, 4, dtype=tf.int32))
        seen.add(choice)
        assert both_ways(lambda s: P.random_resize(image, 20, s), seed).shape == (20, 20, 3)
    assert seen == {0, 1, 2, 3}


def test_nearest_by_gathers_equals_tensorflows_nearest_resize():
    rng = np.random.default_rng(5)
    sizes = [(1, 1), (1, 600), (299, 299), (300, 298), (598, 897)] + [
        tuple(int(v) for v in rng.integers(1, 700, 2)) for _ in range(40)]
    for height, width in sizes:
        image = tf.constant(rng.integers(0, 256, (height, width, 3)), tf.uint8)
        for size in (299, 37):
            expected = tf.image.resize(image, [size, size], method="nearest")
            assert np.array_equal(both_ways(P.resize_nearest, image, size), expected), (
                height, width, size)
            as_float = tf.cast(image, tf.float32)  # the training pipeline resizes float pixels
            assert np.array_equal(P.resize_nearest(as_float, size),
                                  tf.image.resize(as_float, [size, size], method="nearest"))


def test_fast_colour_tracks_tensorflows_colour_ops():
    """Same seed, same random factors: the fused transform lands close to TF's exact ops -
    much closer than the jitter itself moves the image."""
    diffs, effects = [], []
    for path in sorted(fabricate.shared_data("imagenet-samples").iterdir())[:10]:
        image = tf.image.resize(tf.io.decode_jpeg(path.read_bytes(), channels=3), [128, 128]) / 255
        for s in range(3):
            seed = tf.constant([s, 11], tf.int64)
            exact = P.inception_colour(image, seed)
            fast = both_ways(fast_colour, image, seed)
            diffs.append(float(tf.reduce_mean(tf.abs(fast - exact))))
            effects.append(float(tf.reduce_mean(tf.abs(exact - image))))
    assert np.mean(diffs) < 0.6 * np.mean(effects), (np.mean(diffs), np.mean(effects))


def test_fast_colour_single_factors_match_exactly_where_they_are_affine():
    # brightness and contrast only (saturation and hue ranges patched to ~identity); pixels kept
    # where no intermediate value leaves [0, 1], so TF's clipping inside HSV never triggers.
    # Constant 4x4 blocks: the fast path's mean over every 4th row and column is then exact.
    blocks = tf.random.stateless_uniform([4, 4, 3], [1, 2], 0.3, 0.7).numpy()
    image = tf.constant(np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1))
    old = P.SATURATION, P.HUE
    try:
        P.SATURATION, P.HUE = (1.0 - 1e-7, 1.0 + 1e-7), 0.0
        for i in range(6):  # both orders occur among these seeds
            seed = tf.constant([i, 4], tf.int64)
            np.testing.assert_allclose(fast_colour(image, seed),
                                       P.inception_colour(image, seed), atol=2e-3)
    finally:
        P.SATURATION, P.HUE = old


def test_compiled_tails_equal_their_unfused_reference():
    image255 = tf.random.stateless_uniform([32, 32, 3], [5, 6], 0.0, 255.0)
    seed = tf.constant([8, 9], tf.int64)
    reference = P.to_unit_range(fast_colour(image255 / 255.0, seed))
    compiled = both_ways(P._fast_tail, image255, P._fast_factors(seed))
    np.testing.assert_allclose(compiled, reference, atol=1e-5)
    np.testing.assert_allclose(P._scale_tail(image255, False), image255 / 127.5 - 1.0, atol=1e-5)


# ---------------------------------------------------------------- the "small" preset

def _numbered_png(height=6, width=5):
    """A PNG whose pixel (y, x) holds 1 + y * width + x in every channel: a crop window can be
    read back from its values (0 = padding)."""
    import io

    from PIL import Image

    values = (1 + np.arange(height * width, dtype=np.uint8).reshape(height, width))
    out = io.BytesIO()
    Image.fromarray(np.stack([values] * 3, -1)).save(out, "PNG")
    return tf.constant(out.getvalue()), values


def _to_pixels(image):
    return np.rint((np.asarray(image) + 1.0) * 127.5).astype(int)


@pytest.mark.parametrize("seed", [[0, 1], [5, 9], [7, 3], [2, 2]])
def test_small_train_is_a_window_of_the_4px_zero_padded_image(seed):
    encoded, values = _numbered_png(6, 6)
    image = both_ways(lambda e, s: P.preprocess_small_train(e, s, image_size=6, flip=False),
                      encoded, tf.constant(seed, tf.int64))
    assert image.shape == (6, 6, 3)
    got = _to_pixels(image)[:, :, 0]
    assert (got == _to_pixels(image)[:, :, 2]).all()
    padded = np.pad(values, P.SMALL_PAD).astype(int)
    windows = [(y, x) for y in range(9) for x in range(9)
               if (padded[y:y + 6, x:x + 6] == got).all()]
    assert len(windows) == 1, got


def test_small_train_flips_only_when_asked():
    encoded, values = _numbered_png(6, 6)
    seeds = [tf.constant([s, 0], tf.int64) for s in range(40)]
    unflipped = [_to_pixels(P.preprocess_small_train(encoded, s, image_size=6, flip=False))
                 for s in seeds]
    flipped = [_to_pixels(P.preprocess_small_train(encoded, s, image_size=6, flip=True))
               for s in seeds]
    def rows_increase(image):  # values grow left to right inside the unpadded part
        row = image[3, :, 0]
        inside = row[row > 0]
        return bool((np.diff(inside) > 0).all())

    assert all(rows_increase(image) for image in unflipped)
    assert not all(rows_increase(image) for image in flipped)


def test_small_eval_is_the_whole_image_resized_when_needed():
    encoded, values = _numbered_png(6, 6)
    image = both_ways(lambda e: P.preprocess_small_eval(e, image_size=6), encoded)
    assert (_to_pixels(image)[:, :, 0] == values).all()  # no central crop, no padding
    bigger = both_ways(lambda e: P.preprocess_small_eval(e, image_size=32), encoded)
    assert bigger.shape == (32, 32, 3)
    assert -1.0 <= float(tf.reduce_min(bigger)) and float(tf.reduce_max(bigger)) <= 1.0

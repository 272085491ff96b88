"""Inception image preprocessing as pure TensorFlow functions (no I/O, no tf.data).

Training: a crop chosen by `sample_distorted_bounding_box` around the human boxes (whole image
when there are none), decoded in one step with the crop (`decode_and_crop_jpeg`), resized with a
randomly chosen method, randomly flipped, colour-distorted, scaled to [-1, 1]. Evaluation: the
central 87.5% of each side, bilinear resize, scaled to [-1, 1].

All randomness is stateless and driven by a `seed` tensor of shape [2], so a seeded pipeline
repeats exactly. Colour distortion comes in three flavours:

* "inception": the original recipe with TensorFlow's own ops (brightness 32/255, saturation and
  contrast in [0.5, 1.5], hue 0.2, in one of two orders), for faithfulness;
* "fast" (default): the same four random factors with the same ranges and orders, folded into
  one per-image 3x3 colour matrix plus offset applied in a single pass. Differences from the
  exact ops: saturation blends with the luma (Rec. 601) instead of scaling HSV saturation, hue
  rotates colours about the grey axis in YIQ space instead of shifting HSV hue, and values are
  clipped once at the end rather than inside the HSV conversions; for the small jitters used
  here the results look alike, at a fraction of the cost (no HSV round trips);
* None: crop and flip only.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

CENTRAL_FRACTION = 0.875
BRIGHTNESS = 32.0 / 255.0
SATURATION = (0.5, 1.5)
HUE = 0.2
CONTRAST = (0.5, 1.5)
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")  # the original's four
DISTORTIONS = ("fast", "inception", None)



def _decode_any(encoded):
    """Any image format TF decodes -> uint8 [h, w, 3] (first frame only)."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def _seeds(seed, count: int):
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _decode_crop(encoded, window):
    """Decodes only `window` ([y, x, h, w]) of a JPEG; other formats are decoded whole first."""
    def jpeg():
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

    def other():
        image = _decode_any(encoded)
        return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def image_shape(encoded):
    """[height, width] from the JPEG header (no decode), or by decoding other formats."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.extract_jpeg_shape(encoded)[:2],
        lambda: tf.shape(_decode_any(encoded))[:2])


def distorted_crop_window(shape, boxes, seed, *, min_object_covered=0.1,
                          aspect_ratio_range=(0.75, 1.33), area_range=(0.05, 1.0),
                          max_attempts=100):
    """[y, x, h, w] of a random crop covering >= min_object_covered of some box.

    `boxes` is [N, 4] as (ymin, xmin, ymax, xmax) in [0, 1]; with N == 0 the whole image is the
    box. After `max_attempts` failures the whole image is returned, as the original did.
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [1, -1, 4])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.concat([shape, [3]], 0), bounding_boxes=boxes, seed=seed,
        min_object_covered=min_object_covered, aspect_ratio_range=aspect_ratio_range,
        area_range=area_range, max_attempts=max_attempts, use_image_if_no_bounding_boxes=True)
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def _nearest_index(n_in, n_out):
    """The source row (or column) of each output one, as TF's ResizeNearestNeighbor computes it
    with half-pixel centres: min(floor((i + 0.5) * (in / out)), in - 1), in float32."""
    scale = tf.cast(n_in, tf.float32) / tf.cast(n_out, tf.float32)
    index = tf.cast(tf.floor((tf.range(n_out, dtype=tf.float32) + 0.5) * scale), tf.int32)
    return tf.minimum(index, n_in - 1)


def resize_nearest(image, size):
    """tf.image.resize(image, [size, size], "nearest") as two gathers: the same pixels (tested
    on many sizes), in about 2/3 of the time of TF's CPU kernel, which was the slowest of the
    four methods (measured 0.62 ms vs 0.30 for bilinear on a 350x280 crop)."""
    shape = tf.shape(image)
    rows = tf.gather(image, _nearest_index(shape[0], size), axis=0)
    return tf.gather(rows, _nearest_index(shape[1], size), axis=1)


def _resize(image, size: int, method: str):
    if method == "nearest":
        return resize_nearest(image, size)
    return tf.image.resize(image, [size, size], method=method)


def random_resize(image, size: int, seed):
    """Resizes to size x size with one of the four methods, chosen at random per image."""
    choice = tf.random.stateless_uniform([], seed, 0, len(RESIZE_METHODS), dtype=tf.int32)
    branches = [lambda m=m: _resize(image, size, m) for m in RESIZE_METHODS]
    return tf.switch_case(choice, branches)


def _uniform(seed, low, high):
    return tf.random.stateless_uniform([], seed, low, high)


def inception_colour(image, seed):
    """The original distort_color with TF's ops; `image` float in [0, 1]."""
    seeds = _seeds(seed, 5)
    order = tf.random.stateless_uniform([], seeds[0], 0, 2, dtype=tf.int32)

    def brightness(x):
        return tf.image.stateless_random_brightness(x, BRIGHTNESS, seeds[1])

    def saturation(x):
        return tf.image.stateless_random_saturation(x, *SATURATION, seeds[2])

    def hue(x):
        return tf.image.stateless_random_hue(x, HUE, seeds[3])

    def contrast(x):
        return tf.image.stateless_random_contrast(x, *CONTRAST, seeds[4])

    first = lambda: contrast(hue(saturation(brightness(image))))  # noqa: E731
    second = lambda: hue(saturation(contrast(brightness(image))))  # noqa: E731
    return tf.clip_by_value(tf.cond(order == 0, first, second), 0.0, 1.0)


def _hue_basis():
    """Constants A, B, C with hue rotation by `angle` = A + cos(angle) B + sin(angle) C in RGB:
    the rotation about the grey axis in YIQ space, T^-1 R(angle) T, split so that no matrix
    inverse or product is computed per image."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                       [0.211, -0.523, 0.312]])
    back = np.linalg.inv(to_yiq)
    keep = np.diag([1.0, 0.0, 0.0])
    cos = np.diag([0.0, 1.0, 1.0])
    sin = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    return [tf.constant(back @ m @ to_yiq, tf.float32) for m in (keep, cos, sin)]


_HUE_A, _HUE_B, _HUE_C = _hue_basis()
_GREY = tf.constant(np.outer(np.ones(3), [0.299, 0.587, 0.114]), tf.float32)  # x -> luma, x3


def _fast_factors(seed):
    """The four random factors, drawn exactly as inception_colour's TF ops draw them."""
    seeds = _seeds(seed, 5)  # seeds[0] is inception_colour's order draw
    return tf.stack([
        _uniform(seeds[1], -BRIGHTNESS, BRIGHTNESS),
        _uniform(seeds[2], *SATURATION),
        # minus: a positive HSV hue shift (red towards yellow) is a negative rotation in YIQ
        -_uniform(seeds[3], -HUE, HUE) * 2.0 * math.pi,
        _uniform(seeds[4], *CONTRAST),
    ])


def _colour_transform(factors, mean):
    """(matrix, offset) for pixels in [0, 1] with per-channel `mean`.

    Brightness (x + d), saturation (blend with the luma: s x + (1 - s) luma(x)), hue (rotation
    H about the grey axis) and contrast (c x + (1 - c) mean) are all affine, and contrast towards
    the per-channel mean commutes with linear maps, so both of the original's orders reduce to
    the same transform: x -> c H S x + H S (d + (1 - c) mean). The order draw only matters for
    the exact, clipping HSV ops of "inception".
    """
    delta, sat, angle, con = tf.unstack(factors)
    linear = (_HUE_A + tf.cos(angle) * _HUE_B + tf.sin(angle) * _HUE_C) @ (
        sat * tf.eye(3) + (1.0 - sat) * _GREY)
    return con * linear, tf.linalg.matvec(linear, delta + (1.0 - con) * mean)


def _apply(image, matrix, offset, low, high):
    """matrix x + offset per pixel, clipped; written channel by channel so that XLA fuses it
    into one pass (a matmul would not fuse with the add and the clip)."""
    out = (image[..., 0:1] * matrix[:, 0] + image[..., 1:2] * matrix[:, 1]
           + image[..., 2:3] * matrix[:, 2] + offset)
    return tf.clip_by_value(out, low, high)


# The per-pixel tails below run compiled by XLA: each is one pass over the output instead of
# three to five, which is most of the cost left after decoding (measured: 0.29 ms vs 0.82 ms
# for a 299x299 image). Shapes are static (image_size), so each compiles once.
@tf.function(jit_compile=True)
def _fast_tail(image255, factors):
    """0..255 pixels -> colour-jittered pixels in [-1, 1]. The mean is taken over every 4th
    row and column: the same value to within a fraction of a grey level, at 1/16 of the cost."""
    mean = tf.reduce_mean(image255[::4, ::4], axis=[0, 1]) / 255.0
    matrix, offset = _colour_transform(factors, mean)
    return _apply(image255, matrix * (2.0 / 255.0), 2.0 * offset - 1.0, -1.0, 1.0)


@tf.function(jit_compile=True)
def _scale_tail(image255, clip):
    """0..255 -> [-1, 1] in one pass; `clip` for bicubic's overshoot."""
    scaled = image255 * (2.0 / 255.0) - 1.0
    return tf.where(clip, tf.clip_by_value(scaled, -1.0, 1.0), scaled)


def to_uint8(image255):
    """0..255 floats -> uint8, rounded (bicubic's overshoot clipped)."""
    return tf.cast(tf.round(tf.clip_by_value(image255, 0.0, 255.0)), tf.uint8)


def to_model_range(images):
    """uint8 images (ReadOptions(output="uint8")) -> float32 in [-1, 1], on the accelerator:
    what the float32 output holds without colour jitter, to within the rounding to 0..255."""
    return tf.cast(images, tf.float32) * (2.0 / 255.0) - 1.0


def to_unit_range(image):
    """[0, 1] -> [-1, 1]."""
    return (image - 0.5) * 2.0


def preprocess_train(encoded, boxes, seed, *, image_size=299, distortions="fast",
                     min_crop_area=0.05, output="float32"):
    """Encoded JPEG + boxes [N, 4] (ymin, xmin, ymax, xmax) -> float32 [size, size, 3] in [-1, 1].

    Work is ordered for speed without changing the distribution: only the crop is decoded, the
    flip happens on the 8-bit crop, pixels stay in 0..255 until the last step, and for "fast"
    the scaling to [-1, 1] is folded into the colour matrix (one pass over the output).
    """
    if distortions not in DISTORTIONS:
        raise ValueError(f"distortions={distortions!r}; expected one of {DISTORTIONS}")
    crop_seed, resize_seed, flip_seed, colour_seed = _seeds(seed, 4)
    window = distorted_crop_window(image_shape(encoded), boxes, crop_seed,
                                   area_range=(min_crop_area, 1.0))
    crop = tf.image.stateless_random_flip_left_right(_decode_crop(encoded, window), flip_seed)
    image = random_resize(tf.cast(crop, tf.float32), image_size, resize_seed)  # 0..255
    image.set_shape([image_size, image_size, 3])
    if output == "uint8":  # (no colour jitter: ReadOptions requires distortions=None)
        return to_uint8(image)
    if distortions == "fast":
        image = _fast_tail(image, _fast_factors(colour_seed))
    elif distortions == "inception":
        image = to_unit_range(inception_colour(image / 255.0, colour_seed))
    else:
        image = _scale_tail(image, True)
    image.set_shape([image_size, image_size, 3])
    return image


def central_crop_window(shape):
    """[y, x, h, w] of tf.image.central_crop(image, 0.875), computed from the shape alone."""
    # central_crop's own integer arithmetic: the border is size // int(1 / ((1 - f) / 2)).
    divisor = int(1 / ((1 - CENTRAL_FRACTION) / 2.0))
    top, left = shape[0] // divisor, shape[1] // divisor
    return tf.stack([top, left, shape[0] - 2 * top, shape[1] - 2 * left])


def preprocess_eval(encoded, *, image_size=299, output="float32"):
    """Central 87.5% crop (decoded alone), bilinear resize, [-1, 1] (or 0..255 uint8)."""
    window = central_crop_window(image_shape(encoded))
    image = tf.cast(_decode_crop(encoded, window), tf.float32)
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    image.set_shape([image_size, image_size, 3])
    return to_uint8(image) if output == "uint8" else _scale_tail(image, False)


# ---------------------------------------------------------------- small images (MNIST, CIFAR)

SMALL_PAD = 4  # pixels of zero padding on each side before the random crop (He et al. 2015)


def _to_size(image, image_size: int):
    """uint8 [h, w, 3] -> float32 [size, size, 3] in 0..255 (bilinear when the size differs)."""
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    same = tf.logical_and(shape[0] == image_size, shape[1] == image_size)
    image = tf.cond(same, lambda: image,
                    lambda: tf.image.resize(image, [image_size, image_size], "bilinear"))
    image.set_shape([image_size, image_size, 3])
    return image


def preprocess_small_train(encoded, seed, *, image_size: int, flip: bool = True,
                           pad: int = SMALL_PAD, output="float32"):
    """The classic CIFAR augmentation: pad `pad` black pixels on each side, crop a random
    window of the original size, flip left-right (unless `flip` is False, e.g. for digits),
    then resize to `image_size` if it differs (networks with a minimum input size) and scale
    to [-1, 1]."""
    crop_seed, flip_seed = _seeds(seed, 2)
    image = _decode_any(encoded)
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    image = tf.image.stateless_random_crop(padded, shape, crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    image = _to_size(image, image_size)
    return to_uint8(image) if output == "uint8" else to_unit_range(image / 255.0)


def preprocess_small_eval(encoded, *, image_size: int, output="float32"):
    """The whole image (no central crop: small images are already tightly framed), resized
    to `image_size` if it differs, in [-1, 1] (or 0..255 uint8)."""
    image = _to_size(_decode_any(encoded), image_size)
    return to_uint8(image) if output == "uint8" else to_unit_range(image / 255.0)

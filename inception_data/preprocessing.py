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

import tensorflow as tf

CENTRAL_FRACTION = 0.875
BRIGHTNESS = 32.0 / 255.0
SATURATION = (0.5, 1.5)
HUE = 0.2
CONTRAST = (0.5, 1.5)
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")  # the original's four
DISTORTIONS = ("fast", "inception", None)

_LUMA = tf.constant([0.299, 0.587, 0.114])
_TO_YIQ = tf.constant([[0.299, 0.587, 0.114],
                       [0.596, -0.274, -0.322],
                       [0.211, -0.523, 0.312]])


def _seeds(seed, count: int):
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _decode_crop(encoded, window):
    """Decodes only `window` ([y, x, h, w]) of a JPEG; other formats are decoded whole first."""
    def jpeg():
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def image_shape(encoded):
    """[height, width] from the JPEG header (no decode), or by decoding other formats."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.extract_jpeg_shape(encoded)[:2],
        lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False))[:2])


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


def random_resize(image, size: int, seed):
    """Resizes to size x size with one of the four methods, chosen at random per image."""
    choice = tf.random.stateless_uniform([], seed, 0, len(RESIZE_METHODS), dtype=tf.int32)
    branches = [lambda m=m: tf.image.resize(image, [size, size], method=m)
                for m in RESIZE_METHODS]
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


def _hue_matrix(angle):
    cos, sin = tf.cos(angle), tf.sin(angle)
    rotation = tf.stack([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    return tf.linalg.inv(_TO_YIQ) @ rotation @ _TO_YIQ


def fast_colour(image, seed):
    """Brightness, saturation, hue and contrast as one affine colour transform, one pass."""
    seeds = _seeds(seed, 5)
    order = tf.random.stateless_uniform([], seeds[0], 0, 2, dtype=tf.int32)
    delta = _uniform(seeds[1], -BRIGHTNESS, BRIGHTNESS)
    sat = _uniform(seeds[2], *SATURATION)
    # minus: a positive HSV hue shift (red towards yellow) is a negative rotation in YIQ
    angle = -_uniform(seeds[3], -HUE, HUE) * 2.0 * math.pi
    con = _uniform(seeds[4], *CONTRAST)
    eye = tf.eye(3)
    saturation = sat * eye + (1.0 - sat) * tf.ones([3, 1]) * _LUMA[tf.newaxis, :]
    mean = tf.reduce_mean(image, axis=[0, 1])  # contrast pulls towards the per-channel mean

    def compose(ops):
        # Brightness first in both orders: x -> x + delta; then each op maps the running affine
        # transform (matrix, offset) of the original pixels to the next one.
        matrix, offset = eye, tf.fill([3], delta)
        for op in ops:
            if op == "contrast":  # x -> c x + (1 - c) mean(x), mean of the current image
                current = tf.linalg.matvec(matrix, mean) + offset
                matrix, offset = con * matrix, con * offset + (1.0 - con) * current
            else:
                step = saturation if op == "saturation" else _hue_matrix(angle)
                matrix, offset = step @ matrix, tf.linalg.matvec(step, offset)
        return matrix, offset

    first, second = (compose(["saturation", "hue", "contrast"]),
                     compose(["contrast", "saturation", "hue"]))
    matrix = tf.where(order == 0, first[0], second[0])
    offset = tf.where(order == 0, first[1], second[1])
    out = tf.tensordot(image, tf.transpose(matrix), axes=1) + offset
    return tf.clip_by_value(out, 0.0, 1.0)


def to_unit_range(image):
    """[0, 1] -> [-1, 1]."""
    return (image - 0.5) * 2.0


def preprocess_train(encoded, boxes, seed, *, image_size=299, distortions="fast"):
    """Encoded JPEG + boxes [N, 4] (ymin, xmin, ymax, xmax) -> float32 [size, size, 3] in [-1, 1]."""
    if distortions not in DISTORTIONS:
        raise ValueError(f"distortions={distortions!r}; expected one of {DISTORTIONS}")
    crop_seed, resize_seed, flip_seed, colour_seed = _seeds(seed, 4)
    window = distorted_crop_window(image_shape(encoded), boxes, crop_seed)
    image = tf.image.convert_image_dtype(_decode_crop(encoded, window), tf.float32)
    image = random_resize(image, image_size, resize_seed)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if distortions == "inception":
        image = inception_colour(image, colour_seed)
    elif distortions == "fast":
        image = fast_colour(image, colour_seed)
    else:
        image = tf.clip_by_value(image, 0.0, 1.0)  # bicubic overshoots
    image.set_shape([image_size, image_size, 3])
    return to_unit_range(image)


def central_crop_window(shape):
    """[y, x, h, w] of tf.image.central_crop(image, 0.875), computed from the shape alone."""
    # central_crop's own integer arithmetic: the border is size // int(1 / ((1 - f) / 2)).
    divisor = int(1 / ((1 - CENTRAL_FRACTION) / 2.0))
    top, left = shape[0] // divisor, shape[1] // divisor
    return tf.stack([top, left, shape[0] - 2 * top, shape[1] - 2 * left])


def preprocess_eval(encoded, *, image_size=299):
    """Central 87.5% crop (decoded alone), bilinear resize, [-1, 1]."""
    window = central_crop_window(image_shape(encoded))
    image = tf.image.convert_image_dtype(_decode_crop(encoded, window), tf.float32)
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    image.set_shape([image_size, image_size, 3])
    return to_unit_range(image)

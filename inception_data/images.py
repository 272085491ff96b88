"""Image bytes in, training-ready JPEG bytes out.

`normalise(data)` sniffs the real format from the bytes (never the file name), reads the size from
the header and returns the bytes to store:

* the original bytes, untouched, when they already are a baseline or progressive JPEG in RGB
  (YCbCr) or grayscale and need no rotation - the common case, which decodes nothing;
* otherwise an RGB JPEG re-encoded with Pillow (quality `SizePolicy.jpeg_quality`, 95 by
  default): PNG and other still formats, CMYK/YCCK JPEG, palette, 16-bit and other modes;
  transparency is composited on white; with `exif="apply"` (the default) JPEGs whose EXIF
  orientation is not 1 are rotated upright. A `SizePolicy` may also ask for images larger than
  `max_size` to be scaled down (JPEGs decoded at the smallest DCT scale that is still large
  enough) and for progressive JPEGs to be stored as baseline ones.

Anything that cannot become a training image raises `ImageRejected` with a reason meant for the
rejects report. Pure functions: no file I/O, no Beam; TensorFlow only in decode mode, whose
check is TensorFlow's own JPEG decoder.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import re
import warnings

import numpy as np
from PIL import Image, ImageMode, ImageOps

from inception_data import jpeg_header
from inception_data.build_options import EXIF_MODES, JPEG_QUALITY, PROGRESSIVE_MODES, VERIFY_MODES  # noqa: F401 (re-exported)

# Why an image was re-encoded, as counted in the manifest.
# "multi-picture": an MPO file (a JPEG followed by more images through its MPF segment, as
# phones write depth maps and HDR gain maps) stored as its primary image
REASONS = ("format", "colour", "exif", "size", "progressive", "multi-picture")
_EXIF_ORIENTATION = 0x0112
_KEEP_JPEG_MODES = ("RGB", "L")  # what TensorFlow's decode_jpeg(channels=3) reads correctly

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class ImageRejected(ValueError):
    """The bytes cannot become a training image; str(self) is the reason, `kind` its category."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class SizePolicy:
    """What a build does to the size and encoding of the images it stores.

    max_size: an image whose longer side exceeds it is scaled down so that its longer side is
        exactly `max_size` and its shorter side `round(short * max_size / long)` (halves round
        up, at least 1): aspect ratio kept, Lanczos filter, re-encoded. None: no limit.
    jpeg_quality: the quality of every JPEG the build encodes (1-100).
    progressive: "keep" stores progressive JPEGs as they are; "baseline" re-encodes them as
        baseline JPEGs (no lossless transcoder is installable as a plain package: see
        docs/building.md).
    dct_scaling: decode JPEGs that are scaled down at the smallest libjpeg DCT scale (1/2, 1/4,
        1/8) that is still at least the target size, then resample. Only benchmarks turn it off.
    """

    max_size: int | None = None
    jpeg_quality: int = JPEG_QUALITY
    progressive: str = "keep"
    dct_scaling: bool = True

    def __post_init__(self):
        if self.max_size is not None and self.max_size < 1:
            raise ValueError(f"max_size must be a positive number of pixels, not {self.max_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be within 1-100, not {self.jpeg_quality}")
        if self.progressive not in PROGRESSIVE_MODES:
            raise ValueError(f"progressive={self.progressive!r}; expected {PROGRESSIVE_MODES}")

    def target(self, width: int, height: int) -> tuple[int, int] | None:
        """The (width, height) an image of this size is scaled to, or None when it fits."""
        return scaled_size(width, height, self.max_size) if self.max_size else None


def scaled_size(width: int, height: int, max_size: int) -> tuple[int, int] | None:
    """(width, height) with the longer side `max_size` and the shorter side
    round(short * max_size / long), halves rounding up, at least 1 - in integers, so that no
    float rounding differs between machines; None when the longer side is within `max_size`."""
    long, short = max(width, height), min(width, height)
    if long <= max_size:
        return None
    scaled = max(1, (2 * short * max_size + long) // (2 * long))
    return (max_size, scaled) if width >= height else (scaled, max_size)


# Bins of stored megapixels in manifests and `inspect` reports: [low, high) in MP.
_MEGAPIXEL_EDGES = (0.25, 0.5, 1, 2, 4, 8, 16)
MEGAPIXEL_BINS = tuple(
    [f"<{_MEGAPIXEL_EDGES[0]}"]
    + [f"{low}-{high}" for low, high in zip(_MEGAPIXEL_EDGES, _MEGAPIXEL_EDGES[1:])]
    + [f">={_MEGAPIXEL_EDGES[-1]}"])


def megapixel_bin(width: int, height: int) -> str:
    """The MEGAPIXEL_BINS label of an image of this size."""
    megapixels = width * height / 1e6
    for edge, label in zip(_MEGAPIXEL_EDGES, MEGAPIXEL_BINS):
        if megapixels < edge:
            return label
    return MEGAPIXEL_BINS[-1]


@dataclasses.dataclass(frozen=True)
class NormalisedImage:
    encoded: bytes  # JPEG bytes TensorFlow decodes to RGB
    height: int
    width: int
    source_format: str  # what the bytes really were: JPEG, PNG, ...
    converted: str | None  # why the bytes were re-encoded, or None when kept untouched
    reasons: tuple[str, ...] = ()  # the REASONS that applied; empty when kept untouched


def sniff(data: bytes) -> str | None:
    """The real format of `data` from its magic bytes, or None when it is no known image."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


# What one image may cost to convert, in bytes of decoded pixels and their conversions (see
# _working_bytes). Pillow's pixel limit alone lets a 172 KB 16-bit PNG of 9,400 x 9,400 take
# 2.2 GB; with this bound a worker's memory per image is known before anything is decoded.
MAX_WORKING_BYTES = 1 << 30


def _bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow stores per pixel of `mode` (bands x the band type's size)."""
    descriptor = ImageMode.getmode(mode)
    return len(descriptor.bands) * np.dtype(descriptor.typestr).itemsize


def _working_bytes(image: Image.Image) -> int:
    """Bytes a conversion of `image` holds at its peak, at most: the decoded pixels, the float32
    scaling of 16-bit modes, and the RGBA and RGB copies."""
    pixels = image.size[0] * image.size[1]
    return pixels * (_bytes_per_pixel(image.mode) + 4 + 4 + 3)


def _check_cost(image: Image.Image) -> None:
    """Rejects an image whose conversion would cost more than MAX_WORKING_BYTES. (Kept JPEGs
    are never decoded at full size: fast mode reads the header, decode mode decodes at 1/8.)"""
    cost = _working_bytes(image)
    if cost > MAX_WORKING_BYTES:
        width, height = image.size
        raise ImageRejected("too large", f"{width}x{height} {image.mode} image needs about "
                                         f"{cost >> 20} MB to convert, more than the "
                                         f"{MAX_WORKING_BYTES >> 20} MB allowed per image; "
                                         f"downscale it first")


def _open(data: bytes, fmt: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise ImageRejected("too large", f"too large to decode safely: {err}") from err
    except Exception as err:  # Pillow raises many types for bad headers
        detail = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(err))
        raise ImageRejected("unreadable header", f"unreadable {fmt} header: {detail}") from err


def _ends_with_eoi(data: bytes) -> bool:
    """True when the JPEG ends with its end-of-image marker (padding after it allowed)."""
    return data.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9")


def _decode(image: Image.Image, fmt: str) -> None:
    try:
        image.load()
    except Exception as err:
        raise ImageRejected("truncated or corrupt",
                            f"{fmt} data is truncated or corrupt: {err}") from err


@functools.cache
def _tensorflow():
    """TensorFlow, imported on first use, with one thread per op: the converter runs one worker
    process per core already, and TensorFlow's default pools would oversubscribe them."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # this process ran TensorFlow before: keep its settings
        pass
    return tf


def tensorflow_decode_error(data: bytes) -> str | None:
    """Why TensorFlow's JPEG decoder fails on `data` (one line), or None when it decodes: the
    one definition of "decodes in training", shared by `build --verify decode` and the shard
    check (`inspect --verify`).

    Only TensorFlow's own decoder keeps that promise: of 3,392 fuzzed JPEGs that Pillow decoded
    fully, 4 failed in tf.io.decode_jpeg, while libjpeg-turbo through simplejpeg disagreed with
    TensorFlow on 749 (strict or not). At 1/8 scale (ratio=8) the entropy decoding, where damage
    shows, is complete (no disagreement with full decodes on 3,000 mutations) and costs about
    what Pillow's draft decode did (1.1 vs 1.0 ms per ImageNet photo). TensorFlow is imported
    on first use."""
    tf = _tensorflow()
    try:
        tf.io.decode_jpeg(data, channels=3, ratio=8)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        return re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", err.message).strip()[:200]
    return None


def _tensorflow_decodes(data: bytes) -> None:
    """Decode mode's check: rejects what TensorFlow cannot decode (tensorflow_decode_error)."""
    detail = tensorflow_decode_error(data)
    if detail is not None:
        raise ImageRejected("truncated or corrupt", f"JPEG data is truncated or corrupt: "
                                                    f"TensorFlow's decoder fails ({detail})")


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # unreadable EXIF: decoders ignore it, and so do we
        return 1
    return value if 2 <= value <= 8 else 1  # real ImageNet files carry an invalid 0


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency composited on white."""
    if image.mode == "F":  # floating point: scaled by its own peak
        # one float64 copy, scaled in place (the same operations as pixels / peak * 255 + 0.5,
        # so the same values, without four more temporary copies of the image)
        pixels = np.array(image, dtype=np.float64)
        pixels /= max(float(pixels.max()), 1.0)
        pixels *= 255.0
        pixels += 0.5
        np.clip(pixels, 0, 255, out=pixels)
        return Image.fromarray(pixels.astype(np.uint8), "L").convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's convert("L") clips 16-bit values instead of scaling them. Integer arithmetic,
        # in place, gives exactly round(v * 255 / 65535) at 4 bytes per pixel (a float64 copy
        # of a 9,400 x 9,400 image alone is 700 MB).
        scaled = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
        scaled *= 255
        scaled += 32767
        scaled //= 65535
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info or image.mode in ("RGBA", "LA", "PA",
                                                                              "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    # 4:4:4 chroma: re-encoding happens once per image, and 4:2:0 smears colour edges.
    # Pillow writes baseline JPEGs unless asked for progressive ones.
    image.save(out, "JPEG", quality=quality, subsampling=0)
    return out.getvalue()


def _jpeg_reasons(mode: str, orientation: int, progressive: bool, size: tuple[int, int],
                  policy: SizePolicy) -> list[tuple[str, str]]:
    """Why a JPEG must be re-encoded, as (reason, description) pairs; empty when its bytes
    can be kept."""
    reasons = []
    if mode not in _KEEP_JPEG_MODES:
        reasons.append(("colour", f"{mode} JPEG"))
    if orientation != 1:
        reasons.append(("exif", f"EXIF orientation {orientation}"))
    if policy.progressive == "baseline" and progressive:
        reasons.append(("progressive", "progressive JPEG"))
    return reasons + _size_reason(size, policy)


def _size_reason(size: tuple[int, int], policy: SizePolicy) -> list[tuple[str, str]]:
    target = policy.target(*size)
    if target is None:
        return []
    return [("size", f"{size[0]}x{size[1]} scaled to {target[0]}x{target[1]}")]


_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees


def normalise(data: bytes, *, verify: str = "fast", exif: str = "apply",
              policy: SizePolicy = SizePolicy()) -> NormalisedImage:
    """Turns image file bytes into bytes to store in a record.

    Args:
        data: the whole file.
        verify: "fast" checks the header and, for kept JPEGs, the end-of-image marker (a
            truncated file fails; nothing is decoded); "decode" decodes every image, kept JPEGs
            with TensorFlow's decoder, so that every stored image decodes in training.
        exif: "apply" rotates JPEGs whose EXIF orientation is not 1 upright (re-encoding only
            those); "ignore" keeps their bytes, as TensorFlow's decoder ignores the tag.
        policy: size limit, JPEG quality and progressive handling (see SizePolicy).

    Raises:
        ImageRejected: not an image, an unsupported or animated image, truncated or corrupt data.
    """
    if verify not in VERIFY_MODES or exif not in EXIF_MODES:
        raise ValueError(f"verify={verify!r} exif={exif!r}; expected {VERIFY_MODES}, {EXIF_MODES}")
    if not data:
        raise ImageRejected("empty file", "empty file")
    fmt = sniff(data)
    if fmt is None:
        raise ImageRejected("not an image", f"not a JPEG or PNG image (starts with {data[:8]!r})")
    try:
        return _normalise(data, fmt, verify, exif, policy)
    except (ImageRejected, MemoryError):
        raise
    except Exception as err:  # Pillow raises IndexError, struct.error, TypeError, ... on damaged
        # data in places other than load() (GIF frame counting, TIFF tags): a reject, not a crash
        raise ImageRejected("truncated or corrupt", f"{fmt} data is corrupt: "
                                                   f"{type(err).__name__}: {err}") from err


def _mpo_primary(data: bytes, image: Image.Image) -> tuple[bytes, Image.Image]:
    """The primary image of a multi-picture (MPO) file as its own bytes, nothing re-encoded:
    the MP Entry of the first image gives its size, and a JPEG ends there (EOI). TensorFlow's
    decoder reads that same first image; the other pictures are left out."""
    try:
        size = int(image.mpinfo[0xB002][0]["Size"])
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        size = 0
    if not 0 < size <= len(data) or not data[:size].endswith(b"\xff\xd9"):
        raise ImageRejected("truncated or corrupt", f"multi-picture JPEG whose index gives no "
                                                    f"readable extent for its primary image "
                                                    f"(size {size} of {len(data)} bytes)")
    primary = data[:size]
    return primary, _open(primary, "JPEG")


def _kept_from_header(data: bytes, verify: str, exif: str, policy: SizePolicy
                      ) -> NormalisedImage | None:
    """The common case without Pillow: a plain JPEG (jpeg_header.parse, which agrees with
    Pillow whenever it answers) that is kept as it is; None when Pillow must look."""
    header = jpeg_header.parse(data)
    if header is None:
        return None
    orientation = header.orientation if exif == "apply" else 1
    if _jpeg_reasons(header.mode, orientation, header.progressive,
                     (header.width, header.height), policy):
        return None  # re-encoded: Pillow decodes it anyway
    if verify == "decode":
        _tensorflow_decodes(data)
    elif not _ends_with_eoi(data):
        return None  # a decode tells trailing junk from truncation (see _normalise)
    return NormalisedImage(data, header.height, header.width, "JPEG", None)


def _normalise(data: bytes, fmt: str, verify: str, exif: str, policy: SizePolicy
               ) -> NormalisedImage:
    if fmt == "JPEG":
        kept = _kept_from_header(data, verify, exif, policy)
        if kept is not None:
            return kept
    image = _open(data, fmt)
    extra = []  # reasons that apply before any conversion
    if image.format == "MPO":
        data, image = _mpo_primary(data, image)
        extra = [("multi-picture", f"multi-picture JPEG: its primary image of {len(data)} "
                                   f"bytes")]
    elif getattr(image, "n_frames", 1) > 1:
        raise ImageRejected("animated", f"animated {fmt} with {image.n_frames} frames; save "
                                        f"the frame you want as JPEG or PNG")
    size = image.size  # from the header, in the file's orientation; draft mode shrinks .size
    if fmt == "JPEG":
        # with exif="ignore" nothing is rotated, also not the JPEGs re-encoded for another
        # reason (rotating those alone would leave a dataset half upright)
        orientation = _orientation(image) if exif == "apply" else 1
        reasons = _jpeg_reasons(image.mode, orientation, bool(image.info.get("progressive")),
                                size, policy)
        if not reasons:
            width, height = size
            if verify == "decode":
                _tensorflow_decodes(data)
            elif not _ends_with_eoi(data):
                # No end marker: a decode tells trailing junk from truncation. Draft mode
                # (DCT scaling to 1/8) still entropy-decodes every coefficient, so it finds
                # truncated and corrupt data, but skips most of the inverse DCT: ~1.5x faster.
                image.draft(image.mode, (1, 1))
                _decode(image, fmt)
            return NormalisedImage(data, height, width, fmt, None,
                                   tuple(reason for reason, _ in extra))
        reasons = extra + reasons
    else:
        orientation = 1
        reasons = [("format", f"{fmt} image")] + _size_reason(size, policy)
    target = policy.target(*size)
    if target is not None and fmt == "JPEG" and policy.dct_scaling:
        # libjpeg decodes straight to 1/2, 1/4 or 1/8 of the size (the smallest scale whose
        # result is still >= the target), skipping most of the inverse DCT and the pixels.
        image.draft(image.mode, target)
    _check_cost(image)
    _decode(image, fmt)
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    rgb = _to_rgb(image)
    if target is not None:
        if orientation in _SWAPS_AXES:
            target = target[::-1]
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
    width, height = rgb.size
    return NormalisedImage(_encode_jpeg(rgb, policy.jpeg_quality), height, width, fmt,
                           "; ".join(text for _, text in reasons),
                           tuple(reason for reason, _ in reasons))

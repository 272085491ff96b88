"""Image bytes in, training-ready JPEG bytes out.

`normalise(data)` sniffs the real format from the bytes (never the file name), reads the size from
the header and returns the bytes to store:

* the original bytes, untouched, when they already are a baseline or progressive JPEG in RGB
  (YCbCr) or grayscale and need no rotation - the common case, which decodes nothing;
* otherwise an RGB JPEG re-encoded with Pillow (quality `JPEG_QUALITY`): PNG and other still
  formats, CMYK/YCCK JPEG, palette, 16-bit and other modes; transparency is composited on white;
  with `exif="apply"` (the default) JPEGs whose EXIF orientation is not 1 are rotated upright.

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

JPEG_QUALITY = 95
VERIFY_MODES = ("fast", "decode")
EXIF_MODES = ("apply", "ignore")
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
class NormalisedImage:
    encoded: bytes  # JPEG bytes TensorFlow decodes to RGB
    height: int
    width: int
    source_format: str  # what the bytes really were: JPEG, PNG, ...
    converted: str | None  # why the bytes were re-encoded, or None when kept untouched


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
        raise ImageRejected("truncated or corrupt", f"{fmt} data is truncated or corrupt: {err}") from err


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


def _tensorflow_decodes(data: bytes) -> None:
    """Decode mode's promise is that training can decode every stored JPEG, and only
    TensorFlow's own decoder keeps it: of 3,392 fuzzed JPEGs that Pillow decoded fully, 4 failed
    in tf.io.decode_jpeg, while libjpeg-turbo through simplejpeg disagreed with TensorFlow on
    749 (strict or not). At 1/8 scale (ratio=8) the entropy decoding, where damage shows, is
    complete (no disagreement with full decodes on 3,000 mutations) and costs about what
    Pillow's draft decode did (1.1 vs 1.0 ms per ImageNet photo). TensorFlow is imported here,
    in decode mode only."""
    tf = _tensorflow()
    try:
        tf.io.decode_jpeg(data, channels=3, ratio=8)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        detail = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", err.message).strip()[:200]
        raise ImageRejected("truncated or corrupt", f"JPEG data is truncated or corrupt: "
                                                    f"TensorFlow's decoder fails ({detail})") from None


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # unreadable EXIF: decoders ignore it, and so do we
        return 1
    return value if 2 <= value <= 8 else 1  # real ImageNet files carry an invalid 0


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency composited on white."""
    if image.mode == "F":  # floating point: scaled by its own peak
        pixels = np.asarray(image, dtype=np.float64)
        scaled = np.clip(pixels / max(float(pixels.max()), 1.0) * 255.0 + 0.5, 0, 255)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
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


def _encode_jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    # 4:4:4 chroma: re-encoding happens once per image, and 4:2:0 smears colour edges.
    image.save(out, "JPEG", quality=JPEG_QUALITY, subsampling=0)
    return out.getvalue()


def _reencode_reason(image: Image.Image, orientation: int, exif: str) -> str | None:
    """Why a JPEG must be re-encoded, or None when its bytes can be kept."""
    if image.mode not in _KEEP_JPEG_MODES:
        return f"{image.mode} JPEG"
    if exif == "apply" and orientation != 1:
        return f"EXIF orientation {orientation}"
    return None


def normalise(data: bytes, *, verify: str = "fast", exif: str = "apply") -> NormalisedImage:
    """Turns image file bytes into bytes to store in a record.

    Args:
        data: the whole file.
        verify: "fast" checks the header and, for kept JPEGs, the end-of-image marker (a
            truncated file fails; nothing is decoded); "decode" decodes every image, kept JPEGs
            with TensorFlow's decoder, so that every stored image decodes in training.
        exif: "apply" rotates JPEGs whose EXIF orientation is not 1 upright (re-encoding only
            those); "ignore" keeps their bytes, as TensorFlow's decoder ignores the tag.

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
        return _normalise(data, fmt, verify, exif)
    except (ImageRejected, MemoryError):
        raise
    except Exception as err:  # Pillow raises IndexError, struct.error, TypeError, ... on damaged
        # data in places other than load() (GIF frame counting, TIFF tags): a reject, not a crash
        raise ImageRejected("truncated or corrupt", f"{fmt} data is corrupt: "
                                                   f"{type(err).__name__}: {err}") from err


def _normalise(data: bytes, fmt: str, verify: str, exif: str) -> NormalisedImage:
    image = _open(data, fmt)
    if getattr(image, "n_frames", 1) > 1:
        raise ImageRejected("animated", f"animated {fmt} with {image.n_frames} frames; save "
                                        f"the frame you want as JPEG or PNG")
    if fmt == "JPEG":
        orientation = _orientation(image)
        reason = _reencode_reason(image, orientation, exif)
        if reason is None:
            width, height = image.size  # from the header; draft mode below shrinks .size
            if verify == "decode":
                _tensorflow_decodes(data)
            elif not _ends_with_eoi(data):
                # No end marker: a decode tells trailing junk from truncation. Draft mode
                # (DCT scaling to 1/8) still entropy-decodes every coefficient, so it finds
                # truncated and corrupt data, but skips most of the inverse DCT: ~1.5x faster.
                image.draft(image.mode, (1, 1))
                _decode(image, fmt)
            return NormalisedImage(data, height, width, fmt, None)
    else:
        orientation, reason = 1, f"{fmt} image"
    _check_cost(image)
    _decode(image, fmt)
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    rgb = _to_rgb(image)
    width, height = rgb.size
    return NormalisedImage(_encode_jpeg(rgb), height, width, fmt, reason)

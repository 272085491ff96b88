"""The common JPEG header, read from its markers in microseconds instead of Pillow's ~50 us.

`parse(data)` walks the segments from SOI to the first SOS and returns the frame size,
component count, progressive flag and EXIF orientation - but only for the plain case: 8-bit
baseline, extended or progressive Huffman frames with 1 or 3 components, no Adobe segment (its
colour transform), no MPF segment (multi-picture files, which Pillow opens as MPO), well-formed
lengths and tables, a readable EXIF orientation. Anything else returns None and the caller
asks Pillow, so the answer never differs from Pillow's (tests/test_jpeg_header.py checks this
on real and fuzzed files). Pure Python, no decoding.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from PIL import Image

_SOF_PLAIN = {0xC0: False, 0xC1: False, 0xC2: True}  # marker -> progressive
# the other segments a plain header has: DHT, DQT, DRI, APP0-15, COM, SOS. Any other marker
# (lossless, arithmetic or hierarchical frames, DHP - which Pillow reads as a frame -, DNL,
# EXP, JPGn) leaves the answer to Pillow.
_PLAIN = {0xC4, 0xDB, 0xDD, 0xFE, 0xDA, *range(0xE0, 0xF0)}
_ORIENTATION = 0x0112


class JpegHeader(NamedTuple):
    width: int
    height: int
    components: int
    progressive: bool
    orientation: int  # 1-8; 1 when there is no EXIF orientation (or an invalid value)

    @property
    def mode(self) -> str:
        """Pillow's mode for this header."""
        return "L" if self.components == 1 else "RGB"


def _exif_orientation(tiff: bytes) -> int | None:
    """The orientation tag of IFD0 (1 when absent or outside 2-8, as images._orientation
    treats it), or None when the TIFF structure is not plainly readable."""
    if len(tiff) < 8:
        return None
    order = tiff[:2]
    if order == b"II":
        endian = "<"
    elif order == b"MM":
        endian = ">"
    else:
        return None
    magic, ifd = struct.unpack(endian + "HI", tiff[2:8])
    if magic != 42 or ifd < 8 or ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(endian + "H", tiff[ifd:ifd + 2])
    if ifd + 2 + 12 * count > len(tiff):
        return None
    value = 1
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, number = struct.unpack(endian + "HHI", tiff[entry:entry + 8])
        if tag != _ORIENTATION:
            continue
        if kind != 3 or number != 1:  # not one SHORT: let Pillow interpret it
            return None
        (value,) = struct.unpack(endian + "H", tiff[entry + 8:entry + 10])
    return value if 2 <= value <= 8 else 1


def _tables_ok(segment: bytes) -> bool:
    """DQT: every table has its 64 entries (Pillow rejects the file otherwise)."""
    pos = 0
    while pos < len(segment):
        size = 1 + (64 if segment[pos] >> 4 == 0 else 128)
        if segment[pos] >> 4 > 1 or pos + size > len(segment):
            return False
        pos += size
    return True


def parse(data: bytes) -> JpegHeader | None:
    """The header of a plain JPEG, or None: ask Pillow (see the module docstring)."""
    end = len(data)
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    pos, frame, orientation, exif_seen = 2, None, 1, False
    while True:
        if pos + 4 > end or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker not in _PLAIN and marker not in _SOF_PLAIN:
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        if length < 2 or pos + 2 + length > end:
            return None
        if marker == 0xDA:  # start of scan (its header read too): the header is complete
            break
        segment = data[pos + 4:pos + 2 + length]
        if marker in _SOF_PLAIN:
            if frame is not None or len(segment) < 6:
                return None
            precision, height, width, components = struct.unpack(">BHHB", segment[:6])
            if (precision != 8 or components not in (1, 3) or height == 0 or width == 0
                    or len(segment) != 6 + 3 * components):
                return None
            frame = (width, height, components, _SOF_PLAIN[marker])
        elif marker == 0xDB:
            if not _tables_ok(segment):
                return None
        elif marker == 0xE0 and segment.startswith(b"JFIF") and len(segment) < 12:
            return None  # Pillow reads version and density from it
        elif marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            if exif_seen:
                return None
            exif_seen = True
            orientation = _exif_orientation(segment[6:])
            if orientation is None:
                return None
        elif marker == 0xE2 and segment.startswith(b"MPF"):
            return None
        elif marker == 0xEE and segment.startswith(b"Adobe"):
            return None
        pos += 2 + length
    if frame is None or frame[0] * frame[1] > (Image.MAX_IMAGE_PIXELS or float("inf")):
        return None  # no frame before the scan; or Pillow's decompression-bomb limits apply
    return JpegHeader(*frame, orientation)

"""jpeg_header.parse agrees with Pillow whenever it answers: on every real file in
../shared/data and on fuzzed headers; where it is unsure it says None and Pillow decides."""

import io
import random
import warnings

import pytest
from PIL import Image

from inception_data import images, jpeg_header
from tests import fabricate


def pillow_view(data: bytes):
    """What normalise learns from Pillow's header parse, or None when Pillow refuses."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["JPEG"])
            return (image.size, image.mode, bool(image.info.get("progressive")),
                    images._orientation(image), getattr(image, "n_frames", 1), image.format)
    except Exception:
        return None


def agrees(data: bytes) -> bool:
    header = jpeg_header.parse(data)
    if header is None:
        return True  # Pillow decides
    return pillow_view(data) == ((header.width, header.height), header.mode, header.progressive,
                                 header.orientation, 1, "JPEG")


def real_files():
    root = fabricate.shared_data()
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and p.suffix.lower() in (".jpg", ".jpeg", ".png", ".gif"))


def test_agrees_with_pillow_on_every_real_file():
    answered = 0
    for path in real_files():
        data = path.read_bytes()
        assert agrees(data), path
        answered += jpeg_header.parse(data) is not None
    assert answered >= 1000  # the ImageNet samples are plain JPEGs: the fast path is used


def test_plain_cases_answered_and_odd_ones_left_to_pillow():
    odd = fabricate.shared_data("odd-images")
    header = jpeg_header.parse((odd / "exif-orientation-6.jpg").read_bytes())
    assert header is not None and header.orientation == 6
    assert jpeg_header.parse((odd / "large-progressive-18mp.jpg").read_bytes()).progressive
    assert jpeg_header.parse((odd / "grayscale.jpg").read_bytes()).mode == "L"
    assert jpeg_header.parse((odd / "cmyk.jpg").read_bytes()) is None  # 4 components
    assert jpeg_header.parse((odd / "rgb-photo.png").read_bytes()) is None
    assert jpeg_header.parse(b"") is None and jpeg_header.parse(b"\xff\xd8") is None


def header_mutation(data: bytes, rng: random.Random) -> bytes:
    """A damaged copy whose damage lies in the header (before the first scan)."""
    end = data.find(b"\xff\xda")
    end = end if end > 0 else min(len(data), 1000)
    out = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(2, end)] = rng.randrange(256)
    elif kind == 1:
        out = out[:rng.randrange(2, end + 8)]
    elif kind == 2:
        start = rng.randrange(2, end)
        del out[start:start + rng.randint(1, 16)]
    else:
        position = rng.randrange(2, end)
        out[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_pillow_on_fuzzed_headers(seed):
    rng = random.Random(seed)
    sources = [p.read_bytes() for p in real_files()
               if p.suffix.lower() in (".jpg", ".jpeg")][::20]
    answered = 0
    for _ in range(2000):
        data = header_mutation(rng.choice(sources), rng)
        assert agrees(data), data[:64]
        answered += jpeg_header.parse(data) is not None
    assert answered > 200  # the fuzzing reached the fast path, not only its refusals

"""images.normalise on real odd images from ../shared/data and on synthetic ones."""

import io
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from inception_data import images
from tests import fabricate


def _decode(data):
    return tf.io.decode_jpeg(data, channels=3).numpy()


@pytest.mark.parametrize("name, width, height", [
    ("grayscale.jpg", 128, 128),
    ("grayscale-2.jpg", 400, 533),
    ("progressive-big-icc.jpg", 425, 250),
    ("large-progressive-18mp.jpg", 5640, 3172),
])
def test_real_jpegs_kept_byte_for_byte(name, width, height):
    data = fabricate.shared_data("odd-images", name).read_bytes()
    for verify in images.VERIFY_MODES:
        result = images.normalise(data, verify=verify)
        assert result.encoded == data and result.converted is None
        assert (result.width, result.height) == (width, height)


@pytest.mark.parametrize("name, kind", [
    ("cmyk.jpg", "CMYK JPEG"), ("rgb-photo.png", "PNG image"), ("grayscale.png", "PNG image"),
    ("rgba-alpha.png", "PNG image"), ("exif-orientation-6.jpg", "EXIF orientation 6"),
])
def test_real_images_reencoded_to_rgb_jpeg_tensorflow_decodes(name, kind):
    data = fabricate.shared_data("odd-images", name).read_bytes()
    result = images.normalise(data)
    assert result.converted == kind
    assert images.sniff(result.encoded) == "JPEG"
    decoded = _decode(result.encoded)
    assert decoded.shape == (result.height, result.width, 3)
    assert Image.open(io.BytesIO(result.encoded)).mode == "RGB"


def test_real_cmyk_colours_match_pillow_conversion():
    data = fabricate.shared_data("odd-images", "cmyk.jpg").read_bytes()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int32)
    got = _decode(images.normalise(data).encoded).astype(np.int32)
    assert np.abs(got - expected).mean() < 3  # only JPEG re-encoding error


@pytest.mark.parametrize("name, kind", [
    ("truncated.jpg", "truncated or corrupt"), ("broken.png", "unreadable header"),
    ("animated.gif", "animated"),
])
def test_real_bad_files_rejected_with_reason(name, kind):
    data = fabricate.shared_data("odd-images", name).read_bytes()
    for verify in images.VERIFY_MODES:
        with pytest.raises(images.ImageRejected) as info:
            images.normalise(data, verify=verify)
        assert info.value.kind == kind and str(info.value)


def test_exif_orientation_apply_rotates_ignore_keeps():
    data = fabricate.jpeg_bytes(40, 20, exif=6)  # stored 40 wide, displayed 20 wide
    applied = images.normalise(data, exif="apply")
    assert (applied.width, applied.height) == (20, 40)
    assert _decode(applied.encoded).shape == (40, 20, 3)
    ignored = images.normalise(data, exif="ignore")
    assert ignored.encoded == data and (ignored.width, ignored.height) == (40, 20)
    plain = fabricate.jpeg_bytes(40, 20, exif=1)
    assert images.normalise(plain).encoded == plain


def test_transparent_png_composited_on_white():
    result = images.normalise(fabricate.png_bytes(16, 16, mode="RGBA"))
    assert _decode(result.encoded).min() >= 250


def test_sixteen_bit_png_is_scaled_not_clipped():
    data = fabricate.png_bytes(16, 16, mode="I;16")
    expected = fabricate.pixels(16, 16, 0, 1).astype(np.int32)
    got = _decode(images.normalise(data).encoded)[..., 0].astype(np.int32)
    assert np.abs(got - expected).mean() < 3


def test_palette_png_converted():
    result = images.normalise(fabricate.png_bytes(16, 12, mode="P"))
    assert (result.width, result.height) == (16, 12) and result.converted == "PNG image"


def test_format_comes_from_bytes_not_name():
    assert images.sniff(fabricate.png_bytes()) == "PNG"
    assert images.sniff(fabricate.jpeg_bytes()) == "JPEG"
    assert images.sniff(b"GIF89a....") == "GIF"
    assert images.sniff(b"hello") is None


def test_truncated_synthetic_jpeg_caught_by_cheap_default():
    whole = fabricate.jpeg_bytes(64, 64, progressive=False)
    with pytest.raises(images.ImageRejected, match="truncated"):
        images.normalise(whole[: len(whole) * 2 // 3], verify="fast")


def test_trailing_bytes_after_end_marker_are_accepted():
    data = fabricate.jpeg_bytes() + b"camera trailer"
    result = images.normalise(data)
    assert result.encoded == data


def test_decode_verification_catches_what_the_header_check_cannot():
    # A bogus Huffman table: the header parses and the end marker is there, so the cheap check
    # keeps the file, but no decoder can read it. (Garbage inside the scan data itself decodes
    # with warnings in both Pillow and TensorFlow, so neither mode can catch that.)
    data = bytearray(fabricate.jpeg_bytes(64, 64))
    table = data.index(b"\xff\xc4") + 5
    data[table:table + 16] = b"\xff" * 16
    assert images.normalise(bytes(data), verify="fast").width == 64
    with pytest.raises(images.ImageRejected, match="corrupt"):
        images.normalise(bytes(data), verify="decode")


def test_empty_and_text_rejected():
    with pytest.raises(images.ImageRejected, match="empty"):
        images.normalise(b"")
    with pytest.raises(images.ImageRejected) as info:
        images.normalise(b"hello world")
    assert info.value.kind == "not an image"


def _multi_picture(photo: bytes) -> bytes:
    """A real photo saved as a phone saves one with a gain map: an MPO of the photo and a
    quarter-size grey second picture behind it (Pillow writes the MPF index)."""
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    gain_map = image.resize((image.width // 4, image.height // 4)).convert("L").convert("RGB")
    out = io.BytesIO()
    image.save(out, "MPO", save_all=True, append_images=[gain_map], quality=90)
    return out.getvalue()


def test_a_multi_picture_photo_is_stored_as_its_primary_image():
    photo = sorted(fabricate.shared_data("imagenet-samples").iterdir())[5].read_bytes()
    data = _multi_picture(photo)
    assert Image.open(io.BytesIO(data)).n_frames == 2  # what used to be rejected as animated
    for verify in images.VERIFY_MODES:
        result = images.normalise(data, verify=verify)
        assert data.startswith(result.encoded) and len(result.encoded) < len(data)
        assert result.converted is None and result.reasons == ("multi-picture",)
        assert np.array_equal(_decode(result.encoded), _decode(data))  # TF's primary image
    smaller = images.normalise(data, policy=images.SizePolicy(max_size=100))
    assert smaller.reasons == ("multi-picture", "size")
    assert max(smaller.width, smaller.height) == 100
    broken = bytearray(data)
    offset = data.index(b"MPF\x00")  # the MP Entry's size of the first image: made too large
    order = "little" if data[offset + 4:offset + 6] == b"II" else "big"
    entry = data.index(len(result.encoded).to_bytes(4, order), offset)
    broken[entry:entry + 4] = (len(data) + 1).to_bytes(4, order)
    with pytest.raises(images.ImageRejected, match="multi-picture JPEG whose index gives no "
                                                    "readable extent"):
        images.normalise(bytes(broken))


def test_a_folder_of_multi_picture_photos_is_written_and_counted(tmp_path):
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())
    for i, sample in enumerate(samples[:3]):
        fabricate.write(tmp_path / "train" / "phone" / f"{i}.jpg",
                        _multi_picture(sample.read_bytes()))
    fabricate.write(tmp_path / "train" / "camera" / "plain.jpg", samples[3].read_bytes())
    fabricate.build("--train-dir", tmp_path / "train",
                  "--output-dir", tmp_path / "out")
    import json

    split = json.loads((tmp_path / "out" / "manifest.json").read_text())["splits"]["train"]
    assert split["written"] == 4 and split["rejected"] == 0
    assert split["stored"]["kept"] == 4 and split["stored"]["reasons"] == {"multi-picture": 3}


def test_a_real_camera_multi_picture_file_is_stored_as_its_primary_image():
    """A stereo photo as a Nintendo 3DS camera wrote it (tests/data/README.md): its primary
    picture's bytes, unchanged, and what TensorFlow decodes of the whole file."""
    data = (pathlib.Path(__file__).parent / "data" / "sugarshack.mpo").read_bytes()
    source = Image.open(io.BytesIO(data))
    assert source.format == "MPO" and source.n_frames == 2
    assert source.getexif().get(271) == "Nintendo"  # EXIF Make: from the camera itself
    result = images.normalise(data)
    assert result.reasons == ("multi-picture",) and result.converted is None
    assert data.startswith(result.encoded) and 0 < len(result.encoded) < len(data)
    assert (result.width, result.height) == (640, 480)
    assert np.array_equal(_decode(result.encoded), _decode(data))
    assert result.encoded.endswith(b"\xff\xd9")  # the primary picture's end, then nothing

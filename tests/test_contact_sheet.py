"""`inspect --contact-sheet`: the documented layout, and each tile from its class."""

import io

import numpy as np
from click.testing import CliRunner
from PIL import Image

from inception_data import contact_sheet as cs
from inception_data_cli import main as cli
from tests import fabricate

COLOURS = {"blue": (20, 40, 230), "green": (30, 200, 40), "red": (220, 30, 30)}
COUNTS = {"blue": 5, "green": 3, "red": 1}  # labels 1, 2, 3 (sorted folder names)


def solid(colour, seed):
    array = np.zeros((60 + seed, 80, 3), np.uint8) + np.array(colour, np.uint8)
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", quality=95)
    return out.getvalue()


def build(tmp_path):
    for name, count in COUNTS.items():
        for i in range(count):
            fabricate.write(tmp_path / "train" / name / f"{i}.jpg", solid(COLOURS[name], i))
    fabricate.build("--train-dir", tmp_path / "train", "--output-dir", tmp_path / "out",
                    "--shards", "2")
    return str(tmp_path / "out" / "train-*")


def sheet(tmp_path, pattern, *extra):
    path = tmp_path / "sheet.png"
    result = CliRunner().invoke(cli.main, ["inspect", pattern, "--contact-sheet", str(path),
                                           "--per-class", "2", "--tile", "40", *extra])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"contact sheet: {path}" in result.output
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def centre(pixels, row, column, tile=40):
    left, top, right, bottom = cs.tile_box(row, column, tile)
    return pixels[(top + bottom) // 2, (left + right) // 2]


def test_layout_tiles_and_bars(tmp_path):
    pixels = sheet(tmp_path, build(tmp_path))
    assert pixels.shape[1::-1] == cs.size(3, 2, 40)
    for row, name in enumerate(sorted(COLOURS)):  # label order = sorted class names
        for column in range(2):
            if column < COUNTS[name]:
                assert np.abs(centre(pixels, row, column) - COLOURS[name]).max() < 12, name
            else:  # red has one image: the second tile stays empty
                assert tuple(centre(pixels, row, column)) == cs.BACKGROUND
    bar_left = cs.MARGIN + cs.LABEL_WIDTH + 2 * (40 + cs.TILE_GAP)
    for row, name in enumerate(sorted(COLOURS)):
        y = cs.HEADER + row * (40 + cs.ROW_GAP) + 20
        length = round(cs.BAR_WIDTH * COUNTS[name] / 5)
        assert tuple(pixels[y, bar_left + length - 1]) == cs.BAR
        assert tuple(pixels[y, bar_left + length + 1]) != cs.BAR


def test_augmented_tiles_are_training_examples(tmp_path):
    pattern = build(tmp_path)
    stored = sheet(tmp_path, pattern)
    augmented = sheet(tmp_path, pattern, "--augmented")
    assert augmented.shape == stored.shape
    for row, name in enumerate(sorted(COLOURS)):
        for column in range(min(2, COUNTS[name])):
            left, top, right, bottom = cs.tile_box(row, column, 40)
            tile = augmented[top:bottom, left:right]
            # a training crop fills the whole tile (no grey letterbox around the 80x60 image)
            assert tuple(tile[1, 1]) != cs.TILE_BACKGROUND
            assert tuple(stored[top + 1, left + 1]) == cs.TILE_BACKGROUND


def test_no_sheet_is_written_when_nothing_is_readable(tmp_path):
    """A shard that is not a TFRecord file (here a JPEG under a shard's name): no records, so
    no sheet of empty rows that would look like a dataset of blank images."""
    from tests import fabricate

    shard = tmp_path / "train-00000-of-00001"
    shard.write_bytes(fabricate.jpeg_bytes())
    sheet = tmp_path / "sheet.png"
    result = fabricate.cli("inspect", shard, "--contact-sheet", sheet, expect=1)
    assert f"contact sheet {sheet} not written: none of the 0 record(s) holds an image" \
        in result.output
    assert not sheet.exists()

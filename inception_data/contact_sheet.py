"""A picture of a dataset: K sample tiles per class and the per-class counts as bars.

People check a dataset by looking at it: a mislabelled class folder or sideways photos are
obvious in a picture and invisible in a table. `inception-data inspect --contact-sheet`.

Layout (all in pixels; `tile` is the tile size, K the tiles per class):
- a header band of HEADER px at the top with the totals;
- one row per class, in label order, ROW_GAP px apart: row r starts at y = HEADER + r * (tile +
  ROW_GAP); it holds the label number and text (LABEL_WIDTH px wide), then K tiles starting at
  x = MARGIN + LABEL_WIDTH, tile + TILE_GAP apart (fewer when the class has fewer images; each
  tile is the image scaled to fit, centred on grey), then a bar whose length is the class's
  share of the largest class (BAR_WIDTH px at most) with the count written after it.

Samples are the first K records of each class in file order (`Samples`), or with `augmented`
the first K training examples per class that `input_fn` yields (random crops, flips and colour
distortions: what the model sees).
"""

from __future__ import annotations

import collections
import io

from PIL import Image, ImageDraw, ImageFont

from inception_data import schema

MARGIN = 8
HEADER = 28
LABEL_WIDTH = 220
TILE_GAP = 4
ROW_GAP = 8
BAR_WIDTH = 200
COUNT_WIDTH = 70
BACKGROUND = (255, 255, 255)
TILE_BACKGROUND = (128, 128, 128)
BAR = (70, 110, 180)
INK = (0, 0, 0)


def thumbnail(encoded: bytes, tile: int) -> Image.Image:
    """The image scaled to fit a tile x tile square (aspect kept), centred on grey; JPEGs are
    decoded at a reduced DCT scale first (Pillow's draft)."""
    with Image.open(io.BytesIO(encoded)) as image:
        image.draft("RGB", (tile, tile))
        image = image.convert("RGB")
        image.thumbnail((tile, tile), Image.Resampling.LANCZOS)
    square = Image.new("RGB", (tile, tile), TILE_BACKGROUND)
    square.paste(image, ((tile - image.width) // 2, (tile - image.height) // 2))
    return square


class Samples:
    """Collects up to `per_class` thumbnails of each label (inspection.inspect_shard calls
    `add` for every record) and every label's text and count."""

    def __init__(self, per_class: int, tile: int):
        self.per_class, self.tile = per_class, tile
        self.tiles: dict[int, list[Image.Image]] = {}
        self.texts: dict[int, str] = {}
        self.counts = collections.Counter()

    def add(self, fields: dict) -> None:
        label = int(fields[schema.LABEL])
        self.counts[label] += 1
        self.texts.setdefault(label, fields.get(schema.TEXT, b"").decode(errors="replace"))
        tiles = self.tiles.setdefault(label, [])
        if len(tiles) < self.per_class:
            try:
                tiles.append(thumbnail(fields[schema.ENCODED], self.tile))
            except Exception:  # an undecodable image: `inspect --verify` names it
                tiles.append(Image.new("RGB", (self.tile, self.tile), (255, 0, 0)))


def augmented_tiles(pattern, labels, per_class: int, tile: int, *, seed: int = 0,
                    max_batches: int = 200) -> dict[int, list[Image.Image]]:
    """The first `per_class` training examples of each of `labels` from input_fn (seeded)."""
    import numpy as np

    from inception_data import reader

    wanted = set(labels)
    tiles: dict[int, list[Image.Image]] = {label: [] for label in labels}
    dataset = reader.input_fn(pattern, is_training=True, batch_size=32, seed=seed,
                              image_size=max(tile, 96))
    for images, batch_labels in dataset.take(max_batches):
        for image, label in zip(images.numpy(), batch_labels.numpy()):
            label = int(label)
            if label in wanted and len(tiles[label]) < per_class:
                pixels = np.clip((image + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
                tiles[label].append(Image.fromarray(pixels).resize((tile, tile),
                                                                    Image.Resampling.LANCZOS))
        if all(len(tiles[label]) >= per_class for label in wanted):
            break
    return tiles


def size(rows: int, per_class: int, tile: int) -> tuple[int, int]:
    """(width, height) of a sheet with `rows` classes."""
    width = MARGIN + LABEL_WIDTH + per_class * (tile + TILE_GAP) + BAR_WIDTH + COUNT_WIDTH + MARGIN
    return width, HEADER + rows * (tile + ROW_GAP) + MARGIN


def tile_box(row: int, column: int, tile: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a tile."""
    left = MARGIN + LABEL_WIDTH + column * (tile + TILE_GAP)
    top = HEADER + row * (tile + ROW_GAP)
    return left, top, left + tile, top + tile


def render(tiles: dict[int, list[Image.Image]], texts: dict[int, str], counts: dict[int, int],
           labels, per_class: int, tile: int, title: str) -> Image.Image:
    """The sheet of `labels` (in this order, one row each)."""
    labels = list(labels)
    sheet = Image.new("RGB", size(len(labels), per_class, tile), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((MARGIN, MARGIN), title, fill=INK, font=font)
    largest = max((counts.get(label, 0) for label in labels), default=0) or 1
    bar_left = MARGIN + LABEL_WIDTH + per_class * (tile + TILE_GAP)
    for row, label in enumerate(labels):
        top = tile_box(row, 0, tile)[1]
        text = texts.get(label, "")
        draw.text((MARGIN, top + tile // 2 - 6), f"{label}: {text}"[:36], fill=INK, font=font)
        for column, image in enumerate(tiles.get(label, [])[:per_class]):
            sheet.paste(image, tile_box(row, column, tile)[:2])
        count = counts.get(label, 0)
        length = round(BAR_WIDTH * count / largest)
        bar_top = top + tile // 2 - 8
        if length:
            draw.rectangle((bar_left, bar_top, bar_left + length - 1, bar_top + 16), fill=BAR)
        draw.text((bar_left + length + 4, bar_top + 2), str(count), fill=INK, font=font)
    return sheet

"""ILSVRC / PASCAL VOC annotation XML -> normalised bounding boxes; the boxes CSV format.

In: the bytes of one annotation XML and its file name. Out: an `Annotation` with the image's file
name, the kept boxes (coordinates divided by the annotation's <size>, min/max swapped when
reversed, clamped to [0, 1]) and the dropped ones with reasons. CSV rows are
`<image file name>,xmin,ymin,xmax,ymax` with 4 decimals, the format build_imagenet_data.py read.

Differences from the original process_bounding_boxes.py (documented in docs/imagenet.md):
* each box keeps its own <name>; the original labelled every box with the first <name>;
* an unparsable XML, a missing or zero <size>, a box with missing or non-numeric coordinates is
  reported with its reason instead of crashing the whole run;
* degenerate boxes (xmin >= xmax or ymin >= ymax after clamping) are reported, not silently lost.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator, Sequence

CSV_DECIMALS = 4


class AnnotationError(ValueError):
    """The whole XML file is unusable; str(self) is the reason."""


@dataclasses.dataclass(frozen=True)
class Box:
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    synset: str

    def coordinates(self) -> tuple[float, float, float, float]:
        return self.xmin, self.ymin, self.xmax, self.ymax


@dataclasses.dataclass(frozen=True)
class Annotation:
    image: str  # the image file name, e.g. n01440764_96.JPEG
    boxes: tuple[Box, ...]
    dropped: tuple[str, ...]  # one reason per dropped box


def image_name(xml_name: str) -> str:
    """`n01440764_96.xml` -> `n01440764_96.JPEG`, as the original scripts named images."""
    base = xml_name.rsplit("/", 1)[-1]
    return (base[:-4] if base.lower().endswith(".xml") else base) + ".JPEG"


def _number(node, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: <{tag}> is {text!r}, not a number") from None


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _box(obj, width: float, height: float, index: int) -> Box:
    where = f"object {index}"
    node = obj.find("bndbox")
    if node is None:
        raise AnnotationError(f"{where}: no <bndbox>")
    x0, x1 = (_number(node, t, where) / width for t in ("xmin", "xmax"))
    y0, y1 = (_number(node, t, where) / height for t in ("ymin", "ymax"))
    return Box(_clamp(min(x0, x1)), _clamp(min(y0, y1)), _clamp(max(x0, x1)),
               _clamp(max(y0, y1)), (obj.findtext("name") or "").strip())


_DECLARED_ENCODING = re.compile(
    rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["'][^>]*\?>""")


def _xml_root(data: bytes) -> ElementTree.Element:
    """The parsed document. Python's expat parser refuses multi-byte encodings (GB2312,
    Shift_JIS...) and ones it does not know; those are decoded here with Python's codecs."""
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as err:
        raise AnnotationError(f"not parsable XML: {err}") from err
    except (ValueError, LookupError) as err:
        declared = _DECLARED_ENCODING.match(data)
        if not declared:
            raise AnnotationError(f"not parsable XML: {err}") from err
    encoding = declared.group(1).decode("ascii")
    try:
        text = data[declared.end():].decode(encoding)
    except LookupError:
        raise AnnotationError(f"declares encoding {encoding!r}, which is unknown; re-save it "
                              f"as UTF-8") from None
    except UnicodeDecodeError as err:
        raise AnnotationError(f"is not valid {encoding} (byte {err.start}: {err.reason})") from None
    try:
        return ElementTree.fromstring(text)
    except ElementTree.ParseError as err:
        raise AnnotationError(f"not parsable XML: {err}") from err


def parse(data: bytes, xml_name: str, synsets: Sequence[str] | None = None,
          expected_synset: str | None = None) -> Annotation:
    """Parses one annotation.

    Args:
        synsets: when given, boxes of other synsets are dropped (the challenge's 1000 only).
        expected_synset: for the training layout `<synset>/<image>.xml`: boxes of another synset
            would be attached to an image of this label, so they are dropped.

    Raises:
        AnnotationError: unparsable XML or no usable <size>.
    """
    root = _xml_root(data)
    size = root.find("size")
    if size is None:
        raise AnnotationError("no <size> element; boxes cannot be normalised")
    width, height = _number(size, "width", "<size>"), _number(size, "height", "<size>")
    if width <= 0 or height <= 0:
        raise AnnotationError(f"<size> is {width:g}x{height:g}; boxes cannot be normalised")
    kept, dropped = [], []
    allowed = set(synsets) if synsets is not None else None
    for index, obj in enumerate(root.iter("object")):
        try:
            box = _box(obj, width, height, index)
        except AnnotationError as err:
            dropped.append(str(err))
            continue
        stored = [float(f"{c:.{CSV_DECIMALS}f}") for c in box.coordinates()]
        if stored[0] >= stored[2] or stored[1] >= stored[3]:  # as the CSV will hold it
            dropped.append(f"object {index}: degenerate box {box.coordinates()} (no area at "
                           f"the CSV's {CSV_DECIMALS} decimals; <size> is {width:g}x{height:g})")
        elif allowed is not None and box.synset not in allowed:
            dropped.append(f"object {index}: synset {box.synset!r} is not in the synsets file")
        elif expected_synset is not None and box.synset != expected_synset:
            dropped.append(f"object {index}: synset {box.synset!r} differs from its directory "
                           f"{expected_synset!r}")
        else:
            kept.append(box)
    return Annotation(image_name(xml_name), tuple(kept), tuple(dropped))


def csv_rows(annotation: Annotation) -> list[str]:
    """`name,xmin,ymin,xmax,ymax` lines (no newline) for the kept boxes, in file order."""
    return [",".join([annotation.image] + [f"{v:.{CSV_DECIMALS}f}" for v in box.coordinates()])
            for box in annotation.boxes]


def parse_csv_line(line: str, where: str = "boxes CSV") -> tuple[str, tuple[float, ...]]:
    """One CSV line -> (image file name, (xmin, ymin, xmax, ymax)). Raises ValueError."""
    parts = line.strip().split(",")
    if len(parts) != 5:
        raise ValueError(f"{where}: {line.strip()!r} is not 'name,xmin,ymin,xmax,ymax'")
    try:
        coords = tuple(float(p) for p in parts[1:])
    except ValueError:
        raise ValueError(f"{where}: {line.strip()!r} has a non-numeric coordinate") from None
    return parts[0], coords


def read_csv(lines: Iterable[str], where: str = "boxes CSV"
             ) -> Iterator[tuple[str, tuple[float, ...]]]:
    """(image file name, (xmin, ymin, xmax, ymax)) per CSV line, blank lines skipped; a bad line
    raises ValueError naming `where` and its line number."""
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield parse_csv_line(line, f"{where} line {number}")

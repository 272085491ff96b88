"""Label files: text lines in, a label map out. Label 0 is the background class by default.

A labels file has one label per line; line 1 is label 1, line 2 label 2, and so on, exactly as
the original Inception scripts numbered them (label 0 is reserved for the background class, so a
model has N+1 outputs). That is `label_offset` 1; with offset 0 (`--no-background`, for models
with N outputs such as Keras applications' 1000-way ImageNet heads) line 1 is label 0. Rules,
each with a clear message:

* blank lines between labels: error (they would silently shift every later label);
  trailing blank lines at the end of the file are ignored;
* a label listed twice: error naming both lines;
* a label that is not a valid directory name (contains "/"): error.

How labels are checked against the image directories is in `reconcile()`.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from collections.abc import Iterable, Sequence

from inception_data.build_options import NO_BACKGROUND, WITH_BACKGROUND  # noqa: F401 (re-exported)

BACKGROUND = 0
# sha256 of the ILSVRC-2012 validation labels file the original scripts shipped (and we do)
ILSVRC2012_VALIDATION_SHA256 = "313fc3f23c864dde9183c9a368809065765dd1b657a6904fded44e3e46d34604"
SYNSETS_FILE = "imagenet_lsvrc_2015_synsets.txt"
METADATA_FILE = "imagenet_metadata.txt"
VALIDATION_FILE = "imagenet_2012_validation_synset_labels.txt"


class LabelError(ValueError):
    """A labels file or a label/directory mismatch the user must fix."""


@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Label names in label order; `names[0]` is label `offset` (1: label 0 is the background
    class; 0: no background class)."""

    names: tuple[str, ...]
    offset: int = WITH_BACKGROUND

    def index(self, name: str) -> int:
        """The label of `name`."""
        return self._indices[name]

    def name(self, label: int) -> str:
        """The name of `label`."""
        return self.names[label - self.offset]

    def numbered(self) -> list[tuple[int, str]]:
        """(label, name) in label order."""
        return list(enumerate(self.names, start=self.offset))

    def __contains__(self, name: str) -> bool:
        return name in self._indices

    def __len__(self) -> int:
        return len(self.names)

    @property
    def _indices(self) -> dict[str, int]:
        cached = self.__dict__.get("_cache")
        if cached is None:
            cached = {name: i + self.offset for i, name in enumerate(self.names)}
            object.__setattr__(self, "_cache", cached)
        return cached

    def to_text(self) -> str:
        """The labels file text: one label per line, line i is label i."""
        return "".join(f"{name}\n" for name in self.names)

    def as_dict(self) -> dict[str, int]:
        return dict(self._indices)


def parse_labels(text: str, source: str = "labels file") -> LabelMap:
    """Parses labels-file text. Raises LabelError naming `source` and the line."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    seen: dict[str, int] = {}
    for number, name in enumerate(lines, start=1):
        if not name:
            raise LabelError(
                f"{source}: line {number} is blank; every line before the last label must name "
                f"a label (line i is label i), so remove the blank line")
        if "/" in name:
            raise LabelError(f"{source}: line {number} {name!r} contains '/'; labels are "
                             f"directory names")
        control = next((c for c in name if (ord(c) < 32 and c != "\t") or ord(c) == 127), None)
        if control is not None:  # a NUL cannot be in a directory name; nor is it text
            raise LabelError(f"{source}: line {number} {name!r} contains the control "
                             f"character {control!r}; labels are directory names: is this "
                             f"the right file, saved as text?")
        if name in seen:
            raise LabelError(f"{source}: label {name!r} appears on line {seen[name]} and line "
                             f"{number}; each label must appear once")
        seen[name] = number
    if not lines:
        raise LabelError(f"{source} holds no labels")
    return LabelMap(tuple(lines))


def from_directories(names: Iterable[str]) -> LabelMap:
    """Labels from sub-directory names, sorted, as the original scripts did without a file."""
    return LabelMap(tuple(sorted(set(names))))


@dataclasses.dataclass(frozen=True)
class Reconciled:
    """Result of checking a label map against the class directories found on disk."""

    missing: tuple[str, ...]  # in the labels file, no directory (or an empty one): warning
    unlisted: tuple[str, ...]  # a directory not in the labels file: its files are rejected


def reconcile(label_map: LabelMap, directories: Sequence[str]) -> Reconciled:
    """Compares labels with the class directories found under a split directory."""
    present = set(directories)
    return Reconciled(
        missing=tuple(name for name in label_map.names if name not in present),
        unlisted=tuple(sorted(present.difference(label_map.names))),
    )


def packaged_file(name: str) -> str:
    """Text of a label file shipped in the package (see labels/)."""
    return importlib.resources.files("inception_data.label_files").joinpath(name).read_text()


def read_text(path: str) -> str:
    """The text of a labels file, local or gs:// (through Beam's FileSystems); a BOM is
    dropped."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        data = handle.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LabelError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason}); save it "
                         f"as UTF-8") from None


def load_labels(path: str | None, packaged: str = SYNSETS_FILE) -> LabelMap:
    """The label map in `path`, or in the packaged file `packaged` when `path` is None."""
    return parse_labels(read_text(path) if path else packaged_file(packaged), path or packaged)


def parse_metadata(text: str, source: str = METADATA_FILE) -> dict[str, str]:
    """`synset<TAB>human text` lines -> {synset: text}."""
    out = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            synset, _, human = line.partition("\t")
            if not human:
                raise LabelError(f"{source}: line {number} {line!r} is not 'synset<TAB>text'")
            out[synset.strip()] = human.strip()
    return out


def load_metadata(path: str | None) -> dict[str, str]:
    """{synset: human text} from `path`, or from the packaged imagenet_metadata.txt."""
    return parse_metadata(read_text(path) if path else packaged_file(METADATA_FILE),
                          path or METADATA_FILE)


def parse_validation_labels(text: str, source: str = VALIDATION_FILE) -> list[str]:
    """Validation labels text -> synsets, where line i is the synset of validation image i.
    A blank line before the last label is an error: it would shift every later image."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for number, synset in enumerate(lines, start=1):
        if not synset or " " in synset or "\t" in synset:
            raise LabelError(f"{source}: line {number} {synset!r} is not one synset; line i "
                             f"must name the synset of validation image i")
    if not lines:
        raise LabelError(f"{source} holds no labels")
    return lines


def validation_labels_differ(path: str | None) -> str | None:
    """A warning when the validation labels file is not ILSVRC-2012's (by sha256), else None:
    a reordered or edited copy mislabels validation images without any other sign."""
    import hashlib

    text = read_text(path) if path else packaged_file(VALIDATION_FILE)
    digest = hashlib.sha256(text.encode()).hexdigest()  # of the text (a BOM does not count)
    if digest == ILSVRC2012_VALIDATION_SHA256:
        return None
    return (f"{path or VALIDATION_FILE} is not the ILSVRC-2012 validation labels file (sha256 "
            f"{digest[:16]}..., expected {ILSVRC2012_VALIDATION_SHA256[:16]}...); if it is a "
            f"reordered or edited copy, validation images get wrong labels - unless you meant "
            f"another labelling, use the packaged file (omit --validation-labels-file)")


def load_validation_labels(path: str | None) -> list[str]:
    """Synsets of the validation images, from `path` or the packaged ILSVRC-2012 file."""
    return parse_validation_labels(read_text(path) if path else packaged_file(VALIDATION_FILE),
                                   path or VALIDATION_FILE)

"""ImageNet build: ILSVRC-2012 trees or the original tar archives -> sharded TFRecords.

In: training images as `train/<synset>/*.JPEG` or `ILSVRC2012_img_train.tar` (a tar of 1000
per-synset tars); validation images as a flat folder (labelled by the validation labels file),
synset sub-folders, or `ILSVRC2012_img_val.tar`; optionally the boxes CSV of
`inception-data boxes`. Out: the generic build's output, with records that also carry
`image/class/synset`, the human-readable text and the boxes, as build_imagenet_data.py wrote.

Archives are never extracted: the launcher indexes the outer tar's member offsets (1000 headers),
workers index each per-synset tar in parallel, and each shard writer reads its images by offset.
"""

from __future__ import annotations

import dataclasses
import io
import tarfile
from typing import Mapping, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inception_data import labels as labels_lib
from inception_data import relabel, schema
from pipelines import image_folder, transforms


@dataclasses.dataclass(frozen=True)
class FlatSource:
    """A flat validation folder (`archive` False) or tar (`archive` True)."""

    split: str
    root: str
    archive: bool


@dataclasses.dataclass(frozen=True)
class InnerTar:
    """One per-synset tar inside the training tar. label None: synset not in the synsets file."""

    split: str
    root: str  # the outer tar
    name: str  # the synset
    label: int | None
    offset: int
    size: int


class _Window(io.RawIOBase):
    """A read-only view of bytes [offset, offset + size) of a seekable file, for tarfile."""

    def __init__(self, handle, offset: int, size: int):
        super().__init__()
        self._handle, self._offset, self._size, self._pos = handle, offset, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, pos, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + pos))
        return self._pos

    def readinto(self, buffer):
        n = min(len(buffer), self._size - self._pos)
        self._handle.seek(self._offset + self._pos)
        data = self._handle.read(n)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


def tar_members(path: str, offset: int = 0, size: int | None = None):
    """Yields (name, data offset in `path`, size) of the regular files of a tar stored in `path`
    at `offset` (headers only: no member data is read)."""
    with FileSystems.open(path) as handle:
        if size is None:
            handle.seek(0, io.SEEK_END)
            size = handle.tell()
        window = io.BufferedReader(_Window(handle, offset, size), buffer_size=64 * 1024)
        with tarfile.open(fileobj=window, mode="r:") as archive:
            for member in archive:
                if member.isfile():
                    yield member.name, offset + member.offset_data, member.size


def _flat_entries(source: FlatSource):
    if source.archive:
        for name, offset, size in tar_members(source.root):
            yield name.rsplit("/", 1)[-1], f"{source.root}#{name}", (name, offset, size)
    else:
        pattern = FileSystems.join(source.root, "*")
        for meta in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
            name = meta.path.rsplit("/", 1)[-1]
            yield name, meta.path, (name, -1, -1)


def list_source(source, synset_of_image: Mapping[str, str], label_of: Mapping[str, int]):
    """Like transforms.list_class, for flat validation folders/tars and per-synset tars."""
    if isinstance(source, transforms.ClassDir):
        yield from transforms.list_class(source)
        return
    if isinstance(source, InnerTar):
        members = list(tar_members(source.root, source.offset, source.size))
        yield beam.pvalue.TaggedOutput(transforms.FOUND, (source.split, len(members)))
        if source.label is None:
            for name, _, _ in members:
                yield beam.pvalue.TaggedOutput(transforms.REJECTS, transforms.reject(
                    source.split, f"{source.root}#{source.name}.tar/{name}", "unlisted directory",
                    f"synset {source.name!r} is not in the synsets file"))
            return
        yield source.split, source.label, [(f"{source.name}/{name.rsplit('/', 1)[-1]}", o, s)
                                           for name, o, s in members]
        return
    per_label: dict[int, list] = {}
    found = 0
    for name, where, entry in _flat_entries(source):
        found += 1
        synset = synset_of_image.get(name)
        if transforms.is_hidden(name):
            yield transforms.hidden_reject(source.split, where)
        elif synset is None or synset not in label_of:
            yield beam.pvalue.TaggedOutput(transforms.REJECTS, transforms.reject(
                source.split, where, "not in validation labels",
                f"{name} is not in the validation labels file (or its synset is not in the "
                f"synsets file); name validation images ILSVRC2012_val_%08d.JPEG"))
        else:
            per_label.setdefault(label_of[synset], []).append(entry)
    yield beam.pvalue.TaggedOutput(transforms.FOUND, (source.split, found))
    for label in sorted(per_label):
        yield source.split, label, per_label[label]


class ListImageNet(beam.PTransform):
    def __init__(self, synset_of_image: Mapping[str, str], label_of: Mapping[str, int]):
        super().__init__()
        self._synset_of_image, self._label_of = dict(synset_of_image), dict(label_of)

    def expand(self, sources):
        return (sources
                | "Spread" >> beam.Reshuffle()  # index per-synset tars on many workers
                | "List" >> beam.FlatMap(list_source, self._synset_of_image, self._label_of
                                         ).with_outputs(transforms.REJECTS, transforms.FOUND,
                                                        main="listed"))


@dataclasses.dataclass(frozen=True)
class ImagenetRecords:
    """Builds build_imagenet_data.py's record for an image (picklable for workers)."""

    synsets: tuple[str, ...]
    texts: Mapping[str, str]

    def __call__(self, split, item, image) -> schema.ImageRecord:
        synset = self.synsets[item.label - 1]
        return schema.ImageRecord(encoded=image.encoded, height=image.height, width=image.width,
                                  label=item.label, text=self.texts.get(synset, synset),
                                  filename=item.name, synset=synset,
                                  boxes=tuple(tuple(b) for b in item.boxes))


def train_tar_sources(split: str, tar_path: str, label_map, warn):
    """InnerTars of the training tar, from its 1000 member headers."""
    sources = []
    for name, offset, size in tar_members(tar_path):
        synset = name.rsplit("/", 1)[-1]
        if not synset.endswith(".tar"):
            warn(f"{tar_path}: member {name} is not a per-synset tar; skipped")
            continue
        synset = synset[:-4]
        label = label_map.index(synset) if synset in label_map else None
        sources.append(InnerTar(split, tar_path, synset, label, offset, size))
    present = [s.name for s in sources]
    image_folder.warn_each(warn, [
        f"{split}: synset {name} has no tar in {tar_path}; it keeps its label with 0 images"
        for name in labels_lib.reconcile(label_map, present).missing])
    # the image count is unknown until the workers index the inner tars
    return sources, image_folder.Size(0, sum(s.size for s in sources))


def validation_sources(split: str, root: str, label_map, warn):
    """A flat validation folder or synset sub-folders: detected from what is inside."""
    flat = FileSystems.match([FileSystems.join(root, "*")])[0]
    nested = image_folder.class_directories(root)
    if flat.metadata_list and nested:
        raise labels_lib.LabelError(
            f"{root} holds both files and synset sub-folders; finish sorting it with "
            f"`inception-data relabel-validation {root}` or remove the sub-folders")
    if nested:
        return image_folder.directory_sources(split, root, label_map, warn, nested)
    return [FlatSource(split, root.rstrip("/"), archive=False)], image_folder.Size(
        len(flat.metadata_list), sum(m.size_in_bytes for m in flat.metadata_list))


@dataclasses.dataclass(frozen=True)
class ImagenetInputs:
    train: str | None = None
    train_is_tar: bool = False
    validation: str | None = None
    validation_is_tar: bool = False
    boxes_csv: str | None = None


def run_imagenet(config: image_folder.BuildConfig, inputs: ImagenetInputs,
                 texts: Mapping[str, str], validation_synsets: Sequence[str],
                 beam_args: Sequence[str] = (), *, overwrite=False, progress=True, workers=None,
                 warn=image_folder.log.warning) -> dict:
    """Checks the inputs, lists them, runs the ImageNet build; returns the manifest."""
    label_map = config.label_map
    sources, total = [], image_folder.Size()
    if inputs.train:
        make = train_tar_sources if inputs.train_is_tar else image_folder.directory_sources
        found, count = make("train", inputs.train, label_map, warn)
        sources, total = sources + found, total + count
    if inputs.validation:
        if inputs.validation_is_tar:
            tar_bytes = FileSystems.match([inputs.validation])[0].metadata_list[0].size_in_bytes
            found = [FlatSource("validation", inputs.validation, archive=True)]
            count = image_folder.Size(0, tar_bytes)
        else:
            found, count = validation_sources("validation", inputs.validation, label_map, warn)
        sources, total = sources + found, total + count
    synset_of_image = {relabel.validation_name(i): s
                       for i, s in enumerate(validation_synsets, start=1)}
    label_of = label_map.as_dict()
    make_record = ImagenetRecords(label_map.names, dict(texts))

    def build(pipeline, spill_dir):
        image_folder.build(pipeline, config, sources, make_record,
                           list_images=ListImageNet(synset_of_image, label_of),
                           boxes_csv=inputs.boxes_csv, by_basename=True, spill_dir=spill_dir)

    return image_folder.launch_build(config, build, total, beam_args, overwrite=overwrite,
                                     progress=progress, workers=workers)


def parse_metadata(text: str) -> dict[str, str]:
    """`synset<TAB>human text` lines -> {synset: text}."""
    out = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            synset, _, human = line.partition("\t")
            if not human:
                raise labels_lib.LabelError(f"metadata line {number} {line!r} is not "
                                            f"'synset<TAB>text'")
            out[synset.strip()] = human.strip()
    return out

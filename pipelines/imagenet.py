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
import logging
from collections.abc import Mapping, Sequence

from apache_beam.io.filesystems import FileSystems

from inception_data import labels as labels_lib
from inception_data import relabel, schema
from pipelines import (
    box_join,
    builder,
    image_folder,
    label_warnings,
    listing,
    notices,
    skeleton,
)
from pipelines.errors import LaunchError
from pipelines.tar_index import index_tar

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class InnerTar:
    """One per-synset tar inside the training tar, indexed on a worker."""

    split: str
    root: str  # the outer tar
    name: str  # the synset
    offset: int
    size: int

    def events(self, context: builder.ListContext):
        index = index_tar(self.root, self.offset, self.size)
        where = listing.member_path(self.root, f"{self.name}.tar")
        yield listing.Found(self.split, index.found, self.size)
        for name, kind, reason in index.problems:
            yield listing.Reject(self.split, f"{where}/{name}" if name else where, kind, reason)
        label = context.label_of.get(self.name)
        if label is None:
            for name, _, _ in index.files:
                yield listing.Reject(self.split, f"{where}/{name}", "unlisted directory",
                                     f"synset {self.name!r} is not in the synsets file")
            return
        yield listing.ClassFiles(self.split, label, context.keying.items(
            label, [(f"{self.name}/{name.rsplit('/', 1)[-1]}", offset, size)
                    for name, offset, size in index.files]))


@dataclasses.dataclass(frozen=True)
class ValidationSource:
    """The validation images: a tar (`archive`), or a folder, flat (labelled by the validation
    labels file) or of synset sub-folders, detected from what it holds in the same listing."""

    split: str
    root: str
    archive: bool = False

    def events(self, context: builder.ListContext):
        if self.archive:
            index = index_tar(self.root)
            entries = [(name, (name, offset, size)) for name, offset, size in index.files]
            found = listing.TreeClass("", [(name, size) for name, _, size in index.files],
                                      list(index.problems))
            yield from _flat_events(self.split, self.root, found, entries, context, True)
            return
        top, tree = self._listing()
        if tree is not None:
            yield from listing.tree_events(self.split, tree, context.label_of, context.keying)
            return
        yield from _flat_events(self.split, self.root, top,
                                [(r, (r, -1, -1)) for r, _ in top.files], context, False)

    def _listing(self):
        """(the folder's own files, a listing.Tree of its sub-folders or None)."""
        if listing.is_local(self.root):
            top = listing.scan(self.root)
            nested = top.subdirectories > 0
        else:
            top, classes = listing.walk_remote(self.root)
            nested = bool(classes)
        if nested and top.found:
            raise labels_lib.LabelError(
                f"{self.root} holds both files and synset sub-folders; finish sorting it with "
                f"`inception-data relabel-validation {self.root}` or remove the sub-folders")
        if not nested:
            return top, None
        tree = listing.Tree(self.root) if listing.is_local(self.root) else \
            listing.Tree.from_classes(self.root, classes)
        return top, tree


def _flat_events(split, root, found: listing.TreeClass, entries, context, archive: bool):
    """Found, rejects and one ClassFiles per label of a flat folder or tar, labelled by name."""
    yield listing.Found(split, found.found, sum(size for _, size in found.files))
    def where(relpath):
        return listing.member_path(root, relpath) if archive else FileSystems.join(root, relpath)

    for relpath, kind, reason in found.rejects:
        yield listing.Reject(split, where(relpath), kind, reason)
    per_label: dict[int, list] = {}
    for relpath, entry in entries:
        name = relpath.rsplit("/", 1)[-1]
        synset = context.synset_of_image.get(name)
        if listing.is_hidden(name):
            yield listing.hidden_reject(split, where(relpath))
        elif synset is None or synset not in context.label_of:
            yield listing.Reject(
                split, where(relpath), "not in validation labels",
                f"{name} is not in the validation labels file (or its synset is not in the "
                f"synsets file); name validation images ILSVRC2012_val_%08d.JPEG")
        else:
            per_label.setdefault(context.label_of[synset], []).append(entry)
    for label in sorted(per_label):
        yield listing.ClassFiles(split, label, context.keying.items(label, per_label[label]))


@dataclasses.dataclass(frozen=True)
class ImagenetRecords:
    """Builds build_imagenet_data.py's record for an image (picklable for workers)."""

    label_map: labels_lib.LabelMap
    texts: Mapping[str, str]
    keys = schema.IMAGENET_KEYS  # what its records hold (the manifest's record_keys)

    def __call__(self, item, image) -> schema.ImageRecord:
        synset = self.label_map.name(item.label)
        return schema.ImageRecord(encoded=image.encoded, height=image.height, width=image.width,
                                  label=item.label, text=self.texts.get(synset, synset),
                                  filename=item.name, synset=synset,
                                  boxes=tuple(tuple(b) for b in item.boxes))


def train_tar_sources(split: str, tar_path: str, label_map, listed: builder.Listed
                      ) -> list[InnerTar]:
    """InnerTars of the training tar, from its 1000 member headers; what is not a per-synset
    tar, and damage, go to `listed` as rejects."""
    index = index_tar(tar_path)
    if not index.files and index.problems:
        raise LaunchError(f"{tar_path}: {index.problems[0][2]}; pass "
                                 f"ILSVRC2012_img_train.tar")  # ("not a readable tar ...")
    sources = []  # (a second <synset>.tar is one of index.problems: a duplicate)
    for name, offset, size in index.files:
        synset = name.rsplit("/", 1)[-1]
        if not synset.endswith(".tar"):
            index.problems.append((name, "not a synset tar", "a member of the training tar "
                                   "that is not a per-synset tar (<synset>.tar); not read"))
            continue
        synset = synset[:-4]
        sources.append(InnerTar(split, tar_path, synset, offset, size))
    for name, kind, reason in index.problems:
        listed.found.append(listing.Found(split, 1))
        listed.rejects.append(listing.Reject(split, listing.member_path(tar_path, name), kind,
                                             reason))
    notices.note_each([f"{listing.member_path(tar_path, name)}: {reason}"
                       for name, _, reason in index.problems])
    present = [s.name for s in sources]
    notices.note_each([
        f"{split}: synset {name} has no tar in {tar_path}; it keeps its label with 0 images"
        for name in labels_lib.reconcile(label_map, present).missing])
    label_warnings.warn_unlisted_names(split, tar_path, present, label_map)
    return sources


@dataclasses.dataclass(frozen=True)
class ImagenetInputs:
    train: str | None = None
    train_is_tar: bool = False
    validation: str | None = None
    validation_is_tar: bool = False
    boxes_csv: str | None = None


@dataclasses.dataclass
class ImagenetSource:
    """The ImageNet build as a source of skeleton.run: the inputs, the synsets' texts and the
    validation labels (line i: the synset of ILSVRC2012_val_<i>.JPEG)."""

    inputs: ImagenetInputs
    texts: Mapping[str, str]
    validation_synsets: Sequence[str]
    train_tree: bool = False  # set by list: the launcher opened a training tree

    def configure(self, config: builder.BuildConfig, plan) -> builder.BuildConfig:
        return builder.numbered(config, config.label_map)

    def context(self, config: builder.BuildConfig) -> builder.ListContext:
        return builder.ListContext(
            config.label_map.as_dict(), listing.Keying(config.options.seed, by_basename=True),
            {relabel.validation_name(i): s
             for i, s in enumerate(self.validation_synsets, start=1)})

    def records(self, config: builder.BuildConfig) -> ImagenetRecords:
        return ImagenetRecords(config.label_map, dict(self.texts))

    def list(self, config: builder.BuildConfig, plan, context, scratch) -> skeleton.Work:
        inputs, label_map, here = self.inputs, config.label_map, []  # event streams listed here
        work = skeleton.Work(boxes_csv=inputs.boxes_csv)
        self.train_tree = bool(inputs.train and not inputs.train_is_tar
                               and skeleton.lists_in_launcher(plan, inputs.train))
        outer = builder.Listed()  # the training tar's own problems, found by the launcher
        if inputs.train_is_tar:
            work.on_workers += train_tar_sources("train", inputs.train, label_map, outer)
        elif self.train_tree:
            tree = listing.Tree(inputs.train)
            label_warnings.warn_unlisted_names("train", inputs.train, tree.names, label_map)
            if plan.local_runner:
                here.append(listing.tree_events("train", tree, context.label_of,
                                                context.keying))
            else:
                work.on_workers.append(image_folder.TreeSource("train", inputs.train))
        elif inputs.train:  # an object-store tree of a distributed build: its workers list it
            work.on_workers.append(image_folder.TreeSource("train", inputs.train))
        if inputs.validation:
            source = ValidationSource("validation", inputs.validation, inputs.validation_is_tar)
            if plan.local_runner and not source.archive:
                here.append(source.events(context))
            else:
                work.on_workers.append(source)
        if plan.local_runner:
            work.listed = builder.list_in_launcher(here, scratch)
        work.listed.rejects += outer.rejects
        work.listed.found += outer.found
        if plan.local_runner and inputs.train and not inputs.train_is_tar:
            # (a distributed build has no counts before it runs)
            label_warnings.warn_empty_labels(
                "train", inputs.train.rstrip("/"), label_map,
                label_warnings.spilled_counts(work.listed, "train"))
        if inputs.boxes_csv and scratch is not None:  # a local build reads the CSV once
            work.box_index = f"{scratch}/boxes.sqlite"
            box_join.index_boxes(inputs.boxes_csv, work.box_index)
        work.worker_bytes = sum(s.size for s in work.on_workers if isinstance(s, InnerTar))
        return work

    def after_run(self, config: builder.BuildConfig, plan, manifest: dict) -> None:
        inputs = self.inputs
        if inputs.train and not inputs.train_is_tar and not self.train_tree:
            label_warnings.warn_unlisted_after_run(manifest, "train", inputs.train)


def run_imagenet(config: builder.BuildConfig, inputs: ImagenetInputs,
                 texts: Mapping[str, str], validation_synsets: Sequence[str],
                 beam_args: Sequence[str] = (), *, warn=log.warning) -> dict | None:
    """Lists the inputs (each file once), runs the ImageNet build; returns the manifest."""
    return skeleton.run(config, ImagenetSource(inputs, texts, validation_synsets), beam_args,
                        warn=warn)

"""Class-per-directory build: `DIR/<label>/<image>` trees -> sharded tf.Example TFRecords.

In: one root directory per split (train, validation), a label map. Out, in the output
directory: `<split>-NNNNN-of-MMMMM` shards, `labels.txt`, `rejects-<split>.jsonl` and
`manifest.json` (written last).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from typing import Mapping, NamedTuple, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import inception_data
from inception_data import labels as labels_lib
from inception_data import schema
from pipelines import launch, report, transforms

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    output_dir: str
    roots: Mapping[str, str]  # split -> directory of class sub-directories
    label_map: labels_lib.LabelMap
    shards: Mapping[str, int | None]  # split -> shard count, None for auto
    seed: int = 0
    verify: str = "fast"
    exif: str = "apply"
    max_rejects: float | None = None
    resume: bool = False  # reuse the committed shards of an interrupted identical build

    def settings(self) -> dict:
        return {"seed": self.seed, "verify": self.verify, "exif": self.exif,
                "max_rejects": self.max_rejects,
                "shards": {s: n or "auto" for s, n in self.shards.items()}}


class Size(NamedTuple):
    """How much input a source holds: files (0 when unknown until workers list it) and bytes."""

    files: int = 0
    bytes: int = 0

    def __add__(self, other):
        return Size(self.files + other.files, self.bytes + other.bytes)


def class_directories(root: str) -> dict[str, Size]:
    """Sub-directory name -> files directly inside it and their bytes, under `root`.

    Listed through Beam's filesystems (local or gs://): directories are inferred from file
    paths, as object stores have none, so an empty directory is not seen. The listing streams:
    FileSystems.match would first build a list of every file's metadata (hundreds of MB for
    ImageNet), so this iterates the filesystem's `_list` generator, on which match itself is
    built, and keeps only per-directory counts.
    """
    sizes: dict[str, Size] = {}
    prefix = root.rstrip("/") + "/"
    for meta in FileSystems.get_filesystem(prefix)._list(prefix):  # noqa: SLF001 (see above)
        parts = meta.path[len(prefix):].lstrip("/").split("/")
        if len(parts) == 2:  # what match("root/*/*") finds: files directly in a sub-directory
            sizes[parts[0]] = sizes.get(parts[0], Size()) + Size(1, meta.size_in_bytes)
    return sizes


def class_sources(split: str, root: str, label_map: labels_lib.LabelMap,
                  present: Sequence[str]) -> list[transforms.ClassDir]:
    """ClassDirs of a split: every label (even without a directory) and every unlisted one."""
    sources = [transforms.ClassDir(split, root.rstrip("/"), name, label_map.index(name))
               for name in label_map.names if name in present]
    sources += [transforms.ClassDir(split, root.rstrip("/"), name, None)
                for name in sorted(set(present).difference(label_map.names))]
    return sources


@dataclasses.dataclass(frozen=True)
class FolderRecords:
    """Builds the ImageRecord of a class-per-directory image (picklable for workers)."""

    names: tuple[str, ...]

    def __call__(self, split, item, image) -> schema.ImageRecord:
        return schema.ImageRecord(encoded=image.encoded, height=image.height, width=image.width,
                                  label=item.label, text=self.names[item.label - 1],
                                  filename=item.name)


def build(pipeline, config: BuildConfig, sources: Sequence, make_record=None, *,
          list_images=None, boxes_csv: str | None = None, by_basename: bool = False,
          spill_dir: str | None = None) -> None:
    """Adds the whole conversion to `pipeline`.

    `list_images` turns the sources into listed classes (default: class directories);
    `boxes_csv` adds each image's boxes (ImageNet). With `spill_dir` (a local scratch directory,
    local runners only) shards are written from spilled listings without a per-image shuffle,
    so memory does not grow with the dataset; without it images are grouped by shard with a
    GroupByKey, which is what distributed runners scale with. Both write identical bytes.
    """
    splits = list(config.roots)
    make_record = make_record or FolderRecords(config.label_map.names)
    listed = (pipeline
              | "Sources" >> beam.Create(list(sources))  # ClassDir or another source
              | "ListImages" >> (list_images or transforms.ListImages())
              )  # (split, label, [(relpath, offset, size)])
    writer = transforms.WriteShardFn(config.output_dir, config.roots, make_record,
                                     config.verify, config.exif, config.resume)
    if spill_dir is not None:
        written = listed.listed | "WriteShardGroups" >> transforms.WriteShardGroups(
            config.shards, config.seed, by_basename, spill_dir, writer, boxes_csv)
    else:
        assigned = listed.listed | "AssignShards" >> transforms.AssignShards(
            config.shards, config.seed, by_basename)  # ((split, shard, num), Item | None)
        if boxes_csv:
            assigned = assigned | "AttachBoxes" >> transforms.AttachBoxes(boxes_csv)
        written = (assigned
                   | "GroupByShard" >> beam.GroupByKey()  # ((split, shard, num), [Item])
                   | "WriteShards" >> beam.ParDo(writer).with_outputs(
                       transforms.REJECTS, main="stats"))  # (split, shard stats)
    reject_infos = ((listed[transforms.REJECTS], written[transforms.REJECTS])
                    | "AllRejects" >> beam.Flatten()  # {split, path, kind, reason}
                    | "WriteRejects" >> transforms.WriteRejects(config.output_dir, splits))
    manifest_config = {"splits": splits, "labels": list(config.label_map.names),
                       "tool_version": inception_data.__version__,
                       "settings": config.settings()}
    _ = ((listed[transforms.FOUND], written.stats, reject_infos)
         | "WriteManifest" >> report.WriteManifest(config.output_dir, manifest_config,
                                                   config.max_rejects))


def launch_build(config: BuildConfig, build_fn, size: Size, beam_args: Sequence[str], *,
                 overwrite: bool, progress: bool, workers: int | None) -> dict:
    """Prepares the output directory, writes labels.txt, runs `build_fn(pipeline, spill_dir)`:
    a local runner gets a scratch directory for the listings (removed afterwards), a remote
    runner None."""
    fingerprint = {"settings": config.settings(), "roots": dict(config.roots),
                   "labels": list(config.label_map.names)}
    if not launch.prepare_output(config.output_dir, list(config.roots), overwrite, fingerprint,
                                 config.resume):
        manifest = launch.read_manifest(config.output_dir)
        manifest["seconds"] = 0.0
        return manifest  # --resume of a build that had already finished: nothing to do
    transforms.write_text(FileSystems.join(config.output_dir, "labels.txt"),
                          config.label_map.to_text())
    runner, options = launch.pipeline_options(beam_args, workers or launch.local_workers(size.bytes))
    counts = list(config.shards.values())
    total_shards = sum(counts) if all(counts) else None
    spill_dir = tempfile.mkdtemp(prefix="inception-data-listings-") if runner else None
    try:
        return launch.run(lambda pipeline: build_fn(pipeline, spill_dir), options, runner,
                          output_dir=config.output_dir, splits=list(config.roots),
                          total_images=size.files, total_shards=total_shards,
                          progress=progress)
    finally:
        if spill_dir:
            shutil.rmtree(spill_dir, ignore_errors=True)


def warn_each(warn, messages: Sequence[str], limit: int = 5) -> None:
    """Warns with the first `limit` messages and a count of the rest (a 10-class subset of
    ImageNet must not print 990 lines)."""
    for message in messages[:limit]:
        warn(message)
    if len(messages) > limit:
        warn(f"... and {len(messages) - limit} more like these")


def directory_sources(split: str, root: str, label_map: labels_lib.LabelMap,
                      warn=log.warning, present: Mapping[str, Size] | None = None
                      ) -> tuple[list[transforms.ClassDir], Size]:
    """ClassDirs of one split's class-per-directory tree and its size; warns about labels
    without a directory and directories without a label. `present`: the tree's
    class_directories() when the caller has listed it already."""
    present = class_directories(root) if present is None else present
    if not present:
        raise labels_lib.LabelError(f"{split}: no files found in sub-directories of {root}; "
                                    f"expected {root}/<label>/<image>")
    check = labels_lib.reconcile(label_map, list(present))
    warn_each(warn, [f"{split}: label {name!r} has no images under {root}/{name}; it keeps "
                     f"label {label_map.index(name)} with 0 examples" for name in check.missing])
    warn_each(warn, [f"{split}: directory {root}/{name} is not in the labels file; its "
                     f"{present[name].files} file(s) are listed in rejects-{split}.jsonl"
                     for name in check.unlisted])
    return class_sources(split, root, label_map, list(present)), sum(present.values(), Size())


def run_build(config: BuildConfig, beam_args: Sequence[str] = (), *, overwrite: bool = False,
              progress: bool = True, workers: int | None = None, warn=log.warning,
              listed: Mapping[str, Mapping[str, Size]] | None = None) -> dict:
    """Checks the inputs, prepares the output directory, runs the build; returns the manifest.
    `listed`: split -> class_directories() of its root, for roots the caller has listed."""
    sources, total = [], Size()
    for split, root in config.roots.items():
        split_sources, size = directory_sources(split, root, config.label_map, warn,
                                                (listed or {}).get(split))
        sources += split_sources
        total += size
    return launch_build(config, lambda p, spill: build(p, config, sources, spill_dir=spill),
                        total, beam_args, overwrite=overwrite, progress=progress,
                        workers=workers)

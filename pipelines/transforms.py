"""Shared PTransforms of the conversion pipelines.

List image files per class -> assign shards on *paths* -> group paths by shard -> write each
shard (read, normalise, serialize, commit atomically) -> rejects report and manifest.

Every file that is listed is either written to a shard or sent to the rejects output with its
reason; the manifest step checks found == written + rejected per split. All file I/O goes through
Beam's FileSystems, so the same code reads and writes local paths and gs://.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import uuid
from typing import Callable, Mapping, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
# Beam's own TFRecord framing (length, masked CRC32C, data, masked CRC32C). Its public
# WriteToTFRecord cannot be used: it decides itself which record lands in which shard, while we
# need a seeded, reproducible assignment and a per-shard atomic commit.
from apache_beam.io.tfrecordio import _TFRecordUtil

from inception_data import boxes as boxes_lib
from inception_data import images, schema, sharding

REJECTS = "rejects"


@dataclasses.dataclass(frozen=True)
class ClassDir:
    """One class directory of one split. label None: not in the labels file (files rejected)."""

    split: str
    root: str
    name: str
    label: int | None


class Item(NamedTuple):
    """One image on its way to a shard: paths and small metadata only, never pixels."""

    key: int  # seeded sort key (sharding.path_key)
    relpath: str  # relative to the split's root: "<class>/<file>"
    label: int
    boxes: tuple = ()  # ((xmin, ymin, xmax, ymax), ...) normalised, ImageNet only
    offset: int = -1  # >= 0: the bytes live in the split's tar archive at this offset
    size: int = -1

    @property
    def name(self) -> str:
        """The file name, without folders: what records store and boxes are keyed by."""
        return self.relpath.rsplit("/", 1)[-1]


def reject(split: str, path: str, kind: str, reason: str) -> dict:
    """A rejects-report row: `kind` is a short category, `reason` says what to do."""
    return {"split": split, "path": path, "kind": kind, "reason": reason}


FOUND = "found"


def is_hidden(basename: str) -> bool:
    return basename.startswith(".")


def hidden_reject(split: str, path: str):
    """Hidden files (.DS_Store, editor swap files) are reported, never read."""
    return beam.pvalue.TaggedOutput(REJECTS, reject(split, path, "hidden file",
                                                    "hidden file, not read"))


def list_class(source: ClassDir):
    """For one class directory yields (split, label, [(relpath, offset, size)]) of the files to
    convert (offset -1: a plain file), tagged rejects, and a tagged (split, files found)."""
    pattern = FileSystems.join(source.root, source.name, "*")
    found = sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    yield beam.pvalue.TaggedOutput(FOUND, (source.split, len(found)))
    keep = []
    for path in found:
        basename = path.rsplit("/", 1)[-1]
        if source.label is None:
            yield beam.pvalue.TaggedOutput(REJECTS, reject(
                source.split, path, "unlisted directory",
                f"directory {source.name!r} is not in the labels file; add it to the file or "
                f"move it out of {source.root}"))
        elif is_hidden(basename):
            yield hidden_reject(source.split, path)
        else:
            keep.append((path[len(source.root):].lstrip("/"), -1, -1))
    if source.label is not None:
        yield source.split, source.label, keep


class ListImages(beam.PTransform):
    """ClassDirs -> (split, label, [(relpath, offset, size)]) per class, + REJECTS and FOUND."""

    def expand(self, sources):
        return (sources
                | "Spread" >> beam.Reshuffle()  # list classes on many workers
                | "ListClass" >> beam.FlatMap(list_class).with_outputs(REJECTS, FOUND,
                                                                    main="listed"))


def _layout(split_pairs, shards):
    """(split, (label -> offset, shard count, images)): computed once per split from class
    counts."""
    split, pairs = split_pairs
    counts = dict(pairs)
    total = sum(counts.values())
    return split, (sharding.class_offsets(counts), shards.get(split) or sharding.auto_shards(total),
                   total)


@beam.ptransform_fn
def Layouts(counts, shards: Mapping[str, int | None]):  # noqa: N802 (a PTransform)
    """(split, (label, files)) per class -> (split, (offsets, num_shards, images)) per split."""
    return (counts
            | "GroupCounts" >> beam.GroupByKey()  # (split, [(label, n), ...])
            | "Layout" >> beam.Map(_layout, dict(shards)))


def _assign(listed, layouts, seed, by_basename):
    split, label, entries = listed
    offsets, num, _ = layouts[split]
    locators = {relpath: (start, size) for relpath, start, size in entries}
    for index, key, relpath in sharding.assign(locators, seed=seed, offset=offsets[label],
                                               num_shards=num, by_basename=by_basename):
        start, size = locators[relpath]
        yield (split, index, num), Item(key, relpath, label, offset=start, size=size)


def _all_shards(split_layout):
    split, (_, num, _) = split_layout
    for index in range(num):
        yield (split, index, num), None


class AssignShards(beam.PTransform):
    """(split, label, entries) -> ((split, shard, num_shards), Item).

    Also emits ((split, shard, num_shards), None) for every shard, so shards that receive no
    image are still written (empty) and a split always has its full set of files.
    """

    def __init__(self, shards: Mapping[str, int | None], seed: int, by_basename: bool = False):
        super().__init__()
        self._shards, self._seed, self._by_basename = dict(shards), seed, by_basename

    def expand(self, listed):
        layout = (listed
                  | "CountClass" >> beam.Map(lambda e: (e[0], (e[1], len(e[2]))))
                  | "Layouts" >> Layouts(self._shards))
        assigned = listed | "Assign" >> beam.FlatMap(
            _assign, beam.pvalue.AsDict(layout), self._seed, self._by_basename)
        every = layout | "EveryShard" >> beam.FlatMap(_all_shards)
        return (assigned, every) | "Merge" >> beam.Flatten()


# Object stores make an object visible only when its upload completes, and a failed upload
# leaves nothing, so there the final name is written directly: a rename would be a copy and a
# delete (twice the I/O, through batch calls that storage emulators do not support). Local and
# other filesystems write a temporary name and rename it, which is atomic.
OBJECT_STORES = ("gs", "s3", "azfs")


def _is_object_store(path: str) -> bool:
    return path.split("://", 1)[0] in OBJECT_STORES if "://" in path else False


def commit(tmp_path: str, final_path: str) -> None:
    """Makes a fully written temporary file visible under its final name."""
    if tmp_path != final_path:
        FileSystems.rename([tmp_path], [final_path])


def _delete_quietly(path: str) -> None:
    try:
        FileSystems.delete([path])
    except Exception:  # nothing to clean up, or the filesystem is gone: the error that matters
        pass           # is the one being raised


def temp_name(output_dir: str, name: str) -> str:
    """Where to write `name` before commit(): a hidden temporary name in `output_dir` that no
    `train-*` style pattern matches, or the final name itself on object stores."""
    if _is_object_store(output_dir):
        return FileSystems.join(output_dir, name)
    return FileSystems.join(output_dir, f".tmp-{name}-{uuid.uuid4().hex}")


def _read(root: str, item: Item, archive) -> bytes:
    if item.offset < 0:
        with FileSystems.open(FileSystems.join(root, item.relpath)) as handle:
            return handle.read()
    archive.seek(item.offset)
    data = archive.read(item.size)
    if len(data) != item.size:
        raise OSError(f"archive {root} ends before {item.relpath} ({len(data)} of {item.size} "
                      f"bytes); the tar is truncated")
    return data


class WriteShardFn(beam.DoFn):
    """((split, shard, num), [Item | None]) -> (split, shard stats); the shard is committed
    only when complete, rejects go to the REJECTS output.

    `make_record(split, item, normalised)` builds the schema.ImageRecord, so the generic and the
    ImageNet builds share this writer. A split whose root is a tar archive is read by offset.
    """

    def __init__(self, output_dir: str, roots: Mapping[str, str],
                 make_record: Callable, verify: str, exif: str, resume: bool = False):
        self._output_dir, self._roots = output_dir, dict(roots)
        self._make_record, self._verify, self._exif = make_record, verify, exif
        self._resume = resume

    def _encode(self, split, item, archive):
        root = self._roots[split]
        path = FileSystems.join(root, item.relpath) if item.offset < 0 else \
            f"{root}#{item.relpath}"
        try:
            image = images.normalise(_read(root, item, archive), verify=self._verify,
                                     exif=self._exif)
        except images.ImageRejected as err:
            return None, reject(split, path, err.kind, str(err))
        except (OSError, IOError) as err:  # unreadable: permissions, a directory, a vanished file
            return None, reject(split, path, "cannot read", f"cannot read: {err}")
        return schema.to_example(self._make_record(split, item, image)), None

    def process(self, element):
        (split, index, num), items = element
        items = sorted(item for item in items if item is not None)
        name = sharding.shard_name(split, index, num)
        final = FileSystems.join(self._output_dir, name)
        record = FileSystems.join(self._output_dir, stats_name(name))
        if self._resume and FileSystems.exists(final) and FileSystems.exists(record):
            yield from _replay(split, record)  # committed by an earlier, interrupted run
            return
        tmp = temp_name(self._output_dir, name)
        per_class: dict[int, int] = {}
        rejects = []
        archive = None
        try:
            if any(item.offset >= 0 for item in items):
                archive = FileSystems.open(self._roots[split])  # one handle for the shard
            with FileSystems.create(tmp) as handle:
                for item in items:
                    example, rejected = self._encode(split, item, archive)
                    if rejected:
                        rejects.append(rejected)
                        continue
                    _TFRecordUtil.write_record(handle, example)
                    per_class[item.label] = per_class.get(item.label, 0) + 1
            stats = {"shard": name, "index": index, "num_shards": num, "assigned": len(items),
                     "records": sum(per_class.values()), "per_class": per_class}
            # The shard's stats and rejects are committed before the shard itself, so --resume
            # can account for every committed shard without reading it again.
            write_text(record, json.dumps({"stats": stats, "rejects": rejects}, sort_keys=True))
            commit(tmp, final)
        except BaseException:
            _delete_quietly(tmp)  # a failed attempt leaves nothing behind (and no final name)
            raise
        finally:
            if archive is not None:
                archive.close()
        for rejected in rejects:
            yield beam.pvalue.TaggedOutput(REJECTS, rejected)
        yield split, stats


def stats_name(shard: str) -> str:
    """The hidden per-shard record of counts and rejects that makes --resume possible."""
    return f".stats-{shard}.json"


def _replay(split: str, path: str):
    with FileSystems.open(path) as handle:
        saved = json.loads(handle.read().decode())
    for rejected in saved["rejects"]:
        yield beam.pvalue.TaggedOutput(REJECTS, rejected)
    stats = dict(saved["stats"], resumed=True)
    stats["per_class"] = {int(label): n for label, n in stats["per_class"].items()}
    yield split, stats


def boxes_by_name(csv_path: str, names) -> dict[str, tuple]:
    """Image file name -> its boxes (sorted), for the `names` wanted, streaming the CSV."""
    with FileSystems.open(csv_path) as raw:
        found = boxes_lib.group_csv(io.TextIOWrapper(raw, encoding="utf-8"), names, csv_path)
    return {name: tuple(sorted(coords)) for name, coords in found.items()}


def _with_boxes(joined):
    _, grouped = joined
    # sorted: the order of grouped values is not defined, and reruns must be byte-identical
    found = tuple(sorted(coords for group in grouped["boxes"] for coords in group))
    for shard, item in grouped["items"]:
        yield shard, item._replace(boxes=found)


class AttachBoxes(beam.PTransform):
    """((split, shard, num), Item) + a boxes CSV -> the same with each image's boxes.

    A join on the image file name (CoGroupByKey), so no worker holds all 615k ImageNet boxes.
    """

    def __init__(self, csv_path: str):
        super().__init__()
        self._csv_path = csv_path

    def expand(self, assigned):
        boxes = (assigned.pipeline
                 | "ReadCsv" >> beam.io.ReadFromText(self._csv_path)
                 | "ParseCsv" >> beam.Map(boxes_lib.parse_csv_line)  # (name, coords)
                 | "GroupBoxes" >> beam.GroupByKey())  # (name, [coords])
        placeholders = assigned | "Placeholders" >> beam.Filter(lambda kv: kv[1] is None)
        items = (assigned
                 | "Items" >> beam.Filter(lambda kv: kv[1] is not None)
                 | "ByName" >> beam.Map(lambda kv: (kv[1].name, kv)))
        joined = ({"items": items, "boxes": boxes}
                  | "Join" >> beam.CoGroupByKey()
                  | "Attach" >> beam.FlatMap(_with_boxes))
        return (joined, placeholders) | "Merge" >> beam.Flatten()


# Local builds write shards without a per-image shuffle. Beam's local runner (FnApiRunner) holds
# every PCollection that crosses a stage in memory, so grouping images by shard costs memory in
# proportion to the dataset (measured: ~3.7 KB per image over the launcher and two workers, i.e.
# ~5 GB for ImageNet). Instead each class's listing is spilled, as it is listed, to a file in a
# scratch directory on this machine (plain files: a local runner's workers share this disk), and
# each group of a few shards picks its files out of those files with sharding.positions. Memory
# then depends on the group size, not on the dataset. Remote runners keep AssignShards +
# GroupByKey: their shuffle is distributed and fans out to any number of workers.
GROUP_IMAGES = 4096  # images per shard group: a few MB of paths per worker


def _spill_path(spill_dir: str, split: str, label: int) -> str:
    return os.path.join(spill_dir, f"{split}-{label}.jsonl")


def spill_class(listed, spill_dir: str, seed: int, by_basename: bool):
    """(split, label, entries) -> its files in dealing order, one JSON line each
    [key, relpath, offset, size], in the spill directory -> (split, (label, files))."""
    split, label, entries = listed
    locators = {relpath: (start, size) for relpath, start, size in entries}
    keyed = sharding.ordered(locators, seed=seed, by_basename=by_basename)
    # "x": a class listed twice would be a bug in a lister; fail instead of losing one listing
    with open(_spill_path(spill_dir, split, label), "x", encoding="utf-8") as handle:
        for key, relpath in keyed:
            handle.write(json.dumps([key, relpath, *locators[relpath]]) + "\n")
    return split, (label, len(keyed))


def _groups(split_layout, images_per_group: int):
    split, (_, num, total) = split_layout
    for first, end in sharding.shard_groups(num, total, images_per_group):
        yield split, first, end


class WriteGroupFn(beam.DoFn):
    """(split, first shard, end shard) -> the shards' stats (and REJECTS), written by
    `writer` (a WriteShardFn) from the spilled listings."""

    def __init__(self, spill_dir: str, writer: WriteShardFn, boxes_csv: str | None = None):
        self._spill_dir, self._writer, self._boxes_csv = spill_dir, writer, boxes_csv

    def process(self, group, layouts):
        split, first, end = group
        offsets, num, _ = layouts[split]
        items: dict[int, list[Item]] = {shard: [] for shard in range(first, end)}
        for label, offset in offsets.items():
            with open(_spill_path(self._spill_dir, split, label), "rb") as handle:
                lines = handle.read().split(b"\n")  # only the picked lines are parsed
            for shard in items:
                for position in sharding.positions(shard, offset=offset, num_shards=num,
                                                   count=len(lines) - 1):
                    key, relpath, start, size = json.loads(lines[position])
                    items[shard].append(Item(key, relpath, label, offset=start, size=size))
        if self._boxes_csv:
            boxes = boxes_by_name(self._boxes_csv, {item.name for shard in items.values()
                                                    for item in shard})
            items = {shard: [item._replace(boxes=boxes.get(item.name, ())) for item in shard_items]
                     for shard, shard_items in items.items()}
        for shard, shard_items in items.items():
            yield from self._writer.process(((split, shard, num), shard_items))


class WriteShardGroups(beam.PTransform):
    """Listed classes -> written shards' (split, stats) + REJECTS, without a per-image shuffle
    (the local build; see above)."""

    def __init__(self, shards: Mapping[str, int | None], seed: int, by_basename: bool,
                 spill_dir: str, writer: WriteShardFn, boxes_csv: str | None = None,
                 images_per_group: int | None = None):
        super().__init__()
        self._shards, self._seed, self._by_basename = dict(shards), seed, by_basename
        self._spill_dir, self._writer, self._boxes_csv = spill_dir, writer, boxes_csv
        self._images_per_group = images_per_group

    def expand(self, listed):
        layout = (listed
                  | "Spill" >> beam.Map(spill_class, self._spill_dir, self._seed,
                                        self._by_basename)  # (split, (label, n))
                  | "Layouts" >> Layouts(self._shards))
        return (layout
                | "Groups" >> beam.FlatMap(_groups, self._images_per_group or GROUP_IMAGES)
                | "SpreadGroups" >> beam.Reshuffle()
                | "WriteGroups" >> beam.ParDo(
                    WriteGroupFn(self._spill_dir, self._writer, self._boxes_csv),
                    beam.pvalue.AsDict(layout)).with_outputs(REJECTS, main="stats"))


def write_text(path: str, text: str) -> None:
    """Writes a small text file atomically (temporary name, then commit)."""
    directory, name = path.rsplit("/", 1)
    tmp = temp_name(directory, name)
    with FileSystems.create(tmp) as handle:
        handle.write(text.encode())
    commit(tmp, path)


def _write_rejects(split_rejects, output_dir):
    split, entries = split_rejects
    rows = sorted((e for e in entries if e is not None), key=lambda e: e["path"])
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    write_text(FileSystems.join(output_dir, f"rejects-{split}.jsonl"), text)
    return split, {"count": len(rows), "reasons": _reason_summary(rows)}


def _reason_summary(rows) -> dict[str, int]:
    summary: dict[str, int] = {}
    for row in rows:
        summary[row["kind"]] = summary.get(row["kind"], 0) + 1
    return dict(sorted(summary.items()))


class WriteRejects(beam.PTransform):
    """Reject dicts -> one `rejects-<split>.jsonl` per split (empty when none) -> counts."""

    def __init__(self, output_dir: str, splits):
        super().__init__()
        self._output_dir, self._splits = output_dir, list(splits)

    def expand(self, rejects):
        seeds = rejects.pipeline | "EverySplit" >> beam.Create([(s, None) for s in self._splits])
        keyed = rejects | "BySplit" >> beam.Map(lambda r: (r["split"], r))
        return ((keyed, seeds)
                | "MergeSeeds" >> beam.Flatten()
                | "GroupRejects" >> beam.GroupByKey()  # (split, [reject, ...])
                | "WriteFile" >> beam.Map(_write_rejects, self._output_dir))

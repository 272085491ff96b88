"""Writing shards: a shard's Items in, one committed TFRecord file plus its stats and rejects out.

`write_shard` is a plain function that both build designs call: the distributed one from
`WriteShards` (one grouped shard per element) and the local one from `WriteShardGroups` (a few
shards picked out of the spilled listings). It reads each image (a file, or a member of the
split's tar archive by offset), normalises it, frames the Example, and commits the shard only
when complete; a file that cannot be converted becomes a reject with its reason.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inception_data import duplicates, images, schema, sharding, tfrecord
from inception_data.build_options import BuildOptions
from pipelines import atomic_files, box_join, dedup, layout
from pipelines.listing import Item, Reject, member_path

REJECTS = "rejects"
COPIES = dedup.COPIES


class Shard(NamedTuple):
    split: str
    index: int
    num_shards: int

    @property
    def name(self) -> str:
        return sharding.shard_name(self.split, self.index, self.num_shards)


@dataclasses.dataclass(frozen=True)
class ShardSettings:
    """What every shard of a build is written with (picklable for workers).

    `make_record(item, image)` builds the schema.ImageRecord, so the generic and the ImageNet
    builds share the writer. A split whose root is a tar archive is read by offset.
    """

    output_dir: str
    roots: Mapping[str, str]
    make_record: Callable
    options: BuildOptions = BuildOptions()  # verify, exif, size policy, duplicates, resume

    @functools.cached_property  # (made once per settings object, not once per image)
    def policy(self) -> images.SizePolicy:
        """--max-size, --jpeg-quality and --progressive as the images module applies them."""
        options = self.options
        return images.SizePolicy(options.max_size, options.jpeg_quality, options.progressive)


class _Source:
    """One split's root, opened for a shard's items: its file system resolved once (Beam's
    FileSystems.open/join look it up again on every call: ~10 us each, per image) and, for a
    split that is a tar archive, one handle read by offset."""

    def __init__(self, root: str, items: Sequence[Item]):
        self.root = root
        self._fs = FileSystems.get_filesystem(root)
        self._archive = FileSystems.open(root) if any(i.offset >= 0 for i in items) else None

    def read(self, item: Item) -> bytes:
        if item.offset < 0:
            with self._fs.open(self._fs.join(self.root, item.relpath)) as handle:
                return handle.read()
        self._archive.seek(item.offset)
        data = self._archive.read(item.size)
        if len(data) != item.size:
            raise OSError(f"archive {self.root} ends before {item.relpath} ({len(data)} of "
                          f"{item.size} bytes); the tar is truncated")
        return data

    def where(self, item: Item) -> str:
        """The path a reject row or a duplicates report names."""
        return self._fs.join(self.root, item.relpath) if item.offset < 0 else \
            member_path(self.root, item.relpath)

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()


def _example(split: str, item: Item, source: _Source, settings: ShardSettings, copies: list):
    """(Example pieces, NormalisedImage, None) or (None, None, reject row) for one image; with
    duplicates="report" the source's Copy is appended to `copies`."""
    try:
        data = source.read(item)
        image = images.normalise(data, verify=settings.options.verify,
                                 exif=settings.options.exif, policy=settings.policy)
    except images.ImageRejected as err:
        return None, None, Reject(split, source.where(item), err.kind, str(err))
    except OSError as err:  # unreadable: permissions, a directory, a vanished file
        return None, None, Reject(split, source.where(item), "cannot read",
                                  f"cannot read: {err}")
    if settings.options.duplicates == "report":
        phash = duplicates.perceptual_hash(data) if settings.options.near_duplicates else ""
        copies.append(duplicates.Copy(duplicates.sha256(data), split, source.where(item), phash))
    return schema.example_pieces(settings.make_record(item, image)), image, None


def hash_sources(items: Sequence[Item], split: str, settings: ShardSettings
                 ) -> list[duplicates.Copy]:
    """The Copy of each readable source file of `items` (the hashing pass of
    --duplicates drop); unreadable files are left to the writer, which rejects them."""
    source = _Source(settings.roots[split], items)
    copies = []
    try:
        for item in items:
            try:
                data = source.read(item)
            except OSError:
                continue
            copies.append(duplicates.Copy(duplicates.sha256(data), split, source.where(item)))
    finally:
        source.close()
    return copies


class StoredTally:
    """What happened to the stored images of a shard: kept byte for byte or re-encoded (and
    why: images.REASONS, an image counting under each reason that applied), how many were
    scaled down, and a histogram of stored megapixels (images.MEGAPIXEL_BINS)."""

    def __init__(self):
        self.kept = 0
        self.reencoded = 0
        self.reasons = collections.Counter()
        self.megapixels = collections.Counter()

    def add(self, image: images.NormalisedImage) -> None:
        # (a multi-picture file's primary image counts under its reason and is still kept:
        # its bytes are the file's own, cut where the primary image ends)
        if image.converted is not None:
            self.reencoded += 1
        else:
            self.kept += 1
        for reason in image.reasons:
            self.reasons[reason] += 1
        label = images.megapixel_bin(image.width, image.height)
        self.megapixels[label] += 1

    def as_dict(self) -> dict:
        return {"kept": self.kept, "reencoded": self.reencoded,
                "resized": self.reasons.get("size", 0), "reasons": dict(self.reasons),
                "megapixels": dict(self.megapixels)}


@dataclasses.dataclass(frozen=True)
class ShardStats:
    """What writing one shard gives the summary: its records per class and bytes, what it
    stored (StoredTally.as_dict()), and whether an interrupted earlier run had written it."""

    shard: str  # its file name
    index: int
    num_shards: int
    assigned: int  # Items given to it (written + rejected)
    records: int
    bytes: int
    per_class: dict  # label -> records
    stored: dict
    resumed: bool = False

    def as_dict(self) -> dict:
        """The shard's saved record (`.stats-<shard>.json`), read back by --resume."""
        saved = dataclasses.asdict(self)
        del saved["resumed"]
        return saved

    @classmethod
    def replayed(cls, saved: dict) -> ShardStats:
        per_class = {int(label): n for label, n in saved["per_class"].items()}
        return cls(**{**saved, "per_class": per_class, "resumed": True})


def _replay(path: str) -> tuple[ShardStats, list[Reject], list]:
    saved = atomic_files.read_json(path)
    return (ShardStats.replayed(saved["stats"]), [Reject(**row) for row in saved["rejects"]],
            [duplicates.Copy(*c) for c in saved["copies"]])


def write_shard(items: Sequence[Item], shard: Shard, settings: ShardSettings,
                drops: Mapping[tuple[str, str], str] | None = None
                ) -> tuple[ShardStats, list[Reject], list]:
    """Writes `items` (in this order) as one shard; returns (stats, rejects, copies): copies
    of the written sources for the duplicates report (duplicates="report"). `drops`:
    {(split, path): reason} of copies --duplicates drop does not write (rejects instead).

    The shard's record index (`index/<shard>.idx`, atomic_files.index_path) and then its stats and
    rejects (a hidden `.stats-<shard>.json`) are committed just before the shard itself, so
    --resume can account for a committed shard without reading it; with `settings.options.resume`
    such a shard is not written again. A failed attempt leaves nothing.
    """
    final = FileSystems.join(settings.output_dir, shard.name)
    record = FileSystems.join(settings.output_dir, atomic_files.stats_name(shard.name))
    if settings.options.resume and FileSystems.exists(final) and FileSystems.exists(record):
        return _replay(record)  # committed by an earlier, interrupted run
    tmp = atomic_files.temp_name(settings.output_dir, shard.name)
    per_class = collections.Counter()
    rejects = []
    stored = StoredTally()
    copies: list = []
    index = []  # DALI/PyTorch index lines: "offset size" per record
    offset = 0
    source = None
    try:
        source = _Source(settings.roots[shard.split], items)
        with FileSystems.create(tmp) as handle:
            for item in items:
                if drops:
                    where = source.where(item)
                    if (shard.split, where) in drops:
                        rejects.append(Reject(shard.split, where, "duplicate",
                                              drops[(shard.split, where)]))
                        continue
                pieces, image, rejected = _example(shard.split, item, source, settings, copies)
                if rejected:
                    rejects.append(rejected)
                    continue
                size = tfrecord.write_framed(handle, pieces)
                index.append(f"{offset} {size}\n")
                offset += size
                per_class[item.label] += 1
                stored.add(image)
        stats = ShardStats(shard.name, shard.index, shard.num_shards, assigned=len(items),
                           records=sum(per_class.values()), bytes=offset,
                           per_class=dict(per_class), stored=stored.as_dict())
        atomic_files.write_text(atomic_files.index_path(settings.output_dir, shard.name),
                                "".join(index))
        atomic_files.write_text(record, json.dumps(
            {"stats": stats.as_dict(), "rejects": [r.row() for r in rejects],
             "copies": [list(c) for c in copies]}, sort_keys=True))
        atomic_files.commit(tmp, final)
    except BaseException:
        atomic_files.delete_quietly(tmp)  # no final name, no temporary file
        raise
    finally:
        if source is not None:
            source.close()
    return stats, rejects, copies


def _outputs(split: str, stats: ShardStats, rejects: list[Reject]):
    for rejected in rejects:
        yield beam.pvalue.TaggedOutput(REJECTS, rejected)
    yield split, stats


def shard_items(element) -> tuple[Shard, list[Item]]:
    """A grouped ((split, shard, num_shards), [Item | None]) as (Shard, Items in key order)."""
    shard, items = element
    return Shard(*shard), sorted(i for i in items if i is not None)


class WriteShards(beam.DoFn):
    """((split, shard, num_shards), [Item | None]) -> (split, stats), tagged REJECTS and, with
    duplicates="report", tagged COPIES; `drops` (a side input): what not to write."""

    def __init__(self, settings: ShardSettings):
        self._settings = settings

    def process(self, element, drops=None):
        shard, items = shard_items(element)
        stats, rejects, copies = write_shard(items, shard, self._settings, drops)
        for copy in copies:
            yield beam.pvalue.TaggedOutput(COPIES, copy)
        yield from _outputs(shard.split, stats, rejects)


class WriteShardGroups(beam.DoFn):
    """layout.ShardGroup -> (split, stats) per shard and tagged REJECTS, from the spilled
    listings (the local build; the splits' layout.SpilledSplit come as a side input);
    `box_index`: box_join.index_boxes() file, or None."""

    def __init__(self, settings: ShardSettings, box_index: str | None = None,
                 copies_dir: str | None = None):
        self._settings, self._box_index = settings, box_index
        self._copies_dir = copies_dir  # where duplicates="report" saves each group's copies
        self._boxes = None

    def setup(self):
        if self._box_index:
            self._boxes = box_join.BoxLookup(self._box_index)

    def teardown(self):
        if self._boxes is not None:
            self._boxes.close()

    def process(self, group: layout.ShardGroup, spilled_splits, drops=None):
        spilled = spilled_splits[group.split]
        copies = []
        for index, items in layout.read_group(group, spilled).items():
            if self._boxes is not None:
                items = self._boxes.attach(items)
            stats, rejects, shard_copies = write_shard(
                items, Shard(group.split, index, spilled.layout.num_shards), self._settings,
                drops)
            copies += shard_copies
            yield from _outputs(group.split, stats, rejects)
        if self._copies_dir is not None:
            dedup.save_copies(copies, self._copies_dir, f"{group.split}-{group.first}")


class HashShardGroups(beam.DoFn):
    """layout.ShardGroup -> its sources' copies saved in `copies_dir` (the local hashing pass
    of --duplicates drop); yields the number of copies."""

    def __init__(self, settings: ShardSettings, copies_dir: str):
        self._settings, self._copies_dir = settings, copies_dir

    def process(self, group: layout.ShardGroup, spilled_splits):
        copies = []
        for items in layout.read_group(group, spilled_splits[group.split]).values():
            copies += hash_sources(items, group.split, self._settings)
        dedup.save_copies(copies, self._copies_dir, f"{group.split}-{group.first}")
        yield len(copies)


def hash_shard(element, settings: ShardSettings):
    """A grouped shard's sources' copies (the distributed hashing pass of --duplicates drop)."""
    shard, items = shard_items(element)
    return hash_sources(items, shard.split, settings)

"""Shard layout: listed classes in, which Item goes to which shard out (paths only).

The rule is sharding.py's: per class, files in key order are dealt round-robin across the
shards, starting where the previous class stopped; only per-class counts are needed globally.
Two ways to carry it out, with identical results:

- distributed (`AssignShards`): every Item is keyed by its shard, for a GroupByKey that the
  service spreads over all workers;
- local (`spill` + `SpilledSplits` + `shard_groups` + `read_group`): Beam's local runner
  (FnApiRunner) would hold that whole shuffle in memory (~3.7 KB per image over the
  processes, ~5 GB for ImageNet), so
  each class is spilled, in dealing order, to a scratch file on this machine, and each group of
  a few shards picks its Items out of those files with sharding.positions. Memory then depends
  on the group size, not on the dataset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import NamedTuple

import apache_beam as beam

from inception_data import sharding
from pipelines.listing import ClassFiles, Item

GROUP_IMAGES = 4096  # images per local shard group: a few MB of paths per worker


class Layout(NamedTuple):
    """One split's shard layout: label -> files of the classes before it (where its dealing
    starts), the number of shards, the number of images."""

    offsets: dict
    num_shards: int
    images: int


def _layout(split_counts, shards: Mapping[str, int | None]):
    split, counts = split_counts  # (split, [(label, files), ...])
    counts = dict(counts)
    total = sum(counts.values())
    return split, Layout(sharding.class_offsets(counts),
                         shards.get(split) or sharding.auto_shards(total), total)


@beam.ptransform_fn
def Layouts(counts, shards: Mapping[str, int | None]):  # noqa: N802 (a PTransform)
    """(split, (label, files)) per class -> (split, Layout) per split."""
    return (counts
            | "GroupCounts" >> beam.GroupByKey()  # (split, [(label, n), ...])
            | "Layout" >> beam.Map(_layout, dict(shards)))


def _assign(listed: ClassFiles, layouts):
    layout = layouts[listed.split]
    for position, item in enumerate(listed.items):
        shard = sharding.shard_of(position, offset=layout.offsets[listed.label],
                                  num_shards=layout.num_shards)
        yield (listed.split, shard, layout.num_shards), item


def _all_shards(split_layout):
    split, layout = split_layout
    for index in range(layout.num_shards):
        yield (split, index, layout.num_shards), None


class AssignShards(beam.PTransform):
    """ClassFiles -> ((split, shard, num_shards), Item), the distributed way.

    Also emits ((split, shard, num_shards), None) for every shard, so shards that receive no
    image are still written (empty) and a split always has its full set of files.
    """

    def __init__(self, shards: Mapping[str, int | None]):
        super().__init__()
        self._shards = dict(shards)

    def expand(self, listed):
        layout = (listed
                  | "CountClass" >> beam.Map(lambda c: (c.split, (c.label, len(c.items))))
                  | "Layouts" >> Layouts(self._shards))  # (split, Layout)
        assigned = listed | "Assign" >> beam.FlatMap(_assign, beam.pvalue.AsDict(layout))
        every = layout | "EveryShard" >> beam.FlatMap(_all_shards)
        return (assigned, every) | "Merge" >> beam.Flatten()


class Spilled(NamedTuple):
    """One class spilled to a scratch file: its Items in dealing order, one JSON line each."""

    split: str
    label: int
    count: int
    path: str


def spill(listed: ClassFiles, path: str) -> Spilled:
    """Writes a class's Items ([key, relpath, offset, size] lines) to `path`."""
    # "x": a class spilled twice would be a bug in a lister; fail instead of losing a listing
    with open(path, "x", encoding="utf-8") as handle:
        for item in listed.items:
            handle.write(json.dumps([item.key, item.relpath, item.offset, item.size]) + "\n")
    return Spilled(listed.split, listed.label, len(listed.items), path)


def spill_path(spill_dir: str, split: str, label: int) -> str:
    return os.path.join(spill_dir, f"{split}-{label}.jsonl")


class SpilledSplit(NamedTuple):
    """One split's layout and the spill file of each of its classes (label -> path)."""

    layout: Layout
    spills: dict


def _spilled_split(split_spills, shards: Mapping[str, int | None]):
    split, spills = split_spills
    _, split_layout = _layout((split, [(s.label, s.count) for s in spills]), shards)
    return split, SpilledSplit(split_layout, {s.label: s.path for s in spills})


@beam.ptransform_fn
def SpilledSplits(spilled, shards: Mapping[str, int | None]):  # noqa: N802 (a PTransform)
    """Spilled classes -> (split, SpilledSplit), one small element per split."""
    return (spilled
            | "BySplit" >> beam.Map(lambda s: (s.split, s))
            | "GroupSpills" >> beam.GroupByKey()  # (split, [Spilled])
            | "Layout" >> beam.Map(_spilled_split, dict(shards)))


class ShardGroup(NamedTuple):
    """Shards [first, end) of a split, written by one worker step from the spilled classes."""

    split: str
    first: int
    end: int


def shard_groups(split_spilled, images_per_group: int | None = None):
    """(split, SpilledSplit) -> ShardGroups covering every shard of the split once."""
    split, spilled = split_spilled
    for first, end in sharding.shard_groups(spilled.layout.num_shards, spilled.layout.images,
                                            images_per_group or GROUP_IMAGES):
        yield ShardGroup(split, first, end)


def read_group(group: ShardGroup, spilled: SpilledSplit) -> dict[int, list[Item]]:
    """Shard index -> its Items (in key order), picked out of the split's spilled classes."""
    layout = spilled.layout
    items: dict[int, list[Item]] = {shard: [] for shard in range(group.first, group.end)}
    for label, offset in layout.offsets.items():
        with open(spilled.spills[label], "rb") as handle:
            lines = handle.read().split(b"\n")  # only the picked lines are parsed
        for shard, shard_items in items.items():
            for position in sharding.positions(shard, offset=offset,
                                               num_shards=layout.num_shards,
                                               count=len(lines) - 1):
                key, relpath, start, size = json.loads(lines[position])
                shard_items.append(Item(key, relpath, label, offset=start, size=size))
    return {shard: sorted(shard_items) for shard, shard_items in items.items()}

"""The build's Beam graph: BuildConfig in; sources listed, shards written by one of two
designs, rejects reports and the summary out (skeleton.py runs it, for every kind of source).

list (paths only) -> shard layout on paths -> write each shard -> rejects and a summary, which
the launcher checks and commits as the manifest. Two designs (`LocalDesign`,
`DistributedDesign`, over the one shard writer of shard_writer.py), chosen by where the
pipeline runs (`runner.Plan.local_runner`), with byte-identical output:

- local runner: the launcher lists what it can list cheaply (local trees, flat folders) once,
  spilling each class to a scratch file as it goes; tar archives are indexed by the workers,
  which spill too. Groups of shards are written from the spills (layout.py), so memory stays
  flat however big the dataset.
- distributed runner (Dataflow): everything is listed inside the pipeline, on the workers, and
  Items are grouped by shard with a GroupByKey, which the service spreads over all workers.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence

import apache_beam as beam

import inception_data
from inception_data import labels as labels_lib
from inception_data.build_options import BuildOptions
from pipelines import box_join, dedup, layout, report, shard_writer
from pipelines.listing import ClassFiles, Found, Keying

log = logging.getLogger(__name__)
FOUND = "found"


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """One build, as the user asked for it. `label_map` None: the sorted class directory names
    of the training tree."""

    output_dir: str
    roots: Mapping[str, str]  # split -> directory of class sub-directories (or an archive)
    shards: Mapping[str, int | None]  # split -> shard count, None for auto
    label_map: labels_lib.LabelMap | None = None
    options: BuildOptions = BuildOptions()  # every shared option, defined there

    def settings(self) -> dict:
        """What the manifest records (and --resume compares): the recorded options and the
        shard counts."""
        return {**self.options.settings(),
                "shards": {s: n or "auto" for s, n in self.shards.items()}}


def numbered(config: BuildConfig, label_map: labels_lib.LabelMap) -> BuildConfig:
    """`config` with `label_map` numbered from its --background/--no-background option."""
    return dataclasses.replace(config, label_map=dataclasses.replace(
        label_map, offset=config.options.label_offset))


@dataclasses.dataclass(frozen=True)
class ListContext:
    """What every listing step needs (picklable for workers)."""

    label_of: Mapping[str, int]
    keying: Keying
    synset_of_image: Mapping[str, str] = dataclasses.field(default_factory=dict)  # ImageNet


@dataclasses.dataclass
class Listed:
    """What the launcher listed: spilled classes, reject rows, Found counts."""

    spilled: list = dataclasses.field(default_factory=list)
    rejects: list = dataclasses.field(default_factory=list)
    found: list = dataclasses.field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.found)

    @property
    def files(self) -> int:
        return sum(f.count for f in self.found)


def _event_tag(event) -> str:
    """What a listing event is: a class's files, a Found count, or a reject row."""
    if isinstance(event, ClassFiles):
        return "listed"
    return FOUND if isinstance(event, Found) else shard_writer.REJECTS


def spill_class(listed: ClassFiles, spill_dir: str) -> layout.Spilled:
    """Writes one class's listing to its file in the scratch directory."""
    return layout.spill(listed, layout.spill_path(spill_dir, listed.split, listed.label))


def list_in_launcher(streams: Sequence, spill_dir: str) -> Listed:
    """Consumes listing event streams here, spilling each class to `spill_dir` as soon as it
    is listed (one class in memory at a time)."""
    listed = Listed()
    for events in streams:
        for event in events:
            kind = _event_tag(event)
            if kind == "listed":
                listed.spilled.append(spill_class(event, spill_dir))
            else:
                (listed.found if kind == FOUND else listed.rejects).append(event)
    return listed


def _tagged_events(source, context: ListContext):
    for event in source.events(context):  # (on a worker: its notes are logged)
        kind = _event_tag(event)
        yield event if kind == "listed" else beam.pvalue.TaggedOutput(kind, event)


class ListImages(beam.PTransform):
    """Sources -> ClassFiles, tagged REJECTS rows and FOUND counts, listed on the workers."""

    def __init__(self, context: ListContext):
        super().__init__()
        self._context = context

    def expand(self, sources):
        return (sources
                | "Spread" >> beam.Reshuffle()  # list (e.g. index tars) on many workers
                | "ListSources" >> beam.FlatMap(_tagged_events, self._context).with_outputs(
                    shard_writer.REJECTS, FOUND, main="listed"))


class LocalDesign:
    """The local runner's design: classes listed (here or by the workers) are spilled to the
    scratch directory, and groups of shards are written from the spills (layout.py), so memory
    stays flat however big the dataset; the boxes come from the SQLite index `box_index`."""

    def __init__(self, spill_dir: str, box_index: str | None = None):
        self.spill_dir, self.box_index = spill_dir, box_index

    def write(self, pipeline, config: BuildConfig, settings: shard_writer.ShardSettings,
              listed_on_workers: list, listed: Listed):
        """-> (written: stats with REJECTS tagged, found duplicates or None)."""
        spill_dir, duplicates = self.spill_dir, settings.options.duplicates
        spill_inputs = [pipeline | "SpilledHere" >> beam.Create(listed.spilled)]
        spill_inputs += [listed_classes | "Spill" >> beam.Map(spill_class, spill_dir)
                         for listed_classes in listed_on_workers]
        spilled = tuple(spill_inputs) | "AllSpilled" >> beam.Flatten()  # layout.Spilled
        splits_spilled = spilled | "SpilledSplits" >> layout.SpilledSplits(config.shards)
        groups = (splits_spilled  # (split, layout.SpilledSplit)
                  | "ShardGroups" >> beam.FlatMap(layout.shard_groups, layout.GROUP_IMAGES)
                  | "SpreadGroups" >> beam.Reshuffle())  # layout.ShardGroup
        copies_dir = os.path.join(spill_dir, "copies")
        if duplicates != "off":
            os.makedirs(copies_dir, exist_ok=True)
        spilled_side = beam.pvalue.AsDict(splits_spilled)
        drops = found_duplicates = None
        if duplicates == "drop":  # hash every source first, then write
            found_duplicates = (groups
                                | "HashSources" >> beam.ParDo(shard_writer.HashShardGroups(
                                    settings, copies_dir), spilled_side)
                                | "AllHashed" >> beam.combiners.Count.Globally()
                                | "FindDuplicates" >> beam.Map(dedup.find_local, copies_dir,
                                                               config.output_dir, drop=True))
            drops = beam.pvalue.AsSingleton(
                found_duplicates | "DropList" >> beam.Map(dedup.drops_of))
        writer = shard_writer.WriteShardGroups(
            settings, self.box_index, copies_dir if duplicates == "report" else None)
        written = (groups
                   | "WriteShardGroups" >> beam.ParDo(writer, spilled_side, drops).with_outputs(
                       shard_writer.REJECTS, main="stats"))
        if duplicates == "report":  # once every shard group has saved its copies
            found_duplicates = (written.stats
                                | "AllWritten" >> beam.combiners.Count.Globally()
                                | "FindDuplicates" >> beam.Map(dedup.find_local, copies_dir,
                                                               config.output_dir))
        return written, found_duplicates


class DistributedDesign:
    """The distributed design (Dataflow): everything is listed on the workers and Items are
    grouped by shard with a GroupByKey, which the service spreads over all workers; boxes are
    joined from `boxes_csv` by file name."""

    def __init__(self, boxes_csv: str | None = None):
        self.boxes_csv = boxes_csv

    def write(self, pipeline, config: BuildConfig, settings: shard_writer.ShardSettings,
              listed_on_workers: list, listed: Listed):
        """-> (written: stats with REJECTS and COPIES tagged, found duplicates or None)."""
        duplicates = settings.options.duplicates
        assigned = listed_on_workers[0] | "AssignShards" >> layout.AssignShards(config.shards)
        if self.boxes_csv:
            assigned = assigned | "AttachBoxes" >> box_join.AttachBoxes(self.boxes_csv)
        grouped = assigned | "GroupByShard" >> beam.GroupByKey()  # ((split, shard, num), [Item])
        drops = found_duplicates = None
        if duplicates == "drop":
            found_duplicates = (grouped
                                | "HashSources" >> beam.FlatMap(shard_writer.hash_shard, settings)
                                | "FindDuplicates" >> dedup.FindDuplicates(config.output_dir,
                                                                           drop=True))
            drops = beam.pvalue.AsSingleton(
                found_duplicates | "DropList" >> beam.Map(dedup.drops_of))
        written = (grouped
                   | "WriteShards" >> beam.ParDo(shard_writer.WriteShards(settings), drops)
                   .with_outputs(shard_writer.REJECTS, shard_writer.COPIES,
                                 main="stats"))  # (split, shard stats)
        if duplicates == "report":
            found_duplicates = (written[shard_writer.COPIES]
                                | "FindDuplicates" >> dedup.FindDuplicates(config.output_dir))
        return written, found_duplicates


def build(pipeline, config: BuildConfig, settings: shard_writer.ShardSettings,
          context: ListContext, sources: Sequence, *, spill_dir: str | None = None,
          listed: Listed | None = None, boxes_csv: str | None = None,
          box_index: str | None = None) -> None:
    """Adds the whole conversion to `pipeline`: listing on the workers, the shards written by
    one of the two designs (LocalDesign when `spill_dir` is given, with `listed`, what the
    launcher listed and spilled, and `box_index`; else DistributedDesign with `boxes_csv`),
    then the rejects reports and the summary, the same for both."""
    splits = list(config.roots)
    listed = listed or Listed()
    # The listing on workers: "listed" (ClassFiles), REJECTS rows and FOUND counts, each a list
    # of one PCollection. A local build of folders lists everything in the launcher and has no
    # such stages (a Reshuffle and a FlatMap of nothing cost ~0.1 s of a small build).
    from_workers = {"listed": [], shard_writer.REJECTS: [], FOUND: []}
    if sources:
        outputs_of_listing = (pipeline
                              | "Sources" >> beam.Create(list(sources))
                              | "ListImages" >> ListImages(context))
        from_workers = {tag: [outputs_of_listing[tag]] for tag in from_workers}
    design = (LocalDesign(spill_dir, box_index) if spill_dir is not None
              else DistributedDesign(boxes_csv))
    written, found_duplicates = design.write(pipeline, config, settings,
                                             from_workers["listed"], listed)
    reject_infos = ((*from_workers[shard_writer.REJECTS], written[shard_writer.REJECTS],
                     pipeline | "RejectsHere" >> beam.Create(listed.rejects))
                    | "AllRejects" >> beam.Flatten()  # {split, path, kind, reason}
                    | "WriteRejects" >> report.WriteRejects(config.output_dir, splits))
    found = ((*from_workers[FOUND], pipeline | "FoundHere" >> beam.Create(listed.found))
             | "AllFound" >> beam.Flatten())
    manifest_config = {"splits": splits, "labels": list(config.label_map.names),
                       "label_offset": config.label_map.offset,
                       "record_keys": list(settings.make_record.keys),
                       "tool_version": inception_data.__version__,
                       "settings": config.settings()}
    duplicate_counts = (found_duplicates | "DuplicateCounts" >> beam.Map(dedup.summary_of)
                        if found_duplicates is not None
                        else pipeline | "NoDuplicates" >> beam.Create([{"mode": "off"}]))
    _ = ((found, written.stats, reject_infos, duplicate_counts)
         | "WriteSummary" >> report.WriteSummary(config.output_dir, manifest_config))


def shard_settings(config: BuildConfig, make_record) -> shard_writer.ShardSettings:
    """What every shard of `config`'s build is written with."""
    return shard_writer.ShardSettings(config.output_dir, dict(config.roots), make_record,
                                      config.options)

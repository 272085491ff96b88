"""Duplicates in the build: copies (sha256, split, path) in, `duplicates.jsonl`, the manifest's
counts and, for `--duplicates drop`, what the writers must not write out.

- report (default): the shard writers hash each source file they read anyway; nothing is read
  twice. Their copies are grouped by hash after all shards are written.
- drop: every source file is hashed in a pass before the writers (reading each file twice),
  the groups are decided, and the writers turn the dropped copies into rejects.
- off: no hashing.

Grouping keeps memory flat: a local build appends copies to per-group files in its scratch
directory and groups them in an on-disk SQLite index (duplicates.HashIndex); a distributed
build groups them by hash with a GroupByKey, which the service spreads over its workers, and
only the (few) groups of two or more reach one place.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inception_data import duplicates
from pipelines import atomic_files

REPORT = "duplicates.jsonl"
COPIES = "copies"  # tagged output of the writers (distributed report mode)


def write_report(groups: Iterable[list[duplicates.Copy]], output_dir: str,
                 near: Iterable[list[duplicates.Copy]] = (), *, drop: bool = False):
    """Writes duplicates.jsonl (exact groups by hash, then near groups by perceptual hash, one
    per line) and returns (summary, drops): the manifest's counts and, with `drop`,
    {(split, path): reason} of the copies not to write (exact duplicates only; otherwise
    empty: a dataset of many copies must not grow the report step's memory)."""
    summary = duplicates.Summary()
    drops: dict[tuple[str, str], str] = {}
    final = FileSystems.join(output_dir, REPORT)
    tmp = atomic_files.temp_name(output_dir, REPORT)

    def write(handle, row):
        handle.write(atomic_files.json_line(row).encode("utf-8", "surrogateescape"))

    with FileSystems.create(tmp) as handle:  # streamed: the groups are never all in memory
        for group in groups:
            summary.add(group)
            write(handle, duplicates.report_row(group))
            for copy, reason in duplicates.drops(group) if drop else ():
                drops[(copy.split, copy.path)] = reason
        for group in near:
            summary.near_groups += 1
            write(handle, duplicates.report_row(group, near=True))
    atomic_files.commit(tmp, final)
    return {**summary.as_dict(), "file": REPORT}, drops


def find_local(_, copies_dir: str, output_dir: str, drop: bool = False):
    """A local build's groups, from the copy files in `copies_dir` (scratch), through an
    on-disk index there."""
    index = duplicates.HashIndex(os.path.join(copies_dir, "index.sqlite"))
    try:
        index.add_files(sorted(glob.glob(os.path.join(copies_dir, "*.jsonl"))))
        return write_report(index.groups(), output_dir, index.near_groups(), drop=drop)
    finally:
        index.close()


def save_copies(copies: Iterable[duplicates.Copy], copies_dir: str, name: str) -> None:
    """One shard group's copies, as a file in the local build's scratch directory."""
    with open(os.path.join(copies_dir, f"{name}.jsonl"), "w", encoding="utf-8",
              errors="surrogateescape") as handle:
        handle.writelines(duplicates.copy_line(c) for c in copies)


def _group(keyed):
    _, copies = keyed
    copies = list(copies)
    if len(copies) > 1:
        yield from duplicates.grouped(sorted(copies))


def _near_group(keyed):
    _, copies = keyed
    copies = list(copies)
    if len(copies) > 1:
        yield from duplicates.near_groups(sorted(copies, key=lambda c: (c.phash, c)))


def _report_from(groups, near, output_dir, drop):
    return write_report(sorted(groups, key=lambda g: g[0].sha256), output_dir,
                        sorted(near, key=lambda g: g[0].phash), drop=drop)


class FindDuplicates(beam.PTransform):
    """Copies -> one (summary, drops), grouped by hash on the workers (distributed builds)."""

    def __init__(self, output_dir: str, drop: bool = False):
        super().__init__()
        self._output_dir, self._drop = output_dir, drop

    def expand(self, copies):
        groups = (copies
                  | "ByHash" >> beam.Map(lambda c: (c.sha256, c))
                  | "GroupByHash" >> beam.GroupByKey()
                  | "Groups" >> beam.FlatMap(_group)  # only hashes with two or more copies
                  | "Together" >> beam.combiners.ToList())
        near = (copies
                | "WithPhash" >> beam.Filter(lambda c: bool(c.phash))
                | "ByPhash" >> beam.Map(lambda c: (c.phash, c))
                | "GroupByPhash" >> beam.GroupByKey()
                | "NearGroups" >> beam.FlatMap(_near_group)
                | "NearTogether" >> beam.combiners.ToList())
        return (groups
                | "Report" >> beam.Map(_report_from, beam.pvalue.AsSingleton(near),
                                       self._output_dir, self._drop))


def summary_of(found) -> Mapping:
    summary, _ = found
    return summary


def drops_of(found) -> Mapping:
    _, drops = found
    return drops

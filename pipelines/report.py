"""Rejects reports and the manifest: per-split counts gathered from the pipeline, checked by
the launcher, written last.

In: reject rows, Found counts per listing step, (split, shard stats) per shard. Out:
`rejects-<split>.jsonl` per split and `manifest.json` in the output directory. The pipeline
writes the would-be manifest under a hidden name (`.summary.json`); the launcher then checks the
accounting (found == written + rejected) and `--max-rejects` and only then commits it as
`manifest.json`, whose presence marks a finished build.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inception_data import images, labels, schema, tfds_metadata
from pipelines import atomic_files

MANIFEST = "manifest.json"
SUMMARY = ".summary.json"


class TooManyRejects(RuntimeError):
    """More files were rejected than --max-rejects allows."""


def reject_limit(max_rejects: float | None, found: int) -> int | None:
    """--max-rejects as a count: a number >= 1 is a count, a number < 1 a fraction of `found`."""
    if max_rejects is None:
        return None
    return int(max_rejects) if max_rejects >= 1 else int(max_rejects * found)


def _split_summary(split, found, shards, rejects, numbered):
    shards = sorted(shards, key=lambda s: s.index)  # shard_writer.ShardStats
    per_class = collections.Counter()
    for shard in shards:
        per_class.update({int(label): count for label, count in shard.per_class.items()})
    written = sum(s.records for s in shards)
    return {
        "bytes": sum(s.bytes for s in shards),  # of the shards (TFDS's numBytes)
        "stored": _stored_summary(shards),
        "found": found,
        "written": written,
        "rejected": rejects["count"],
        "reject_reasons": rejects["reasons"],
        "rejects_file": f"rejects-{split}.jsonl",
        "num_shards": shards[0].num_shards if shards else 0,
        "shards_resumed": sum(1 for s in shards if s.resumed),
        "shards": {s.shard: s.records for s in shards},
        "per_class": {name: per_class.get(label, 0) for label, name in numbered},
    }


def _stored_summary(shards) -> dict:
    """The shards' StoredTally dicts summed: kept, re-encoded (and why), resized, and the
    histogram of stored megapixels as [bin, count] pairs (every bin, smallest first)."""
    total = {"kept": 0, "reencoded": 0, "resized": 0, "reasons": collections.Counter(),
             "megapixels": collections.Counter(dict.fromkeys(images.MEGAPIXEL_BINS, 0))}
    for shard in shards:  # (a resumed build replays stats of its own settings and version)
        stored = shard.stored
        for key in ("kept", "reencoded", "resized"):
            total[key] += stored[key]
        total["reasons"].update(stored["reasons"])
        total["megapixels"].update(stored["megapixels"])
    total["reasons"] = {reason: total["reasons"][reason] for reason in images.REASONS
                        if reason in total["reasons"]}
    # a list of [bin, count], smallest first: the manifest's keys are sorted as text
    total["megapixels"] = [[label, count] for label, count in total["megapixels"].items()]
    return total


def summarise(gathered, config: Mapping) -> dict:
    """Builds the manifest dict from the gathered ("kind", split, value) tuples."""
    found = collections.Counter()
    shards: dict[str, list] = {}
    rejects: dict[str, dict] = {}
    duplicate_counts = None
    for kind, split, value in gathered:
        if kind == "found":
            found[split] += value
        elif kind == "shard":
            shards.setdefault(split, []).append(value)
        elif kind == "duplicates":
            duplicate_counts = value
        else:
            rejects[split] = value
    numbered = labels.LabelMap(tuple(config["labels"]), config["label_offset"]).numbered()
    splits = {}
    for split in config["splits"]:
        summary = _split_summary(split, found.get(split, 0), shards.get(split, []),
                                 rejects[split], numbered)
        splits[split] = summary
    return {"tool": "inception-data", "tool_version": config["tool_version"],
            "schema_version": schema.SCHEMA_VERSION,
            "labels": {str(label): name for label, name in numbered},
            "label_offset": config["label_offset"], "record_keys": config["record_keys"],
            "background_label": labels.BACKGROUND if config["label_offset"] else None,
            "settings": config["settings"], "splits": splits,
            "duplicates": {"mode": config["settings"]["duplicates"],
                           **(duplicate_counts or {})}}


def check(manifest: dict, max_rejects: float | None) -> None:
    """Raises when the accounting does not hold or the rejects exceed the limit."""
    for split, summary in manifest["splits"].items():
        if summary["found"] != summary["written"] + summary["rejected"]:
            raise RuntimeError(
                f"{split}: found {summary['found']} files but wrote {summary['written']} and "
                f"rejected {summary['rejected']}; this is a bug, please report it")
        limit = reject_limit(max_rejects, summary["found"])
        if limit is not None and summary["rejected"] > limit:
            raise TooManyRejects(
                f"{split}: {summary['rejected']} of {summary['found']} files "
                f"rejected, more than --max-rejects allows ({limit}); see "
                f"{summary['rejects_file']} for each file and reason, fix or remove them, or "
                f"raise --max-rejects")


def _manifest_text(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _write_summary(gathered, output_dir, config):
    atomic_files.write_text(FileSystems.join(output_dir, SUMMARY),
                       _manifest_text(summarise(gathered, config)))


class WriteSummary(beam.PTransform):
    """(Found, shard stats, reject infos, duplicate counts) PCollections -> `.summary.json`,
    written last."""

    def __init__(self, output_dir: str, config: Mapping):
        super().__init__()
        self._output_dir, self._config = output_dir, dict(config)

    def expand(self, inputs):
        found, shard_stats, reject_infos, duplicate_counts = inputs
        tagged = (
            found | "TagFound" >> beam.Map(lambda f: ("found", f.split, f.count)),
            shard_stats | "TagShard" >> beam.MapTuple(lambda split, s: ("shard", split, s)),
            reject_infos | "TagRejects" >> beam.MapTuple(lambda split, r: ("rejects", split, r)),
            duplicate_counts | "TagDuplicates" >> beam.Map(lambda d: ("duplicates", None, d)),
        )
        return (tagged
                | "Gather" >> beam.Flatten()
                | "ToList" >> beam.combiners.ToList()  # one small list of metadata
                | "Write" >> beam.Map(_write_summary, self._output_dir, self._config))


def commit_manifest(output_dir: str, max_rejects: float | None) -> dict:
    """The launcher's last step: checks the pipeline's summary (raises TooManyRejects or, on a
    broken accounting, RuntimeError), writes the TensorFlow Datasets metadata derived from it
    and commits it as manifest.json; returns the manifest."""
    summary_path = FileSystems.join(output_dir, SUMMARY)
    manifest = atomic_files.read_json(summary_path)
    check(manifest, max_rejects)
    for name, text in tfds_metadata.files(manifest).items():
        atomic_files.write_text(FileSystems.join(output_dir, name), text)
    atomic_files.write_text(FileSystems.join(output_dir, MANIFEST), _manifest_text(manifest))
    atomic_files.delete_quietly(summary_path)
    return manifest


def _write_rejects(split_rejects, output_dir):
    split, entries = split_rejects
    rows = sorted((e for e in entries if e is not None), key=lambda e: e.path)  # Reject
    text = "".join(atomic_files.json_line(row.row()) for row in rows)
    atomic_files.write_text(FileSystems.join(output_dir, f"rejects-{split}.jsonl"), text)
    return split, {"count": len(rows), "reasons": _reason_summary(rows)}


def _reason_summary(rows) -> dict[str, int]:
    return dict(sorted(collections.Counter(row.kind for row in rows).items()))


class WriteRejects(beam.PTransform):
    """Reject rows -> one `rejects-<split>.jsonl` per split (empty when none) -> counts."""

    def __init__(self, output_dir: str, splits):
        super().__init__()
        self._output_dir, self._splits = output_dir, list(splits)

    def expand(self, rejects):
        seeds = rejects.pipeline | "EverySplit" >> beam.Create([(s, None) for s in self._splits])
        keyed = rejects | "BySplit" >> beam.Map(lambda r: (r.split, r))
        return ((keyed, seeds)
                | "MergeSeeds" >> beam.Flatten()
                | "GroupRejects" >> beam.GroupByKey()  # (split, [reject, ...])
                | "WriteFile" >> beam.Map(_write_rejects, self._output_dir))

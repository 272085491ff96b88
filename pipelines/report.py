"""The manifest: per-split counts gathered from the pipeline, checked, written last.

In: (split, n) files found per class, (split, shard stats) per shard, (split, reject info) per
split. Out: `manifest.json` in the output directory. Its presence marks a finished build: it is
written only after every shard and rejects report is committed, and only when the accounting
holds (found == written + rejected) and the rejects stay within `--max-rejects`.
"""

from __future__ import annotations

import json
from typing import Mapping

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inception_data import schema
from pipelines import transforms

MANIFEST = "manifest.json"
TOO_MANY_REJECTS = "TooManyRejects"


class TooManyRejects(RuntimeError):
    """More files were rejected than --max-rejects allows."""


def reject_limit(max_rejects: float | None, found: int) -> int | None:
    """--max-rejects as a count: a number >= 1 is a count, a number < 1 a fraction of `found`."""
    if max_rejects is None:
        return None
    return int(max_rejects) if max_rejects >= 1 else int(max_rejects * found)


def _split_summary(split, found, shards, rejects, label_names):
    shards = sorted(shards, key=lambda s: s["index"])
    per_class: dict[int, int] = {}
    for shard in shards:
        for label, count in shard["per_class"].items():
            per_class[int(label)] = per_class.get(int(label), 0) + count
    written = sum(s["records"] for s in shards)
    return {
        "found": found,
        "written": written,
        "rejected": rejects["count"],
        "reject_reasons": rejects["reasons"],
        "rejects_file": f"rejects-{split}.jsonl",
        "num_shards": shards[0]["num_shards"] if shards else 0,
        "shards_resumed": sum(1 for s in shards if s.get("resumed")),
        "shards": {s["shard"]: s["records"] for s in shards},
        "per_class": {label_names[label - 1]: per_class.get(label, 0)
                      for label in range(1, len(label_names) + 1)},
    }


def summarise(gathered, config: Mapping) -> dict:
    """Builds the manifest dict from the gathered ("kind", split, value) tuples."""
    found: dict[str, int] = {}
    shards: dict[str, list] = {}
    rejects: dict[str, dict] = {}
    for kind, split, value in gathered:
        if kind == "found":
            found[split] = found.get(split, 0) + value
        elif kind == "shard":
            shards.setdefault(split, []).append(value)
        else:
            rejects[split] = value
    splits = {}
    for split in config["splits"]:
        summary = _split_summary(split, found.get(split, 0), shards.get(split, []),
                                 rejects[split], config["labels"])
        splits[split] = summary
    return {"tool": "inception-data", "tool_version": config["tool_version"],
            "schema_version": schema.SCHEMA_VERSION,
            "labels": {str(i): name for i, name in enumerate(config["labels"], start=1)},
            "background_label": 0, "settings": config["settings"], "splits": splits}


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
                f"{TOO_MANY_REJECTS}: {split}: {summary['rejected']} of {summary['found']} files "
                f"rejected, more than --max-rejects allows ({limit}); see "
                f"{summary['rejects_file']} for each file and reason, fix or remove them, or "
                f"raise --max-rejects")


def _write_manifest(gathered, output_dir, config, max_rejects):
    manifest = summarise(gathered, config)
    check(manifest, max_rejects)
    transforms.write_text(FileSystems.join(output_dir, MANIFEST),
                          json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


class WriteManifest(beam.PTransform):
    """(found, shard stats, reject infos) PCollections -> manifest.json, written last."""

    def __init__(self, output_dir: str, config: Mapping, max_rejects: float | None):
        super().__init__()
        self._output_dir, self._config, self._max_rejects = output_dir, dict(config), max_rejects

    def expand(self, inputs):
        found, shard_stats, reject_infos = inputs
        tagged = (
            found | "TagFound" >> beam.MapTuple(lambda split, n: ("found", split, n)),
            shard_stats | "TagShard" >> beam.MapTuple(lambda split, s: ("shard", split, s)),
            reject_infos | "TagRejects" >> beam.MapTuple(lambda split, r: ("rejects", split, r)),
        )
        return (tagged
                | "Gather" >> beam.Flatten()
                | "ToList" >> beam.combiners.ToList()  # one small list of metadata
                | "Write" >> beam.Map(_write_manifest, self._output_dir, self._config,
                                      self._max_rejects))

"""One truth about a split: its shards' `-of-N` names, its manifest (the shards it lists and
their counts) and the shards' index files and sizes agree, or each disagreement is one line
that names the file and the two numbers.

In: the shard files matched, what `shard_set.ShardSet` read of their folders (manifests), and
`shard_index.Spans` of the shards with index files. Out: `Problem`s. No record is read: the
index files and the file sizes already tell each shard's count. `input_fn`, `inspect` and
`train.py` all judge a split by these.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from inception_data import sharding

DAMAGED, MISMATCH = "damaged", "mismatch"  # what on_error, and what allow_incomplete, governs


@dataclasses.dataclass(frozen=True)
class Problem:
    kind: str  # DAMAGED or MISMATCH
    line: str  # starts with the file it is about


def problems(shards, spans: Sequence) -> list[Problem]:
    """Every disagreement of the shard set `shards` (a ShardSet) with itself: missing shards
    (ShardSet.incomplete), names that do not fit (names), manifests whose counts disagree with
    themselves (manifest_totals) or with a shard's index and size (`spans`: Spans or None per
    file)."""
    found = [Problem(MISMATCH, line) for line in shards.incomplete()]
    found += [Problem(MISMATCH, line) for line in names(shards)]
    found += [Problem(MISMATCH, line) for line in manifest_totals(shards)]
    for shard in filter(None, spans):
        problem = shard.problem(shards.shard_records(shard.path))
        if problem:
            found.append(Problem(*problem))
    return found


def _groups(files: Sequence[str]) -> dict[tuple[str, str], list[tuple[str, int, int]]]:
    """(folder, split) -> [(path, index, count)] of the files named like shards."""
    groups: dict = {}
    for path in files:
        folder, name = os.path.split(path)
        parsed = sharding.parse_shard_name(name)
        if parsed:
            groups.setdefault((folder, parsed[0]), []).append((path, parsed[1], parsed[2]))
    return groups


def names(shards) -> list[str]:
    """Shards whose names do not fit the set: two builds' shards mixed (other `-of-N`), a
    number past its N (a copy or a leftover: `train-00004-of-00004`), one the manifest does
    not list, or a manifest whose shard count is not the names'."""
    lines = []
    for (folder, split), members in sorted(_groups(shards.files).items()):
        counts = sorted({count for _, _, count in members})
        if len(counts) > 1:
            example: dict = {}  # the first file of each count
            for path, _, count in members:
                example.setdefault(count, path)
            lines.append(f"{example[counts[0]]} says there are {counts[0]} {split} shards, "
                         f"{example[counts[1]]} says {counts[1]}: shards of two builds are "
                         f"mixed; keep one build's")
        stray = {path for path, index, count in members if index >= count}
        for path, index, count in members:
            if path in stray:
                lines.append(f"{path} is shard {index} of {count} by its name, but {count} "
                             f"shards are numbered 0 to {count - 1}: a copy or a leftover; "
                             f"delete it")
        listed = _manifest_split(shards, folder, split).get("shards")
        if listed is not None:
            manifest = os.path.join(folder, "manifest.json")
            for path, _, _ in members:
                if path not in stray and os.path.basename(path) not in listed:
                    lines.append(f"{path} is not among the {len(listed)} {split} shards "
                                 f"{manifest} lists: a file another build left; delete it")
    return lines


def manifest_totals(shards) -> list[str]:
    """A manifest whose split total is not the sum of its shards' counts."""
    lines = []
    for folder, known in sorted(shards.folders.items()):
        for split, entry in sorted(((known.manifest or {}).get("splits") or {}).items()):
            counted = entry.get("shards")
            if not counted or "written" not in entry:
                continue
            total = sum(int(n) for n in counted.values())
            if total != int(entry["written"]):
                lines.append(f"{os.path.join(folder, 'manifest.json')} says {entry['written']} "
                             f"{split} records were written, but its {split} shards count "
                             f"{total}: the manifest was edited or is another build's")
    return lines


def _manifest_split(shards, folder: str, split: str) -> dict:
    known = shards.folders.get(folder)
    return (((known.manifest if known else None) or {}).get("splits") or {}).get(split) or {}

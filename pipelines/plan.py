"""A build's plan: everything decided before the pipeline runs, frozen, printable.

The skeleton makes a BuildPlan from a BuildConfig and a source (skeleton.make_plan: the
labels numbered, the trees listed, the shard counts and names, the design and its worker
processes, the estimated cost), and the executor (skeleton.execute) takes only the plan.
`inception-data build ... --dry-run` prints `describe()` and writes nothing.

What a plan cannot know before the run it says so: a distributed build's workers list the
object-store trees, and ImageNet's tar archives are indexed by the workers; their classes and
counts (and `auto` shard counts) are decided during the run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from inception_data import sharding
from pipelines import runner

# Beyond the per-file and per-byte costs that choose the worker count (runner.py), a local
# build pays a fixed start-up: the Beam graph, the runner and its bundles. Measured on 2 cores
# (2026-12-07, the summary line's time): 1,300 imagenette photos 0.9 s (estimate 0.98 s), 1,000
# ImageNet JPEGs 1.1 s (1.2 s), and with 2 workers 2.9 s (4.2 s).
START_SECONDS = 0.8


@dataclasses.dataclass(frozen=True)
class ClassCount:
    """One class of one split as listed before the run."""

    label: int
    name: str
    count: int


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """One split: where it is read from, what was listed (None: listed during the run) and its
    shards."""

    split: str
    root: str
    classes: tuple[ClassCount, ...] | None  # None: the workers list this split
    rejected: int  # files the listing already turned down (not images, unreadable ...)
    shards: int | None  # None: auto, decided once the workers have counted the images

    @property
    def images(self) -> int | None:
        return None if self.classes is None else sum(c.count for c in self.classes)

    def shard_names(self) -> list[str]:
        return ([] if self.shards is None else
                [sharding.shard_name(self.split, i, self.shards) for i in range(self.shards)])


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What the executor runs. `config` has its label map numbered; `launch` is the runner and
    its options with the local worker count resolved; `work` what the source listed (spilled
    classes in the scratch folder, sources the workers list); `warnings` what planning found,
    reported once."""

    config: Any  # builder.BuildConfig
    launch: runner.Plan
    design: str
    why: str
    splits: tuple[SplitPlan, ...]
    input_files: int
    input_bytes: int
    estimated_seconds: float | None
    work: Any  # skeleton.Work
    context: Any  # builder.ListContext
    settings: Any  # shard_writer.ShardSettings
    warnings: tuple[str, ...] = ()

    def describe(self) -> str:
        """The plan as the user reads it before the build runs."""
        config = self.config
        lines = [f"output folder: {config.output_dir}"
                 + (" (holds a build: add --overwrite or --resume)"
                    if _holds_build(config.output_dir) else "")]
        label_map = config.label_map
        lines.append(f"labels: {len(label_map.names)} classes numbered {label_map.offset}.."
                     f"{label_map.offset + len(label_map.names) - 1}"
                     + (" (0: background)" if label_map.offset else ""))
        for split in self.splits:
            if split.classes is None:
                lines.append(f"{split.split}: {split.root}: listed by the workers during the "
                             f"run; " + (f"{split.shards} shards" if split.shards else
                                         "shards: auto (about 1024 images each)"))
                continue
            lines.append(f"{split.split}: {split.root}: {split.images} files in "
                         f"{len(split.classes)} classes to convert (each written or rejected "
                         f"with its reason), {split.rejected} turned down by the listing")
            names = split.shard_names()
            span = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
            lines.append(f"  shards: {len(names)} ({span}), " + (
                f"about {split.images // len(names)} images each" if split.images >= len(names)
                else f"{len(names) - split.images} or more of them empty (fewer files than "
                     f"shards)"))
            width = max((len(c.name) for c in split.classes), default=0)
            lines += [f"  {c.label:>5}  {c.name:<{width}}  {c.count}" for c in split.classes]
        lines.append(f"design: {self.design} ({self.why})")
        if self.estimated_seconds is not None:
            lines.append(f"estimated time: {self.estimated_seconds:.1f} s for "
                         f"{self.input_files} files, {_size(self.input_bytes)}")
        elif not self.launch.local_runner:
            known = f" ({_size(self.input_bytes)} of archives)" if self.input_bytes else ""
            lines.append(f"estimated time: not estimated here{known}: the runner's workers, "
                         f"their machines and its autoscaling decide")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _holds_build(output_dir: str) -> bool:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(FileSystems.join(output_dir, "manifest.json"))


def design_of(plan: runner.Plan, input_bytes: int, input_files: int,
              workers: int | None) -> tuple[runner.Plan, str, str, float | None]:
    """The design, why it was chosen, the runner plan with its worker count and the estimated
    seconds (None: a distributed runner, whose cost this machine cannot tell)."""
    if not plan.local_runner:
        named = dict(_pairs(plan.beam_args)).get("--runner", "the runner named")
        return (plan, f"distributed on {named}", "--runner names a distributed runner: its "
                "workers list the inputs and group images by shard", None)
    chosen = workers or runner.local_workers(input_bytes, input_files)
    count = chosen or os.cpu_count() or 1
    plan = plan.with_workers(chosen)
    work = runner.one_process_seconds(input_bytes, input_files)
    seconds = START_SECONDS + work / count + (runner.PARALLEL_START_SECONDS if count > 1 else 0)
    if workers:
        why = f"--workers {workers}"
    elif count > 1:
        why = f"{input_files} files of {_size(input_bytes)}: one process per core wins"
    else:
        why = (f"{input_files} files of {_size(input_bytes)}: starting more processes "
               f"would cost more than they save")
    return plan, f"local, {count} process{'es' if count > 1 else ''}", why, seconds


def _pairs(args):
    for i, arg in enumerate(args):
        if "=" in arg:
            yield tuple(arg.split("=", 1))
        elif arg.startswith("--") and i + 1 < len(args):
            yield arg, args[i + 1]

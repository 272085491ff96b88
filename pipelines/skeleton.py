"""The one build skeleton: a BuildConfig and a source in, the committed manifest out.

Every build runs the same steps, whatever it reads, in two phases:

    make_plan: check the output folder -> the runner -> source.configure (labels numbered) ->
        source.list (what the launcher lists here, spilled; what the workers will list) ->
        shards, design, estimated cost -> a frozen plan.BuildPlan (warnings collected in it)
    execute(plan): claim and prepare the output folder, write labels.txt -> builder.build in
        a Beam pipeline -> check the summary, commit the manifest
    then source.after_run (warnings only the manifest can give).

`--dry-run` stops after make_plan and prints the plan.

A source is what differs between builds: `image_folder.FolderSource` (class-per-directory
trees) and `imagenet.ImagenetSource` (ILSVRC trees or tars, synsets, boxes). Both are plain
objects with the five methods below; the graph itself (the two designs over the one shard
writer) is builder.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Protocol

from apache_beam.io.filesystems import FileSystems

from inception_data import sharding
from pipelines import atomic_files, builder, launch, listing, notices, output_folder
from pipelines import plan as plan_lib
from pipelines import runner as runner_lib
from pipelines.builder import BuildConfig, ListContext, Listed
from pipelines.errors import LaunchError
from pipelines.output_claim import Claim
from pipelines.plan import BuildPlan, SplitPlan
from pipelines.scratch import Scratch

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Work:
    """What a source listed before the run: spilled classes, rejects and counts listed here
    (`listed`), sources the workers list (`on_workers`), and the boxes (ImageNet)."""

    listed: Listed = dataclasses.field(default_factory=Listed)
    on_workers: list = dataclasses.field(default_factory=list)
    worker_bytes: int = 0  # input the workers list, when known before the run (tar sizes)
    boxes_csv: str | None = None  # the distributed design joins boxes from the CSV
    box_index: str | None = None  # the local design reads them from this SQLite index
    spill_dir: str | None = None  # a local build's scratch folder (its spilled classes)


class Source(Protocol):
    """What one kind of build contributes to the skeleton."""

    def configure(self, config: BuildConfig, plan: runner_lib.Plan) -> BuildConfig:
        """`config` with its label map numbered; notes what it sees before listing."""

    def context(self, config: BuildConfig) -> ListContext:
        """What every listing step needs."""

    def records(self, config: BuildConfig):
        """The callable that turns (item, image) into a schema.ImageRecord."""

    def list(self, config: BuildConfig, plan: runner_lib.Plan, context: ListContext,
             scratch: str | None) -> Work:
        """Lists what the launcher lists (spilling to `scratch`, a local build's scratch
        folder) and names what the workers list."""

    def after_run(self, config: BuildConfig, plan: runner_lib.Plan, manifest: dict) -> None:
        """Notes that only the finished build's counts can give."""


def run(config: BuildConfig, source: Source, beam_args: Sequence[str] = (), *,
        warn=log.warning):
    """Plans one build, then executes the plan; returns the manifest (None: a remote job that
    runs on). With --dry-run (`config.options.dry_run`) returns the BuildPlan instead, having
    written nothing (the listing spills to the scratch folder, removed on return)."""
    check_output_outside_inputs(config)
    with Scratch(runner_lib.plan(beam_args)) as scratch:
        build_plan = make_plan(config, source, beam_args, scratch)
        if config.options.dry_run:
            return build_plan  # (its warnings are part of what it prints)
        for line in build_plan.warnings:  # reported once, here
            warn(line)
        manifest = execute(build_plan, warn=warn)
    if manifest:
        if manifest.get("seconds"):  # (0: a --resume of a finished build, nothing ran)
            manifest["estimated_seconds"] = build_plan.estimated_seconds
        with notices.collected() as late:
            source.after_run(build_plan.config, build_plan.launch, manifest)
        for line in late:
            warn(line)
    return manifest


def make_plan(config: BuildConfig, source: Source, beam_args: Sequence[str],
              scratch: str | None) -> BuildPlan:
    """Everything decided before the pipeline runs: the labels numbered, what the launcher
    lists (spilled to `scratch`), the shards, the design and its cost. Writes nothing outside
    `scratch`; warnings are collected in the plan."""
    runner = runner_lib.plan(beam_args)
    with notices.collected() as warnings:
        config = source.configure(config, runner)
        context = source.context(config)
        settings = builder.shard_settings(config, source.records(config))
        work = source.list(config, runner, context, scratch)
    work.spill_dir = scratch
    # (files the workers list are not counted before the run: then the count is unknown)
    files = 0 if work.on_workers else work.listed.files
    input_bytes = work.listed.bytes + work.worker_bytes
    runner, design, why, seconds = plan_lib.design_of(runner, input_bytes, files,
                                                      config.options.workers)
    return BuildPlan(config, runner, design, why, _split_plans(config, work), files,
                     input_bytes, seconds if files else None, work, context, settings,
                     tuple(warnings))


def _split_plans(config: BuildConfig, work: Work) -> tuple[SplitPlan, ...]:
    listed_on_workers = {getattr(s, "split", None) for s in work.on_workers}
    plans = []
    for split, root in config.roots.items():
        rejected = sum(1 for r in work.listed.rejects if r.split == split)
        if split in listed_on_workers:
            plans.append(SplitPlan(split, root, None, rejected, config.shards.get(split)))
            continue
        counts = {s.label: s.count for s in work.listed.spilled if s.split == split}
        classes = tuple(plan_lib.ClassCount(label, name, counts.get(label, 0))  # 0: empty
                        for label, name in config.label_map.numbered())
        total = sum(counts.values())
        shards = config.shards.get(split) or sharding.auto_shards(total)
        plans.append(SplitPlan(split, root, classes, rejected, shards))
    return tuple(plans)


def execute(build_plan: BuildPlan, *, warn=log.warning) -> dict | None:
    """Runs a plan: claims and prepares the output folder, runs the Beam graph, commits the
    manifest; returns it (None: a remote job still running). `warn`: what happens during the
    run (a stale claim taken over)."""
    config, work = build_plan.config, build_plan.work
    scratch = work.spill_dir

    def build(pipeline):
        builder.build(pipeline, config, build_plan.settings, build_plan.context,
                      work.on_workers, spill_dir=scratch, listed=work.listed,
                      boxes_csv=work.boxes_csv, box_index=work.box_index)

    return _launch(config, build_plan.launch, build, input_files=build_plan.input_files,
                   warn=warn)


def lists_in_launcher(plan: runner_lib.Plan, root: str) -> bool:
    """Whether the launcher opens `root` itself: always for a local build, and for local
    folders (a cheap scan of the top level, for the label warnings); a distributed build of an
    object-store tree leaves the listing to its workers - listing the bucket here as well would
    list every object twice."""
    return plan.local_runner or listing.is_local(root)


def _inside(path: str, folder: str) -> bool:
    if listing.is_local(path) and listing.is_local(folder):
        path, folder = os.path.realpath(path), os.path.realpath(folder)
        return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
    return (path.rstrip("/") + "/").startswith(folder.rstrip("/") + "/")


def check_output_outside_inputs(config: BuildConfig) -> None:
    """An output folder inside a split folder would be listed as a class by the next build."""
    for split, root in config.roots.items():
        if _inside(config.output_dir, root):
            raise LaunchError(
                f"--output-dir {config.output_dir} is inside the {split} folder {root}, where "
                f"a later build would take it for a class; choose an output folder outside it")


def _launch(config: BuildConfig, plan: runner_lib.Plan, build_fn, *, input_files: int,
            warn) -> dict | None:
    """Claims the output folder (one build at a time: output_claim.py), prepares it, writes
    labels.txt, runs `build_fn(pipeline)`, checks the result and commits the manifest; returns
    it (None: a remote job still running)."""
    fingerprint = {"settings": config.settings(), "roots": dict(config.roots),
                   "labels": list(config.label_map.names)}
    options = config.options
    with Claim(config.output_dir, warn) as claim:
        if not output_folder.prepare_output(config.output_dir, list(config.roots),
                                            options.overwrite, fingerprint, options.resume):
            manifest = output_folder.read_manifest(config.output_dir)
            manifest["seconds"] = 0.0
            return manifest  # --resume of a build that had already finished: nothing to do
        atomic_files.write_text(FileSystems.join(config.output_dir, "labels.txt"),
                                config.label_map.to_text())
        counts = list(config.shards.values())
        try:
            return launch.run(build_fn, plan, output_dir=config.output_dir,
                              splits=list(config.roots), max_rejects=options.max_rejects,
                              total_images=input_files,
                              total_shards=sum(counts) if all(counts) else None,
                              progress=options.progress, before_commit=claim.check)
        except BaseException:  # stopped: its temporaries go (it holds the claim, none are
            output_folder.remove_temporaries(config.output_dir, list(config.roots))  # another's)
            raise

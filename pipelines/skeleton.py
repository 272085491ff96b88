"""The one build skeleton: a BuildConfig and a source in, the committed manifest out.

Every build runs the same steps, whatever it reads:

    check the output folder -> plan the run -> source.configure (labels numbered, early
    warnings) -> source.list (what the launcher lists here, what the workers will list) ->
    prepare the output folder and write labels.txt -> builder.build in a Beam pipeline ->
    check the summary, commit the manifest -> source.after_run (warnings only the manifest can
    give)

A source is what differs between builds: `image_folder.FolderSource` (class-per-directory
trees) and `imagenet.ImagenetSource` (ILSVRC trees or tars, synsets, boxes). Both are plain
objects with the four methods above; the graph itself (the two designs over the one shard
writer) is builder.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Protocol, Sequence

from apache_beam.io.filesystems import FileSystems

from pipelines import atomic_files, builder, launch, listing
from pipelines.output_claim import Claim
from pipelines.builder import BuildConfig, ListContext, Listed
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


class Source(Protocol):
    """What one kind of build contributes to the skeleton."""

    def configure(self, config: BuildConfig, plan: launch.Plan, warn) -> BuildConfig:
        """`config` with its label map numbered; warns about what it sees before listing."""

    def context(self, config: BuildConfig) -> ListContext:
        """What every listing step needs."""

    def records(self, config: BuildConfig):
        """The callable that turns (item, image) into a schema.ImageRecord."""

    def list(self, config: BuildConfig, plan: launch.Plan, context: ListContext,
             scratch: str | None, warn) -> Work:
        """Lists what the launcher lists (spilling to `scratch`, a local build's scratch
        folder) and names what the workers list."""

    def after_run(self, config: BuildConfig, plan: launch.Plan, manifest: dict, warn) -> None:
        """Warnings that only the finished build's counts can give."""


def run(config: BuildConfig, source: Source, beam_args: Sequence[str] = (), *,
        warn=log.warning) -> dict | None:
    """Runs one build; returns the manifest (None: a remote job that runs on)."""
    check_output_outside_inputs(config)
    plan = launch.plan(beam_args)
    config = source.configure(config, plan, warn)
    context = source.context(config)
    settings = builder.shard_settings(config, source.records(config))
    with Scratch(plan) as scratch:
        work = source.list(config, plan, context, scratch, warn)

        def build(pipeline):
            builder.build(pipeline, config, settings, context, work.on_workers,
                          spill_dir=scratch, listed=work.listed, boxes_csv=work.boxes_csv,
                          box_index=work.box_index)

        # (files the workers list are not counted before the run: then the count is unknown)
        files = 0 if work.on_workers else work.listed.files
        manifest = _launch(config, plan, build, input_bytes=work.listed.bytes + work.worker_bytes,
                           input_files=files, warn=warn)
    if manifest:
        source.after_run(config, plan, manifest, warn)
    return manifest


def lists_in_launcher(plan: launch.Plan, root: str) -> bool:
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
            raise launch.LaunchError(
                f"--output-dir {config.output_dir} is inside the {split} folder {root}, where "
                f"a later build would take it for a class; choose an output folder outside it")


def _launch(config: BuildConfig, plan: launch.Plan, build_fn, *, input_bytes: int,
            input_files: int, warn) -> dict | None:
    """Claims the output folder (one build at a time: output_claim.py), prepares it, writes
    labels.txt, runs `build_fn(pipeline)`, checks the result and commits the manifest; returns
    it (None: a remote job still running)."""
    fingerprint = {"settings": config.settings(), "roots": dict(config.roots),
                   "labels": list(config.label_map.names)}
    options = config.options
    with Claim(config.output_dir, warn) as claim:
        if not launch.prepare_output(config.output_dir, list(config.roots), options.overwrite,
                                     fingerprint, options.resume):
            manifest = launch.read_manifest(config.output_dir)
            manifest["seconds"] = 0.0
            return manifest  # --resume of a build that had already finished: nothing to do
        atomic_files.write_text(FileSystems.join(config.output_dir, "labels.txt"),
                                config.label_map.to_text())
        if plan.local_runner:
            plan = plan.with_workers(options.workers
                                     or launch.local_workers(input_bytes, input_files))
        counts = list(config.shards.values())
        try:
            return launch.run(build_fn, plan, output_dir=config.output_dir,
                              splits=list(config.roots), max_rejects=options.max_rejects,
                              total_images=input_files,
                              total_shards=sum(counts) if all(counts) else None,
                              progress=options.progress, before_commit=claim.check)
        except BaseException:  # stopped: its temporaries go (it holds the claim, none are
            launch.remove_temporaries(config.output_dir, list(config.roots))  # another's)
            raise

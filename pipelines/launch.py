"""Launcher-side helpers shared by the build pipelines: runner options, output directory
preparation, progress and the final summary. Nothing here touches image bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from inception_data import paths, sharding, tfds_metadata
from pipelines import atomic_files, dedup, report


class LaunchError(RuntimeError):
    """A problem with how the build was asked for; the message says what to do."""


class OutputExists(LaunchError):
    """The output directory already holds a build and --overwrite was not given."""


# The costs that choose a local build's process count, measured on 2 cores (2026-12-02,
# docs/benchmarks.md): one process converts a file in ~0.11 ms plus ~3.0 ns per byte (13,000
# photos of 10 KB: 3.1 s; 1,000 ImageNet JPEGs of 110 KB: 1.6 s; 50,000 of them: 22-24 s), and
# starting the worker processes costs ~3.2 s more than one process (the same two builds with
# 2 workers: 4.9 s and 4.2 s).
SECONDS_PER_FILE = 0.11e-3
SECONDS_PER_BYTE = 3.0e-9
PARALLEL_START_SECONDS = 3.2


def local_workers(input_bytes: int, input_files: int = 0) -> int | None:
    """Worker processes for a local run: one per core (None) when the work one process would
    do, from the files and bytes to convert, is large enough that splitting it over the cores
    saves more than starting the workers costs; else one. Per-file cost decides for small
    photos, bytes for camera-size ones: at 2 cores, ~46,000 photos of 10 KB or ~14,500
    ImageNet-size JPEGs are where two processes start to win."""
    cores = os.cpu_count() or 1
    work = input_files * SECONDS_PER_FILE + input_bytes * SECONDS_PER_BYTE
    return None if cores > 1 and work * (1 - 1 / cores) > PARALLEL_START_SECONDS else 1


STAGING_OPTIONS = ("--setup_file", "--extra_package", "--extra_packages",
                   "--sdk_container_image", "--requirements_file")


def with_staging(options, beam_args: Sequence[str]) -> list[str]:
    """Remote workers need this project installed: unless the user chose how (a staging option
    above), stage it from this source tree with --setup_file. An installed wheel has no source
    tree; then say how to stage it."""
    runner = str(options.view_as(StandardOptions).runner)
    if "Direct" in runner or "FnApi" in runner or any(
            a.split("=")[0] in STAGING_OPTIONS for a in beam_args):
        return list(beam_args)
    setup = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
    if not os.path.exists(setup):
        raise LaunchError(
            f"--runner {runner} needs this project on its workers, and no source tree with "
            f"setup.py is next to the installed package: run from a clone (it passes "
            f"--setup_file itself), or pass --extra_package with a wheel built by "
            f"`pip wheel --no-deps .`, or --sdk_container_image with a custom container")
    return list(beam_args) + ["--setup_file", setup]


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where and how the pipeline runs. `local_runner`: on this machine, on Beam's FnApiRunner
    (the default); otherwise on the runner the user named (e.g. Dataflow), whose workers cannot
    see this machine's disk. (Not to be confused with `listing.is_local(path)`: whether a path
    is on this machine's filesystem.)"""

    beam_args: tuple
    local_runner: bool

    @property
    def options(self) -> PipelineOptions:
        return PipelineOptions(list(self.beam_args))

    def runner(self):
        if not self.local_runner:
            return None  # the one named in the options
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()

    def with_workers(self, workers: int | None) -> Plan:
        """Local worker processes (one per core when None), unless the user set them."""
        args = list(self.beam_args)
        if not any(a.startswith("--direct_num_workers") for a in args):
            args.append(f"--direct_num_workers={workers or os.cpu_count() or 1}")
        if not any(a.startswith("--direct_running_mode") for a in args):
            count = PipelineOptions(args).view_as(DirectOptions).direct_num_workers
            args.append("--direct_running_mode="
                        + ("multi_processing" if count > 1 else "in_memory"))
        return Plan(tuple(args), True)


def unknown_options(beam_args: Sequence[str]) -> list[str]:
    """The options in `beam_args` that no Beam PipelineOptions class defines (Beam itself
    would drop them silently), as they were written."""
    options = PipelineOptions(list(beam_args))
    known = options.get_all_options()
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(known)
    return [arg.split("=", 1)[0] for arg in beam_args if arg.startswith("--")
            and arg[2:].split("=", 1)[0].replace("-", "_") in unknown]


def beam_option_names() -> list[str]:
    """Every option Beam knows, as `--name`."""
    return [f"--{name}" for name in PipelineOptions([]).get_all_options()]


def plan(beam_args: Sequence[str]) -> Plan:
    """The Plan for `beam_args`, which are passed to Beam untouched.

    Without an explicit --runner we pin Beam's FnApiRunner in multi-process mode: the plain
    DirectRunner may first try to download the Prism runner, which fails (slowly) without
    internet and runs in one process anyway. A named runner gets this project staged.
    """
    options = PipelineOptions(list(beam_args))
    if options.view_as(StandardOptions).runner:
        return Plan(tuple(with_staging(options, beam_args)), False)
    return Plan(tuple(beam_args), True)


SETTINGS = ".build-settings.json"
# side files of a build, replaced with it (--overwrite): TFDS metadata, the duplicates report
SIDE_FILES = (*tfds_metadata.FILE_NAMES, dedup.REPORT)


def _existing_outputs(output_dir: str, splits: Sequence[str]) -> list[str]:
    literal = paths.glob_escape(output_dir)
    patterns = [FileSystems.join(literal, f"{split}-*-of-*") for split in splits]
    patterns += [FileSystems.join(literal, name) for name in
                 (report.MANIFEST, report.SUMMARY, SETTINGS, ".tmp-*", ".stats-*",
                  *SIDE_FILES, *(f"rejects-{s}.jsonl" for s in splits))]
    index = FileSystems.join(literal, atomic_files.INDEX_DIR)
    patterns += [FileSystems.join(index, ".tmp-*")]
    patterns += [FileSystems.join(index, f"{split}-*-of-*.idx") for split in splits]
    found = []
    for result in paths.beam_match(patterns):
        for meta in result.metadata_list:
            name = meta.path.rsplit("/", 1)[-1]
            shard = name[:-4] if name.endswith(".idx") else name  # a shard or its index
            if name.startswith((".tmp-", ".stats-", "rejects-")) or name in (
                    report.MANIFEST, report.SUMMARY, SETTINGS, *SIDE_FILES) \
                    or sharding.parse_shard_name(shard):
                found.append(meta.path)
    return sorted(set(found))


def _delete(files: Sequence[str]) -> None:
    if files:
        paths.beam_delete(files)


def prepare_output(output_dir: str, splits: Sequence[str], overwrite: bool, settings: dict,
                   resume: bool = False) -> bool:
    """Readies `output_dir`; returns False when a resumed build has nothing left to do.

    Without a flag an earlier build is never touched (error). `overwrite` removes it first: the
    manifest goes first, so an interrupted clean-up never leaves a manifest describing shards
    that are gone, and shards of every shard count go, so no stale `-of-00128` shard survives
    next to a new `-of-00064` set. `resume` keeps the committed shards of an interrupted build
    with the same settings and removes only its temporary files.
    """
    if not FileSystems.exists(output_dir):
        FileSystems.mkdirs(output_dir)
    existing = _existing_outputs(output_dir, splits)
    settings_path = FileSystems.join(output_dir, SETTINGS)
    if resume and existing:
        if settings_path in existing and atomic_files.read_json(settings_path) != settings:
            raise OutputExists(f"{output_dir} holds a build made with other settings, inputs or "
                               f"labels than this one; --resume needs the same command (or "
                               f"pass --overwrite to start again)")
        if any(p.endswith("/" + report.MANIFEST) for p in existing):
            return False
        _delete([p for p in existing if p.rsplit("/", 1)[-1].startswith(".tmp-")])
    elif existing and not overwrite:
        raise OutputExists(
            f"{output_dir} already holds {len(existing)} output file(s) of an earlier build (e.g. "
            f"{existing[0]}); pass --overwrite to replace them, --resume to finish an interrupted "
            f"build, or choose another --output-dir")
    elif existing:
        manifest = [p for p in existing if p.endswith("/" + report.MANIFEST)]
        _delete(manifest)
        _delete([p for p in existing if p not in manifest])
    atomic_files.write_text(settings_path, json.dumps(settings, sort_keys=True))
    return True


def remove_temporaries(output_dir: str, splits: Sequence[str]) -> None:
    """Removes the `.tmp-*` files of a build that stopped (a signal, a full disk in a side
    file), so that they do not linger in the output until the next --resume. Best effort: the
    error that stopped the build is the one to report."""
    try:
        _delete([p for p in _existing_outputs(output_dir, splits)
                 if p.rsplit("/", 1)[-1].startswith(".tmp-")])
    except Exception:  # e.g. the disk or the bucket is gone
        pass


class ShardProgress:
    """A tqdm bar fed by polling the output directory for committed shards.

    The local runner executes DoFns in worker processes, so the launcher cannot count records
    directly; a shard appears under its final name only once complete, which makes committed
    shards an honest progress measure. With a known image count the bar counts images
    (committed fraction of each split's shards times the images listed); when the count is
    unknown until the workers have listed everything (tar archives) it counts shards.
    """

    def __init__(self, output_dir: str, splits: Sequence[str], total_images: int,
                 total_shards: int | None = None, interval: float = 1.0):
        self._patterns = [FileSystems.join(paths.glob_escape(output_dir), f"{s}-*-of-*")
                          for s in splits]
        self._total_images, self._total_shards = total_images, total_shards
        self._interval = interval
        self._stop = threading.Event()
        self._completed = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _position(self) -> float:
        shards = fraction = 0.0
        for result in paths.beam_match(self._patterns):
            for meta in result.metadata_list:
                parsed = sharding.parse_shard_name(meta.path.rsplit("/", 1)[-1])
                if parsed:
                    shards += 1
                    fraction += 1.0 / parsed[2]
        if self._total_images:
            return fraction / len(self._patterns) * self._total_images
        return shards

    def _run(self) -> None:
        from tqdm import tqdm

        by_image = bool(self._total_images)
        total = self._total_images if by_image else self._total_shards
        with tqdm(total=total, unit="img" if by_image else "shard", desc="converting",
                  smoothing=0.1) as bar:
            while not self._stop.wait(self._interval):
                bar.update(max(0, round(self._position()) - bar.n))
            if self._completed and total:
                bar.update(max(0, total - bar.n))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, exc_type, *_):
        self._completed = exc_type is None
        self._stop.set()
        self._thread.join()


def run(build, plan: Plan, *, output_dir, splits, max_rejects=None, total_images=0,
        total_shards=None, progress=True, before_commit=lambda: None) -> dict | None:
    """Builds the pipeline with `build(pipeline)`, runs it, then checks its summary and commits
    the manifest (report.commit_manifest: raises report.TooManyRejects beyond --max-rejects),
    after `before_commit()` (which raises if the build lost its claim on the folder).
    Returns the manifest, or None when a remote runner returned before the job finished."""
    start = time.monotonic()
    pipeline = beam.Pipeline(runner=plan.runner(), options=plan.options)
    build(pipeline)
    if progress and plan.local_runner:
        with ShardProgress(output_dir, splits, total_images, total_shards):
            pipeline.run().wait_until_finish()
    else:
        pipeline.run().wait_until_finish()
    if not FileSystems.exists(FileSystems.join(output_dir, report.SUMMARY)):
        if plan.local_runner:
            raise RuntimeError(f"the pipeline finished without writing {report.SUMMARY} in "
                               f"{output_dir}; this is a bug, please report it")
        return None  # e.g. a Dataflow template was written, or the job runs on
    before_commit()
    manifest = report.commit_manifest(output_dir, max_rejects)
    manifest["seconds"] = time.monotonic() - start
    return manifest


def read_manifest(output_dir: str) -> dict:
    return atomic_files.read_json(FileSystems.join(output_dir, report.MANIFEST))


def summary_line(manifest: dict) -> str:
    splits = manifest["splits"].values()
    written = sum(s["written"] for s in splits)
    rejected = sum(s["rejected"] for s in splits)
    seconds = manifest.get("seconds", 0.0)
    rate = written / seconds if seconds else 0.0
    estimate = manifest.get("estimated_seconds")
    return (f"wrote {written} images, rejected {rejected}, in {seconds:.1f} s "
            f"({rate:.1f} images/s" + (f"; the plan estimated {estimate:.1f} s)" if estimate
                                       else ")"))

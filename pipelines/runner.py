"""Where and how a build's pipeline runs: the runner plan (Beam's FnApiRunner on this machine,
or the runner the user named), its options checked, this project staged for remote workers,
and how many local worker processes a build is worth (from costs measured on 2 cores)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipelines.errors import LaunchError

# The costs that choose a local build's process count, measured on 2 cores (2026-12-02,
# docs/benchmarks.md): one process converts a file in ~0.11 ms plus ~3.0 ns per byte (13,000
# photos of 10 KB: 3.1 s; 1,000 ImageNet JPEGs of 110 KB: 1.6 s; 50,000 of them: 22-24 s), and
# starting the worker processes costs ~3.2 s more than one process (the same two builds with
# 2 workers: 4.9 s and 4.2 s).
SECONDS_PER_FILE = 0.11e-3
SECONDS_PER_BYTE = 3.0e-9
PARALLEL_START_SECONDS = 3.2


def one_process_seconds(input_bytes: int, input_files: int = 0) -> float:
    """What converting these files and bytes costs one process, from the measured costs."""
    return input_files * SECONDS_PER_FILE + input_bytes * SECONDS_PER_BYTE


def local_workers(input_bytes: int, input_files: int = 0) -> int | None:
    """Worker processes for a local run: one per core (None) when the work one process would
    do, from the files and bytes to convert, is large enough that splitting it over the cores
    saves more than starting the workers costs; else one. Per-file cost decides for small
    photos, bytes for camera-size ones: at 2 cores, ~46,000 photos of 10 KB or ~14,500
    ImageNet-size JPEGs are where two processes start to win."""
    cores = os.cpu_count() or 1
    work = one_process_seconds(input_bytes, input_files)
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

"""The options every build shares, each defined once: default, flag, choices and help.

`BuildOptions` is the one place: the CLI makes its flags from these fields
(`inception_data_cli/options.py`), the pipelines read the values from the one `BuildOptions` a
build carries, and the manifest records every field marked `recorded` (`settings()`). Adding
a build option is its field here and the code that uses it.

This module imports nothing heavy, so the CLI can build its flags without importing Beam,
TensorFlow or Pillow.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

# Choices, also the library's constants (images.py, dedup.py and the writer validate with them).
VERIFY_MODES = ("fast", "decode")
EXIF_MODES = ("apply", "ignore")
PROGRESSIVE_MODES = ("keep", "baseline")
DUPLICATE_MODES = ("report", "drop", "off")
JPEG_QUALITY = 95
WITH_BACKGROUND = 1  # label_offset: background 0, then 1..N (the original scripts)
NO_BACKGROUND = 0  # label_offset: 0..N-1


def option(default: Any, *flags: str, help: str = "", choices: tuple | None = None,
           recorded: bool = True, **click_kwargs) -> dataclasses.Field:
    """A BuildOptions field: its default and how the CLI spells it. `recorded`: the manifest
    (and --resume's fingerprint) records the value; launch options such as --workers are not
    part of the output's identity. `click_kwargs` go to click.option as they are (type,
    metavar, is_flag, ...)."""
    return dataclasses.field(default=default, metadata={
        "flags": flags, "help": help, "choices": choices, "recorded": recorded,
        "click": click_kwargs})


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How a build converts and what it checks (shared by `build` and `imagenet`)."""

    seed: int = option(0, "--seed", help="Seed of the shuffle.", type=int)
    verify: str = option(
        "fast", "--verify", choices=VERIFY_MODES,
        help="fast: header + end-of-image marker; decode: full decode.")
    exif: str = option(
        "apply", "--exif-orientation", choices=EXIF_MODES,
        help="Rotate JPEGs with an EXIF orientation upright.")
    max_size: int | None = option(
        None, "--max-size", metavar="PIXELS", min_value=1,
        help="Scale images whose longer side exceeds PIXELS down to it (aspect kept, Lanczos, "
             "re-encoded); smaller images keep their bytes. Default: no limit. 512 suits "
             "phone and camera photos (see docs/building.md).")
    jpeg_quality: int = option(
        JPEG_QUALITY, "--jpeg-quality", min_value=1, max_value=100,
        help="Quality of every JPEG the build encodes (never of kept bytes).")
    progressive: str = option(
        "keep", "--progressive", choices=PROGRESSIVE_MODES,
        help="baseline: re-encode progressive JPEGs as baseline ones (faster to decode; what "
             "GPU hardware JPEG decoders accept).")
    label_offset: int = option(
        WITH_BACKGROUND, "--background/--no-background",
        flag_values=(WITH_BACKGROUND, NO_BACKGROUND),
        help="--no-background numbers labels 0..N-1 (models with N outputs, such as Keras "
             "applications' 1000-way ImageNet heads) instead of 1..N with 0 for the "
             "background class.")
    duplicates: str = option(
        "report", "--duplicates", choices=DUPLICATE_MODES,
        help="Exact duplicate files within and across splits: report lists them in "
             "duplicates.jsonl; drop also keeps one copy per split and no validation copy of "
             "a training image (reads every file twice); off skips hashing.")
    near_duplicates: bool = option(
        False, "--near-duplicates", is_flag=True,
        help="Also report near duplicates (resized or re-encoded copies) by a perceptual "
             "hash; decodes every image (extra: inception-data[near-duplicates]).")
    max_rejects: float | None = option(
        None, "--max-rejects", type=float,
        help="Fail when more files are rejected per split: a count (>= 1) or a fraction (< 1).")
    resume: bool = option(
        False, "--resume", is_flag=True, recorded=False,
        help="Finish an interrupted build: keep its committed shards, write the missing ones.")
    overwrite: bool = option(False, "--overwrite", is_flag=True, recorded=False,
                             help="Replace an earlier build in --output-dir.")
    progress: bool = option(True, "--progress/--no-progress", recorded=False,
                            help="Show a progress bar.")
    workers: int | None = option(
        None, "--workers", type=int, recorded=False,
        help="Local worker processes (default: one per core when the files and bytes to "
             "convert make it faster than one process, see docs/building.md).")
    dry_run: bool = option(
        False, "--dry-run", is_flag=True, recorded=False,
        help="Print the plan (each class with its count, the shards, the output folder, the "
             "design and its estimated time) and write nothing.")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            choices = field.metadata["choices"]
            if choices and getattr(self, field.name) not in choices:
                raise ValueError(f"{field.metadata['flags'][0]} {getattr(self, field.name)!r}: "
                                 f"choose one of {', '.join(choices)}")
        if self.max_size is not None and self.max_size < 1:
            raise ValueError(f"--max-size must be a positive number of pixels, not "
                             f"{self.max_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"--jpeg-quality must be within 1-100, not {self.jpeg_quality}")
        if self.near_duplicates:
            if self.duplicates != "report":
                raise ValueError("--near-duplicates reports near duplicates while writing: use "
                                 "it with --duplicates report (the default)")
            if importlib.util.find_spec("imagehash") is None:
                raise ValueError("--near-duplicates needs the imagehash package, an optional "
                                 "part of inception-data: pip install "
                                 "'inception-data[near-duplicates]'")

    def settings(self) -> dict:
        """The recorded options, by field name: the manifest's `settings` (with the shard
        counts) and what --resume compares."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata["recorded"]}

"""A build's output folder: what an earlier build left there (refused, replaced with
--overwrite, or finished with --resume), the temporary files of a stopped build, and the
committed manifest. Through Beam's FileSystems, local or gs://."""

from __future__ import annotations

import json
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from inception_data import paths, sharding, tfds_metadata
from pipelines import atomic_files, dedup, report
from pipelines.errors import OutputExists

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


def read_manifest(output_dir: str) -> dict:
    return atomic_files.read_json(FileSystems.join(output_dir, report.MANIFEST))

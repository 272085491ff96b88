"""Class-per-directory build: `DIR/<label>/<image>` trees -> sharded tf.Example TFRecords.

In: one root directory per split (train, validation), local or gs://, and a label map (or the
sorted class directory names). Out, in the output directory: `<split>-NNNNN-of-MMMMM` shards,
`labels.txt`, `rejects-<split>.jsonl` and `manifest.json` (written last).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

from inception_data import labels as labels_lib
from inception_data import schema
from pipelines import builder, launch, listing
from pipelines.scratch import Scratch
from pipelines.builder import BuildConfig

log = logging.getLogger(__name__)
__all__ = ["BuildConfig", "FolderRecords", "TreeSource", "run_build"]


@dataclasses.dataclass(frozen=True)
class FolderRecords:
    """Builds the ImageRecord of a class-per-directory image (picklable for workers)."""

    label_map: labels_lib.LabelMap
    keys = schema.GENERIC_KEYS  # what its records hold (the manifest's record_keys)

    def __call__(self, item, image) -> schema.ImageRecord:
        return schema.ImageRecord(encoded=image.encoded, height=image.height, width=image.width,
                                  label=item.label, text=self.label_map.name(item.label),
                                  filename=item.name)


@dataclasses.dataclass(frozen=True)
class TreeSource:
    """One split's class-per-directory tree, listed on a worker (distributed builds)."""

    split: str
    root: str

    def events(self, context: builder.ListContext, warn):
        return listing.tree_events(self.split, listing.Tree(self.root, warn), context.label_of,
                                   context.keying, warn)


def warn_unlisted_names(split: str, root: str, names: Sequence[str],
                        label_map: labels_lib.LabelMap, warn) -> None:
    """Warns about class directories (or tars) that are not in the labels file."""
    unlisted = labels_lib.reconcile(label_map, names).unlisted
    builder.warn_each(warn, [
        f"{split}: directory {root.rstrip('/')}/{name} is not in the labels file; its "
        f"files are listed in rejects-{split}.jsonl" for name in unlisted])


def _check_found(split: str, root: str, listed: builder.Listed) -> None:
    if not sum(f.count for f in listed.found if f.split == split):
        raise labels_lib.LabelError(f"{split}: no files found in the class directories of "
                                    f"{root}; expected {root}/<label>/<image>")


def run_build(config: BuildConfig, beam_args: Sequence[str] = (), *,
              warn=log.warning) -> dict | None:
    """Lists the trees (once), checks them against the labels, runs the build; returns the
    manifest (None: a remote job that runs on)."""
    builder.check_output_outside_inputs(config)
    plan = launch.plan(beam_args)
    trees = {split: listing.Tree(root, warn) for split, root in config.roots.items()
             if builder.lists_in_launcher(plan, root)
             or (split == "train" and config.label_map is None)}  # labels from its folders
    for split, tree in trees.items():
        if not tree.names:
            raise labels_lib.LabelError(f"{split}: no class directories in {tree.root}; "
                                        f"expected {tree.root}/<label>/<image>")
    config = builder.numbered(
        config, config.label_map or labels_lib.from_directories(trees["train"].names))
    label_map = config.label_map
    for split, tree in trees.items():
        warn_unlisted_names(split, tree.root, tree.names, label_map, warn)
    context = builder.ListContext(label_map.as_dict(), listing.Keying(config.options.seed))
    settings = builder.shard_settings(config, FolderRecords(label_map))
    sources, listed = [], None
    with Scratch(plan) as scratch:
        if plan.is_local:  # list here, once; workers read the spilled listings
            listed = builder.list_in_launcher(
                [listing.tree_events(split, tree, context.label_of, context.keying, warn)
                 for split, tree in trees.items()], scratch)
            for split, root in config.roots.items():
                _check_found(split, root, listed)
                builder.warn_empty_labels(split, root.rstrip("/"), label_map,
                                             builder.spilled_counts(listed, split), warn)
        else:  # the workers list
            sources = [TreeSource(split, root) for split, root in config.roots.items()]

        def build(pipeline):
            builder.build(pipeline, config, settings, context, sources, spill_dir=scratch,
                             listed=listed)

        manifest = builder.launch_build(
            config, plan, build, input_bytes=listed.bytes if listed else 0,
            input_files=listed.files if listed else 0)
    if manifest and not plan.is_local:
        for split, root in config.roots.items():
            builder.warn_empty_labels(split, root.rstrip("/"), label_map,
                                         builder.manifest_counts(manifest, split, label_map),
                                         warn)
            if split not in trees:
                builder.warn_unlisted_after_run(manifest, split, root, warn)
    return manifest

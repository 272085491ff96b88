"""Class-per-directory build: `DIR/<label>/<image>` trees -> sharded tf.Example TFRecords.

In: one root directory per split (train, validation), local or gs://, and a label map (or the
sorted class directory names). Out, in the output directory: `<split>-NNNNN-of-MMMMM` shards,
`labels.txt`, `rejects-<split>.jsonl` and `manifest.json` (written last).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from inception_data import labels as labels_lib
from inception_data import schema
from pipelines import builder, label_warnings, listing, skeleton
from pipelines.builder import BuildConfig

log = logging.getLogger(__name__)
__all__ = ["BuildConfig", "FolderRecords", "FolderSource", "TreeSource", "run_build"]


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

    def events(self, context: builder.ListContext):
        return listing.tree_events(self.split, listing.Tree(self.root), context.label_of,
                                   context.keying)


def _check_found(split: str, root: str, listed: builder.Listed) -> None:
    if not sum(f.count for f in listed.found if f.split == split):
        raise labels_lib.LabelError(f"{split}: no files found in the class directories of "
                                    f"{root}; expected {root}/<label>/<image>")


@dataclasses.dataclass
class FolderSource:
    """The class-per-directory build as a source of skeleton.run: the trees the launcher opens
    (all of them for a local build; local folders and the training tree that names the labels
    for a distributed one) are kept in `trees` between `configure` and `list`."""

    trees: dict = dataclasses.field(default_factory=dict)  # split -> listing.Tree

    def configure(self, config: BuildConfig, plan) -> BuildConfig:
        self.trees = {split: listing.Tree(root) for split, root in config.roots.items()
                      if skeleton.lists_in_launcher(plan, root)
                      or (split == "train" and config.label_map is None)}  # labels from it
        for split, tree in self.trees.items():
            if not tree.names:
                raise labels_lib.LabelError(f"{split}: no class directories in {tree.root}; "
                                            f"expected {tree.root}/<label>/<image>")
        config = builder.numbered(
            config, config.label_map or labels_lib.from_directories(self.trees["train"].names))
        for split, tree in self.trees.items():
            label_warnings.warn_unlisted_names(split, tree.root, tree.names, config.label_map)
        return config

    def context(self, config: BuildConfig) -> builder.ListContext:
        return builder.ListContext(config.label_map.as_dict(),
                                   listing.Keying(config.options.seed))

    def records(self, config: BuildConfig) -> FolderRecords:
        return FolderRecords(config.label_map)

    def list(self, config: BuildConfig, plan, context, scratch) -> skeleton.Work:
        if not plan.local_runner:  # the workers list
            return skeleton.Work(on_workers=[TreeSource(split, root)
                                             for split, root in config.roots.items()])
        listed = builder.list_in_launcher(  # here, once; workers read the spilled listings
            [listing.tree_events(split, tree, context.label_of, context.keying)
             for split, tree in self.trees.items()], scratch)
        for split, root in config.roots.items():
            _check_found(split, root, listed)
            label_warnings.warn_empty_labels(split, root.rstrip("/"), config.label_map,
                                             label_warnings.spilled_counts(listed, split))
        return skeleton.Work(listed)

    def after_run(self, config: BuildConfig, plan, manifest: dict) -> None:
        if plan.local_runner:
            return
        for split, root in config.roots.items():
            label_warnings.warn_empty_labels(
                split, root.rstrip("/"), config.label_map,
                label_warnings.manifest_counts(manifest, split, config.label_map))
            if split not in self.trees:
                label_warnings.warn_unlisted_after_run(manifest, split, root)


def run_build(config: BuildConfig, beam_args: Sequence[str] = (), *,
              warn=log.warning) -> dict | None:
    """Lists the trees (once), checks them against the labels, runs the build; returns the
    manifest (None: a remote job that runs on)."""
    return skeleton.run(config, FolderSource(), beam_args, warn=warn)

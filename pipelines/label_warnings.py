"""What a build tells the user about its labels and folders: class directories not in the
labels file, labels that got no images. Plain functions of names and counts, called by the build
sources before a run (what the launcher listed) or after it (what the manifest counted)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from inception_data import labels as labels_lib
from pipelines import notices


def warn_unlisted_names(split: str, root: str, names: Sequence[str],
                        label_map: labels_lib.LabelMap) -> None:
    """Warns about class directories (or tars) that are not in the labels file."""
    unlisted = labels_lib.reconcile(label_map, names).unlisted
    notices.note_each([
        f"{split}: directory {root.rstrip('/')}/{name} is not in the labels file; its "
        f"files are listed in rejects-{split}.jsonl" for name in unlisted])


def warn_unlisted_after_run(manifest: Mapping, split: str, root: str) -> None:
    """For a split the launcher did not list: the files of directories not in the labels file,
    counted in the manifest."""
    unlisted = manifest["splits"][split]["reject_reasons"].get("unlisted directory")
    if unlisted:
        notices.note(f"{split}: {unlisted} file(s) of directories under {root} that are not "
                     f"in the labels file are listed in rejects-{split}.jsonl")


def warn_empty_labels(split: str, where: str, label_map: labels_lib.LabelMap,
                      counts: Mapping[int, int]) -> None:
    """Warns about labels that got no images (no directory, an empty one, or no tar)."""
    notices.note_each([f"{split}: label {name!r} has no images under {where}/{name}; it keeps "
                     f"label {label} with 0 examples"
                     for label, name in label_map.numbered() if not counts.get(label)])


def spilled_counts(listed, split: str) -> dict[int, int]:
    """Images per label of `split` that the launcher listed (a builder.Listed)."""
    return {s.label: s.count for s in listed.spilled if s.split == split}


def manifest_counts(manifest: Mapping, split: str, label_map) -> dict[int, int]:
    """Images per label of `split` that the manifest counted."""
    per_class = manifest["splits"][split]["per_class"]
    return {label_map.index(name): n for name, n in per_class.items()}

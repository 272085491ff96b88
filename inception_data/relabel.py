"""Sort a flat ImageNet validation folder into synset sub-folders, idempotently.

In: `VAL_DIR` holding `ILSVRC2012_val_%08d.JPEG` files (flat, or partly sorted by an earlier
run) and the validation labels (line i is the synset of image i). Out: a `Plan` of what to do,
carried out by `apply()`: each image ends up at `VAL_DIR/<synset>/<name>`.

Unlike the original preprocess_imagenet_validation_data.py: a second run is a no-op that says so,
a partial earlier run is completed, images in the wrong folder are moved to the right one,
missing and unexpected files are reported, and no file is ever overwritten or deleted (a move is a
rename; a copy goes to a temporary name first). File I/O goes through Beam's FileSystems so the
folder may be on gs://; `link` (hard links) needs a local folder.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from inception_data import (
    paths,
    quiet_beam,  # noqa: F401  (before apache_beam)
)

MODES = ("move", "copy", "link")


def validation_name(index: int) -> str:
    """The file name of validation image `index` (1-based)."""
    return f"ILSVRC2012_val_{index:08d}.JPEG"


@dataclasses.dataclass
class Plan:
    actions: list = dataclasses.field(default_factory=list)  # (source, destination)
    in_place: int = 0
    missing: list = dataclasses.field(default_factory=list)  # names
    unexpected: list = dataclasses.field(default_factory=list)  # paths left alone
    misplaced: int = 0  # in a wrong synset folder; moved in every mode (nothing to keep there)


def _listing(root: str) -> tuple[dict, dict]:
    flat, nested = {}, {}
    literal = paths.glob_escape(root)
    results = paths.beam_match([f"{literal}/*", f"{literal}/*/*"])
    for meta in results[0].metadata_list:
        flat[meta.path.rsplit("/", 1)[-1]] = meta.path
    for meta in results[1].metadata_list:
        folder, name = meta.path[len(root) + 1:].split("/", 1)
        nested.setdefault(name, []).append((folder, meta.path))
    return flat, nested


def plan(root: str, synsets: Sequence[str]) -> Plan:
    """What `apply()` would do to sort `root`; changes nothing."""
    root = root.rstrip("/")
    flat, nested = _listing(root)
    result = Plan()
    expected = {validation_name(i): s for i, s in enumerate(synsets, start=1)}
    for name, synset in expected.items():
        destination = f"{root}/{synset}/{name}"
        places = dict(nested.get(name, []))
        if synset in places:
            result.in_place += 1
        elif name in flat:
            result.actions.append((flat[name], destination))
        elif places:
            result.misplaced += 1
            result.actions.append((next(iter(places.values())), destination))
        else:
            result.missing.append(name)
    result.unexpected = sorted(path for name, path in flat.items() if name not in expected)
    result.unexpected += sorted(path for name, places in nested.items() if name not in expected
                                for _, path in places)
    return result


def _transfer(source: str, destination: str, mode: str, misplaced: bool) -> None:
    """Puts `source` at `destination`. A file in a wrong synset folder (`misplaced`) is moved
    whatever the mode: a copy or link would leave a wrongly labelled image behind."""
    if FileSystems.exists(destination):
        raise FileExistsError(f"{destination} exists; refusing to overwrite it with {source}")
    if mode == "move" or misplaced:
        FileSystems.rename([source], [destination])
    elif mode == "copy":
        tmp = destination + ".partial"
        FileSystems.copy([source], [tmp])
        FileSystems.rename([tmp], [destination])
    else:
        if "://" in source:
            raise ValueError(f"--mode link needs a local folder, not {source}; use copy or move")
        os.link(source, destination)


def apply(actions, mode: str, root: str) -> int:
    """Carries out `actions`; returns how many files were placed."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; expected one of {MODES}")
    done = 0
    for source, destination in actions:
        folder = destination.rsplit("/", 1)[0]
        if not FileSystems.exists(folder):
            FileSystems.mkdirs(folder)
        misplaced = source[len(root.rstrip("/")) + 1:].count("/") == 1
        _transfer(source, destination, mode, misplaced)
        done += 1
    return done

"""Listing: split roots in, one `ClassFiles` per class (paths only) plus rejects and counts out.

Every file found under a class directory comes out exactly once: as an `Item` of its class, or
as a reject (hidden file, broken symlink, not a regular file, a directory not in the labels
file). `Found(split, n)` counts what was found, so the manifest can check
found == written + rejected.

Local trees are walked with `os.scandir`, which follows symlinked class directories and
symlinked files (a subset built with `ln -s` is an ordinary tree) and tells a dangling link from
a file; Beam's local `match` would not follow directory links at all. Object stores (gs://) have
no directories or links: their trees are listed with `FileSystems.match`.

These are plain functions: the launcher calls them for a local build (then spills each class to
a scratch file, see layout.py) and pipeline steps call them for a distributed one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from apache_beam.io.filesystems import FileSystems

from inception_data import paths, sharding
from pipelines import notices


class Item(NamedTuple):
    """One image on its way to a shard: paths and small metadata only, never pixels."""

    key: int  # seeded sort key (sharding.path_key)
    relpath: str  # relative to the split's root: "<class>/<file>"
    label: int
    boxes: tuple = ()  # ((xmin, ymin, xmax, ymax), ...) normalised, ImageNet only
    offset: int = -1  # >= 0: the bytes live in the split's tar archive at this offset
    size: int = -1

    @property
    def name(self) -> str:
        """The file name, without folders: what records store and boxes are keyed by."""
        return self.relpath.rsplit("/", 1)[-1]


class ClassFiles(NamedTuple):
    """The files of one class of one split to convert, in dealing order (sorted by key)."""

    split: str
    label: int
    items: list


class Found(NamedTuple):
    """How many files a listing step found in a split (written or rejected, all of them), and
    their bytes when known (they decide how many local worker processes to start)."""

    split: str
    count: int
    bytes: int = 0


class Reject(NamedTuple):
    """A rejects-report row: a file of `split` that is not written; `kind` is a short category,
    `reason` says what to do. `rejects-<split>.jsonl` holds `row()` per line."""

    split: str
    path: str
    kind: str
    reason: str

    def row(self) -> dict:
        return self._asdict()


def member_path(archive: str, member: str = "") -> str:
    """How reports name a member of an archive (`train.tar#n01440764.tar/x.JPEG`), or the
    archive itself when `member` is empty."""
    return f"{archive}#{member}" if member else archive


def is_local(path: str) -> bool:
    """A path on this machine's filesystem (no `scheme://`)."""
    return "://" not in path


def is_hidden(basename: str) -> bool:
    return basename.startswith(".")


HIDDEN = ("hidden file", "hidden file, not read")  # (kind, reason)


def hidden_reject(split: str, path: str) -> Reject:
    """Hidden files (.DS_Store, editor swap files) are reported, never read."""
    return Reject(split, path, *HIDDEN)


@dataclasses.dataclass(frozen=True)
class Keying:
    """How files are keyed for the seeded shuffle: by relative path, or by file name alone
    (ImageNet: a flat folder, a sorted one and a tar give the same shards)."""

    seed: int
    by_basename: bool = False

    def items(self, label: int, entries) -> list[Item]:
        """(relpath, offset, size) entries of one class -> its Items, in dealing order."""
        items = [Item(self.key(relpath), relpath, label, offset=offset, size=size)
                 for relpath, offset, size in entries]
        items.sort()  # by key, then relpath: the order sharding.ordered deals
        return items

    def key(self, relpath: str) -> int:
        return sharding.sort_key(self.seed, relpath, by_basename=self.by_basename)


@dataclasses.dataclass
class TreeClass:
    """What the walk found in one class directory."""

    name: str
    files: list = dataclasses.field(default_factory=list)  # (relpath, bytes) of regular files
    rejects: list = dataclasses.field(default_factory=list)  # (relpath, kind, reason)
    subdirectories: int = 0  # not read: only DIR/<label>/<image>

    @property
    def found(self) -> int:
        return len(self.files) + len(self.rejects)


def _is_loop(path: str, top: str) -> bool:
    """A directory link that resolves to the tree's root or one of its ancestors."""
    real = os.path.realpath(path)
    return real == top or top.startswith(real.rstrip(os.sep) + os.sep)


def class_names(root: str) -> list[str]:
    """Sorted names of the class directories under a local `root` (following links; loops and
    dangling links are warned about, once each, and skipped)."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a directory; expected {root}/<label>/<image>")
    top = os.path.realpath(root)
    names = []
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            path = os.path.join(root, entry.name)
            kind = _entry_type(entry)
            if kind == "broken":
                notices.note(f"{path} is a broken symlink (to {os.readlink(path)}); skipped")
            elif kind == "directory" and entry.is_symlink() and _is_loop(path, top):
                notices.note(f"{path} links back to {os.path.realpath(path)}, which contains "
                             f"it (a loop); not followed")
            elif kind == "directory":
                names.append(entry.name)
    return names


def scan(folder: str, prefix: str = "", name: str = "") -> TreeClass:
    """Lists one local folder: files (links followed) as `prefix + file name`, rejects, and a
    count of sub-directories (not read)."""
    found = TreeClass(name)
    with os.scandir(folder) as entries:
        for entry in entries:
            relpath = prefix + entry.name
            kind = _entry_type(entry)
            if kind == "file" and is_hidden(entry.name):
                found.rejects.append((relpath, *HIDDEN))
            elif kind == "file":
                found.files.append((relpath, entry.stat().st_size))
            elif kind == "directory":
                found.subdirectories += 1
            elif kind == "broken":
                found.rejects.append((relpath, "broken symlink", _broken_reason(entry.path)))
            else:  # a FIFO, socket or device: reading it could block forever
                found.rejects.append((relpath, "not a regular file",
                                      "not a regular file (a pipe, socket or device); not read"))
    return found


def _entry_type(entry: os.DirEntry) -> str:
    """file, directory, broken (a link that leads nowhere or in a circle) or other."""
    try:
        if entry.is_file():
            return "file"
        if entry.is_dir():
            return "directory"
    except OSError:  # ELOOP: a link to itself, or a circle of links
        return "broken"
    return "broken" if entry.is_symlink() else "other"


def walk_local_class(root: str, name: str) -> TreeClass:
    """Lists one local class directory."""
    return scan(os.path.join(root, name), f"{name}/", name)


def _broken_reason(path: str) -> str:
    try:
        os.stat(path)
        problem = "cannot be followed"
    except OSError as err:
        problem = err.strerror or str(err)
    return (f"broken symlink to {os.readlink(path)} ({problem}); fix the link or remove it")


def walk_remote(root: str) -> tuple[TreeClass, dict[str, TreeClass]]:
    """An object-store tree from one listing of every object under `root`: the objects directly
    in it, and class name -> TreeClass of those one level down (deeper ones are counted as
    sub-directories of their class)."""
    prefix = root.rstrip("/") + "/"
    top = TreeClass("")
    classes: dict[str, TreeClass] = {}
    for meta in paths.beam_match([paths.glob_escape(prefix) + "**"])[0].metadata_list:
        relpath = meta.path[len(prefix):]
        parts = relpath.split("/")
        found = top if len(parts) == 1 else classes.setdefault(parts[0], TreeClass(parts[0]))
        if len(parts) > 2:
            found.subdirectories += 1
        elif is_hidden(parts[-1]):
            found.rejects.append((relpath, *HIDDEN))
        else:
            found.files.append((relpath, meta.size_in_bytes))
    return top, dict(sorted(classes.items()))


class Tree:
    """A class-per-directory tree: its class names now, its classes one at a time later, each
    directory (local) or the whole store prefix (remote) listed once."""

    def __init__(self, root: str):
        self.root = root
        if is_local(root):
            self._remote = None
            self.names = class_names(root)
            self.top = scan(root)  # files directly in the root, outside every class
        else:
            self.top, self._remote = walk_remote(root)
            self.names = list(self._remote)

    @classmethod
    def from_classes(cls, root: str, classes: Mapping[str, TreeClass]) -> Tree:
        """A remote tree from walk_remote()'s classes, without listing it again."""
        tree = cls.__new__(cls)
        tree.root, tree._remote, tree.names = root, dict(classes), list(classes)
        tree.top = TreeClass("")
        return tree

    def classes(self) -> Iterator[TreeClass]:
        if self._remote is not None:
            yield from self._remote.values()
        else:
            for name in self.names:
                yield walk_local_class(self.root, name)


def _outside_classes(split: str, tree: Tree) -> Iterator:
    """Found and a reject row for each file directly in the tree's root (an image saved next
    to the class directories, or a file named like a class), which no class holds."""
    top = tree.top
    if not top.found:
        return
    found = top.found - sum(kind == "broken symlink" for _, kind, _ in top.rejects)
    if not found:
        return
    yield Found(split, found, sum(size for _, size in top.files))
    where = tree.root.rstrip("/")
    for relpath, _ in top.files:
        yield Reject(split, FileSystems.join(tree.root, relpath), "not in a class directory",
                     f"a file directly in {where}, outside the class directories; images go "
                     f"in {where}/<label>/<image>: move it into its class directory")
    for relpath, kind, reason in top.rejects:
        if kind != "broken symlink":  # (class_names warned: most likely a class folder's link)
            yield Reject(split, FileSystems.join(tree.root, relpath), kind, reason)


def tree_events(split: str, tree: Tree, label_of: Mapping[str, int],
                keying: Keying) -> Iterator:
    """The listing of a class-per-directory tree: ClassFiles per labelled class, reject rows and
    Found per class; warns once about sub-directories, which are not read."""
    root = tree.root
    yield from _outside_classes(split, tree)
    subdirectories = 0
    for found in tree.classes():
        label = label_of.get(found.name)
        subdirectories += found.subdirectories
        yield Found(split, found.found, sum(size for _, size in found.files))
        if label is None:
            for relpath in sorted([r for r, _ in found.files] + [r for r, *_ in found.rejects]):
                yield Reject(split, FileSystems.join(root, relpath), "unlisted directory",
                             f"directory {found.name!r} is not in the labels file; add it to "
                             f"the file or move it out of {root.rstrip('/')}")
            continue
        for relpath, kind, reason in found.rejects:
            yield Reject(split, FileSystems.join(root, relpath), kind, reason)
        yield ClassFiles(split, label, keying.items(label, ((r, -1, -1) for r, _ in found.files)))
    if subdirectories:
        notices.note(f"{split}: {subdirectories} sub-director"
                     f"{'y' if subdirectories == 1 else 'ies'} inside class directories of "
                     f"{root} are not read (only {root}/<label>/<image>)")

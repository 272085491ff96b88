"""Exact duplicate images and train/validation leakage: (hash, split, path) copies in, groups of
identical files and what to drop out. Plain functions and an on-disk index, no Beam.

Two files are duplicates when their bytes are identical (sha256 of the source file). A group
is every copy of one hash; it is *leakage* when it spans training and another split (a
validation image that is also a training image measures memory, not generalisation).

What `--duplicates drop` keeps (`drops`): in each split the copy with the smallest path, and
no copy outside training of an image that training has.

`HashIndex` finds the groups with flat memory: copies are appended to a SQLite file (standard
library; its sort spills to disk), and read back ordered by hash, one group at a time. 1.28M
ImageNet copies never sit in one Python dict.
"""

from __future__ import annotations

import collections
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import NamedTuple

TRAIN = "train"


class Copy(NamedTuple):
    sha256: str
    split: str
    path: str
    phash: str = ""  # perceptual hash (--near-duplicates), "" when not computed


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def perceptual_hash(data: bytes) -> str:
    """imagehash's 64-bit DCT hash (phash) of the image, hex: equal for resized or re-encoded
    copies of a picture. The JPEG is decoded at a reduced DCT scale first (phash looks at a
    32x32 grayscale version). Needs the optional `imagehash` package."""
    import io

    import imagehash
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", (64, 64))
        return str(imagehash.phash(image.convert("L")))


def _order(copy: Copy):
    return (copy.split != TRAIN, copy.split, copy.path)  # training first, then by path


def grouped(copies: Iterable[Copy], key=lambda c: c.sha256) -> Iterator[list[Copy]]:
    """Groups of two or more copies with one hash, from copies sorted by that hash."""
    group: list[Copy] = []
    for copy in copies:
        if group and key(copy) != key(group[0]):
            if len(group) > 1:
                yield sorted(group, key=_order)
            group = []
        group.append(copy)
    if len(group) > 1:
        yield sorted(group, key=_order)


def near_groups(copies_by_phash: Iterable[Copy]) -> Iterator[list[Copy]]:
    """Groups of copies with one perceptual hash but more than one file content (copies
    sorted by phash; copies without one are skipped): resized or re-encoded copies."""
    for group in grouped((c for c in copies_by_phash if c.phash), key=lambda c: c.phash):
        if len({c.sha256 for c in group}) > 1:
            yield group


def drops(group: list[Copy]) -> list[tuple[Copy, str]]:
    """The copies `--duplicates drop` does not write, each with the reason for its reject."""
    out = []
    group = sorted(group, key=_order)
    in_train = [c for c in group if c.split == TRAIN]
    kept: dict[str, Copy] = {}
    for copy in group:
        if copy.split != TRAIN and in_train:
            out.append((copy, f"the same image as training image {in_train[0].path} "
                              f"(train/{copy.split} leakage)"))
        elif copy.split in kept:
            out.append((copy, f"the same image as {kept[copy.split].path}, kept in "
                              f"{copy.split}"))
        else:
            kept[copy.split] = copy
    return out


def report_row(group: list[Copy], near: bool = False) -> dict:
    """One line of duplicates.jsonl: an exact group (its sha256) or a near one (its phash,
    and each copy's sha256)."""
    splits = sorted({c.split for c in group}, key=lambda s: (s != TRAIN, s))
    row = {"kind": "near" if near else "exact", "splits": splits,
           "leakage": TRAIN in splits and len(splits) > 1,
           "copies": [{"split": c.split, "path": c.path} for c in group]}
    if near:
        row["phash"] = group[0].phash
        for entry, copy in zip(row["copies"], group):
            entry["sha256"] = copy.sha256
    else:
        row["sha256"] = group[0].sha256
    return row


class Summary:
    """Counts over the groups for the manifest."""

    def __init__(self):
        self.groups = 0
        self.near_groups = 0
        self.extra_copies = collections.Counter()  # per split: copies beyond the first
        self.leaked = collections.Counter()  # per split other than train: copies also in train

    def add(self, group: list[Copy]) -> None:
        self.groups += 1
        seen = collections.Counter(copy.split for copy in group)
        for split, count in seen.items():
            if count > 1:
                self.extra_copies[split] += count - 1
            if split != TRAIN and TRAIN in seen:
                self.leaked[split] += count

    def as_dict(self) -> dict:
        out = {"groups": self.groups, "extra_copies": dict(sorted(self.extra_copies.items())),
               "leaked": dict(sorted(self.leaked.items()))}
        if self.near_groups:
            out["near_groups"] = self.near_groups
        return out


def copy_line(copy: Copy) -> str:
    return json.dumps(list(copy)) + "\n"


def parse_copy_line(line: str) -> Copy:
    return Copy(*json.loads(line))


class HashIndex:
    """Copies on disk, read back grouped by hash (see the module docstring)."""

    def __init__(self, path: str):
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA temp_store = FILE")  # sort on disk, not in memory
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS copies "
                         "(sha256 TEXT, split TEXT, path BLOB, phash TEXT)")

    def add(self, copies: Iterable[Copy]) -> None:
        # paths as bytes: names that are not UTF-8 on disk arrive with surrogate escapes
        self._db.executemany("INSERT INTO copies VALUES (?, ?, ?, ?)",
                             ((c.sha256, c.split, c.path.encode("utf-8", "surrogateescape"),
                               c.phash) for c in copies))
        self._db.commit()

    def add_files(self, paths: Iterable[str]) -> None:
        """Adds the copy lines (copy_line) of each file."""
        for path in paths:
            with open(path, encoding="utf-8") as handle:
                self.add(parse_copy_line(line) for line in handle)

    def _copies(self, order: str) -> Iterator[Copy]:
        rows = self._db.execute(f"SELECT sha256, split, path, phash FROM copies ORDER BY {order}")
        return (Copy(sha, split, path.decode("utf-8", "surrogateescape"), phash)
                for sha, split, path, phash in rows)

    def groups(self) -> Iterator[list[Copy]]:
        """Exact groups, by sha256."""
        return grouped(self._copies("sha256"))

    def near_groups(self) -> Iterator[list[Copy]]:
        """Near groups, by perceptual hash (see near_groups)."""
        return near_groups(self._copies("phash"))

    def close(self) -> None:
        self._db.close()

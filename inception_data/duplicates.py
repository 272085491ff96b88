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

import hashlib
import json
import sqlite3
from typing import Iterable, Iterator, NamedTuple

TRAIN = "train"


class Copy(NamedTuple):
    sha256: str
    split: str
    path: str


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _order(copy: Copy):
    return (copy.split != TRAIN, copy.split, copy.path)  # training first, then by path


def grouped(copies: Iterable[Copy]) -> Iterator[list[Copy]]:
    """Groups of two or more copies with one hash, from copies sorted by hash."""
    group: list[Copy] = []
    for copy in copies:
        if group and copy.sha256 != group[0].sha256:
            if len(group) > 1:
                yield sorted(group, key=_order)
            group = []
        group.append(copy)
    if len(group) > 1:
        yield sorted(group, key=_order)


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


def report_row(group: list[Copy]) -> dict:
    """One line of duplicates.jsonl."""
    splits = sorted({c.split for c in group}, key=lambda s: (s != TRAIN, s))
    return {"sha256": group[0].sha256, "splits": splits,
            "leakage": TRAIN in splits and len(splits) > 1,
            "copies": [{"split": c.split, "path": c.path} for c in group]}


class Summary:
    """Counts over the groups for the manifest."""

    def __init__(self):
        self.groups = 0
        self.extra_copies: dict[str, int] = {}  # per split: copies beyond the first
        self.leaked: dict[str, int] = {}  # per split other than train: copies also in train

    def add(self, group: list[Copy]) -> None:
        self.groups += 1
        seen: dict[str, int] = {}
        for copy in group:
            seen[copy.split] = seen.get(copy.split, 0) + 1
        for split, count in seen.items():
            if count > 1:
                self.extra_copies[split] = self.extra_copies.get(split, 0) + count - 1
            if split != TRAIN and TRAIN in seen:
                self.leaked[split] = self.leaked.get(split, 0) + count

    def as_dict(self) -> dict:
        return {"groups": self.groups, "extra_copies": dict(sorted(self.extra_copies.items())),
                "leaked": dict(sorted(self.leaked.items()))}


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
        self._db.execute("CREATE TABLE IF NOT EXISTS copies (sha256 TEXT, split TEXT, path TEXT)")

    def add(self, copies: Iterable[Copy]) -> None:
        # paths as bytes: names that are not UTF-8 on disk arrive with surrogate escapes
        self._db.executemany("INSERT INTO copies VALUES (?, ?, ?)",
                             ((c.sha256, c.split, c.path.encode("utf-8", "surrogateescape"))
                              for c in copies))
        self._db.commit()

    def add_files(self, paths: Iterable[str]) -> None:
        """Adds the copy lines (copy_line) of each file."""
        for path in paths:
            with open(path, encoding="utf-8") as handle:
                self.add(parse_copy_line(line) for line in handle)

    def groups(self) -> Iterator[list[Copy]]:
        rows = self._db.execute("SELECT sha256, split, path FROM copies ORDER BY sha256")
        return grouped(Copy(sha, split, path.decode("utf-8", "surrogateescape"))
                       for sha, split, path in rows)

    def close(self) -> None:
        self._db.close()

"""Deterministic shard assignment of image paths, and shard file names.

In: per class, the relative paths of its files, and a seed. Out: for every path a shard index and
its position key inside the shard.

The rule (plain functions, so Beam stages and tests share it):

1. every path gets a key `blake2b(seed, relative path)`: a seeded pseudo-random permutation that
   is the same on any machine, Python version and runner (Python's `hash()` is not);
2. inside a class, files are ordered by key and dealt round-robin to the shards, starting where
   the previous class (in label order) stopped: file j of class c goes to shard
   `(offset_c + j) % num_shards`, where offset_c is the number of files of the classes before c.

So shard sizes differ by at most one, every shard holds a near-equal share of every class (a
stratified shuffle, never a shard of one class), and only per-class *counts* must be known
globally: the path lists themselves never meet in one place, which keeps memory flat on Dataflow.
Within a shard, records are written in key order, which mixes classes.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Iterable, Mapping

IMAGES_PER_SHARD = 1024  # the original scripts' rule of thumb
_SHARD_NAME = re.compile(r"^(?P<split>[\w.-]+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")


def auto_shards(num_images: int, per_shard: int = IMAGES_PER_SHARD) -> int:
    """About `per_shard` images per shard, at least one shard."""
    return max(1, math.ceil(num_images / per_shard))


def path_key(seed: int, relpath: str) -> int:
    """A stable 64-bit pseudo-random key for `relpath` under `seed`."""
    digest = hashlib.blake2b(f"{seed}\x00{relpath}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def class_offsets(counts: Mapping[int, int]) -> dict[int, int]:
    """Number of files in all classes before each label (labels in ascending order)."""
    offsets, total = {}, 0
    for label in sorted(counts):
        offsets[label] = total
        total += counts[label]
    return offsets


def assign(relpaths: Iterable[str], *, seed: int, offset: int, num_shards: int,
           by_basename: bool = False):
    """Yields (shard index, key, relpath) for one class's files.

    With `by_basename` the key ignores folders, so the same images laid out differently (a flat
    ImageNet validation folder, a sorted one, a tar) land in the same shards.
    """
    def name(path):
        return path.rsplit("/", 1)[-1] if by_basename else path

    keyed = sorted((path_key(seed, name(p)), p) for p in relpaths)
    for position, (key, relpath) in enumerate(keyed):
        yield (offset + position) % num_shards, key, relpath


def shard_name(split: str, index: int, count: int) -> str:
    """`train-00003-of-00128`, the original scripts' naming."""
    return f"{split}-{index:05d}-of-{count:05d}"


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """(split, index, count) of a shard file name, or None when it is not one."""
    match = _SHARD_NAME.match(name)
    if not match:
        return None
    return match["split"], int(match["index"]), int(match["count"])

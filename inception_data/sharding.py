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
from collections.abc import Iterable, Mapping

IMAGES_PER_SHARD = 1024  # the original scripts' rule of thumb
_SHARD_NAME = re.compile(r"^(?P<split>[\w.-]+)-(?P<index>\d{5})-of-(?P<count>\d{5})$")


def auto_shards(num_images: int, per_shard: int = IMAGES_PER_SHARD) -> int:
    """About `per_shard` images per shard, at least one shard."""
    return max(1, math.ceil(num_images / per_shard))


def path_key(seed: int, relpath: str) -> int:
    """A stable 64-bit pseudo-random key for `relpath` under `seed`."""
    # surrogateescape: a name that is not valid UTF-8 on disk hashes as its original bytes
    digest = hashlib.blake2b(f"{seed}\x00{relpath}".encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big")


def class_offsets(counts: Mapping[int, int]) -> dict[int, int]:
    """Number of files in all classes before each label (labels in ascending order)."""
    offsets, total = {}, 0
    for label in sorted(counts):
        offsets[label] = total
        total += counts[label]
    return offsets


def sort_key(seed: int, relpath: str, *, by_basename: bool = False) -> int:
    """The key that orders a file within its class. With `by_basename` it ignores folders, so
    the same images laid out differently (a flat ImageNet validation folder, a sorted one, a
    tar) land in the same shards."""
    return path_key(seed, relpath.rsplit("/", 1)[-1] if by_basename else relpath)


def ordered(relpaths: Iterable[str], *, seed: int, by_basename: bool = False):
    """[(key, relpath)] of one class, in the order its files are dealt to the shards."""
    return sorted((sort_key(seed, p, by_basename=by_basename), p) for p in relpaths)


def shard_of(position: int, *, offset: int, num_shards: int) -> int:
    """The shard that file `position` (in `ordered` order) of a class starting at `offset` is
    dealt to."""
    return (offset + position) % num_shards


def assign(relpaths: Iterable[str], *, seed: int, offset: int, num_shards: int,
           by_basename: bool = False):
    """Yields (shard index, key, relpath) for one class's files."""
    keyed = ordered(relpaths, seed=seed, by_basename=by_basename)
    for position, (key, relpath) in enumerate(keyed):
        yield shard_of(position, offset=offset, num_shards=num_shards), key, relpath


def positions(shard: int, *, offset: int, num_shards: int, count: int) -> range:
    """Positions in a class's `ordered` list of the files that `assign` deals to `shard`: a
    shard's files of one class are found without looking at the others."""
    return range((shard - offset) % num_shards, count, num_shards)


def shard_groups(num_shards: int, num_images: int, images_per_group: int,
                 min_groups: int = 64):
    """Yields [first, end) ranges of consecutive shards: groups of about `images_per_group`
    images (bounding what one worker holds), and at least `min_groups` groups when there are
    that many shards. Beam's local runner hands each worker one contiguous part of the groups,
    so small datasets get one shard per group to keep the parts even."""
    per_shard = max(1.0, num_images / num_shards)
    size = max(1, min(round(images_per_group / per_shard), num_shards // min_groups))
    for first in range(0, num_shards, size):
        yield first, min(num_shards, first + size)


def shard_name(split: str, index: int, count: int) -> str:
    """`train-00003-of-00128`, the original scripts' naming."""
    return f"{split}-{index:05d}-of-{count:05d}"


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """(split, index, count) of a shard file name, or None when it is not one."""
    match = _SHARD_NAME.match(name)
    if not match:
        return None
    return match["split"], int(match["index"]), int(match["count"])

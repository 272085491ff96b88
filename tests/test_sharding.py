import collections
import os
import subprocess
import sys

from inception_data import sharding


def _assign_all(classes, num_shards, seed=0):
    counts = {label: len(paths) for label, paths in classes.items()}
    offsets = sharding.class_offsets(counts)
    out = []
    for label, paths in classes.items():
        for shard, key, rel in sharding.assign(paths, seed=seed, offset=offsets[label],
                                               num_shards=num_shards):
            out.append((shard, key, rel, label))
    return out


def _classes(sizes):
    return {label: [f"c{label}/img{i}.jpg" for i in range(n)] for label, n in enumerate(sizes, 1)}


def test_sizes_differ_by_at_most_one_and_every_path_once():
    classes = _classes([37, 5, 101, 1, 60])
    assigned = _assign_all(classes, num_shards=7)
    sizes = collections.Counter(shard for shard, *_ in assigned)
    assert len(sizes) == 7 and max(sizes.values()) - min(sizes.values()) <= 1
    assert sorted(rel for _, _, rel, _ in assigned) == sorted(sum(classes.values(), []))


def test_every_shard_mixes_classes():
    assigned = _assign_all(_classes([40, 40, 40]), num_shards=4)
    for shard in range(4):
        labels = collections.Counter(label for s, _, _, label in assigned if s == shard)
        assert set(labels) == {1, 2, 3}
        assert max(labels.values()) - min(labels.values()) <= 1


def test_deterministic_and_seeded():
    classes = _classes([20, 30])
    assert _assign_all(classes, 3, seed=1) == _assign_all(classes, 3, seed=1)
    assert _assign_all(classes, 3, seed=1) != _assign_all(classes, 3, seed=2)
    # the same paths given in another order land in the same shards
    reversed_classes = {label: list(reversed(paths)) for label, paths in classes.items()}
    assert sorted(_assign_all(reversed_classes, 3, 1)) == sorted(_assign_all(classes, 3, 1))


KEYS = {(0, "cats/a.jpg"): 16553633129022826381,
        (7, "n01440764/n01440764_96.JPEG"): 4239381822525154494}


def test_path_key_is_stable_across_processes():
    # Recorded values, here and in processes with other hash seeds: keys decide every shard's
    # contents, so a key that changed (Python's hash(), another digest) would change outputs.
    assert {args: sharding.path_key(*args) for args in KEYS} == KEYS
    code = ("from inception_data import sharding; "
            f"print([sharding.path_key(*args) for args in {list(KEYS)!r}])")
    for hash_seed in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, env=dict(os.environ, PYTHONHASHSEED=hash_seed))
        assert result.stdout.strip() == str(list(KEYS.values()))


def test_auto_shards_and_names():
    assert sharding.auto_shards(0) == 1
    assert sharding.auto_shards(1024) == 1
    assert sharding.auto_shards(1025) == 2
    assert sharding.auto_shards(1_281_167) == 1252
    assert sharding.shard_name("train", 3, 128) == "train-00003-of-00128"
    assert sharding.parse_shard_name("train-00003-of-00128") == ("train", 3, 128)
    assert sharding.parse_shard_name(".tmp-train-00003-of-00128-abc") is None


def test_positions_pick_exactly_what_assign_deals_to_each_shard():
    classes = _classes([37, 5, 101, 1, 60])
    offsets = sharding.class_offsets({label: len(p) for label, p in classes.items()})
    assigned = _assign_all(classes, num_shards=7)
    for shard in range(7):
        picked = []
        for label, paths in classes.items():
            keyed = sharding.ordered(paths, seed=0)
            picked += [(shard, *keyed[p], label) for p in sharding.positions(
                shard, offset=offsets[label], num_shards=7, count=len(keyed))]
        assert sorted(picked) == sorted(a for a in assigned if a[0] == shard)


def test_shard_groups_cover_every_shard_once_in_bounded_groups():
    groups = list(sharding.shard_groups(1252, 1_281_167, images_per_group=4096))
    assert [s for first, end in groups for s in range(first, end)] == list(range(1252))
    assert max(end - first for first, end in groups) == 4  # ~1023 images per shard
    assert list(sharding.shard_groups(3, 10, images_per_group=4096)) == [(0, 1), (1, 2), (2, 3)]
    # fewer than 64 x 4 shards: one shard per group, so that local workers get even shares
    assert len(list(sharding.shard_groups(50, 50_000, images_per_group=4096))) == 50
    assert len(list(sharding.shard_groups(128, 131_072, images_per_group=4096))) == 64
    assert list(sharding.shard_groups(5, 5 * 5000, images_per_group=4096)) == [
        (0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]

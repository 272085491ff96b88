"""Shard layout, both ways: AssignShards (TestPipeline) and spilled listings read per group
(plain functions), which must agree item for item."""

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from inception_data import sharding
from pipelines import layout
from pipelines.listing import ClassFiles, Item, Keying

KEYING = Keying(3)
LISTED = [ClassFiles("train", 1, KEYING.items(1, [(f"a/{i}.jpg", -1, -1) for i in range(7)])),
          ClassFiles("train", 2, KEYING.items(2, [("b/0.jpg", 10, 20), ("b/1.jpg", 30, 40)])),
          ClassFiles("validation", 1, KEYING.items(1, [("a/v.jpg", 7, 9)]))]
SHARDS = {"train": 4, "validation": 3}


def expected_assignment():
    """What sharding.assign deals, written out independently of the transforms."""
    offsets = {"train": {1: 0, 2: 7}, "validation": {1: 0}}
    out = []
    for listed in LISTED:
        paths = {item.relpath: item for item in listed.items}
        for shard, key, relpath in sharding.assign(
                paths, seed=3, offset=offsets[listed.split][listed.label],
                num_shards=SHARDS[listed.split]):
            assert paths[relpath].key == key
            out.append(((listed.split, shard, SHARDS[listed.split]), paths[relpath]))
    return out


def test_assign_shards_deals_like_sharding_and_names_every_shard():
    expected = expected_assignment()
    expected += [(("train", i, 4), None) for i in range(4)]
    expected += [(("validation", i, 3), None) for i in range(3)]
    with TestPipeline() as p:
        out = p | beam.Create(LISTED) | layout.AssignShards(SHARDS)
        assert_that(out, equal_to(expected))
    assert Item(1, "a/x.jpg", 1, offset=5).offset == 5


def test_spilled_groups_pick_what_assign_shards_deals(tmp_path):
    spilled = [layout.spill(c, layout.spill_path(str(tmp_path), c.split, c.label)) for c in LISTED]
    assert [(s.split, s.label, s.count) for s in spilled] == [
        ("train", 1, 7), ("train", 2, 2), ("validation", 1, 1)]
    picked = {}
    for split in SHARDS:
        mine = layout._spilled_split((split, [s for s in spilled if s.split == split]), SHARDS)
        groups = list(layout.shard_groups(mine, 2))  # small groups: several shards per group
        assert [s for g in groups for s in range(g.first, g.end)] == list(range(SHARDS[split]))
        for group in groups:
            for shard, items in layout.read_group(group, mine[1]).items():
                picked[(split, shard, SHARDS[split])] = items
    expected = {}
    for shard, item in expected_assignment():
        expected.setdefault(shard, []).append(item)
    assert picked == {shard: sorted(expected.get(shard, [])) for shard in picked}
    assert len(picked) == 7 and sum(map(len, picked.values())) == 10
    with pytest.raises(FileExistsError):  # a class spilled twice is a bug, not a silent merge
        layout.spill(LISTED[0], spilled[0].path)

"""Beam TestPipeline tests of the shared transforms."""

import json

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
import pytest
import tensorflow as tf

from inception_data import schema, sharding
from pipelines import image_folder, transforms
from tests import fabricate


def test_list_images_splits_files_hidden_and_unlisted(tmp_path):
    fabricate.write(tmp_path / "a" / "x.jpg", b"1")
    fabricate.write(tmp_path / "a" / "y.png", b"2")
    fabricate.write(tmp_path / "a" / ".DS_Store", b"3")
    fabricate.write(tmp_path / "zz" / "z.jpg", b"4")
    (tmp_path / "a" / "folder.jpg").mkdir()  # a directory named like an image
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a" / "loop")  # a symlink loop
    root = str(tmp_path)
    sources = [transforms.ClassDir("train", root, "a", 1), transforms.ClassDir("train", root, "zz", None)]
    with TestPipeline() as p:
        out = p | beam.Create(sources) | transforms.ListImages()
        assert_that(out.listed, equal_to([("train", 1, [("a/x.jpg", -1, -1), ("a/y.png", -1, -1)])]),
                    label="listed")
        assert_that(out[transforms.REJECTS] | beam.Map(lambda r: (r["path"][len(root):], r["kind"])),
                    equal_to([("/a/.DS_Store", "hidden file"), ("/zz/z.jpg", "unlisted directory")]),
                    label="rejects")
        assert_that(out[transforms.FOUND], equal_to([("train", 3), ("train", 1)]), label="found")


def test_assign_shards_balanced_complete_and_with_empty_shards():
    a_files = [f"a/{i}.jpg" for i in range(5)]
    listed = [("train", 1, [(p, -1, -1) for p in a_files]), ("train", 2, [("b/0.jpg", -1, -1)]),
              ("validation", 1, [("a/v.jpg", 7, 9)])]
    with TestPipeline() as p:
        out = (p | beam.Create(listed)
               | transforms.AssignShards({"train": 4, "validation": 3}, seed=0))
        expected = [(("train", s, 4), transforms.Item(k, rel, 1))
                    for s, k, rel in sharding.assign(a_files, seed=0, offset=0, num_shards=4)]
        expected += [(("train", s, 4), transforms.Item(k, rel, 2))
                     for s, k, rel in sharding.assign(["b/0.jpg"], seed=0, offset=5, num_shards=4)]
        expected += [(("validation", 0, 3), transforms.Item(sharding.path_key(0, "a/v.jpg"),
                                                            "a/v.jpg", 1, offset=7, size=9))]
        expected += [(("train", i, 4), None) for i in range(4)]
        expected += [(("validation", i, 3), None) for i in range(3)]
        assert_that(out, equal_to(expected))


def test_write_shard_commits_records_and_rejects(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    good = fabricate.jpeg_bytes(30, 20)
    fabricate.write(src / "a" / "good.jpg", good)
    fabricate.write(src / "a" / "bad.jpg", b"nope")
    make = image_folder.FolderRecords(("a",))
    fn = transforms.WriteShardFn(str(out), {"train": str(src)}, make, "fast", "apply")
    items = [transforms.Item(2, "a/bad.jpg", 1), transforms.Item(1, "a/good.jpg", 1), None]
    with TestPipeline() as p:
        result = (p | beam.Create([(("train", 0, 1), items)])
                  | beam.ParDo(fn).with_outputs(transforms.REJECTS, main="stats"))
        assert_that(result.stats | beam.Map(lambda kv: (kv[1]["records"], kv[1]["assigned"])),
                    equal_to([(1, 2)]), label="stats")
        assert_that(result[transforms.REJECTS] | beam.Map(lambda r: r["kind"]),
                    equal_to(["not an image"]), label="rejects")
    assert sorted(p.name for p in out.iterdir()) == [".stats-train-00000-of-00001.json",
                                                     "train-00000-of-00001"]
    saved = json.loads((out / ".stats-train-00000-of-00001.json").read_text())
    assert saved["stats"]["records"] == 1 and [r["kind"] for r in saved["rejects"]] == [
        "not an image"]
    records = list(tf.data.TFRecordDataset(str(out / "train-00000-of-00001")).as_numpy_iterator())
    fields = schema.from_example(records[0])
    assert len(records) == 1 and fields[schema.ENCODED] == good
    assert (fields[schema.WIDTH], fields[schema.HEIGHT], fields[schema.TEXT]) == (30, 20, b"a")


def test_failed_shard_leaves_no_file_behind(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    for i in range(3):
        fabricate.write(src / "a" / f"{i}.jpg", fabricate.jpeg_bytes(seed=i))
    calls = {"n": 0}
    real = transforms.images.normalise

    def dies_from_third_call(data, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:  # the runner retries the bundle: keep failing
            raise MemoryError("simulated worker death mid-shard")
        return real(data, **kwargs)

    monkeypatch.setattr(transforms.images, "normalise", dies_from_third_call)
    fn = transforms.WriteShardFn(str(out), {"train": str(src)}, image_folder.FolderRecords(("a",)),
                                 "fast", "apply")
    items = [transforms.Item(i, f"a/{i}.jpg", 1) for i in range(3)]
    with pytest.raises(Exception, match="simulated worker death"):
        with TestPipeline(runner="BundleBasedDirectRunner") as p:
            _ = p | beam.Create([(("train", 0, 1), items)]) | beam.ParDo(fn)
    assert list(out.iterdir()) == []  # neither a finished-looking shard nor a temporary file


class _Collect:
    """Stands in for WriteShardFn: records what each shard would be written from."""

    def __init__(self):
        self.shards = {}

    def process(self, element):
        key, items = element
        self.shards[key] = sorted(items)
        yield key


def test_spilled_listings_give_each_shard_group_what_assign_shards_gives(tmp_path):
    # Plain functions, no pipeline: spill two classes, then write every group of shards.
    listed = [("train", 1, [(f"a/{i}.jpg", -1, -1) for i in range(7)]),
              ("train", 2, [("b/0.jpg", 10, 20), ("b/1.jpg", 30, 40)])]
    counts = [transforms.spill_class(entry, str(tmp_path), 3, False) for entry in listed]
    assert counts == [("train", (1, 7)), ("train", (2, 2))]
    layout = dict([transforms._layout(("train", [c for _, c in counts]), {"train": 4})])
    writer = _Collect()
    fn = transforms.WriteGroupFn(str(tmp_path), writer)
    assert list(transforms._groups(("train", layout["train"]), 4096)) == [
        ("train", s, s + 1) for s in range(4)]  # few shards: one per group
    for group in (("train", 0, 3), ("train", 3, 4)):  # and a group of several shards
        list(fn.process(group, layout))
    expected = {}
    for entry in listed:
        for key, item in transforms._assign(entry, layout, 3, False):
            expected.setdefault(key, []).append(item)
    assert writer.shards == {key: sorted(items) for key, items in expected.items()}
    assert writer.shards[("train", 0, 4)][0].label in (1, 2) and len(writer.shards) == 4
    with pytest.raises(FileExistsError):  # a class listed twice is a bug, not a silent merge
        transforms.spill_class(listed[0], str(tmp_path), 3, False)


def test_boxes_by_name_reads_only_wanted_names_sorted(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text("x.JPEG,0.5,0.5,0.9,0.9\ny.JPEG,0.1,0.1,0.2,0.2\nx.JPEG,0.1,0.2,0.3,0.4\n"
                   "z.JPEG,broken\n")
    assert transforms.boxes_by_name(str(csv), {"x.JPEG", "w.JPEG"}) == {
        "x.JPEG": ((0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.9, 0.9))}
    with pytest.raises(ValueError, match="boxes.csv"):  # a bad line names the file
        transforms.boxes_by_name(str(csv), {"z.JPEG"})

"""write_shard as a plain function (no Beam), the boxes join both ways, and resume replay."""

import dataclasses
import json

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from inception_data import labels, schema, tfrecord
from inception_data.build_options import BuildOptions
from pipelines import box_join, image_folder, shard_writer
from pipelines.listing import Item
from tests import fabricate


def settings(src, out, resume=False):
    return shard_writer.ShardSettings(str(out), {"train": str(src)},
                                      image_folder.FolderRecords(labels.LabelMap(("a",))),
                                      BuildOptions(resume=resume))


def test_write_shard_commits_records_stats_and_rejects(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    good = fabricate.jpeg_bytes(30, 20)
    fabricate.write(src / "a" / "good.jpg", good)
    fabricate.write(src / "a" / "bad.jpg", b"nope")
    items = [Item(1, "a/good.jpg", 1), Item(2, "a/bad.jpg", 1)]
    stats, rejects, _ = shard_writer.write_shard(items, shard_writer.Shard("train", 0, 1),
                                                 settings(src, out))
    assert (stats.records, stats.assigned, stats.per_class) == (1, 2, {1: 1})
    assert [(r.kind, r.path) for r in rejects] == [("not an image", str(src / "a/bad.jpg"))]
    assert sorted(p.name for p in out.iterdir()) == [".stats-train-00000-of-00001.json",
                                                     "index", "train-00000-of-00001"]
    shard_size = (out / "train-00000-of-00001").stat().st_size
    assert (out / "index" / "train-00000-of-00001.idx").read_text() == f"0 {shard_size}\n"
    assert stats.bytes == shard_size
    saved = json.loads((out / ".stats-train-00000-of-00001.json").read_text())
    assert saved["stats"] == stats.as_dict() | {"per_class": {"1": 1}}
    assert saved["rejects"] == [r.row() for r in rejects]
    with open(out / "train-00000-of-00001", "rb") as handle:
        records = list(tfrecord.read_records(handle))
    fields = schema.from_example(records[0])
    assert len(records) == 1 and fields[schema.ENCODED] == good
    assert (fields[schema.WIDTH], fields[schema.HEIGHT], fields[schema.TEXT]) == (30, 20, b"a")
    assert list(tf.data.TFRecordDataset(str(out / "train-00000-of-00001"))
                .as_numpy_iterator()) == records


def test_resume_replays_a_committed_shard_without_reading_images(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    fabricate.write(src / "a" / "x.jpg", fabricate.jpeg_bytes())
    shard = shard_writer.Shard("train", 0, 1)
    first, _, _ = shard_writer.write_shard([Item(1, "a/x.jpg", 1)], shard, settings(src, out))
    (src / "a" / "x.jpg").unlink()  # a rewrite would now reject it
    again, rejects, _ = shard_writer.write_shard([Item(1, "a/x.jpg", 1)], shard,
                                              settings(src, out, resume=True))
    assert again == dataclasses.replace(first, resumed=True) and rejects == []


def test_failed_shard_leaves_no_file_behind(tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    for i in range(3):
        fabricate.write(src / "a" / f"{i}.jpg", fabricate.jpeg_bytes(seed=i))
    real = shard_writer.images.normalise
    calls = []

    def dies_on_third(data, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("simulated worker death mid-shard")
        return real(data, **kwargs)

    monkeypatch.setattr(shard_writer.images, "normalise", dies_on_third)
    with pytest.raises(MemoryError, match="simulated worker death"):
        shard_writer.write_shard([Item(i, f"a/{i}.jpg", 1) for i in range(3)],
                                 shard_writer.Shard("train", 0, 1), settings(src, out))
    assert list(out.iterdir()) == []  # neither a finished-looking shard nor a temporary file


CSV = ("x.JPEG,0.5,0.5,0.9,0.9\ny.JPEG,0.1,0.1,0.2,0.2\nx.JPEG,0.1,0.2,0.3,0.4\n")


def test_box_index_and_the_distributed_join_attach_the_same_sorted_boxes(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text(CSV)
    assert box_join.index_boxes(str(csv), str(tmp_path / "boxes.sqlite")) == 3
    lookup = box_join.BoxLookup(str(tmp_path / "boxes.sqlite"))
    items = [Item(1, "n/x.JPEG", 1), Item(2, "n/w.JPEG", 1)]
    attached = lookup.attach(items)
    lookup.close()
    assert [i.boxes for i in attached] == [((0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 0.9, 0.9)), ()]
    with TestPipeline() as p:
        keyed = p | beam.Create([(("train", 0, 1), items[0]), (("train", 0, 1), items[1]),
                                 (("train", 0, 1), None)])
        assert_that(keyed | box_join.AttachBoxes(str(csv)),
                    equal_to([(("train", 0, 1), attached[0]), (("train", 0, 1), attached[1]),
                              (("train", 0, 1), None)]))


def test_a_bad_boxes_line_names_the_file_and_line_before_anything_runs(tmp_path):
    csv = tmp_path / "boxes.csv"
    csv.write_text(CSV + "z.JPEG,broken\n")
    with pytest.raises(ValueError, match=r"boxes.csv line 4: 'z.JPEG,broken'"):
        box_join.index_boxes(str(csv), str(tmp_path / "boxes.sqlite"))

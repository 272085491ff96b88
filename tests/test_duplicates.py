"""Exact duplicates and train/validation leakage: found while writing (report) or before
(drop), the same in both build designs, with flat memory (an on-disk index)."""

import json

import pytest

from inception_data import duplicates
from inception_data.duplicates import Copy
from tests import fabricate


def test_groups_from_sorted_copies():
    copies = sorted([Copy("b", "train", "t/2"), Copy("a", "train", "t/1"),
                     Copy("b", "validation", "v/1"), Copy("c", "train", "t/3"),
                     Copy("b", "train", "t/0")])
    groups = list(duplicates.grouped(copies))
    assert groups == [[Copy("b", "train", "t/0"), Copy("b", "train", "t/2"),
                       Copy("b", "validation", "v/1")]]


def test_what_drop_keeps():
    group = [Copy("h", "validation", "v/b"), Copy("h", "train", "t/z"),
             Copy("h", "train", "t/a"), Copy("h", "validation", "v/a")]
    dropped = {copy.path: reason for copy, reason in duplicates.drops(group)}
    assert set(dropped) == {"t/z", "v/a", "v/b"}  # t/a kept: first training path
    assert "leakage" in dropped["v/a"] and "t/a" in dropped["v/a"]
    only_validation = [Copy("h", "validation", "v/b"), Copy("h", "validation", "v/a")]
    assert [c.path for c, _ in duplicates.drops(only_validation)] == ["v/b"]


def test_summary_counts():
    summary = duplicates.Summary()
    summary.add([Copy("h", "train", "a"), Copy("h", "train", "b"), Copy("h", "validation", "c")])
    summary.add([Copy("g", "validation", "d"), Copy("g", "validation", "e")])
    assert summary.as_dict() == {"groups": 2, "extra_copies": {"train": 1, "validation": 1},
                                 "leaked": {"validation": 1}}


def test_hash_index_groups_on_disk(tmp_path):
    index = duplicates.HashIndex(str(tmp_path / "index.sqlite"))
    odd = "caf\udce9.jpg"  # a name that was not UTF-8 on disk
    index.add([Copy("x", "train", odd), Copy("y", "train", "1"), Copy("x", "validation", "2")])
    index.add([Copy(f"{n:04d}", "train", str(n)) for n in range(1000)])
    assert list(index.groups()) == [[Copy("x", "train", odd), Copy("x", "validation", "2")]]
    index.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Real samples: one copied 3 times in train (two classes), one in train and validation
    (leakage), one twice in validation, and distinct images."""
    root = tmp_path_factory.mktemp("dups")
    s = sorted(fabricate.shared_data("imagenet-samples").iterdir())[:8]
    layout = {"train/a/1.jpg": s[0], "train/a/2.jpg": s[0], "train/b/3.jpg": s[0],
              "train/b/4.jpg": s[1], "validation/b/5.jpg": s[1], "validation/a/6.jpg": s[2],
              "validation/a/7.jpg": s[2], "validation/a/8.jpg": s[3], "train/a/9.jpg": s[4]}
    for rel, sample in layout.items():
        fabricate.write(root / rel, sample.read_bytes())
    return root


def build(tree, out, *extra):
    fabricate.build("--train-dir", tree / "train", "--validation-dir", tree / "validation",
                    "--output-dir", out, "--shards", "2", "--validation-shards", "2", *extra)
    return json.loads((out / "manifest.json").read_text())


def report_paths(out, tree):
    rows = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    return sorted(sorted(str(c["path"]).replace(str(tree) + "/", "") for c in row["copies"])
                  for row in rows), rows


def test_report_lists_duplicates_and_leakage_and_writes_everything(tree, tmp_path):
    manifest = build(tree, tmp_path / "out")
    assert manifest["duplicates"] == {"mode": "report", "groups": 3, "file": "duplicates.jsonl",
                                      "extra_copies": {"train": 2, "validation": 1},
                                      "leaked": {"validation": 1}}
    assert manifest["splits"]["train"]["written"] == 5
    assert manifest["splits"]["validation"]["written"] == 4
    groups, rows = report_paths(tmp_path / "out", tree)
    assert groups == [["train/a/1.jpg", "train/a/2.jpg", "train/b/3.jpg"],
                      ["train/b/4.jpg", "validation/b/5.jpg"],
                      ["validation/a/6.jpg", "validation/a/7.jpg"]]
    assert [row["leakage"] for row in rows if len(row["splits"]) == 2] == [True]


def test_drop_keeps_one_copy_per_split_and_no_leaked_validation_image(tree, tmp_path):
    manifest = build(tree, tmp_path / "out", "--duplicates", "drop")
    assert manifest["splits"]["train"]["written"] == 3  # 1.jpg, 4.jpg, 9.jpg
    assert manifest["splits"]["validation"]["written"] == 2  # 6.jpg, 8.jpg
    rejects = [json.loads(line) for split in ("train", "validation") for line in
               (tmp_path / "out" / f"rejects-{split}.jsonl").read_text().splitlines()]
    assert sorted(r["path"].replace(str(tree) + "/", "") for r in rejects) == [
        "train/a/2.jpg", "train/b/3.jpg", "validation/a/7.jpg", "validation/b/5.jpg"]
    assert {r["kind"] for r in rejects} == {"duplicate"}
    leaked = [r for r in rejects if r["path"].endswith("5.jpg")][0]
    assert "train/b/4.jpg" in leaked["reason"] and "leakage" in leaked["reason"]


@pytest.mark.parametrize("mode", ["report", "drop"])
def test_local_and_distributed_designs_agree(tree, tmp_path, mode):
    build(tree, tmp_path / "local", "--duplicates", mode)
    build(tree, tmp_path / "distributed", "--duplicates", mode, *fabricate.SHUFFLING_RUNNER)
    fabricate.same_outputs(tmp_path / "local", tmp_path / "distributed")


def test_off_hashes_nothing(tree, tmp_path):
    manifest = build(tree, tmp_path / "out", "--duplicates", "off")
    assert manifest["duplicates"] == {"mode": "off"}
    assert not (tmp_path / "out" / "duplicates.jsonl").exists()


def test_resume_keeps_the_copies_of_committed_shards(tree, tmp_path):
    out = tmp_path / "out"
    build(tree, out)
    complete = (out / "duplicates.jsonl").read_text()
    (out / "manifest.json").unlink()  # as if interrupted after every shard was committed
    (out / "duplicates.jsonl").unlink()
    build(tree, out, "--resume")
    assert (out / "duplicates.jsonl").read_text() == complete


def test_near_groups_need_two_contents():
    copies = sorted([Copy("s1", "train", "a", "p1"), Copy("s1", "train", "b", "p1"),
                     Copy("s2", "validation", "c", "p1"), Copy("s3", "train", "d", "p2"),
                     Copy("s4", "train", "e", "")], key=lambda c: (c.phash, c))
    assert [[c.path for c in g] for g in duplicates.near_groups(copies)] == [["a", "b", "c"]]
    same_bytes_only = [Copy("s1", "train", "a", "p1"), Copy("s1", "train", "b", "p1")]
    assert list(duplicates.near_groups(same_bytes_only)) == []  # an exact group, not a near one


@pytest.fixture(scope="module")
def near_tree(tmp_path_factory):
    """A real sample, its half-size re-encoded copy in validation, and distinct images."""
    pytest.importorskip("imagehash", reason="the test extra installs it")
    import io

    from PIL import Image

    root = tmp_path_factory.mktemp("near")
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())[10:16]
    for i, sample in enumerate(samples):
        fabricate.write(root / "train" / f"c{i % 2}" / sample.name, sample.read_bytes())
    with Image.open(samples[0]) as image:
        small = io.BytesIO()
        image.resize((image.width // 2, image.height // 2)).save(small, "JPEG", quality=80)
    fabricate.write(root / "validation" / "c0" / "smaller.jpg", small.getvalue())
    fabricate.write(root / "validation" / "c1" / samples[5].name, samples[5].read_bytes())
    return root, samples


def test_near_duplicates_report_resized_copies(near_tree, tmp_path):
    root, samples = near_tree
    manifest = build(root, tmp_path / "out", "--near-duplicates")
    assert manifest["duplicates"]["near_groups"] == 1
    assert manifest["duplicates"]["groups"] == 1  # samples[5] twice, byte for byte
    assert manifest["settings"]["near_duplicates"] is True
    rows = [json.loads(line) for line in
            (tmp_path / "out" / "duplicates.jsonl").read_text().splitlines()]
    near = [row for row in rows if row["kind"] == "near"]
    assert len(near) == 1 and near[0]["leakage"] is True
    assert sorted(c["path"].rsplit("/", 1)[1] for c in near[0]["copies"]) == sorted(
        [samples[0].name, "smaller.jpg"])
    build(root, tmp_path / "distributed", "--near-duplicates", *fabricate.SHUFFLING_RUNNER)
    fabricate.same_outputs(tmp_path / "out", tmp_path / "distributed")


def test_near_duplicates_only_while_reporting(tree, tmp_path):
    result = fabricate.cli("build", "--train-dir", tree / "train", "--output-dir",
                           tmp_path / "out", "--duplicates", "drop", "--near-duplicates",
                           expect=2)
    assert "--duplicates report" in result.output

"""End-to-end `inception-data build` / `inspect` through click's CliRunner."""

import json
import pathlib
import tempfile

import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions
from click.testing import CliRunner
from PIL import Image

from inception_data import labels, schema, sharding
from inception_data_cli import main as cli
from pipelines import launch, layout
from tests import fabricate

build = fabricate.build


def read_split(out: pathlib.Path, split: str) -> list[dict]:
    files = sorted(out.glob(f"{split}-*-of-*"))
    assert files, f"no {split} shards in {out}"
    return [schema.from_example(r) for f in files
            for r in tf.data.TFRecordDataset(str(f)).as_numpy_iterator()]


@pytest.fixture
def tree(tmp_path):
    train = tmp_path / "train"
    info = fabricate.image_tree(train)
    val = tmp_path / "val"
    fabricate.image_tree(val, per_class=2, odd=False)
    (tmp_path / "labels.txt").write_text("dogs\ncats\nfish\n")
    return {"train": train, "val": val, "labels": tmp_path / "labels.txt", "info": info,
            "out": tmp_path / "out"}


def test_build_writes_every_good_image_and_rejects_the_rest(tree):
    out = tree["out"]
    result = build("--train-dir", str(tree["train"]), "--validation-dir", str(tree["val"]),
                   "--labels-file", str(tree["labels"]), "--output-dir", str(out),
                   "--shards", "3", "--validation-shards", "2")
    assert "wrote" in result.output and "images/s" in result.output
    assert sorted(p.name for p in out.glob("train-*")) == [f"train-0000{i}-of-00003"
                                                           for i in range(3)]
    assert len(list(out.glob("validation-*"))) == 2
    label_map = labels.parse_labels((out / "labels.txt").read_text())
    assert label_map.names == ("dogs", "cats", "fish")

    records = read_split(out, "train")
    by_name = {}
    for fields in records:
        text = fields[schema.TEXT].decode()
        assert fields[schema.LABEL] == label_map.index(text) >= 1
        image = tf.io.decode_jpeg(fields[schema.ENCODED], channels=3)
        assert image.shape[:2] == (fields[schema.HEIGHT], fields[schema.WIDTH])
        by_name[f"{text}/{fields[schema.FILENAME].decode()}"] = fields
    assert sorted(by_name) == tree["info"]["good"]
    # plain and grayscale JPEGs are stored byte for byte; the PNG and CMYK ones are converted
    for rel, fields in by_name.items():
        original = (tree["train"] / rel).read_bytes()
        converted = rel.endswith(("real-png.jpg", "cmyk.jpg"))
        assert (fields[schema.ENCODED] == original) is not converted, rel
        assert Image.open(tree["train"] / rel).size == (fields[schema.WIDTH], fields[schema.HEIGHT])

    rejects = [json.loads(line) for line in (out / "rejects-train.jsonl").read_text().splitlines()]
    assert sorted(pathlib.Path(r["path"]).relative_to(tree["train"]).as_posix()
                  for r in rejects) == tree["info"]["bad"]
    assert all(r["reason"] for r in rejects)
    manifest = json.loads((out / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    assert train["found"] == len(tree["info"]["good"]) + len(tree["info"]["bad"])
    assert train["found"] == train["written"] + train["rejected"]
    assert train["written"] == len(records) == sum(train["shards"].values())
    assert train["per_class"] == {"dogs": 5, "cats": 5, "fish": 5}
    assert max(train["shards"].values()) - min(train["shards"].values()) <= 2  # rejects aside
    assert manifest["splits"]["validation"]["written"] == 6
    assert manifest["labels"] == {"1": "dogs", "2": "cats", "3": "fish"}


def test_same_input_and_seed_give_byte_identical_shards(tree, tmp_path):
    common = ["--train-dir", str(tree["train"]), "--shards", "2", "--seed", "7"]
    build(*common, "--output-dir", str(tmp_path / "one"))
    build(*common, "--output-dir", str(tmp_path / "two"), workers="2")
    build("--train-dir", str(tree["train"]), "--shards", "2", "--seed", "8",
          "--output-dir", str(tmp_path / "three"))
    names = sorted(p.name for p in (tmp_path / "one").glob("train-*"))
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert any((tmp_path / "one" / n).read_bytes() != (tmp_path / "three" / n).read_bytes()
               for n in names)


def test_labels_default_to_sorted_directories(tree):
    build("--train-dir", str(tree["train"]), "--output-dir", str(tree["out"]))
    assert (tree["out"] / "labels.txt").read_text() == "cats\ndogs\nfish\n"
    assert {r[schema.TEXT]: r[schema.LABEL] for r in read_split(tree["out"], "train")} == {
        b"cats": 1, b"dogs": 2, b"fish": 3}


def test_refuses_existing_output_and_overwrite_removes_stale_shards(tree):
    args = ["--train-dir", str(tree["train"]), "--output-dir", str(tree["out"])]
    build(*args, "--shards", "4")
    result = build(*args, "--shards", "2", expect=2)
    assert "--overwrite" in result.output
    build(*args, "--shards", "2", "--overwrite")
    assert sorted(p.name for p in tree["out"].glob("train-*")) == [
        "train-00000-of-00002", "train-00001-of-00002"]
    assert not list(tree["out"].glob(".tmp-*"))


def test_max_rejects_fails_the_run_without_a_manifest(tree):
    result = build("--train-dir", str(tree["train"]), "--output-dir", str(tree["out"]),
                   "--max-rejects", "2", expect=2)
    assert "3 of 18 files rejected" in result.output and "rejects-train.jsonl" in result.output
    assert not (tree["out"] / "manifest.json").exists()
    build("--train-dir", str(tree["train"]), "--output-dir", str(tree["out"]),
          "--max-rejects", "0.2", "--overwrite")  # 3/18 < 20%
    assert (tree["out"] / "manifest.json").exists()


def test_label_file_problems_are_clear(tree, tmp_path):
    bad = tmp_path / "dup.txt"
    bad.write_text("cats\ndogs\ncats\n")
    result = build("--train-dir", str(tree["train"]), "--output-dir", str(tree["out"]),
                   "--labels-file", str(bad), expect=2)
    assert "'cats' appears on line 1 and line 3" in result.output
    partial = tmp_path / "partial.txt"
    partial.write_text("cats\ndogs\nbirds\n")
    result = build("--train-dir", str(tree["train"]), "--output-dir", str(tree["out"]),
                   "--labels-file", str(partial))
    assert "label 'birds' has no images" in result.output
    assert "fish is not in the labels file" in result.output
    manifest = json.loads((tree["out"] / "manifest.json").read_text())["splits"]["train"]
    assert manifest["per_class"]["birds"] == 0
    assert manifest["reject_reasons"]["unlisted directory"] == 6  # 5 images + notes.txt


def test_beam_options_pass_through_untouched(tree, monkeypatch):
    # Options only Beam knows reach the pipeline Beam runs, with their values.
    seen = []
    real = launch.beam.Pipeline

    def recording(*args, options=None, **kwargs):
        seen.append(options)
        return real(*args, options=options, **kwargs)

    monkeypatch.setattr(launch.beam, "Pipeline", recording)
    fabricate.build("--train-dir", tree["train"], "--output-dir", tree["out"],
                    "--direct_running_mode", "multi_threading", "--direct_num_workers", "2",
                    "--job_name", "flowers-test", workers=None)
    direct = seen[0].view_as(DirectOptions)
    assert (direct.direct_running_mode, direct.direct_num_workers) == ("multi_threading", 2)
    assert seen[0].view_as(GoogleCloudOptions).job_name == "flowers-test"


def test_inspect_counts_and_verifies(tree):
    build("--train-dir", str(tree["train"]), "--output-dir", str(tree["out"]), "--shards", "2")
    result = CliRunner().invoke(cli.main, ["inspect", str(tree["out"] / "train-*"), "--verify"])
    assert result.exit_code == 0, result.output
    assert "15 records in 2 file(s)" in result.output
    assert "verify: 0 problem(s)" in result.output
    missing = CliRunner().invoke(cli.main, ["inspect", str(tree["out"] / "nothing-*")])
    assert missing.exit_code == 2 and "does not match any files" in missing.output


def test_real_imagenet_samples_end_to_end(tmp_path):
    root = tmp_path / "train"
    rels = fabricate.imagenet_tree(root)  # all 1000 real samples, one per class
    synsets = [r.split("/")[0] for r in rels]
    (tmp_path / "labels.txt").write_text("\n".join(synsets) + "\n")
    out = tmp_path / "out"
    build("--train-dir", str(root), "--labels-file", str(tmp_path / "labels.txt"),
          "--output-dir", str(out), "--verify", "decode", workers="2")
    records = read_split(out, "train")
    assert len(records) == 1000
    turned = 0
    for fields in records:
        synset = fields[schema.TEXT].decode()
        assert fields[schema.LABEL] == synsets.index(synset) + 1
        path = root / synset / fields[schema.FILENAME].decode()
        with Image.open(path) as image:
            rotated = image.getexif().get(0x0112, 1) in range(5, 9)  # 90-degree turns
            turned += rotated
            size = image.size[::-1] if rotated else image.size
            kept = image.getexif().get(0x0112, 1) not in range(2, 9)
        assert size == (fields[schema.WIDTH], fields[schema.HEIGHT])
        # every real ImageNet JPEG is stored byte for byte, except one with EXIF orientation 6
        assert (fields[schema.ENCODED] == path.read_bytes()) is kept, path.name
    assert turned == 1  # n02951585_can_opener.JPEG
    manifest = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    assert manifest["found"] == manifest["written"] == 1000 and manifest["rejected"] == 0


def test_local_build_without_shuffle_writes_what_the_distributed_design_writes(
        tree, monkeypatch):
    # Local builds spill each class's listing and write groups of shards from it (flat memory);
    # distributed runners group images by shard with a GroupByKey. Same bytes either way.
    # Tiny groups (2 images) so that several groups on two worker processes share the work.
    monkeypatch.setattr(layout, "GROUP_IMAGES", 2)
    scratch = tree["out"].parent / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    args = ["--train-dir", str(tree["train"]), "--validation-dir", str(tree["val"]),
            "--labels-file", str(tree["labels"]), "--shards", "4", "--validation-shards", "3"]
    (tree["train"] / "cats" / ".DS_Store").write_bytes(b"x")
    fabricate.write(tree["train"] / "birds" / "b.jpg", fabricate.jpeg_bytes())  # unlisted
    assert len(list(sharding.shard_groups(4, 15, 2))) == 4
    build(*args, "--output-dir", str(tree["out"] / "local"), workers="2")
    build(*args, "--output-dir", str(tree["out"] / "shuffled"), *fabricate.SHUFFLING_RUNNER)
    names = fabricate.same_outputs(tree["out"] / "local", tree["out"] / "shuffled")
    assert "train-00003-of-00004" in names and "validation-00002-of-00003" in names
    rejects = (tree["out"] / "local" / "rejects-train.jsonl").read_text()
    assert ".DS_Store" in rejects and "birds/b.jpg" in rejects and "truncated.jpg" in rejects
    assert not list(scratch.iterdir())  # the spilled listings are gone


def test_process_count_follows_files_and_bytes(monkeypatch):
    """One process until splitting the measured per-file and per-byte work over the cores
    saves more than starting the workers costs (pipelines/launch.py's constants)."""
    from pipelines import runner

    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    assert runner.local_workers(12_403 * 24_000, 12_403) == 1  # small photos: start-up dominates
    assert runner.local_workers(1_000 * 110_000, 1_000) == 1
    assert runner.local_workers(60_000 * 10_000, 60_000) is None  # many small files
    assert runner.local_workers(50_000 * 110_000, 50_000) is None  # ImageNet-size
    assert runner.local_workers(140 * 10 ** 9) is None  # tars: bytes known, files not yet
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 1)
    assert runner.local_workers(50_000 * 110_000, 50_000) == 1

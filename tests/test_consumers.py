"""Other readers of our shards: TensorFlow Datasets through the metadata written beside
the shards, and the `tfrecord` package (PyTorch; DALI's index format) through index/*.idx."""

import hashlib
import importlib.util
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from inception_data import schema, tfds_metadata
from tests import fabricate

tfds = pytest.importorskip("tensorflow_datasets", reason="the test extra installs it")


def our_records(out, split):
    files = sorted(str(p) for p in out.glob(f"{split}-*-of-*"))
    return [schema.from_example(r) for f in files
            for r in tf.data.TFRecordDataset(f).as_numpy_iterator()]


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    """120 real ImageNet samples as <synset>/<file> (train) and 30 more (validation), with a
    PNG and a CMYK JPEG among them, 3 + 2 shards."""
    root = tmp_path_factory.mktemp("consumers")
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())
    synsets = sorted({s.name.split("_")[0] for s in samples[:150]})
    for split, chosen in (("train", samples[:120]), ("val", samples[120:150])):
        for sample in chosen:
            fabricate.write(root / split / sample.name.split("_")[0] / sample.name,
                            sample.read_bytes())
    odd = fabricate.shared_data("odd-images")
    fabricate.write(root / "train" / synsets[0] / "png.jpg", (odd / "rgb-photo.png").read_bytes())
    fabricate.write(root / "train" / synsets[1] / "cmyk.jpg", (odd / "cmyk.jpg").read_bytes())
    (root / "labels.txt").write_text("".join(f"{s}\n" for s in synsets))
    out = root / "out"
    fabricate.cli("build", "--train-dir", root / "train", "--validation-dir", root / "val",
                  "--labels-file", root / "labels.txt", "--output-dir", out, "--shards", "3",
                  "--validation-shards", "2", "--no-progress", "--workers", "2")
    return out


def test_tfds_loads_every_split_as_the_manifest_counts(real_build):
    manifest = json.loads((real_build / "manifest.json").read_text())
    builder = tfds.builder_from_directory(str(real_build))
    for split in ("train", "validation"):
        assert builder.info.splits[split].num_examples == manifest["splits"][split]["written"]
        assert builder.info.splits[split].num_shards == manifest["splits"][split]["num_shards"]
    assert builder.info.splits["train"].num_examples == 122
    names = builder.info.features[schema.LABEL].names
    assert names[0] == "background" and names[1:] == [
        manifest["labels"][str(i)] for i in range(1, len(names))]


def tfds_and_ours(out, split="train"):
    """(TFDS example, our record of the same file) for every example TFDS yields."""
    builder = tfds.builder_from_directory(str(out))
    ours = {r[schema.FILENAME]: r for r in our_records(out, split)}
    for example in builder.as_dataset(split=split).as_numpy_iterator():
        yield example, ours[example[schema.FILENAME]]


def test_tfds_yields_our_images_labels_and_names(real_build):
    ours = our_records(real_build, "train")
    seen = 0
    for example, record in tfds_and_ours(real_build):
        assert example[schema.LABEL] == record[schema.LABEL]
        assert example[schema.TEXT] == record[schema.TEXT]
        expected = tf.io.decode_jpeg(record[schema.ENCODED], channels=3).numpy()
        assert np.array_equal(example[schema.ENCODED], expected)
        seen += 1
    assert seen == len(ours)
    labels = tfds.builder_from_directory(str(real_build)).info.features[schema.LABEL]
    some = ours[0]
    assert labels.int2str(some[schema.LABEL]) == some[schema.TEXT].decode()


def test_tfds_as_supervised(real_build):
    builder = tfds.builder_from_directory(str(real_build))
    batch = next(iter(builder.as_dataset(split="validation", as_supervised=True).take(3)))
    image, label = batch
    assert image.dtype == tf.uint8 and image.shape[-1] == 3 and label.dtype == tf.int64


def test_tfds_reads_imagenet_builds_with_synsets_and_boxes(tmp_path):
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())[:6]
    bbox = fabricate.shared_data("bbox")
    train = tmp_path / "train"
    for sample in samples:
        fabricate.write(train / sample.name.split("_")[0] / sample.name, sample.read_bytes())
    # a sample under the name of a real annotation, so that it gets that file's boxes
    fabricate.write(train / "n01440764" / "n01440764_96.JPEG", samples[0].read_bytes())
    ann = tmp_path / "ann"
    xml = bbox / "train" / "n01440764" / "n01440764_96.xml"
    fabricate.write(ann / "n01440764" / xml.name, xml.read_bytes())
    fabricate.cli("boxes", ann, "--output", tmp_path / "boxes.csv", "--workers", "1")
    out = tmp_path / "out"
    fabricate.cli("imagenet", "--train-dir", train, "--bounding-boxes", tmp_path / "boxes.csv",
                  "--output-dir", out, "--train-shards", "2", "--no-progress", "--workers", "1")
    boxed = seen = 0
    for example, record in tfds_and_ours(out):
        seen += 1
        assert example[schema.SYNSET] == record[schema.SYNSET]
        for key in (schema.BBOX_XMIN, schema.BBOX_YMIN, schema.BBOX_XMAX, schema.BBOX_YMAX):
            assert example[key].tolist() == pytest.approx(record[key])
        boxed += len(record[schema.BBOX_XMIN]) > 0
    assert seen == 7 and boxed == 1
    assert tfds.builder_from_directory(str(out)).info.features[schema.LABEL].num_classes == 1001


def test_tfds_names_without_background(tmp_path):
    fabricate.image_tree(tmp_path / "train", odd=False)
    fabricate.cli("build", "--train-dir", tmp_path / "train", "--output-dir", tmp_path / "out",
                  "--no-background", "--no-progress", "--workers", "1")
    builder = tfds.builder_from_directory(str(tmp_path / "out"))
    assert builder.info.features[schema.LABEL].names == ["cats", "dogs", "fish"]
    labels = {int(label) for _, label in builder.as_dataset(split="train", as_supervised=True)}
    assert labels == {0, 1, 2}


def test_a_class_called_background_keeps_its_name():
    manifest = {"labels": {"1": "background", "2": "cat"}, "label_offset": 1}
    assert tfds_metadata.class_names(manifest) == ["__background__", "background", "cat"]


def read_index(path):
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


def test_index_files_match_the_records(real_build):
    shards = sorted(real_build.glob("train-*-of-*"))
    for shard in shards:
        index = read_index(real_build / "index" / f"{shard.name}.idx")
        data = shard.read_bytes()
        assert sum(size for _, size in index) == len(data)
        position = 0
        for offset, size in index:
            assert offset == position
            length = int.from_bytes(data[offset:offset + 8], "little")
            assert size == 8 + 4 + length + 4  # DALI's tfrecord2idx: the whole framed record
            position += size
        assert len(index) == sum(1 for _ in tf.data.TFRecordDataset(str(shard)))


# The `tfrecord` package cannot be imported next to TensorFlow (its example_pb2 registers
# tensorflow.BytesList again: "duplicate symbol"), so it runs as a PyTorch user's process would,
# without TensorFlow, and reports what it read.
TFRECORD_READER = textwrap.dedent("""
    import hashlib, json, pathlib, sys
    from tfrecord.reader import tfrecord_loader
    out = pathlib.Path(sys.argv[1])
    description = {"image/encoded": "byte", "image/class/label": "int", "image/filename": "byte"}
    rows = []
    for shard in sorted(out.glob("train-*-of-*")):
        index = str(out / "index" / (shard.name + ".idx"))
        for part in range(3):  # reading in 3 parts splits the file at the index's offsets
            for row in tfrecord_loader(str(shard), index, description, shard=(part, 3)):
                rows.append([bytes(row["image/filename"]).decode(),
                             int(row["image/class/label"][0]),
                             hashlib.sha256(bytes(row["image/encoded"])).hexdigest()])
    print(json.dumps(rows))
""")


@pytest.mark.skipif(importlib.util.find_spec("tfrecord") is None,
                    reason="the test extra installs the tfrecord package")
def test_tfrecord_package_reads_our_shards_with_the_index(real_build):
    result = subprocess.run([sys.executable, "-c", TFRECORD_READER, str(real_build)],
                            capture_output=True, text=True, check=True)
    assert "tensorflow" not in result.stderr.lower() or "error" not in result.stderr.lower()
    rows = json.loads(result.stdout)
    ours = sorted([r[schema.FILENAME].decode(), r[schema.LABEL],
                   hashlib.sha256(r[schema.ENCODED]).hexdigest()]
                  for r in our_records(real_build, "train"))
    assert len(rows) == len(ours) == 122  # each record once: the index parts do not overlap
    assert sorted(rows) == ours


def test_overwrite_with_fewer_shards_leaves_no_stale_side_files(tmp_path):
    fabricate.image_tree(tmp_path / "train", odd=False)
    args = ("build", "--train-dir", tmp_path / "train", "--output-dir", tmp_path / "out",
            "--no-progress", "--workers", "1")
    fabricate.cli(*args, "--shards", "3")
    assert len(list((tmp_path / "out" / "index").iterdir())) == 3
    fabricate.cli(*args, "--shards", "2", "--overwrite")
    assert sorted(p.name for p in (tmp_path / "out" / "index").iterdir()) == [
        "train-00000-of-00002.idx", "train-00001-of-00002.idx"]
    builder = tfds.builder_from_directory(str(tmp_path / "out"))
    assert builder.info.splits["train"].num_shards == 2

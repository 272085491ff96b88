"""Label conventions: the manifest states label_offset, --no-background numbers labels
0..N-1, and the reader, inspect and the trainer follow the manifest instead of assuming."""

import json
import shutil

import pytest
import tensorflow as tf

from inception_data import labels, reader, schema
from inception_data.shard_set import ShardSet
from tests import fabricate


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("conventions")
    fabricate.image_tree(root / "train", odd=False)  # cats, dogs, fish: 4 each
    out = {}
    for name, extra in (("background", ()), ("none", ("--no-background",))):
        out[name] = root / name
        fabricate.build("--train-dir", root / "train", "--validation-dir", root / "train",
                        "--output-dir", out[name], *extra)
    return out


def labels_by_text(out, split="train"):
    files = sorted(str(p) for p in out.glob(f"{split}-*"))
    return {(r[schema.TEXT].decode(), r[schema.LABEL]) for r in
            (schema.from_example(x) for x in tf.data.TFRecordDataset(files).as_numpy_iterator())}


def test_manifest_states_the_convention(builds):
    with_bg = json.loads((builds["background"] / "manifest.json").read_text())
    assert with_bg["label_offset"] == 1 and with_bg["background_label"] == 0
    assert with_bg["labels"] == {"1": "cats", "2": "dogs", "3": "fish"}
    no_bg = json.loads((builds["none"] / "manifest.json").read_text())
    assert no_bg["label_offset"] == 0 and no_bg["background_label"] is None
    assert no_bg["labels"] == {"0": "cats", "1": "dogs", "2": "fish"}
    assert no_bg["settings"]["label_offset"] == 0
    assert no_bg["splits"]["train"]["per_class"] == {"cats": 4, "dogs": 4, "fish": 4}
    # labels.txt is the same file: line i names the i-th class either way
    assert (builds["none"] / "labels.txt").read_text() == \
        (builds["background"] / "labels.txt").read_text()


def test_records_are_numbered_by_the_convention(builds):
    assert labels_by_text(builds["background"]) == {("cats", 1), ("dogs", 2), ("fish", 3)}
    assert labels_by_text(builds["none"]) == {("cats", 0), ("dogs", 1), ("fish", 2)}
    assert labels_by_text(builds["none"], "validation") == {("cats", 0), ("dogs", 1), ("fish", 2)}


def test_input_fn_reads_the_convention(builds):
    for name, offset in (("background", 1), ("none", 0)):
        pattern = str(builds[name] / "train-*")
        assert ShardSet.read(reader.list_files(pattern)).label_offset() == offset
        dataset = reader.input_fn(pattern, is_training=False, batch_size=16, image_size=32,
                                  options=reader.ReadOptions(num_classes=3))
        seen = sorted(set(tf.concat([labels for _, labels in dataset], 0).numpy().tolist()))
        assert seen == [offset, offset + 1, offset + 2]
    # N = 2 classes cannot hold label 2 in either convention: fails naming the file
    for name in ("background", "none"):
        dataset = reader.input_fn(
            str(builds[name] / "train-*"), is_training=False, batch_size=16, image_size=32,
            options=reader.ReadOptions(num_classes=2 if name == "none" else 1))
        with pytest.raises(tf.errors.InvalidArgumentError, match="train-00000-of-00001"):
            list(dataset)


def test_shards_without_a_manifest_are_the_original_convention(builds, tmp_path):
    shutil.copy(builds["none"] / "train-00000-of-00001", tmp_path)
    assert ShardSet.read([str(tmp_path / "train-00000-of-00001")]).label_offset() == 1


def test_mixed_conventions_are_refused(builds):
    files = [str(builds["background"] / "train-00000-of-00001"),
             str(builds["none"] / "train-00000-of-00001")]
    with pytest.raises(ValueError, match="mix label conventions"):
        ShardSet.read(files).label_offset()
    with pytest.raises(ValueError, match="mix label conventions"):
        reader.input_fn(files, is_training=False, batch_size=4)


def test_trainer_outputs_follow_the_manifest(builds):
    from trainer import data

    assert data.load(str(builds["background"])).num_classes == 4  # 3 + background
    assert data.load(str(builds["none"])).num_classes == 3


def test_inspect_verify_accepts_label_zero_without_background(builds):
    result = fabricate.cli("inspect", builds["none"] / "train-*", "--verify")
    assert "verify: 0 problem(s)" in result.output


def test_imagenet_without_background_matches_keras_heads(tmp_path):
    # Keras applications' ImageNet heads: class 0 is n01440764 (tench), 999 is n15075141
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())
    train = tmp_path / "train"
    for sample in (samples[0], samples[-1]):
        fabricate.write(train / sample.name.split("_")[0] / sample.name, sample.read_bytes())
    fabricate.cli("imagenet", "--train-dir", train, "--output-dir", tmp_path / "out",
                  "--train-shards", "1", "--no-background", "--no-progress", "--workers", "1")
    found = {(text.split(",")[0], label) for text, label in labels_by_text(tmp_path / "out")}
    assert found == {("tench", 0), ("toilet tissue", 999)}


def test_validation_labels_file_is_checked_against_ilsvrc(tmp_path):
    packaged = labels.packaged_file(labels.VALIDATION_FILE)
    assert labels.validation_labels_differ(None) is None
    same = tmp_path / "same.txt"
    same.write_text(packaged)
    assert labels.validation_labels_differ(str(same)) is None
    lines = packaged.splitlines(keepends=True)
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("".join([lines[1], lines[0]] + lines[2:]))
    message = labels.validation_labels_differ(str(swapped))
    assert message and "not the ILSVRC-2012 validation labels file" in message
    # and the command says so
    val = tmp_path / "val"
    sample = sorted(fabricate.shared_data("imagenet-samples").iterdir())[0]
    fabricate.write(val / "ILSVRC2012_val_00000001.JPEG", sample.read_bytes())
    result = fabricate.cli("imagenet", "--validation-dir", val, "--validation-labels-file", swapped,
                           "--output-dir", tmp_path / "out", "--validation-shards", "1",
                           "--no-progress", "--workers", "1")
    assert "not the ILSVRC-2012 validation labels file" in result.output

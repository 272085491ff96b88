"""inception_data.input_fn end to end: shards built with the CLI, a golden shard in the
original writer's layout, sharding across input pipelines, determinism and errors."""

import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import inception_data
from inception_data import ReadOptions, labels
from tests import fabricate

GOLDEN = pathlib.Path(__file__).parent / "data" / "golden-original-00000-of-00001"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Shards built by the CLI from a synthetic tree: 4 train shards (15 images, 3 classes)."""
    root = tmp_path_factory.mktemp("reader")
    fabricate.image_tree(root / "train")
    out = root / "out"
    fabricate.build("--train-dir", root / "train", "--output-dir", out, "--shards", "4")
    return out


def batches(dataset, n=None):
    return [tuple(t.numpy() for t in batch) for batch in (dataset.take(n) if n else dataset)]


def test_training_batches_shape_dtype_range_labels(shards):
    dataset = inception_data.input_fn(str(shards / "train-*"), is_training=True, batch_size=4,
                                      image_size=64, seed=1)
    for images, labels_ in batches(dataset, 5):
        assert images.shape == (4, 64, 64, 3) and images.dtype == np.float32
        assert images.min() >= -1.0 and images.max() <= 1.0
        assert labels_.dtype == np.int32 and set(labels_) <= {1, 2, 3}


def test_evaluation_sees_every_example_once_with_partial_batch(shards):
    dataset = inception_data.input_fn(str(shards / "train-*"), is_training=False, batch_size=4,
                                      image_size=32, options=ReadOptions(with_metadata=True))
    names, sizes = [], []
    for images, _, meta in dataset:
        sizes.append(images.shape[0])
        names += [(t, n) for t, n in zip(meta["text"].numpy(), meta["filename"].numpy())]
    manifest = json.loads((shards / "manifest.json").read_text())
    assert len(names) == len(set(names)) == manifest["splits"]["train"]["written"] == 15
    assert sizes == [4, 4, 4, 3]
    dropped = inception_data.input_fn(str(shards / "train-*"), is_training=False, batch_size=4,
                                      image_size=32, options=ReadOptions(drop_remainder=True))
    assert sum(b[0].shape[0] for b in batches(dropped)) == 12


def test_seeded_deterministic_runs_repeat_and_unseeded_differ(shards):
    def first(seed):
        dataset = inception_data.input_fn(str(shards / "train-*"), is_training=True,
                                          batch_size=5, image_size=32, seed=seed)
        return batches(dataset, 3)

    a, b = first(7), first(7)
    for (ia, la), (ib, lb) in zip(a, b):
        assert np.array_equal(ia, ib) and np.array_equal(la, lb)
    c, d = first(None), first(None)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(c, d))


def test_input_context_gives_disjoint_complete_coverage(shards):
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        dataset = inception_data.input_fn(str(shards / "train-*"), is_training=False,
                                          batch_size=3, image_size=16, input_context=context,
                                          options=ReadOptions(with_metadata=True))
        seen.append({(t, n) for _, _, m in dataset
                     for t, n in zip(m["text"].numpy(), m["filename"].numpy())})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 15
    too_many = tf.distribute.InputContext(num_input_pipelines=5, input_pipeline_id=0)
    with pytest.raises(ValueError, match="4 file.*5 input pipelines"):
        inception_data.input_fn(str(shards / "train-*"), is_training=False, batch_size=2,
                                input_context=too_many)


def test_pattern_without_files_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-\\*.*does not match any files"):
        inception_data.input_fn(str(tmp_path / "nothing-*"), is_training=True, batch_size=2)


def test_missing_key_and_bad_label_name_the_file(tmp_path, shards):
    bad = tmp_path / "bad-00000-of-00001"
    example = tf.train.Example()
    example.features.feature["image/encoded"].bytes_list.value.append(fabricate.jpeg_bytes())
    example.features.feature["image/height"].int64_list.value.append(24)
    example.features.feature["image/width"].int64_list.value.append(32)
    with tf.io.TFRecordWriter(str(bad)) as writer:
        writer.write(example.SerializeToString())
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs image/encoded(.|\n)*image/"
                       "class/label:(.|\n)*-1(.|\n)*in file(.|\n)*bad-00000"):
        batches(inception_data.input_fn(str(bad), is_training=False, batch_size=1))
    with pytest.raises(tf.errors.InvalidArgumentError, match="image/class/label in 0..2(.|\n)*"
                       "image/class/label:(.|\n)*3(.|\n)*in file(.|\n)*train-0000"):
        batches(inception_data.input_fn(str(shards / "train-*"), is_training=False,
                                        batch_size=15, image_size=16,
                                        options=ReadOptions(num_classes=2)))


def test_golden_shard_in_the_original_layout_is_read():
    dataset = inception_data.input_fn(str(GOLDEN), is_training=False, batch_size=2,
                                      image_size=8, options=ReadOptions(with_metadata=True))
    images, labels_, meta = next(iter(dataset))
    assert labels_.numpy().tolist() == [1, 1000]
    assert meta["synset"].numpy().tolist() == [b"n01440764", b"n15075141"]
    assert meta["text"].numpy()[0] == b"tench, Tinca tinca"
    assert meta["boxes"][0].numpy().tolist()[0] == pytest.approx([0.3413, 0.068, 0.8133, 0.86])
    assert meta["boxes"][1].shape[0] == 0
    # uniform grey JPEGs: 200 and 40 map to about 0.57 and -0.69 in [-1, 1]
    assert images.numpy()[0].mean() == pytest.approx(200 / 127.5 - 1, abs=0.02)
    assert images.numpy()[1].mean() == pytest.approx(40 / 127.5 - 1, abs=0.02)
    train = inception_data.input_fn(str(GOLDEN), is_training=True, batch_size=2, image_size=8)
    assert next(iter(train))[0].shape == (2, 8, 8, 3)


def test_real_images_built_with_the_cli_read_back_with_right_labels(tmp_path):
    rels = fabricate.imagenet_tree(tmp_path / "train", synsets=40)
    synsets = [r.split("/")[0] for r in rels]
    (tmp_path / "labels.txt").write_text("\n".join(synsets) + "\n")
    odd = fabricate.shared_data("odd-images")
    for name in ("grayscale.jpg", "cmyk.jpg", "large-progressive-18mp.jpg", "rgba-alpha.png"):
        fabricate.write(tmp_path / "train" / synsets[0] / name, (odd / name).read_bytes())
    fabricate.build("--train-dir", tmp_path / "train", "--labels-file", tmp_path / "labels.txt",
                    "--output-dir", tmp_path / "out", "--shards", "3")
    label_map = labels.parse_labels((tmp_path / "out" / "labels.txt").read_text())
    count = 0
    for training in (False, True):
        dataset = inception_data.input_fn(
            str(tmp_path / "out" / "train-*"), is_training=training, batch_size=11,
            image_size=75, seed=3, options=ReadOptions(with_metadata=True, repeat=False,
                                                       num_classes=len(label_map)))
        for images, labels_, meta in dataset:
            assert images.shape[1:] == (75, 75, 3)
            for label, text in zip(labels_.numpy(), meta["text"].numpy()):
                assert label == label_map.index(text.decode())
                count += 1
    assert count == 2 * 44


FROM_FILES, IN_MEMORY = ReadOptions(cache_bytes=0), ReadOptions()


@pytest.mark.parametrize("read", [IN_MEMORY, FROM_FILES], ids=["memory", "files"])
def test_each_training_epoch_sees_every_example_exactly_once(shards, read):
    dataset = inception_data.input_fn(str(shards / "train-*"), is_training=True, batch_size=5,
                                      image_size=16, seed=3,
                                      options=read.replace(with_metadata=True))
    names = [pair for _, _, meta in dataset.take(9)
             for pair in zip(meta["text"].numpy(), meta["filename"].numpy())]
    epochs = [names[15 * e:15 * (e + 1)] for e in range(3)]
    for epoch in epochs:
        assert len(set(epoch)) == 15
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch


def test_every_iterator_of_a_seeded_training_dataset_yields_the_same_stream(shards):
    """Keras' fit makes more than one iterator of a training dataset on several towers; with
    tf.data's reshuffling each new iterator drew the next epoch order, and which drew first was
    a race (a seeded 2-tower run had two outcomes). Every iterator must give the one stream."""
    dataset = inception_data.input_fn(str(shards / "train-*"), is_training=True, batch_size=5,
                                      image_size=16, seed=3,
                                      options=ReadOptions(with_metadata=True))

    def stream(iterator, count=7):  # past the first epoch of 15 records
        return [name for _ in range(count) for name in next(iterator)[2]["filename"].numpy()]

    first = iter(dataset)
    head = stream(first)
    second = iter(dataset)  # made after the first one has read into its second epoch
    assert stream(second) == head
    assert stream(iter(dataset)) == head


def test_small_training_sets_are_read_from_their_files_once(shards, tmp_path):
    """Splits within ReadOptions.cache_bytes stay in memory after their first pass: later
    epochs read no file (here: the files are gone after the first epoch, and reading goes on);
    with cache_bytes=0 every epoch reads the files."""
    for read in (IN_MEMORY, FROM_FILES):
        copy = tmp_path / f"cache-{read.cache_bytes}"
        copy.mkdir()
        for path in shards.iterdir():
            if path.is_file():
                (copy / path.name).write_bytes(path.read_bytes())
        dataset = inception_data.input_fn(str(copy / "train-*"), is_training=True,
                                          batch_size=5, image_size=16, seed=1, options=read)
        batches_ = iter(dataset)
        first_epoch = [next(batches_) for _ in range(3)]  # 15 records
        for shard in copy.glob("train-*"):
            shard.unlink()
        if read is IN_MEMORY:
            assert len([next(batches_) for _ in range(6)]) == 6  # epochs 2 and 3 from memory
        else:
            with pytest.raises(tf.errors.InvalidArgumentError, match="cannot be read"):
                for _ in range(60):  # past what was read ahead
                    next(batches_)
        assert len(first_epoch) == 3


def test_uint8_output_is_the_float_output_before_scaling(shards):
    """ReadOptions(output="uint8"): the same crops, flips and resizes as the float output
    without colour jitter, rounded to 0..255; to_model_range on the device gives the float
    images back to within that rounding. Training and evaluation."""
    plain = inception_data.ReadOptions(distortions=None)
    small = inception_data.ReadOptions(distortions=None, output="uint8")
    def read(training, options):
        return batches(inception_data.input_fn(str(shards / "train-*"), training, 4,
                                               image_size=32, seed=5, options=options), 3)

    for training in (True, False):
        floats, bytes_ = read(training, plain), read(training, small)
        for (f, f_labels), (b, b_labels) in zip(floats, bytes_):
            assert b.dtype == np.uint8 and b.shape == f.shape
            np.testing.assert_array_equal(b_labels, f_labels)
            back = inception_data.to_model_range(b).numpy()
            assert np.abs(back - f).max() <= 1 / 255 + 1e-6


def test_uint8_output_asks_for_no_colour_jitter():
    with pytest.raises(ValueError, match="distortions=None"):
        inception_data.ReadOptions(output="uint8")
    with pytest.raises(ValueError, match="output='float16'"):
        inception_data.ReadOptions(output="float16")

"""The training order (inception_data/order.py) and where a reader is in it.

The pattern of the loaders that resume exactly (Grain's data_loader_test): read k batches,
rebuild the dataset from scratch at batch k, and the concatenation equals the uninterrupted
stream; for k = 0, mid-epoch, the last batch of an epoch and past one epoch. Plus: every epoch
is a permutation of the split drawn from (seed, epoch); workers read disjoint parts whose union
is the stream; the records before the start are not read; a golden order pins the shuffle."""

import math
import shutil

import numpy as np
import pytest
import tensorflow as tf

import inception_data
from inception_data import ReadOptions, order, read_errors
from tests import fabricate

RECORDS, BATCH = 20, 4  # 5 batches per epoch
FROM_FILES, IN_MEMORY = ReadOptions(cache_bytes=0, with_metadata=True), \
    ReadOptions(with_metadata=True)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """20 images in 4 classes, 3 shards (7, 7, 6 records)."""
    root = tmp_path_factory.mktemp("order")
    for i in range(RECORDS):
        fabricate.write(root / "train" / f"class{i % 4}" / f"{i:02d}.jpg",
                        fabricate.jpeg_bytes(40, 30, seed=i))
    fabricate.build("--train-dir", root / "train",
                  "--output-dir", root / "out", "--shards", "3")
    return root / "out"


def stream(pattern, batches, *, start=0, seed=3, read=IN_MEMORY, context=None, batch=BATCH):
    """`batches` batches from batch `start`: [(images, labels, file names)]."""
    dataset = inception_data.input_fn(str(pattern), is_training=True, batch_size=batch,
                                      image_size=24, seed=seed, start_batch=start,
                                      input_context=context, options=read)
    return [(images.numpy(), labels.numpy(), tuple(meta["filename"].numpy()))
            for images, labels, meta in dataset.take(batches)]


def same(one, two):
    return len(one) == len(two) and all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
        for a, b in zip(one, two))


@pytest.mark.parametrize("read", [IN_MEMORY, FROM_FILES], ids=["memory", "files"])
def test_resuming_at_batch_k_continues_the_uninterrupted_stream(shards, read):
    whole = stream(shards / "train-*", 12, read=read)
    for k in (0, 2, 4, 5, 7):  # start, mid-epoch, an epoch's last batch, the next, past one
        head = whole[:k]
        tail = stream(shards / "train-*", 12 - k, start=k, read=read)
        assert same(head + tail, whole), k


@pytest.mark.parametrize("read", [IN_MEMORY, FROM_FILES], ids=["memory", "files"])
def test_a_start_a_billion_batches_in_reads_only_its_own_records(shards, read):
    """The stream at batch 10**9 (200 million epochs on) begins with the records the order
    puts there, found by arithmetic: nothing before it is read or decoded (replaying it would
    not end), and the images equal those at the same records from position 0 of that epoch's
    order."""
    start = 10 ** 9
    names = stream(shards / "train-*", 1, start=start, read=read)[0][2]
    expected = [int(order.record_at(tf.constant(start * BATCH + i, tf.int64), seed=3,
                                     records=RECORDS)) for i in range(BATCH)]
    files = sorted(str(p) for p in shards.glob("train-*"))
    numbered = [name for path in files for name in _names_in(path)]  # records in shard order
    assert list(names) == [numbered[r] for r in expected]


def _names_in(path):
    from inception_data import schema

    for record in tf.data.TFRecordDataset(path):
        yield tf.io.parse_single_example(record, {schema.FILENAME: tf.io.FixedLenFeature(
            [], tf.string)})[schema.FILENAME].numpy()


def test_every_epoch_is_a_new_permutation_drawn_from_the_seed(shards):
    def epochs(seed):
        names = [n for _, _, batch in stream(shards / "train-*", 15, seed=seed) for n in batch]
        return [names[RECORDS * e:RECORDS * (e + 1)] for e in range(3)]

    first = epochs(3)
    for epoch in first:
        assert len(set(epoch)) == RECORDS  # every record exactly once
    assert first[0] != first[1] != first[2] != first[0]
    assert epochs(3) == first  # the same on every run
    assert epochs(4)[0] != first[0]


def test_the_order_is_pinned():
    """A golden order: an order that changes (a TensorFlow release with another index_shuffle)
    changes every seeded run and every resumed one; this fails first, by name."""
    got = [int(order.record_at(tf.constant(q, tf.int64), seed=1, records=10))
           for q in range(20)]
    assert got == GOLDEN_ORDER, got


GOLDEN_ORDER = [9, 6, 8, 7, 1, 2, 3, 5, 4, 0, 6, 5, 2, 4, 1, 3, 7, 0, 9, 8]  # TF 2.21, recorded


@pytest.mark.parametrize("pipelines, replicas", [(1, 2), (2, 1), (2, 2), (3, 1), (3, 2)])
def test_pipelines_read_disjoint_parts_whose_union_is_the_stream(pipelines, replicas):
    """Step k of any layout covers global positions kG .. (k + 1)G - 1 (G: the global batch),
    so a run that resumes with another number of workers reads the same records per step."""
    layouts = [order.Layout(BATCH, pipelines, w, replicas) for w in range(pipelines)]
    per_step = BATCH * pipelines * replicas
    for step in range(4):
        positions = []
        for layout in layouts:
            for batch in range(layout.first_batch(step), layout.first_batch(step + 1)):
                positions += [layout.position(batch * BATCH + i) for i in range(BATCH)]
        assert sorted(positions) == list(range(step * per_step, (step + 1) * per_step))


def test_two_workers_read_the_records_one_worker_reads_at_every_step(shards):
    """Through input_fn: 2 pipelines of 1 replica each against 1 pipeline of 2 replicas (the
    same global batch), from step 3 on (resumed): the same records, the same images."""
    one = stream(shards / "train-*", 6, start=3,
                 context=tf.distribute.InputContext(1, 0, 2))  # batches 2k, 2k + 1 = step k
    two = [stream(shards / "train-*", 3, start=3, context=tf.distribute.InputContext(2, w, 2))
           for w in range(2)]
    assert same(one, [batch for step in zip(*two) for batch in step])


def test_batches_mix_classes_as_a_perfect_shuffle_would_on_one_class_per_shard():
    """Shards that each hold one class (users' own TFRecords written class by class): the mean
    entropy of the classes in a batch, against a uniform permutation of the split."""
    classes, per_class, batch = 10, 100, 32
    labels = np.repeat(np.arange(classes), per_class)  # record r is in shard r // per_class
    ours = [labels[int(order.record_at(tf.constant(q, tf.int64), seed=5, records=labels.size))]
            for q in range(labels.size)]
    perfect = np.random.default_rng(0).permutation(labels)
    assert order.batch_entropy(ours, batch) >= 0.95 * order.batch_entropy(perfect, batch)


def test_shards_without_index_files_give_the_same_stream(shards, tmp_path):
    """Shards copied without their index folder (or written by another tool): the record
    headers are read instead, and the stream is the same."""
    for path in shards.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path / path.name)
    assert same(stream(tmp_path / "train-*", 7, start=2), stream(shards / "train-*", 7, start=2))


def copy_with(shards, tmp_path, damage):
    """A copy of the build (index files too) whose first shard is truncated inside its last
    record, or has a byte flipped in the data of its second record."""
    out = tmp_path / "out"
    shutil.copytree(shards, out)
    shard = out / "train-00000-of-00003"
    data = bytearray(shard.read_bytes())
    if damage == "truncated":
        shard.write_bytes(bytes(data[:-100]))
    else:
        second = 16 + int.from_bytes(data[:8], "little")
        data[second + 200] ^= 0xFF
        shard.write_bytes(bytes(data))
    return out, shard


def test_a_truncated_shard_is_named_when_input_fn_is_called(shards, tmp_path, capfd):
    out, shard = copy_with(shards, tmp_path, "truncated")
    with pytest.raises(read_errors.DamagedShard) as raised:
        stream(out / "train-*", 1)
    size = shard.stat().st_size
    assert str(raised.value).startswith(
        f"input_fn: {shard} is truncated: it has {size} bytes, its index ")
    assert "(6 of its 7 records are whole): rebuild it" in str(raised.value)
    seen = [name for _, _, name in one_epoch_skipping(out)]  # the 6 whole records, the others
    assert len(seen) == RECORDS - 1 and len(set(seen)) == RECORDS - 1
    assert f"warning: input_fn: {shard} is truncated" in capfd.readouterr().err


def one_epoch_skipping(out, read=IN_MEMORY):
    dataset = inception_data.input_fn(str(out / "train-*"), is_training=True, batch_size=1,
                                      image_size=24, seed=3, on_error="skip",
                                      options=read.replace(repeat=False))
    return [(i, label, tuple(m["filename"].numpy())[0]) for i, label, m in dataset]


@pytest.mark.parametrize("read", [IN_MEMORY, FROM_FILES], ids=["memory", "files"])
def test_a_damaged_record_is_named_with_its_shard_and_skip_leaves_it_out(shards, tmp_path,
                                                                        capfd, read):
    """A flipped byte inside a record (the shard's size is right): in memory it is found when
    the split is read in, so input_fn raises at once; from the files, when the record is read,
    inside tf.data: the error's text is the line, and from_tf_error gives the typed error."""
    out, shard = copy_with(shards, tmp_path, "corrupted")
    if read is IN_MEMORY:
        with pytest.raises(read_errors.DamagedShard) as raised:
            stream(out / "train-*", 10, read=read)
        typed = raised.value
    else:
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            stream(out / "train-*", 10, read=read)
        typed = read_errors.from_tf_error(raised.value)
        assert isinstance(typed, read_errors.DamagedShard), raised.value.message[-500:]
        with pytest.raises(read_errors.DamagedShard) as named:  # a user's loop, one line
            with read_errors.named():
                stream(out / "train-*", 10, read=read)
        assert str(named.value) == str(typed) and "function_node" not in str(named.value)
    assert typed.detail.startswith(f"{shard}: its record 1 of 7 (at byte ")
    assert "(its data CRC does not hold: the bytes are damaged): rebuild it" in typed.detail
    seen = [name for _, _, name in one_epoch_skipping(out, read)]
    assert len(seen) == RECORDS - 1 and len(set(seen)) == RECORDS - 1
    assert f"warning: input_fn: {shard}: its record 1 of 7" in capfd.readouterr().err


def test_start_batch_resumes_seeded_training_streams_only(shards):
    pattern = str(shards / "train-*")
    with pytest.raises(ValueError, match="start_batch=2 resumes a seeded training stream"):
        inception_data.input_fn(pattern, is_training=True, batch_size=2, start_batch=2)
    with pytest.raises(ValueError, match="start_batch=2 resumes a seeded training stream"):
        inception_data.input_fn(pattern, is_training=False, batch_size=2, seed=1,
                                start_batch=2)
    with pytest.raises(read_errors.StartBeyondEnd, match="start_batch=5 begins at position 20 "
                                                         "of a one-epoch stream of 20 records"):
        inception_data.input_fn(pattern, is_training=True, batch_size=BATCH, seed=1,
                                start_batch=5, options=ReadOptions(repeat=False))
    last = stream(shards / "train-*", 9, start=4, read=IN_MEMORY.replace(repeat=False))
    assert len(last) == 1  # one epoch: batch 4 is its last


def test_input_fn_names_the_options_it_no_longer_takes(shards):
    pattern = str(shards / "train-*")
    with pytest.raises(TypeError, match=r"options=inception_data.ReadOptions\(distortions="):
        inception_data.input_fn(pattern, is_training=True, batch_size=2, distortions=None)
    with pytest.raises(TypeError, match="shuffle_buffer=...\\): the training order is a new "
                                        "permutation"):
        inception_data.input_fn(pattern, is_training=True, batch_size=2, shuffle_buffer=10)
    assert math.isclose(ReadOptions().min_crop_area, 0.05)


def test_index_files_written_for_shards_without_them_are_the_builds(shards, tmp_path):
    """`inception-data index` writes, from the record headers, what the build wrote."""
    for path in shards.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path / path.name)
    result = fabricate.cli("index", tmp_path / "train-*")
    assert "wrote 3 index file(s)" in result.output
    for index in (shards / "index").glob("train-*.idx"):
        assert (tmp_path / "index" / index.name).read_bytes() == index.read_bytes()
    assert "wrote 0 index file(s); 3 shard(s) had one already" in \
        fabricate.cli("index", tmp_path / "train-*").output

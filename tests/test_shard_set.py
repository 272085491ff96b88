"""A shard set that lacks shards is an error naming them, for input_fn and `inspect --verify`,
from the `-of-N` names, the manifest and file sizes only."""

import logging
import os

import pytest

from inception_data import reader, shard_set
from tests import fabricate


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("complete")
    for c in range(2):
        for i in range(6):
            fabricate.write(root / "train" / f"class{c}" / f"{c}{i}.jpg",
                            fabricate.jpeg_bytes(24, 16, seed=10 * c + i))
    fabricate.cli("build", "--no-progress", "--workers", "1", "--train-dir", root / "train",
                  "--output-dir", root / "out", "--shards", "3")
    return root / "out"


def records(pattern, **kwargs):
    dataset = reader.input_fn(pattern, is_training=False, batch_size=4, image_size=16, **kwargs)
    return sum(int(images.shape[0]) for images, _ in dataset)


def test_a_complete_set_reads_whole(built):
    assert shard_set.ShardSet.read(sorted(map(str, built.glob("train-*")))).incomplete() == []
    assert records(str(built / "train-*")) == 12


def test_a_missing_or_empty_shard_is_named(built, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    for path in built.iterdir():
        if path.is_file():
            (out / path.name).write_bytes(path.read_bytes())
    os.remove(out / "train-00001-of-00003")
    (out / "train-00002-of-00003").write_bytes(b"")  # what a crashed copy leaves
    pattern = str(out / "train-*")
    with pytest.raises(reader.IncompleteShards) as raised:
        records(pattern)
    message = str(raised.value)
    assert f"{out}/train-00001-of-00003 is missing (train-00000-of-00003 says there are 3)" \
        in message
    assert f"{out}/train-00002-of-00003 is empty, but the manifest counts" in message
    with caplog.at_level(logging.WARNING, logger="inception_data.reader"):
        assert 0 < records(pattern, allow_incomplete=True) < 12
    assert "train-00001-of-00003 is missing" in caplog.text
    result = fabricate.cli("inspect", "--verify", pattern, expect=1)
    assert "train-00001-of-00003 is missing" in result.output
    assert "train-00002-of-00003 is empty" in result.output


def test_one_shard_of_three_names_the_other_two(built, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for path in built.iterdir():
        if path.is_file() and not path.name.startswith("train-00002"):
            (out / path.name).write_bytes(path.read_bytes())
    gaps = shard_set.ShardSet.read([str(out / "train-00000-of-00003")]).incomplete()
    assert gaps == [f"{out}/train-00001-of-00003 is missing (train-00000-of-00003 says there are 3)",
                    f"{out}/train-00002-of-00003 is missing (train-00000-of-00003 says there are 3)"]


def test_a_folder_given_for_shards_names_the_pattern_to_give(built):
    result = fabricate.cli("inspect", built, expect=2)
    assert f"{built} is a folder, not a shard file: give the shards, e.g. '{built}/train-*'" \
        in result.output
    with pytest.raises(FileNotFoundError, match="is a folder"):
        records(str(built))


def test_an_image_given_for_shards_is_not_a_tfrecord_file(tmp_path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(fabricate.jpeg_bytes(24, 16))
    result = fabricate.cli("inspect", image, expect=1)
    assert f"{image}: not a TFRecord file, or damaged at its start" in result.output


def damaged_copy(built, tmp_path, damage):
    """A copy of the build whose second shard is truncated at 2/3 or has a byte flipped at 3/4."""
    out = tmp_path / "out"
    out.mkdir()
    for path in built.iterdir():
        if path.is_file():
            (out / path.name).write_bytes(path.read_bytes())
    shard = out / "train-00001-of-00003"
    whole = shard.read_bytes()
    if damage == "truncated":
        shard.write_bytes(whole[: len(whole) * 2 // 3])
    else:
        flipped = bytearray(whole)
        flipped[len(whole) * 3 // 4] ^= 0xFF
        shard.write_bytes(bytes(flipped))
    return out, shard


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_skip_reads_past_a_damaged_shard_and_names_it(built, tmp_path, damage, capfd):
    """on_error="skip": the records of a damaged shard up to the damage, every other shard, and
    one line naming the shard and what was lost; each record at most once."""
    import tensorflow as tf

    out, shard = damaged_copy(built, tmp_path, damage)
    dataset = reader.input_fn(str(out / "train-*"), is_training=False, batch_size=4,
                              image_size=16, on_error="skip", with_metadata=True)
    names = [name.decode() for _, _, meta in dataset for name in meta["filename"].numpy()]
    assert len(names) == len(set(names)) and 8 <= len(names) < 12, names  # 4 per shard
    intact = reader.input_fn(str(built / "train-*"), is_training=False, batch_size=4,
                             image_size=16, with_metadata=True)
    every = [name.decode() for _, _, meta in intact for name in meta["filename"].numpy()]
    assert set(names) < set(every)
    lost = 12 - len(names)
    err = capfd.readouterr().err
    assert (f"warning: input_fn: {shard} is damaged after its record {4 - lost} of 4: the "
            f"other {lost} record(s) of that shard are skipped") in err, err
    # with "raise", the same shards stop with TensorFlow's error (the trainer names the shard)
    with pytest.raises(tf.errors.DataLossError):
        records(str(out / "train-*"))


def test_skip_refuses_a_shard_that_does_not_open(built, tmp_path):
    """tf.data's ignore_errors would retry such a shard for ever: named at once instead."""
    out, shard = damaged_copy(built, tmp_path, "truncated")
    shard.unlink()
    shard.symlink_to(tmp_path / "moved")  # listed, but nothing to read (a link left dangling)
    with pytest.raises(FileNotFoundError, match=f"{shard} cannot be read"):
        reader.input_fn(str(out / "train-*"), is_training=False, batch_size=4, image_size=16,
                        on_error="skip", allow_incomplete=True)


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_the_trainer_names_a_damaged_shard(built, tmp_path, damage):
    """TensorFlow's own error names no file ("corrupted record at 3318"); the trainer's
    message names the shard and what is wrong with it."""
    import tensorflow as tf

    from trainer import data

    out, shard = damaged_copy(built, tmp_path, damage)
    pattern = str(out / "train-*")
    with pytest.raises(tf.errors.DataLossError) as raised:
        records(pattern)
    assert str(shard) not in raised.value.message  # what TensorFlow says
    message = data.read_error(raised.value, pattern)
    assert f"reading {pattern} failed: {shard} is {damage} at byte " in message, message
    assert "rebuild it" in message
    assert data.damaged_shard(raised.value.message, str(built / "train-*")) is None  # intact

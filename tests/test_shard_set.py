"""A shard set that lacks shards is an error naming them, for input_fn and `inspect --verify`,
from the `-of-N` names, the manifest and file sizes only."""

import logging
import os
import re

import pytest

from inception_data import reader, shard_reader, shard_set
from tests import fabricate


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("complete")
    fabricate.jpeg_tree(root / "train")
    fabricate.build("--train-dir", root / "train", "--output-dir", root / "out", "--shards", "3")
    return root / "out"


def records(pattern, allow_incomplete=False, **kwargs):
    dataset = reader.input_fn(pattern, is_training=False, batch_size=4, image_size=16,
                              options=reader.ReadOptions(allow_incomplete=allow_incomplete),
                              **kwargs)
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
    says = "(train-00000-of-00003 says there are 3)"
    assert gaps == [f"{out}/train-00001-of-00003 is missing {says}",
                    f"{out}/train-00002-of-00003 is missing {says}"]


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


def within(seconds, read):
    """read() in a thread, failing instead of hanging if it does not end in `seconds`."""
    import threading

    out = {}

    def run():
        try:
            out["value"] = read()
        except BaseException as err:  # handed to the test below
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"reading did not end in {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def read_names(pattern, allow_incomplete=False, **kwargs):
    dataset = reader.input_fn(pattern, is_training=False, batch_size=4, image_size=16,
                              options=reader.ReadOptions(with_metadata=True,
                                                         allow_incomplete=allow_incomplete),
                              **kwargs)
    return [name.decode() for _, _, meta in dataset for name in meta["filename"].numpy()]


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_shard_is_named_and_skip_reads_past_it(built, tmp_path, damage, capfd):
    """TensorFlow's own error names no file ("corrupted record at 2108"). "raise": an error
    naming the shard, what is wrong, where, and the records before it; "skip": the records of
    the damaged shard up to the damage, every other shard, each at most once, and one line."""
    import tensorflow as tf

    out, shard = damaged_copy(built, tmp_path, damage)
    pattern = str(out / "train-*")
    names = read_names(pattern, on_error="skip")
    assert len(names) == len(set(names)) and 8 <= len(names) < 12, names  # 4 per shard
    assert set(names) < set(read_names(str(built / "train-*")))
    lost = 12 - len(names)
    err = capfd.readouterr().err
    assert (f"warning: input_fn: {shard} is {damage} at byte ") in err, err
    size = shard.stat().st_size
    assert (f" of {size}, after its record {4 - lost} of 4: the other {lost} record(s) of "
            f"that shard are skipped (on_error='skip'); rebuild it") in err, err
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        records(pattern)
    assert (f"input_fn: {shard} is {damage} at byte ") in raised.value.message
    assert (f" of {size}, after its record {4 - lost} of 4: rebuild it (delete it and run the "
            f"same build with --resume) or copy it again") in raised.value.message


def test_without_a_manifest_the_rest_of_a_damaged_shard_is_counted_in_bytes(built, tmp_path,
                                                                            capfd):
    """Shards of another tool (no manifest): the bytes read against the file's size still
    find the damage."""
    out, shard = damaged_copy(built, tmp_path, "truncated")
    (out / shard_set.MANIFEST).unlink()
    names = read_names(str(out / "train-*"), on_error="skip")
    err = capfd.readouterr().err
    consumed = int(err.split(f"{shard} is truncated at byte ")[1].split()[0])
    assert (f"after its record {len(names) - 8}: the rest of that shard "
            f"({shard.stat().st_size - consumed} bytes) is skipped") in err, err


def test_a_shard_that_does_not_open_is_named_and_does_not_hang(built, tmp_path, capfd):
    """tf.data's ignore_errors, which reads past damage, would retry opening such a shard for
    ever; input_fn checks that each shard opens when it is called and before each pass over it:
    "raise" names it at once, "skip" names it and reads the others."""
    from inception_data import read_errors

    out, shard = damaged_copy(built, tmp_path, "truncated")
    shard.unlink()
    shard.symlink_to(tmp_path / "moved")  # listed, but nothing to read (a link left dangling)
    pattern = str(out / "train-*")
    with pytest.raises(read_errors.DamagedShard, match=f"input_fn: {shard} cannot be read: "
                                                        f"rebuild it"):
        within(60, lambda: records(pattern, allow_incomplete=True))
    names = within(60, lambda: read_names(pattern, on_error="skip", allow_incomplete=True))
    assert len(names) == 8
    assert (f"warning: input_fn: {shard} cannot be read (") in capfd.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_the_trainer_names_a_damaged_shard(built, tmp_path, damage):
    """The trainer's one line is input_fn's, without TensorFlow's wrapping."""
    import tensorflow as tf

    from trainer import data

    out, shard = damaged_copy(built, tmp_path, damage)
    pattern = str(out / "train-*")
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        records(pattern)
    message = data.read_error(raised.value, pattern)
    assert message.startswith(f"reading {pattern} failed: {shard} is {damage} at byte "), message
    assert message.endswith("copy it again; --on-error skip reads the records before the damage "
                            "and the other shards"), message


def test_a_shard_that_reads_whole_where_its_reader_stopped_is_called_a_read_error(built):
    """When the record at the byte where reading stopped reads whole now (a network failure,
    not damage), the line says so instead of calling the shard damaged."""
    shard = str(built / "train-00001-of-00003")
    whole = open(shard, "rb").read()
    second = 16 + int.from_bytes(whole[:8], "little")  # where the second record starts
    line = shard_reader._damage(shard, 1, second, len(whole), 4, "raise")
    assert line.startswith(f"input_fn: {shard} could not be read past byte {second} of "
                           f"{len(whole)} (a read error: the record there reads whole now"), line
    assert "after its record 1 of 4" in line


def whole_copy(built, tmp_path):
    """A copy of the build, index files and manifest included."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(built, out)
    return out


def names(pattern, **options):
    dataset = reader.input_fn(pattern, is_training=True, batch_size=1, image_size=16, seed=1,
                              options=reader.ReadOptions(with_metadata=True, repeat=False,
                                                         drop_remainder=False, **options))
    return [m["filename"].numpy()[0] for _, _, m in dataset]


def refused_everywhere(out, says):
    """inspect exits 1 naming it, input_fn (training and evaluation) raises ShardMismatch with
    the line, train.py exits 2 with one line."""
    from inception_data import read_errors
    from tests.test_train_runs import run_train

    pattern = str(out / "train-*")
    result = fabricate.cli("inspect", pattern, expect=1)
    assert says in result.output, result.output
    for training in (True, False):
        with pytest.raises(read_errors.ShardMismatch, match=re.escape(says)):
            reader.input_fn(pattern, is_training=training, batch_size=2, image_size=16)
    output = run_train("--data-dir", out, "--train-dir", out.parent / "run", "--model", "tiny",
                       "--max-steps", 1, expect=2)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0] and "Traceback" not in output, output[-2000:]


def test_a_stray_shard_is_refused_and_allow_incomplete_reads_it(built, tmp_path):
    """A copy of shard 0 as `train-00003-of-00003` (what an interrupted copy leaves)."""
    import shutil

    out = whole_copy(built, tmp_path)
    shutil.copy(out / "train-00000-of-00003", out / "train-00003-of-00003")
    refused_everywhere(out, f"{out}/train-00003-of-00003 is shard 3 of 3 by its name, but 3 "
                            f"shards are numbered 0 to 2: a copy or a leftover; delete it")
    assert len(names(str(out / "train-*"), allow_incomplete=True)) == 16  # 12 and its 4


def test_shards_of_another_build_are_refused(built, tmp_path):
    import shutil

    out = whole_copy(built, tmp_path)
    shutil.copy(out / "train-00000-of-00003", out / "train-00000-of-00002")
    refused_everywhere(out, f"says there are 2 train shards, {out}/train-00000-of-00003 says 3: "
                            f"shards of two builds are mixed")


@pytest.mark.parametrize("edit", ["doubled", "one zero"])
def test_manifest_counts_that_are_not_the_shards_are_refused(built, tmp_path, edit):
    """Every count doubled (and the total), or one shard's count set to 0: the index files and
    sizes say otherwise (no pass over the data)."""
    import json

    out = whole_copy(built, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    split = manifest["splits"]["train"]
    if edit == "doubled":
        split["shards"] = {name: 2 * n for name, n in split["shards"].items()}
        split["written"] *= 2
    else:
        split["shards"]["train-00001-of-00003"] = 0
    (out / "manifest.json").write_text(json.dumps(manifest))
    if edit == "doubled":  # the manifest agrees with itself; each shard's index does not
        refused_everywhere(out, f"{out}/train-00000-of-00003 holds 4 records (by its index "
                                f"file), its manifest counts 8")
    else:
        refused_everywhere(out, f"{out}/manifest.json says 12 train records were written, but "
                                f"its train shards count 8")

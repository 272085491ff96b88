"""Records that do not decode: what input_fn does with them unchecked, the one-time check
(`inspect --verify --save-verdict`) that names them, and input_fn's use of its verdict."""

import json
import logging
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from inception_data import reader, shard_set
from tests import fabricate


def filenames(pattern, drop_remainder=None, **kwargs):
    dataset = reader.input_fn(pattern, batch_size=1, image_size=16, options=reader.ReadOptions(
        with_metadata=True, repeat=False, drop_remainder=drop_remainder), **kwargs)
    return sorted(m["filename"].numpy()[0].decode() for _, _, m in dataset)


def test_unchecked_shards_raise_tensorflows_error_or_skip_the_record(tmp_path):
    shard = fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001")
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid JPEG data"):
        filenames(shard, is_training=False)
    good = ["0.jpg", "1.jpg", "3.jpg", "4.jpg"]
    assert filenames(shard, is_training=False, on_error="skip") == good
    assert filenames(shard, is_training=True, on_error="skip") == good
    with pytest.raises(ValueError, match="on_error"):
        reader.input_fn(shard, is_training=False, batch_size=1, on_error="ignore")


def test_a_skipped_record_is_logged_with_tensorflows_reason(tmp_path):
    shard = fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001")
    code = ("import sys; from inception_data import reader\n"
            "d = reader.input_fn(sys.argv[1], is_training=False, batch_size=2, image_size=16,"
            " on_error='skip')\nprint('records', sum(int(b[0].shape[0]) for b in d))")
    result = subprocess.run([sys.executable, "-c", code, shard], capture_output=True, text=True,
                            env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
                            timeout=300)
    assert "records 4" in result.stdout, result.stderr[-2000:]
    assert result.stderr.count("Error raised with error message") == 1
    assert "Invalid JPEG data" in result.stderr


def test_the_check_names_bad_records_and_input_fn_uses_its_verdict(tmp_path, caplog):
    shard = fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001", 6, bad=(2, 5))
    result = fabricate.cli("inspect", "--verify", shard, expect=1)
    assert f"{shard}: record 2: 2.jpg: image does not decode in TensorFlow" in result.output
    assert f"{shard}: record 5: 5.jpg: image does not decode in TensorFlow" in result.output
    assert "2 record(s) that do not decode" in result.output
    assert not (tmp_path / shard_set.VERDICT).exists()  # only when asked
    fabricate.cli("inspect", "--verify", "--save-verdict", shard, expect=1)
    verdict = json.loads((tmp_path / shard_set.VERDICT).read_text())
    entry = verdict["shards"]["train-00000-of-00001"]
    assert entry["records"] == 6 and [index for index, _ in entry["bad"]] == [2, 5]
    assert verdict["manifest_sha256"] is None and entry["bytes"] == len(open(shard, "rb").read())
    assert shard_set.ShardSet.read([shard]).checked()
    # "raise" refuses before reading, naming both records; "skip" leaves out exactly them
    with pytest.raises(reader.UndecodableRecords, match=r"record 2: .*record 5: "):
        reader.input_fn(shard, is_training=True, batch_size=1)
    with caplog.at_level(logging.WARNING, logger="inception_data.reader"):
        good = ["0.jpg", "1.jpg", "3.jpg", "4.jpg"]
        assert filenames(shard, is_training=False, on_error="skip") == good
        assert filenames(shard, is_training=True, on_error="skip", seed=1) == good
    assert f"skipping {shard} record 2: " in caplog.text
    assert f"skipping {shard} record 5: " in caplog.text


def test_a_verdict_stops_counting_once_the_shards_change(tmp_path):
    shard = fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001")
    fabricate.cli("inspect", "--verify", "--save-verdict", shard, expect=1)
    assert shard_set.ShardSet.read([shard]).bad_records()
    fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001", 4, bad=(1,))  # rewritten
    assert not shard_set.ShardSet.read([shard]).checked()
    assert shard_set.ShardSet.read([shard]).bad_records() == {}
    # beside a manifest, the verdict is bound to that manifest
    (tmp_path / "manifest.json").write_text(json.dumps({"settings": {"verify": "fast"}}))
    fabricate.cli("inspect", "--verify", "--save-verdict", shard, expect=1)
    assert shard_set.ShardSet.read([shard]).bad_records()[shard][0][0] == 1
    (tmp_path / "manifest.json").write_text(json.dumps({"settings": {"verify": "fast"},
                                                        "rebuilt": True}))
    assert not shard_set.ShardSet.read([shard]).checked()


def test_shards_built_with_decode_verification_count_as_checked(tmp_path):
    shard = fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001")
    assert not shard_set.ShardSet.read([shard]).checked()  # no manifest
    (tmp_path / "manifest.json").write_text(json.dumps({"settings": {"verify": "fast"}}))
    assert not shard_set.ShardSet.read([shard]).checked()
    (tmp_path / "manifest.json").write_text(json.dumps({"settings": {"verify": "decode"}}))
    assert shard_set.ShardSet.read([shard]).checked()


def test_fuzzed_records_are_skipped_exactly_and_named_once_checked(tmp_path, caplog):
    """Mutations of real JPEGs that `--verify fast` keeps but TensorFlow cannot decode whole
    (benchmarks/fuzz_inputs.py --shard makes such shards)."""
    shard = str(tmp_path / "train-00000-of-00001")
    count, bad = fabricate.fuzzed_shard(tmp_path / "train-00000-of-00001", 150, seed=3)
    assert len(bad) >= 10
    every = {f"{i}.jpg" for i in range(count)}
    good = every - {f"{i}.jpg" for i in bad}
    # unchecked: every good record is read; of the damaged ones only those whose central crop
    # (all evaluation decodes) still decodes
    read = set(filenames(shard, is_training=False, on_error="skip"))
    assert good <= read and read - good == {
        f"{i}.jpg" for i in bad if _central_crop_decodes(shard, i)}
    result = fabricate.cli("inspect", "--verify", "--save-verdict", shard, expect=1)
    assert f"{len(bad)} record(s) that do not decode" in result.output
    with caplog.at_level(logging.WARNING, logger="inception_data.reader"):
        assert set(filenames(shard, is_training=False, on_error="skip")) == good
        assert set(filenames(shard, is_training=True, on_error="skip", seed=2,
                             drop_remainder=False)) == good
    assert sorted(int(line.split(" record ")[1].split(":")[0])
                  for line in caplog.messages if "skipping" in line) == sorted(bad + bad)


def _central_crop_decodes(shard, index):
    from inception_data import preprocessing, schema, tfrecord

    with open(shard, "rb") as handle:
        encoded = schema.from_example(list(tfrecord.read_records(handle))[index])[schema.ENCODED]
    try:
        preprocessing.preprocess_eval(encoded, image_size=16)
    except tf.errors.OpError:
        return False
    return True


def test_a_verdict_holds_for_the_bytes_it_checked(tmp_path, capfd):
    """A record rewritten after the check (valid framing, the same size, an image that does
    not decode) makes the shard unchecked, said once; then on_error="skip" skips it too. A
    copy of the checked bytes (another time) keeps its verdict: the records' CRCs are those
    checked."""
    shard = fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001", 5, bad=(2,))
    fabricate.cli("inspect", "--verify", "--save-verdict", shard, expect=1)
    assert shard_set.ShardSet.read([shard]).checked()
    size = os.path.getsize(shard)
    fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001", 5, bad=(2, 3))
    assert os.path.getsize(shard) == size
    assert not shard_set.ShardSet.read([shard]).checked()
    assert "the shard was rewritten since (its records' CRCs differ); it is read as " \
           "unchecked" in capfd.readouterr().err
    assert filenames(shard, is_training=False, on_error="skip") == ["0.jpg", "1.jpg", "4.jpg"]
    fabricate.shard_with_bad_records(tmp_path / "train-00000-of-00001", 5, bad=(2,))
    os.utime(shard, ns=(1, 1))  # the checked bytes, another time: a copy
    assert shard_set.ShardSet.read([shard]).checked()

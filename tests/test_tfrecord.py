"""Our TFRecord framing against TensorFlow's writer and reader, and its CRC checks."""

import io

import pytest
import tensorflow as tf

from inception_data import tfrecord

RECORDS = [b"", b"x", b"hello tfrecord" * 100, bytes(range(256)) * 50]


def test_frames_exactly_what_tensorflows_writer_writes(tmp_path):
    theirs = tmp_path / "theirs.tfrecord"
    with tf.io.TFRecordWriter(str(theirs)) as writer:
        for record in RECORDS:
            writer.write(record)
    assert b"".join(tfrecord.frame(r) for r in RECORDS) == theirs.read_bytes()


def test_tensorflow_reads_our_records_and_we_read_theirs(tmp_path):
    ours = tmp_path / "ours.tfrecord"
    ours.write_bytes(b"".join(tfrecord.frame(r) for r in RECORDS))
    assert list(tf.data.TFRecordDataset(str(ours)).as_numpy_iterator()) == RECORDS
    with open(ours, "rb") as handle:
        assert list(tfrecord.read_records(handle)) == RECORDS


@pytest.mark.parametrize("position", ["length", "data", "data crc"])
def test_a_flipped_byte_is_caught_by_the_crc(tmp_path, position):
    framed = bytearray(tfrecord.frame(b"payload" * 10))
    index = {"length": 2, "data": 12 + 5, "data crc": len(framed) - 2}[position]
    framed[index] ^= 0x01
    with pytest.raises(tfrecord.CorruptRecord, match="CRC mismatch"):
        list(tfrecord.read_records(io.BytesIO(bytes(framed)), "shard-x"))
    path = tmp_path / "flipped.tfrecord"
    path.write_bytes(bytes(framed))
    with pytest.raises(tf.errors.DataLossError):  # and TensorFlow's own reader agrees
        list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())


def test_truncated_file_names_the_file_and_offset():
    framed = tfrecord.frame(b"a") + tfrecord.frame(b"payload")[:-3]
    with pytest.raises(tfrecord.CorruptRecord, match="shard-y: record at byte 17 is truncated"):
        list(tfrecord.read_records(io.BytesIO(framed), "shard-y"))


def test_writing_pieces_frames_exactly_as_frame(tmp_path):
    import io
    import random

    rng = random.Random(0)
    for _ in range(50):
        pieces = [rng.randbytes(rng.randrange(0, 5000)) for _ in range(rng.randrange(1, 4))]
        out = io.BytesIO()
        written = tfrecord.write_framed(out, pieces)
        assert out.getvalue() == tfrecord.frame(b"".join(pieces))
        assert written == len(out.getvalue())

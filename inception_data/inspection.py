"""Read shards back: counts per shard and per class, sample records, and a full check.

In: file patterns of TFRecord shards (local or gs://, read through TensorFlow's file I/O).
Out: a `ShardReport` per shard and a list of problems; nothing is written.
"""

from __future__ import annotations

import dataclasses

from inception_data import schema, tfrecord


@dataclasses.dataclass
class ShardReport:
    path: str
    records: int = 0
    per_class: dict = dataclasses.field(default_factory=dict)  # (label, text) -> count
    samples: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)


def check_record(fields: dict) -> list[str]:
    """Decodes the image of one parsed record and compares it with the record's fields."""
    import tensorflow as tf

    problems = []
    name = fields.get(schema.FILENAME, b"").decode(errors="replace")
    try:
        shape = tf.io.decode_jpeg(fields[schema.ENCODED], channels=3).shape
    except Exception as err:
        return [f"{name}: image does not decode: {str(err).splitlines()[0]}"]
    if (shape[0], shape[1]) != (fields[schema.HEIGHT], fields[schema.WIDTH]):
        problems.append(f"{name}: record says {fields[schema.HEIGHT]}x{fields[schema.WIDTH]} "
                        f"(HxW), image is {shape[0]}x{shape[1]}")
    if fields[schema.LABEL] < 1:
        problems.append(f"{name}: label {fields[schema.LABEL]} < 1 (0 is the background class)")
    if fields.get(schema.FORMAT, b"JPEG") != b"JPEG":
        problems.append(f"{name}: image/format is {fields[schema.FORMAT]!r}, expected b'JPEG'")
    return problems


def inspect_shard(path: str, *, verify: bool = False, samples: int = 0) -> ShardReport:
    """Reads one shard (checking both CRCs of every record) into a ShardReport."""
    import tensorflow as tf

    report = ShardReport(path)
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            for serialized in tfrecord.read_records(handle, path):
                report.records += 1
                _inspect_record(serialized, report, verify, samples)
    except (tfrecord.CorruptRecord, tf.errors.OpError) as err:
        report.problems.append(f"unreadable after {report.records} records: "
                               f"{str(err).splitlines()[0]}")
    return report


def _inspect_record(serialized: bytes, report: ShardReport, verify: bool, samples: int) -> None:
    try:
        fields = schema.from_example(serialized)
    except ValueError as err:
        report.problems.append(f"record {report.records}: {err}")
        return
    key = (fields[schema.LABEL], fields.get(schema.TEXT, b"").decode(errors="replace"))
    report.per_class[key] = report.per_class.get(key, 0) + 1
    if len(report.samples) < samples:
        report.samples.append({k: v for k, v in fields.items() if k != schema.ENCODED})
    if verify:
        report.problems += check_record(fields)

"""Read shards back: counts per shard and per class, sample records, a full check, and the
sizes of the stored images (with what `--max-size` would save, measured on a sample).

In: file patterns of TFRecord shards (local or gs://, read through TensorFlow's file I/O).
Out: a `ShardReport` per shard, a `SizeReport`, and a list of problems; nothing is written.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import statistics
import time

from inception_data import images, jpeg_header, schema, tfrecord

# Images count as large for the advice when at least this share of them stores more than
# LARGE_MEGAPIXELS: there decoding, not the rest of the input pipeline, sets the read speed.
LARGE_MEGAPIXELS = 1.0
LARGE_SHARE = 0.1
SUGGESTED_MAX_SIZE = 512  # FFCV's ImageNet setting, and what docs/building.md measures
SAMPLE_IMAGES = 32  # large images re-encoded and decoded to measure the saving


@dataclasses.dataclass
class SizeReport:
    """Stored image sizes of a set of shards; `sample` keeps the encoded bytes of the first
    SAMPLE_IMAGES images larger than `max_size` (for `estimate_saving`)."""

    max_size: int = SUGGESTED_MAX_SIZE
    records: int = 0
    encoded_bytes: int = 0
    progressive: int = 0
    large: int = 0  # more than LARGE_MEGAPIXELS
    over_max_size: int = 0
    bytes_over_max_size: int = 0
    megapixels: dict = dataclasses.field(
        default_factory=lambda: dict.fromkeys(images.MEGAPIXEL_BINS, 0))
    sizes: list = dataclasses.field(default_factory=list)  # megapixels of each record
    sample: list = dataclasses.field(default_factory=list)

    def add(self, encoded: bytes, width: int, height: int) -> None:
        self.records += 1
        self.encoded_bytes += len(encoded)
        self.megapixels[images.megapixel_bin(width, height)] += 1
        self.sizes.append(width * height / 1e6)
        self.large += width * height > LARGE_MEGAPIXELS * 1e6
        self.progressive += _is_progressive(encoded)
        if max(width, height) > self.max_size:
            self.over_max_size += 1
            self.bytes_over_max_size += len(encoded)
            if len(self.sample) < SAMPLE_IMAGES:
                self.sample.append(encoded)

    @property
    def median_megapixels(self) -> float:
        return statistics.median(self.sizes) if self.sizes else 0.0

    @property
    def images_are_large(self) -> bool:
        return self.records > 0 and self.large >= LARGE_SHARE * self.records


def _is_progressive(encoded: bytes) -> bool:
    from PIL import Image

    header = jpeg_header.parse(encoded)  # microseconds for plain JPEGs; Pillow otherwise
    if header is not None:
        return header.progressive
    try:
        with Image.open(io.BytesIO(encoded)) as image:  # the header only
            return bool(image.info.get("progressive"))
    except Exception:  # not a readable JPEG: `inspect --verify` reports it
        return False


def decode_seconds(encoded: list[bytes], repeats: int = 3) -> float:
    """Seconds one thread of TensorFlow's JPEG decoder takes per image of `encoded` (the best
    of `repeats` passes)."""
    import tensorflow as tf

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for data in encoded:
            tf.io.decode_jpeg(data, channels=3)
        best = min(best, (time.perf_counter() - start) / max(1, len(encoded)))
    return best


def estimate_saving(report: SizeReport) -> dict | None:
    """What `--max-size report.max_size` would save, measured on report.sample: the sampled
    images are scaled as a build would, and both versions are decoded. The decode-time ratio
    bounds the read speed-up from above (the rest of the input pipeline stays); bytes are
    extrapolated to every image over the limit. None when no image is over the limit."""
    if not report.sample:
        return None
    policy = images.SizePolicy(max_size=report.max_size)
    scaled = [images.normalise(data, policy=policy).encoded for data in report.sample]
    before, after = decode_seconds(report.sample), decode_seconds(scaled)
    ratio = sum(map(len, scaled)) / sum(map(len, report.sample))
    new_bytes = report.encoded_bytes - report.bytes_over_max_size * (1 - ratio)
    return {"sampled": len(scaled), "decode_ms_before": before * 1e3,
            "decode_ms_after": after * 1e3, "decode_speedup": before / after,
            "bytes_before": report.encoded_bytes, "bytes_after": int(new_bytes)}


@dataclasses.dataclass
class ShardReport:
    path: str
    records: int = 0
    bytes: int = 0  # of the records read, framing included
    per_class: dict = dataclasses.field(default_factory=collections.Counter)  # (label, text)
    samples: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)
    undecodable: list = dataclasses.field(default_factory=list)  # (record index, reason)


def decode_error(encoded: bytes) -> str | None:
    """Why training cannot decode a record's image (one line), or None: JPEGs with the check
    `build --verify decode` uses (images.tensorflow_decode_error), other formats (another
    tool's PNG records) with tf.io.decode_image, as input_fn reads them."""
    if images.sniff(encoded) == "JPEG":
        return images.tensorflow_decode_error(encoded)
    import tensorflow as tf

    try:
        tf.io.decode_image(encoded, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        return err.message.splitlines()[0][:200]
    return None


def _decoded_size(encoded: bytes) -> tuple[int, int]:
    """(height, width) of a record's image, from its header where it has a plain one."""
    header = jpeg_header.parse(encoded)
    if header is not None:
        return header.height, header.width
    import tensorflow as tf

    if images.sniff(encoded) == "JPEG":
        height, width, _ = tf.image.extract_jpeg_shape(encoded).numpy()
    else:
        height, width = tf.io.decode_image(encoded, expand_animations=False).shape[:2]
    return int(height), int(width)


def check_record(fields: dict, label_offset: int = 1) -> tuple[str | None, list[str]]:
    """Decodes the image of one parsed record as training would and compares the record's
    fields with it (`label_offset`: the shards' label convention, see
    shard_set.ShardSet.label_offset). Returns (why it does not decode or None, the other
    problems)."""
    name = fields.get(schema.FILENAME, b"").decode(errors="replace")
    error = decode_error(fields[schema.ENCODED])
    if error is not None:
        return error, []
    problems = []
    size = _decoded_size(fields[schema.ENCODED])
    if size != (fields[schema.HEIGHT], fields[schema.WIDTH]):
        problems.append(f"{name}: record says {fields[schema.HEIGHT]}x{fields[schema.WIDTH]} "
                        f"(HxW), image is {size[0]}x{size[1]}")
    if fields[schema.LABEL] < label_offset:
        why = "0 is the background class" if label_offset else "labels start at 0"
        problems.append(f"{name}: label {fields[schema.LABEL]} < {label_offset} ({why})")
    if fields.get(schema.FORMAT, b"JPEG") != b"JPEG":
        problems.append(f"{name}: image/format is {fields[schema.FORMAT]!r}, expected b'JPEG'")
    return None, problems


def sample_sizes(files: list[str], records: int = 128,
                 max_size: int = SUGGESTED_MAX_SIZE) -> SizeReport:
    """A SizeReport of the first `records` records of `files` (a quick look, not a census)."""
    import tensorflow as tf

    sizes = SizeReport(max_size=max_size)
    per_file = max(1, -(-records // len(files))) if files else 0
    for path in files:
        if sizes.records >= records:
            break
        with tf.io.gfile.GFile(path, "rb") as handle:
            for count, serialized in enumerate(tfrecord.read_records(handle, path)):
                if count >= per_file or sizes.records >= records:
                    break
                fields = schema.from_example(serialized)
                sizes.add(fields[schema.ENCODED], fields[schema.WIDTH], fields[schema.HEIGHT])
    return sizes


def inspect_shard(path: str, *, verify: bool = False, samples: int = 0,
                  sizes: SizeReport | None = None, label_offset: int = 1,
                  sheet=None, pool: concurrent.futures.Executor | None = None,
                  in_flight: int = 16) -> ShardReport:
    """Reads one shard (checking both CRCs of every record) into a ShardReport, the sizes of
    its images into `sizes` and sample tiles into `sheet` (a contact_sheet.Samples) when
    given. With `verify`, every image is decoded as training would (check_record), on `pool`'s
    threads when given (at most `in_flight` records held at once): TensorFlow's decoder
    releases the GIL, so threads use every core."""
    import tensorflow as tf

    report = ShardReport(path)
    pending: collections.deque = collections.deque()  # (index, fields, future), in order
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            for serialized in tfrecord.read_records(handle, path):
                fields = _inspect_record(serialized, report, samples, sizes, sheet)
                if verify and fields is not None:
                    pending.append((report.records, fields, pool.submit(
                        check_record, fields, label_offset) if pool else None))
                report.records += 1
                report.bytes += len(serialized) + tfrecord.FRAMING
                while len(pending) > in_flight:
                    _add_check(report, *pending.popleft(), label_offset)
    except (tfrecord.CorruptRecord, tf.errors.OpError) as err:
        report.problems.append(f"unreadable after {report.records} records: "
                               f"{str(err).splitlines()[0]}")
    while pending:
        _add_check(report, *pending.popleft(), label_offset)
    return report


def _add_check(report: ShardReport, index: int, fields: dict, future, label_offset: int):
    """One record's check_record result (from `future`, or computed here) into `report`."""
    error, problems = future.result() if future else check_record(fields, label_offset)
    if error is not None:
        report.undecodable.append((index, error))
        problems = [f"{fields.get(schema.FILENAME, b'').decode(errors='replace')}: image "
                    f"does not decode in TensorFlow: {error}"]
    report.problems += [f"record {index}: {problem}" for problem in problems]


def _inspect_record(serialized: bytes, report: ShardReport, samples: int,
                    sizes: SizeReport | None, sheet) -> dict | None:
    """Counts one record into `report`; returns its fields (None: not an Example, a problem)."""
    try:
        fields = schema.from_example(serialized)
    except ValueError as err:
        report.problems.append(f"record {report.records}: {err}")
        report.undecodable.append((report.records, f"not a readable tf.train.Example: {err}"))
        return None
    if sizes is not None:
        sizes.add(fields[schema.ENCODED], fields[schema.WIDTH], fields[schema.HEIGHT])
    if sheet is not None:
        sheet.add(fields)
    key = (fields[schema.LABEL], fields.get(schema.TEXT, b"").decode(errors="replace"))
    report.per_class[key] += 1
    if len(report.samples) < samples:
        report.samples.append({k: v for k, v in fields.items() if k != schema.ENCODED})
    return fields

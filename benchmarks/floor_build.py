"""THE FLOOR: the least work any converter of a class-per-directory JPEG tree must do, as a
plain Python loop on N processes - for benchmarks/bench_build.py only, not a converter to use.

Per image: read the file, find the JPEG frame header (SOFn) for the height and width, serialize
the Example by hand with our keys (protobuf wire format, no library), frame it (length, masked
crc32c, data, masked crc32c) and append it to the shard. Nothing else: no checks of the data, no
colour or EXIF handling, no rejects report, no shuffling (files are dealt to shards in listing
order), no manifest.

Usage: python floor_build.py TRAIN_DIR OUTPUT_DIR SHARDS PROCESSES
"""

import multiprocessing
import os
import struct
import sys

import google_crc32c


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # length-delimited field
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:  # Feature{bytes_list{value}}
    return _field(1, _field(1, value))


def _int_feature(value: int) -> bytes:  # Feature{int64_list{value (packed)}}
    return _field(3, _field(1, _varint(value)))


def _entry(key: str, feature: bytes) -> bytes:  # Features.feature map entry
    return _field(1, _field(1, key.encode()) + _field(2, feature))


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(height, width) from the first SOFn marker."""
    pos = 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return struct.unpack(">HH", data[pos + 5:pos + 9])
        pos += 2 + length
    raise ValueError("no frame header")


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return (length + struct.pack("<I", _mask(google_crc32c.value(length))) + record
            + struct.pack("<I", _mask(google_crc32c.value(record))))


def example(data: bytes, label: int, text: str, name: str) -> bytes:
    height, width = jpeg_size(data)
    features = b"".join((
        _entry("image/encoded", _bytes_feature(data)),
        _entry("image/height", _int_feature(height)),
        _entry("image/width", _int_feature(width)),
        _entry("image/colorspace", _bytes_feature(b"RGB")),
        _entry("image/channels", _int_feature(3)),
        _entry("image/format", _bytes_feature(b"JPEG")),
        _entry("image/filename", _bytes_feature(name.encode())),
        _entry("image/class/label", _int_feature(label)),
        _entry("image/class/text", _bytes_feature(text.encode())),
    ))
    return _field(1, features)  # Example{features}


def write_shard(job):
    path, files = job
    with open(path, "wb") as out:
        for file_path, label, text in files:
            with open(file_path, "rb") as handle:
                data = handle.read()
            out.write(frame(example(data, label, text, os.path.basename(file_path))))


def main():
    train_dir, output_dir, shards, processes = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        int(sys.argv[4])
    os.makedirs(output_dir, exist_ok=True)
    files = []
    for label, text in enumerate(sorted(os.listdir(train_dir)), start=1):
        folder = os.path.join(train_dir, text)
        files += [(os.path.join(folder, name), label, text) for name in sorted(os.listdir(folder))]
    jobs = [(os.path.join(output_dir, f"train-{i:05d}-of-{shards:05d}"), files[i::shards])
            for i in range(shards)]
    with multiprocessing.Pool(processes) as pool:
        pool.map(write_shard, jobs, chunksize=1)


if __name__ == "__main__":
    main()

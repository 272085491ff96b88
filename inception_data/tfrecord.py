"""TFRecord framing: record bytes in, framed bytes out, and back, with CRC checks.

A TFRecord file is a sequence of records, each framed as

    uint64 length (little endian) | uint32 masked CRC32C of those 8 bytes | data |
    uint32 masked CRC32C of the data

where the mask is TensorFlow's `((crc >> 15 | crc << 17) + 0xa282ead8) mod 2^32`. A dozen lines
of our own instead of Beam's private `_TFRecordUtil` (which only a version pin protected) or
TensorFlow's writer (the converter must not import TensorFlow in every worker).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import google_crc32c

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
FRAMING = _LENGTH.size + 2 * _CRC.size  # bytes around each record's data: length, two CRCs


class CorruptRecord(ValueError):
    """A TFRecord file whose framing or checksums do not hold."""


def masked_crc(data: bytes) -> int:
    """TensorFlow's masked CRC32C of `data`."""
    return _mask(google_crc32c.value(data))


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record, framed: what TFRecordWriter writes for `data` (write_framed's bytes)."""
    out = io.BytesIO()
    write_framed(out, (data,))
    return out.getvalue()


def write_framed(handle: BinaryIO, pieces: Sequence[bytes]) -> int:
    """Writes the record whose bytes are the concatenation of `pieces`, framed (the one
    implementation of the framing above), without concatenating them: the CRC is extended
    piece by piece. Returns the bytes written."""
    size = sum(map(len, pieces))
    length = _LENGTH.pack(size)
    crc = 0
    for piece in pieces:
        crc = google_crc32c.extend(crc, piece)
    handle.write(length + _CRC.pack(masked_crc(length)))
    for piece in pieces:
        handle.write(piece)
    handle.write(_CRC.pack(_mask(crc)))
    return size + FRAMING


def read_records(handle: BinaryIO, where: str = "TFRecord file") -> Iterator[bytes]:
    """Yields the records of an open TFRecord file, checking both CRCs of every record.

    Raises:
        CorruptRecord: a truncated record or a CRC mismatch; the message names `where` and the
            byte offset.
    """
    offset = 0
    while True:
        header = handle.read(12)
        if not header:
            return
        if len(header) < 12:
            raise CorruptRecord(f"{where}: truncated record header at byte {offset}")
        length_bytes, (length_crc,) = header[:8], _CRC.unpack(header[8:])
        if masked_crc(length_bytes) != length_crc:
            if offset == 0:  # the very first header: most likely not a TFRecord file at all
                raise CorruptRecord(f"{where}: not a TFRecord file, or damaged at its start "
                                    f"(length CRC mismatch at byte 0; an image or another "
                                    f"file matched by the pattern?)")
            raise CorruptRecord(f"{where}: length CRC mismatch at byte {offset}")
        (length,) = _LENGTH.unpack(length_bytes)
        data = handle.read(length)
        footer = handle.read(4)
        if len(data) < length or len(footer) < 4:
            raise CorruptRecord(f"{where}: record at byte {offset} is truncated")
        if masked_crc(data) != _CRC.unpack(footer)[0]:
            raise CorruptRecord(f"{where}: data CRC mismatch in the record at byte {offset}")
        offset += FRAMING + length
        yield data


def damage_at(handle: BinaryIO, offset: int) -> str | None:
    """What is wrong with the record that starts at byte `offset` of an open TFRecord file
    ("truncated" or "corrupted"), or None when it reads whole (or nothing is there). The
    caller knows `offset` is a record's start: TensorFlow's reader names no file, and
    input_fn, which adds up what each shard's reader read, says what stopped it."""
    handle.seek(offset)
    header = handle.read(12)
    if not header:
        return None
    if len(header) < 12:
        return "truncated"
    if masked_crc(header[:8]) != _CRC.unpack(header[8:])[0]:
        return "corrupted"
    (length,) = _LENGTH.unpack(header[:8])
    data, footer = handle.read(length), handle.read(4)
    if len(data) < length or len(footer) < 4:
        return "truncated"
    return "corrupted" if masked_crc(data) != _CRC.unpack(footer)[0] else None


def record_spans(handle: BinaryIO, where: str = "TFRecord file") -> Iterator[tuple[int, int]]:
    """Yields (offset, framed size) of each record of an open TFRecord file from the record
    headers alone (12 bytes read per record, the data skipped): what an index file holds, for
    files written without one. Checks each length's CRC, not the data's.

    Raises:
        CorruptRecord: a header that does not read whole or whose CRC does not hold, or a record
            that runs past the end of the file; the message names `where` and the byte.
    """
    handle.seek(0, io.SEEK_END)
    end = handle.tell()
    offset = 0
    while offset < end:
        handle.seek(offset)
        header = handle.read(12)
        if len(header) < 12:
            raise CorruptRecord(f"{where}: truncated record header at byte {offset}")
        if masked_crc(header[:8]) != _CRC.unpack(header[8:])[0]:
            raise CorruptRecord(f"{where}: length CRC mismatch at byte {offset}")
        size = _LENGTH.unpack(header[:8])[0] + FRAMING
        if offset + size > end:
            raise CorruptRecord(f"{where}: record at byte {offset} is truncated")
        yield offset, size
        offset += size

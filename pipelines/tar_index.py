"""Indexing tar archives without extracting them: the offset and size of every regular file,
read from the headers only, and every member that yields no image (links, devices, repeated
names, damage) with the reason. Shard writers then read each image by offset."""

from __future__ import annotations

import dataclasses
import io
import tarfile

from apache_beam.io.filesystems import FileSystems


class _Window(io.RawIOBase):
    """A read-only view of bytes [offset, offset + size) of a seekable file, for tarfile."""

    def __init__(self, handle, offset: int, size: int):
        super().__init__()
        self._handle, self._offset, self._size, self._pos = handle, offset, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._pos

    def seek(self, pos, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + pos))
        return self._pos

    def readinto(self, buffer):
        n = min(len(buffer), self._size - self._pos)
        self._handle.seek(self._offset + self._pos)
        data = self._handle.read(n)
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)


@dataclasses.dataclass
class TarIndex:
    """What a tar holds: its regular files (name, data offset, size), and every member that
    yields no image - links, devices, repeated names, the damage that ended the reading - as
    (member name, kind, reason); member name "" is the archive itself."""

    files: list = dataclasses.field(default_factory=list)
    problems: list = dataclasses.field(default_factory=list)

    @property
    def found(self) -> int:
        return len(self.files) + len(self.problems)


def index_tar(path: str, offset: int = 0, size: int | None = None) -> TarIndex:
    """Indexes a tar stored in `path` at `offset` (headers only: no member data is read). A
    damaged or truncated archive keeps the members read before the damage."""
    index = TarIndex()
    first: dict[str, str] = {}  # file name -> the member that has it
    try:
        with FileSystems.open(path) as handle:
            handle.seek(0, io.SEEK_END)
            present = handle.tell() - offset
            size = present if size is None else size
            if present < size:  # reading would just stop early: say so
                index.problems.append(("", "damaged archive", (
                    f"the archive is truncated: {size} bytes are declared, {max(present, 0)} "
                    f"present; the files that are complete are converted, the rest is lost - "
                    f"fetch the archive again")))
            window = io.BufferedReader(_Window(handle, offset, size), buffer_size=64 * 1024)
            with tarfile.open(fileobj=window, mode="r:") as archive:
                for member in archive:
                    if member.isfile() and member.offset_data + member.size > min(size, present):
                        index.problems.append((member.name, "damaged archive", (
                            "truncated: the archive ends inside this file")))
                        break  # nothing after it was stored either
                    _add_member(index, first, member, offset)
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        index.problems.append(("", "damaged archive", (
            f"the archive cannot be read past its first {len(index.files)} file(s) ({err}); "
            f"those are converted, the rest is lost - fetch the archive again"
            if index.files else f"not a readable tar archive ({err})")))
    return index


def _add_member(index: TarIndex, first: dict, member: tarfile.TarInfo, offset: int) -> None:
    if member.isdir():
        return
    if not member.isfile():
        index.problems.append((member.name, "link in archive", _not_a_file(member)))
        return
    name = member.name.rsplit("/", 1)[-1]
    if name in first:
        index.problems.append((member.name, "duplicate", (
            f"the archive holds another file named {name} ({first[name]}); only the first is "
            f"converted")))
        return
    first[name] = member.name
    index.files.append((member.name, offset + member.offset_data, member.size))


def _not_a_file(member: tarfile.TarInfo) -> str:
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        return (f"a {kind} to {member.linkname} inside the archive; links in archives are not "
                f"followed: store the image itself")
    return "not a regular file (a device or pipe) inside the archive"

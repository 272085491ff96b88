"""What is known about a set of shard files before reading them, from the small files beside
them: `manifest.json` (written by `inception-data build`) and `decode-check.json` (the verdict
of `inception-data inspect --verify --save-verdict`).

In: shard file paths (local or gs://, through TensorFlow's file I/O). Out: a `ShardSet`: the
label convention, whether every shard was checked with TensorFlow's decoder, and which records
that check found undecodable. Each folder's files are read once (gs:// reads are slow).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence

from inception_data import shard_index, sharding
from inception_data.version import __version__

MANIFEST = "manifest.json"
VERDICT = "decode-check.json"
VERDICT_VERSION = 2  # 2: each shard's size, time and CRC digest (1 held the size only)


def _read(path: str) -> bytes | None:
    import tensorflow as tf

    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read()
    except tf.errors.OpError:
        return None


def _json(data: bytes | None) -> dict | None:
    try:
        value = json.loads(data) if data is not None else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def digest(data: bytes | None) -> str | None:
    """The sha256 a verdict records of the manifest beside the shards (None: no manifest)."""
    return hashlib.sha256(data).hexdigest() if data is not None else None


@dataclasses.dataclass(frozen=True)
class Folder:
    """One folder's manifest (None: shards of an older build or of another tool) and decode
    verdict (None: never checked), with the manifest's digest."""

    manifest: dict | None
    manifest_digest: str | None
    verdict: dict | None

    @classmethod
    def read(cls, folder: str) -> Folder:
        manifest = _read(os.path.join(folder, MANIFEST))
        return cls(_json(manifest), digest(manifest), _json(_read(os.path.join(folder,
                                                                                 VERDICT))))

    def verified_by_build(self) -> bool:
        """Built with `--verify decode`: every stored image decoded with TensorFlow's decoder."""
        return (self.manifest or {}).get("settings", {}).get("verify") == "decode"

    def shard_records(self, path: str) -> int | None:
        """The records of the shard at `path`, as its build counted them (None: unknown)."""
        name = os.path.basename(path)
        for split in (self.manifest or {}).get("splits", {}).values():
            if name in split.get("shards", {}):
                return int(split["shards"][name])
        return None

    def checked_shard(self, path: str) -> dict | None:
        """The verdict's entry for the shard at `path` ({"records", "bytes", "mtime_ns",
        "crc_digest", "bad"}), when it holds for the shard's bytes as they are: made beside
        this very manifest, of a file of the same size and time or, when the time differs (a
        copy), the same CRC digest. None: not checked, or checked before the shard changed (the
        log then says so, once)."""
        verdict = self.verdict
        if not verdict:
            return None
        entry = verdict.get("shards", {}).get(os.path.basename(path))
        if entry is None:
            return None
        if verdict.get("version") != VERDICT_VERSION:
            return _stale(path, f"it was made by an older inception-data (verdict version "
                                f"{verdict.get('version')})")
        if verdict.get("manifest_sha256") != self.manifest_digest:
            return _stale(path, "the manifest beside it changed since")
        why = _changed(path, entry)
        return _stale(path, why) if why else entry


def _stale(path: str, why: str) -> None:
    from inception_data import read_errors

    read_errors.warn(f"input_fn: {os.path.join(os.path.dirname(path), VERDICT)} does not hold "
                     f"for {path}: {why}; it is read as unchecked (`inception-data inspect "
                     f"--verify --save-verdict` checks it again)", once=True)
    return None


_SAME: dict = {}  # (path, size, mtime_ns, digest) -> why the bytes differ, or "" (one check)


def _changed(path: str, entry: dict) -> str:
    """Why the shard's bytes are not those the verdict checked, or "": same size and time, or
    (a copy, whose time differs) the same CRC digest (shard_index.footer_digest)."""
    now = shard_index.file_stat(path)
    key = (path, now, entry.get("mtime_ns"), entry.get("crc_digest"))
    if key not in _SAME:
        if now is None:
            _SAME[key] = "the shard cannot be read"
        elif now[0] != entry.get("bytes"):
            _SAME[key] = f"the shard has {now[0]} bytes, the verdict checked {entry.get('bytes')}"
        elif now[1] == entry.get("mtime_ns"):
            _SAME[key] = ""
        else:
            spans = shard_index.spans_of(path)
            same = spans is not None and shard_index.footer_digest(spans) == \
                entry.get("crc_digest")
            _SAME[key] = "" if same else "the shard was rewritten since (its records' CRCs differ)"
    return _SAME[key]


@dataclasses.dataclass(frozen=True)
class ShardSet:
    files: tuple[str, ...]
    folders: Mapping[str, Folder]

    @classmethod
    def read(cls, files: Sequence[str]) -> ShardSet:
        folders = {folder: Folder.read(folder) for folder in sorted({os.path.dirname(f)
                                                                      for f in files})}
        return cls(tuple(files), folders)

    def _folder(self, path: str) -> Folder:
        return self.folders[os.path.dirname(path)]

    def shard_records(self, path: str) -> int | None:
        """The records its build counted in the shard at `path` (None: unknown)."""
        return self._folder(path).shard_records(path)

    def label_offset(self) -> int:
        """The label convention of the shards, from their manifests: 1 = label 0 is the
        background class and the N classes are 1..N (also for shards without a manifest, the
        original scripts' format); 0 = the classes are 0..N-1 (`build --no-background`)."""
        offsets = {(f.manifest or {}).get("label_offset", 1) for f in self.folders.values()}
        if len(offsets) > 1:
            raise ValueError(f"the files mix label conventions (label_offset {sorted(offsets)} "
                             f"in their manifests): one model cannot train on both; rebuild one "
                             f"of them with or without --no-background")
        return offsets.pop() if offsets else 1

    def records(self) -> int | None:
        """Records in all the shards, from their manifests (None: some count is unknown)."""
        counts = [self._folder(f).shard_records(f) for f in self.files]
        return None if None in counts else sum(counts)

    def checked(self) -> bool:
        """Whether every shard's images were checked with TensorFlow's decoder: built with
        `--verify decode`, or covered by a current decode-check.json verdict."""
        return all(self._folder(f).verified_by_build() or self._folder(f).checked_shard(f)
                   for f in self.files)

    def incomplete(self) -> list[str]:
        """What the set of shards lacks, one line each: a shard the `-of-N` names or the
        manifest list that is not among the files, or an empty file where the manifest counts
        records. From names, manifests and file sizes only (no pass over the data); [] when
        nothing is known to be missing."""
        import tensorflow as tf

        present = set(self.files)
        expected: dict[str, str] = {}  # missing path -> why it is expected
        groups = {}  # (folder, split, count) -> a file name saying so: each group once
        for path in self.files:
            folder, name = os.path.split(path)
            parsed = sharding.parse_shard_name(name)
            if parsed:
                groups.setdefault((folder, parsed[0], parsed[2]), name)
        for (folder, split_name, count), name in sorted(groups.items()):
            for index in range(count):
                expected.setdefault(os.path.join(folder, sharding.shard_name(split_name, index,
                                                                             count)),
                                    f"{name} says there are {count}")
            split = (self.folders[folder].manifest or {}).get("splits", {}).get(split_name, {})
            for other in split.get("shards", {}):
                expected.setdefault(os.path.join(folder, other),
                                    f"{os.path.join(folder, MANIFEST)} lists it")
        lines = [f"{path} is missing ({why})" for path, why in sorted(expected.items())
                 if path not in present]
        counted = {path: self._folder(path).shard_records(path) for path in self.files}
        counted = {path: records for path, records in counted.items() if records}

        def empty(path: str) -> bool:
            try:
                return tf.io.gfile.stat(path).length == 0
            except tf.errors.OpError:
                return False

        # one stat per shard, in parallel: on gs:// each is a round trip (1,024 ImageNet shards)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            for path, is_empty in zip(counted, pool.map(empty, counted)):
                if is_empty:
                    lines.append(f"{path} is empty, but the manifest counts {counted[path]} "
                                 f"records in it")
        return lines

    def bad_records(self) -> dict[str, list[tuple[int, str]]]:
        """{shard path: [(record index, reason), ...]} of the records the saved verdicts found
        undecodable (only shards with some)."""
        found = {}
        for path in self.files:
            entry = self._folder(path).checked_shard(path)
            if entry and entry.get("bad"):
                found[path] = [(int(index), str(reason)) for index, reason in entry["bad"]]
        return found


def verdict_text(shards: Mapping[str, dict], manifest_digest: str | None,
                 checked_with: str) -> str:
    """decode-check.json for one folder: `shards` maps each checked shard's base name to
    {"records": n, "bytes": size, "bad": [[index, reason], ...]}."""
    return json.dumps({"version": VERDICT_VERSION, "tool_version": __version__,
                       "checked_with": checked_with, "manifest_sha256": manifest_digest,
                       "shards": dict(sorted(shards.items()))}, indent=2, sort_keys=True) + "\n"


def save_verdicts(reports: Sequence, checked_with: str) -> list[str]:
    """Writes decode-check.json beside the checked shards, one per folder (merged with the
    current verdict's other shards); `reports` are inspection.ShardReport of whole shards.
    Returns the paths written."""
    import tensorflow as tf

    written = []
    by_folder: dict[str, list] = {}
    for report in reports:
        by_folder.setdefault(os.path.dirname(report.path), []).append(report)
    for folder, folder_reports in sorted(by_folder.items()):
        current = Folder.read(folder)
        shards = {}  # the current verdict's other shards are kept (of this version and manifest)
        if current.verdict and current.verdict.get("version") == VERDICT_VERSION and \
                current.verdict.get("manifest_sha256") == current.manifest_digest:
            shards = dict(current.verdict.get("shards", {}))
        for report in folder_reports:
            size_and_time = shard_index.file_stat(report.path)
            shards[os.path.basename(report.path)] = {
                "records": report.records, "bytes": report.bytes,
                "mtime_ns": size_and_time[1] if size_and_time else None,
                "crc_digest": shard_index.footer_digest(shard_index.spans_of(report.path)),
                "bad": [[index, reason] for index, reason in report.undecodable]}
        path = os.path.join(folder, VERDICT)
        with tf.io.gfile.GFile(path, "w") as handle:
            handle.write(verdict_text(shards, current.manifest_digest, checked_with))
        written.append(path)
    return written

"""Fetch and prepare the datasets the original Inception shipped download scripts for.

In: a URL (flowers) or a folder of ILSVRC-2012 archives (ImageNet, which needs a registered
account, so we only check what the user has). Out: for flowers, `OUT/train/<class>/`,
`OUT/validation/<class>/` (100 images per class, as download_and_preprocess_flowers.sh did) and
`OUT/labels.txt`, one `inception-data build` away from shards.

Downloads resume: bytes go to `<file>.partial`, and a second run asks the server for the rest
(HTTP Range). Local files only: this is the step before the Beam build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request

from inception_data import sharding

FLOWERS_URL = ("https://storage.googleapis.com/download.tensorflow.org/example_images/"
               "flower_photos.tgz")
FLOWERS_SIZE = 228_813_984  # bytes of the archive the original script fetched (3,670 images)
VALIDATION_PER_CLASS = 100


class DownloadError(RuntimeError):
    """A download or archive problem; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ImagenetArchive:
    name: str
    md5: str | None
    what: str


IMAGENET_ARCHIVES = (
    ImagenetArchive("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e",
                    "training images, 1000 per-synset tars, ~138 GB: --train-tar"),
    ImagenetArchive("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622",
                    "50,000 validation images, ~6.3 GB: --validation-tar"),
    ImagenetArchive("ILSVRC2012_bbox_train_v2.tar.gz", None,
                    "training box annotations (optional): extract, then `inception-data boxes`"),
    ImagenetArchive("ILSVRC2012_bbox_val_v3.tgz", None,
                    "validation box annotations (optional): extract, then `inception-data boxes`"),
)


def _open(url: str, start: int):
    request = urllib.request.Request(url)
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416:  # nothing left to send: the partial file is already complete
            return None
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise DownloadError(f"{url}: {err.reason}; check the URL and your connection") from err


def fetch(url: str, dest: str, *, expected_size: int | None = None,
          sha256: str | None = None, progress: bool = True) -> str:
    """Downloads `url` to `dest`, resuming a `.partial` file left by an interrupted run."""
    if os.path.exists(dest):
        _check(dest, expected_size, sha256)
        return dest
    partial = dest + ".partial"
    start = os.path.getsize(partial) if os.path.exists(partial) else 0
    response = _open(url, start)
    total = start
    if response is not None:
        with response:
            resumed = response.status == 206
            length = int(response.headers.get("Content-Length", -1))
            total = (start if resumed else 0) + length if length >= 0 else None
            with open(partial, "ab" if resumed else "wb") as out:
                _copy(response, out, total, start if resumed else 0, progress)
    got = os.path.getsize(partial)
    if (total is not None and got != total) or (expected_size and got != expected_size):
        raise DownloadError(f"{url}: download incomplete, {got} of "
                            f"{expected_size or total} bytes in {partial}; run the same command "
                            f"again to resume")
    _check(partial, expected_size, sha256)
    os.replace(partial, dest)
    return dest


def _copy(response, out, total, done, progress):
    from tqdm import tqdm

    with tqdm(total=total, initial=done, unit="B", unit_scale=True, disable=not progress,
              desc="downloading") as bar:
        try:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException):
            pass  # a cut connection: the size check below says so and how to resume


def _check(path: str, expected_size: int | None, sha256: str | None) -> None:
    size = os.path.getsize(path)
    if expected_size and size != expected_size:
        raise DownloadError(f"{path} has {size} bytes, expected {expected_size}; delete it and "
                            f"run again")
    if sha256:
        digest = file_digest(path, "sha256")
        if digest != sha256.lower():
            raise DownloadError(f"{path}: sha256 {digest}, expected {sha256}; delete it and run "
                                f"again")


def file_digest(path: str, algorithm: str) -> str:
    # hashlib.file_digest does this from Python 3.11; we still support 3.10.
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def extract(archive: str, into: str) -> str:
    """Extracts a .tgz into a fresh folder inside `into`; returns the folder. A corrupt archive
    is removed (it cannot be resumed) and reported."""
    target = tempfile.mkdtemp(prefix=".extract-", dir=into)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(target, filter="data")  # no paths outside `target`, no devices
    except (tarfile.TarError, EOFError, OSError) as err:
        shutil.rmtree(target, ignore_errors=True)
        os.remove(archive)
        raise DownloadError(f"{archive} is corrupt ({err}); it was removed, run the command "
                            f"again to download it afresh") from err
    return target


def split_classes(extracted: str, out_dir: str, per_class: int = VALIDATION_PER_CLASS,
                  seed: int = 0) -> dict[str, tuple[int, int]]:
    """Moves `<root>/<class>/<image>` into OUT/train and OUT/validation (the first `per_class`
    images of each class in seeded-hash order go to validation); writes OUT/labels.txt.

    Returns {class: (train count, validation count)}.
    """
    roots = [e.path for e in os.scandir(extracted) if e.is_dir()]
    root = roots[0] if len(roots) == 1 else extracted  # flower_photos/<class>/ in the archive
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise DownloadError(f"no class folders found in the archive (looked in {root})")
    counts = {}
    for name in classes:
        files = sorted((e.name for e in os.scandir(os.path.join(root, name)) if e.is_file()),
                       key=lambda f: sharding.path_key(seed, f))
        if len(files) <= per_class:
            raise DownloadError(f"class {name} has {len(files)} images, not more than the "
                                f"{per_class} validation images asked for")
        for index, filename in enumerate(files):
            split = "validation" if index < per_class else "train"
            os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
            os.replace(os.path.join(root, name, filename),
                       os.path.join(out_dir, split, name, filename))
        counts[name] = (len(files) - per_class, per_class)
    with open(os.path.join(out_dir, "labels.txt"), "w") as handle:
        handle.write("".join(f"{name}\n" for name in classes))
    return counts


def check_imagenet(folder: str, md5: bool = True):
    """Yields (archive, status) for each ILSVRC-2012 archive: missing, present, ok, or bad."""
    for archive in IMAGENET_ARCHIVES:
        path = os.path.join(folder, archive.name)
        if not os.path.exists(path):
            yield archive, "missing"
        elif not md5 or archive.md5 is None:
            yield archive, f"present, {os.path.getsize(path):,} bytes (MD5 not checked)"
        elif file_digest(path, "md5") == archive.md5:
            yield archive, "ok (MD5 matches)"
        else:
            yield archive, f"BAD: MD5 differs from {archive.md5}; download it again"

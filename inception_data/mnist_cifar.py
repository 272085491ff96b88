"""MNIST and CIFAR-10: the original archives -> class-per-directory trees of PNG files.

In: MNIST's four gzipped idx files, or CIFAR-10's python tarball, downloaded (resumably, with
`download.fetch`) and checked against their published MD5 digests. Out:
`OUT/train/<class>/<index>.png` and `OUT/validation/<class>/<index>.png` (the official test
set), plus `OUT/labels.txt`: one `inception-data build` away from shards. MNIST classes are
`0` ... `9` (grayscale PNGs), CIFAR-10's are its label names (`airplane` ... `truck`, RGB).
A file is named by its index in its split (`00042.png`), so a tree can be mapped back to the
archive.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import tarfile

import numpy as np
from PIL import Image

from inception_data.download import DownloadError, fetch, file_digest

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # the files of yann.lecun.com
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


@dataclasses.dataclass(frozen=True)
class Archive:
    name: str
    md5: str


MNIST_FILES = {  # the digests published with the original files
    "train_images": Archive("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": Archive("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": Archive("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": Archive("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
CIFAR10_ARCHIVE = Archive("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"


def _fetch_checked(url: str, dest: str, md5: str | None, progress: bool) -> str:
    fetch(url, dest, progress=progress)
    if md5 and file_digest(dest, "md5") != md5:
        os.remove(dest)
        raise DownloadError(f"{dest}: MD5 differs from the published {md5}; it was removed, "
                            f"run the command again to download it afresh")
    return dest


# ---------------------------------------------------------------- MNIST

def read_idx(data: bytes, name: str) -> np.ndarray:
    """An idx file (MNIST's format: magic 0x0000 0x08 ndim, big-endian uint32 sizes, uint8
    data) -> a uint8 array. A short or malformed file is an error naming it."""
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DownloadError(f"{name} is not an unsigned-byte idx file (magic {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise DownloadError(f"{name} holds {len(data) - header} bytes of data for shape {shape}; "
                            f"it is damaged, delete it and run again")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _load_idx(path: str) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as handle:
            return read_idx(handle.read(), path)
    except (OSError, EOFError) as err:
        raise DownloadError(f"{path} is not a readable gzip file ({err}); delete it and run "
                            f"again") from err


def mnist(out_dir: str, *, url: str = MNIST_URL, check_md5: bool = True,
          progress: bool = True) -> dict[str, int]:
    """Downloads MNIST into `out_dir` and writes the PNG tree. Returns images per split."""
    paths = {key: _fetch_checked(url + archive.name, os.path.join(out_dir, archive.name),
                                 archive.md5 if check_md5 else None, progress)
             for key, archive in MNIST_FILES.items()}
    counts = {}
    for split, prefix in (("train", "train"), ("validation", "test")):
        images, labels = _load_idx(paths[f"{prefix}_images"]), _load_idx(paths[f"{prefix}_labels"])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DownloadError(f"{paths[prefix + '_images']}: {images.shape} images for "
                                f"{labels.shape} labels")
        counts[split] = write_tree(out_dir, split, images, [str(int(v)) for v in labels])
    _write_labels(out_dir, [str(d) for d in range(10)])
    return counts


# ---------------------------------------------------------------- CIFAR-10

class _ArraysOnly(pickle.Unpickler):
    """CIFAR-10's batches are pickles; load nothing but the numpy arrays, lists and dicts they
    hold (a pickle can otherwise run code)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
               ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"),
               ("_codecs", "encode")}  # how protocol-2 pickles from Python 3 store bytes

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def _batch(tar: tarfile.TarFile, member: str, archive: str) -> dict:
    try:
        handle = tar.extractfile(f"cifar-10-batches-py/{member}")
        return _ArraysOnly(io.BytesIO(handle.read()), encoding="bytes").load()
    except (KeyError, AttributeError, pickle.UnpicklingError, EOFError) as err:
        raise DownloadError(f"{archive}: cifar-10-batches-py/{member} is missing or damaged "
                            f"({err}); delete the archive and run again") from err


def cifar10(out_dir: str, *, url: str = CIFAR10_URL, check_md5: bool = True,
            progress: bool = True) -> dict[str, int]:
    """Downloads CIFAR-10 into `out_dir` and writes the PNG tree. Returns images per split."""
    archive = _fetch_checked(url, os.path.join(out_dir, CIFAR10_ARCHIVE.name),
                             CIFAR10_ARCHIVE.md5 if check_md5 else None, progress)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            names = [n.decode() for n in _batch(tar, "batches.meta", archive)[b"label_names"]]
            batches = {"train": [_batch(tar, b, archive) for b in CIFAR10_TRAIN],
                       "validation": [_batch(tar, CIFAR10_TEST, archive)]}
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DownloadError(f"{archive} is not a readable tar.gz ({err}); delete it and run "
                            f"again") from err
    counts = {}
    for split, parts in batches.items():
        data = np.concatenate([np.asarray(p[b"data"], np.uint8) for p in parts])
        labels = [int(v) for p in parts for v in p[b"labels"]]
        if data.shape != (len(labels), 3072) or not all(0 <= v < len(names) for v in labels):
            raise DownloadError(f"{archive}: {split} data {data.shape} does not match "
                                f"{len(labels)} labels of {len(names)} classes")
        # rows are 1024 red, then 1024 green, then 1024 blue values of a 32x32 image
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        counts[split] = write_tree(out_dir, split, images, [names[v] for v in labels])
    _write_labels(out_dir, names)
    return counts


# ---------------------------------------------------------------- the tree

def write_tree(out_dir: str, split: str, images: np.ndarray, classes: list[str]) -> int:
    """images[i] -> OUT/split/classes[i]/<i>.png (lossless). Returns the count."""
    for name in set(classes):
        os.makedirs(os.path.join(out_dir, split, name), exist_ok=True)
    width = max(5, len(str(len(images))))
    for index, (pixels, name) in enumerate(zip(images, classes)):
        path = os.path.join(out_dir, split, name, f"{index:0{width}d}.png")
        Image.fromarray(pixels).save(path, optimize=False)
    return len(images)


def _write_labels(out_dir: str, names: list[str]) -> None:
    with open(os.path.join(out_dir, "labels.txt"), "w") as handle:
        handle.write("".join(f"{name}\n" for name in names))

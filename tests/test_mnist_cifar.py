"""`inception-data download mnist|cifar10` against archives fabricated in the original binary
formats (idx files, the pickled python batches) and served on 127.0.0.1: no network."""

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from inception_data import mnist_cifar
from inception_data_cli import main as cli


@pytest.fixture
def served(tmp_path):
    """(folder, base URL): files put in the folder are served over HTTP."""
    folder = tmp_path / "www"
    folder.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def idx(array: np.ndarray) -> bytes:
    """The idx format: 0x0000, type 0x08 (unsigned byte), ndim, big-endian sizes, data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big")
                                                     for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def fake_mnist(folder, train=12, test=5, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train_images": rng.integers(0, 256, (train, 28, 28)),
              "train_labels": np.arange(train) % 10,
              "test_images": rng.integers(0, 256, (test, 28, 28)),
              "test_labels": (np.arange(test) * 3) % 10}
    for key, archive in mnist_cifar.MNIST_FILES.items():
        (folder / archive.name).write_bytes(idx(arrays[key]))
    return arrays


def run(*args):
    return CliRunner().invoke(cli.main, ["download", *map(str, args)])


def test_mnist_tree_has_exact_pixels_and_labels(served, tmp_path):
    folder, url = served
    arrays = fake_mnist(folder)
    out = tmp_path / "mnist"
    result = run("mnist", out, "--url", url, "--no-md5", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "12 train and 5 validation" in result.output
    assert (out / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    for split, prefix in (("train", "train"), ("validation", "test")):
        images, labels = arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"]
        files = sorted((out / split).glob("*/*.png"))
        assert len(files) == len(images)
        for path in files:
            index = int(path.stem)
            assert path.parent.name == str(labels[index])
            with Image.open(path) as image:
                assert image.mode == "L"
                assert np.array_equal(np.asarray(image), images[index])
    again = run("mnist", out, "--url", url, "--no-md5", "--no-progress")
    assert again.exit_code == 0 and "already holds" in again.output


def test_mnist_published_md5_refuses_other_files(served, tmp_path):
    folder, url = served
    fake_mnist(folder)
    result = run("mnist", tmp_path / "m", "--url", url, "--no-progress")
    assert result.exit_code == 2
    assert "MD5 differs from the published f68b3c2dcbeaaa9fbdd348bbdeb94873" in result.output
    assert not (tmp_path / "m" / "labels.txt").exists()


def test_mnist_damaged_idx_is_an_error_naming_the_file(served, tmp_path):
    folder, url = served
    fake_mnist(folder)
    name = mnist_cifar.MNIST_FILES["test_images"].name
    whole = gzip.decompress((folder / name).read_bytes())
    (folder / name).write_bytes(gzip.compress(whole[:-7]))
    result = run("mnist", tmp_path / "m", "--url", url, "--no-md5", "--no-progress")
    assert result.exit_code == 2
    assert name in result.output and "damaged" in result.output
    assert not (tmp_path / "m" / "labels.txt").exists()


CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
               b"ship", b"truck"]


def fake_cifar(path, per_batch=3, seed=0):
    """The python tarball: cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}."""
    rng = np.random.default_rng(seed)
    batches = {}
    with tarfile.open(path, "w:gz") as tar:
        def add(name, obj):
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("batches.meta", {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": per_batch})
        for name in [*mnist_cifar.CIFAR10_TRAIN, mnist_cifar.CIFAR10_TEST]:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, 10, per_batch)]
            batches[name] = (data, labels)
            add(name, {b"data": data, b"labels": labels, b"batch_label": name.encode()})
    return batches


def test_cifar10_tree_has_exact_pixels_and_labels(served, tmp_path):
    folder, url = served
    batches = fake_cifar(folder / mnist_cifar.CIFAR10_ARCHIVE.name)
    out = tmp_path / "cifar"
    result = run("cifar10", out, "--url", url + mnist_cifar.CIFAR10_ARCHIVE.name, "--no-md5",
                 "--no-progress")
    assert result.exit_code == 0, result.output
    assert "15 train and 3 validation" in result.output
    assert (out / "labels.txt").read_text().split() == [n.decode() for n in CIFAR_NAMES]
    for split, names in (("train", mnist_cifar.CIFAR10_TRAIN),
                         ("validation", [mnist_cifar.CIFAR10_TEST])):
        data = np.concatenate([batches[n][0] for n in names])
        labels = [v for n in names for v in batches[n][1]]
        for index in range(len(data)):
            path = out / split / CIFAR_NAMES[labels[index]].decode() / f"{index:05d}.png"
            # row = 1024 red, 1024 green, 1024 blue values, each 32 rows of 32
            expected = np.stack([data[index][c * 1024:(c + 1) * 1024].reshape(32, 32)
                                 for c in range(3)], -1)
            with Image.open(path) as image:
                assert image.mode == "RGB"
                assert np.array_equal(np.asarray(image), expected)


def test_cifar10_corrupt_archive_and_md5(served, tmp_path):
    folder, url = served
    archive = folder / mnist_cifar.CIFAR10_ARCHIVE.name
    fake_cifar(archive)
    result = run("cifar10", tmp_path / "a", "--url", url + archive.name, "--no-progress")
    assert result.exit_code == 2 and "MD5 differs" in result.output
    assert hashlib.md5(archive.read_bytes()).hexdigest() != mnist_cifar.CIFAR10_ARCHIVE.md5
    archive.write_bytes(archive.read_bytes()[:200])
    result = run("cifar10", tmp_path / "b", "--url", url + archive.name, "--no-md5",
                 "--no-progress")
    assert result.exit_code == 2 and "cifar-10-python.tar.gz" in result.output
    assert "damaged" in result.output or "not a readable tar.gz" in result.output
    assert not (tmp_path / "b" / "labels.txt").exists()


def test_cifar10_pickle_that_would_run_code_is_refused(served, tmp_path):
    folder, url = served
    archive = folder / mnist_cifar.CIFAR10_ARCHIVE.name
    with tarfile.open(archive, "w:gz") as tar:
        data = pickle.dumps({b"label_names": CIFAR_NAMES, b"hook": print}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    result = run("cifar10", tmp_path / "c", "--url", url + archive.name, "--no-md5",
                 "--no-progress")
    assert result.exit_code == 2 and "refusing to load __builtin__.print" in result.output


def test_mnist_build_stores_digits_as_rgb_jpegs(served, tmp_path):
    folder, url = served
    fake_mnist(folder)
    out = tmp_path / "mnist"
    result = run("mnist", out, "--url", url, "--no-md5", "--no-progress", "--build")
    assert result.exit_code == 0, result.output
    import tensorflow as tf

    from inception_data import schema

    records = list(tf.data.TFRecordDataset(sorted(map(str, (out / "tfrecords").glob("train-*")))))
    assert len(records) == 12
    for record in records:
        fields = tf.io.parse_single_example(record, schema.parse_spec())
        image = tf.io.decode_jpeg(fields[schema.ENCODED])
        assert image.shape == (28, 28, 3)
        assert fields[schema.COLORSPACE] == b"RGB" and fields[schema.CHANNELS] == 3
        text = fields[schema.TEXT].numpy().decode()
        assert int(fields[schema.LABEL]) == int(text) + 1  # digit d is label d + 1

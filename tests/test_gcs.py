"""gs:// end to end against a real GCS-protocol server (fake-gcs-server) on loopback: the build
reads an image tree from gs:// and writes shards, manifest and rejects to gs://, byte-identical
to a local build of the same tree. No mocks of the storage API."""

import json
import time

from click.testing import CliRunner

from inception_data import sharding
from inception_data_cli import main as cli
from tests import fabricate
from tests.conftest import in_env

UPLOAD = """
import pathlib, sys
from apache_beam.io.filesystems import FileSystems
root = pathlib.Path(sys.argv[1])
for path in sorted(p for p in root.rglob('*') if p.is_file()):
    with FileSystems.create(PREFIX + path.relative_to(root).as_posix()) as out:
        out.write(path.read_bytes())
"""


def upload(env, tree, prefix):
    in_env(env, f"PREFIX = {prefix!r}\n" + UPLOAD.replace("sys.argv[1]", repr(str(tree))))


def download(env, prefix):
    code = DOWNLOAD.replace("gs://bucket/out/*", prefix + "*")
    return {name: bytes.fromhex(data)
            for name, data in json.loads(in_env(env, code).strip().splitlines()[-1]).items()}


def assert_same_shards(remote: dict, local, argv) -> None:
    """Builds locally with `argv` and checks the 4 shards equal the gs:// ones byte for byte."""
    result = CliRunner().invoke(cli.main, argv)
    assert result.exit_code == 0, result.output
    shards = sorted(p.name for p in local.iterdir() if sharding.parse_shard_name(p.name))
    assert len(shards) == 4
    for name in shards:
        assert remote[name] == (local / name).read_bytes(), name


def run_cli(env, *argv):
    in_env(env, f"import sys; from inception_data_cli import main as cli; "
                f"sys.argv = {['inception-data', *argv]!r}; cli.main()")

DOWNLOAD = """
import json, sys
from apache_beam.io.filesystems import FileSystems
found = {}
for meta in FileSystems.match(['gs://bucket/out/*'])[0].metadata_list:
    with FileSystems.open(meta.path) as handle:
        found[meta.path.rsplit('/', 1)[-1]] = handle.read().hex()
print(json.dumps(found))
"""


def test_build_from_and_to_gcs_matches_local_build(gcs, tmp_path):
    tree = tmp_path / "photos"
    info = fabricate.image_tree(tree / "train")
    fabricate.image_tree(tree / "val", per_class=2, odd=False)
    start = time.monotonic()
    upload(gcs, tree, "gs://bucket/photos/")
    assert time.monotonic() - start < 20  # no credential retries
    start = time.monotonic()
    run_cli(gcs, "build", "--no-progress", "--workers", "1", "--train-dir",
            "gs://bucket/photos/train", "--validation-dir", "gs://bucket/photos/val",
            "--output-dir", "gs://bucket/out", "--shards", "2", "--validation-shards", "2")
    print(f"gs:// build took {time.monotonic() - start:.1f} s")
    remote = download(gcs, "gs://bucket/out/")

    local = tmp_path / "local"
    assert_same_shards(remote, local, [
        "build", "--no-progress", "--workers", "1", "--train-dir", str(tree / "train"),
        "--validation-dir", str(tree / "val"), "--output-dir", str(local), "--shards", "2",
        "--validation-shards", "2"])
    manifest = json.loads(remote["manifest.json"])
    assert manifest["splits"]["train"]["written"] == len(info["good"])
    assert manifest["splits"]["train"]["rejected"] == len(info["bad"])
    rejects = remote["rejects-train.jsonl"].decode()
    assert all(f"gs://bucket/photos/train/{rel}" in rejects for rel in info["bad"])
    assert (local / "labels.txt").read_bytes() == remote["labels.txt"]
    assert not [n for n in remote if n.startswith(".tmp-")]


def test_imagenet_build_from_and_to_gcs_matches_local(gcs, tmp_path):
    tree = tmp_path / "ilsvrc"
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())
    for sample in samples[:6]:
        synset = sample.name.split("_")[0]
        fabricate.write(tree / "train" / synset / f"{synset}_1.JPEG", sample.read_bytes())
    for i, sample in enumerate(samples[6:10], start=1):
        fabricate.write(tree / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", sample.read_bytes())
    upload(gcs, tree, "gs://bucket/ilsvrc/")
    common = ["--no-progress", "--workers", "1", "--train-shards", "2", "--validation-shards", "2"]
    run_cli(gcs, "imagenet", "--train-dir", "gs://bucket/ilsvrc/train", "--validation-dir",
            "gs://bucket/ilsvrc/val", "--output-dir", "gs://bucket/imagenet-out", *common)
    remote = download(gcs, "gs://bucket/imagenet-out/")
    local = tmp_path / "local"
    assert_same_shards(remote, local, ["imagenet", "--train-dir", str(tree / "train"),
                                       "--validation-dir", str(tree / "val"),
                                       "--output-dir", str(local), *common])
    manifest = json.loads(remote["manifest.json"])
    assert manifest["splits"]["train"]["written"] == 6
    assert manifest["splits"]["validation"]["written"] == 4

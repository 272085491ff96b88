"""A build killed part-way and re-run with --resume writes only the missing shards and ends
byte-identical to an uninterrupted build."""

import json
import os
import signal
import subprocess
import sys
import time

from tests import fabricate


def test_killed_build_resumes_to_identical_output(tmp_path):
    tree = tmp_path / "train"
    fabricate.imagenet_tree(tree, synsets=400)  # 400 real images, 10 per shard
    command = [sys.executable, "-m", "inception_data_cli", "build", "--no-progress",
               "--workers", "1", "--verify", "decode", "--train-dir", str(tree), "--shards", "40"]
    out = tmp_path / "killed"
    scratch = tmp_path / "scratch"  # a killed build cannot remove its spilled listings
    scratch.mkdir()
    process = subprocess.Popen(command + ["--output-dir", str(out)], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=dict(os.environ, TMPDIR=str(scratch)))
    deadline = time.monotonic() + 120
    while len(list(out.glob("train-*"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    committed = sorted(p.name for p in out.glob("train-*"))
    assert 5 <= len(committed) < 40, "the build was not interrupted part-way"
    assert not (out / "manifest.json").exists()

    refused = fabricate.build("--verify", "decode", "--train-dir", tree, "--shards", "40",
                              "--output-dir", out, expect=2)
    assert "--resume" in refused.output
    other = fabricate.build("--train-dir", tree, "--shards", "30", "--output-dir", out,
                            "--resume", expect=2)
    assert "other settings" in other.output

    before = {name: (out / name).stat().st_mtime_ns for name in committed}
    resumed = subprocess.run(command + ["--output-dir", str(out), "--resume"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    assert manifest["shards_resumed"] == len(committed)
    assert manifest["found"] == manifest["written"] == 400
    assert all((out / n).stat().st_mtime_ns == t for n, t in before.items())  # not rewritten
    assert not list(out.glob(".tmp-*"))

    clean = tmp_path / "clean"
    subprocess.run(command + ["--output-dir", str(clean)], check=True, capture_output=True)
    names = sorted(p.name for p in clean.glob("train-*"))
    assert names == sorted(p.name for p in out.glob("train-*")) and len(names) == 40
    for name in names:
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    again = subprocess.run(command + ["--output-dir", str(out), "--resume"],
                           capture_output=True, text=True)
    assert again.returncode == 0 and "wrote 400 images" in again.stdout

"""One build at a time per output folder: a second build refuses in one line naming the
holder, before it deletes or writes anything; a claim left by a killed build is taken over with
a warning; on gs:// the claim is a generation-matched object (against fake-gcs-server)."""

import json
import os
import signal
import subprocess
import time

from click.testing import CliRunner

from inception_data_cli import main as cli
from pipelines import output_claim
from tests import fabricate
from tests.conftest import in_env


def _build(tree, out, *extra):
    return fabricate.build_command(tree, out, "--shards", "20", *extra)


def _wait_for(path, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert path.exists(), "the first build never claimed its output folder"


def test_a_second_build_into_a_claimed_folder_refuses_and_the_first_is_intact(tmp_path):
    tree = tmp_path / "train"
    fabricate.image_tree(tree, classes=("a", "b"), per_class=150, odd=False)
    out = tmp_path / "out"
    first = subprocess.Popen(_build(tree, out, "--verify", "decode"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _wait_for(out / output_claim.CLAIM, first)
    holder = json.loads((out / output_claim.CLAIM).read_text() or "{}")
    second = subprocess.run(_build(tree, out, "--overwrite", "--shards", "7"),
                            capture_output=True, text=True)
    assert second.returncode == 2
    lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"{out} is being written by another build" in lines[0], second.stderr
    assert f"pid {first.pid} on " in lines[0] and "choose another --output-dir" in lines[0]
    assert holder.get("pid") in (None, first.pid)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    shards = sorted(p.name for p in out.glob("train-*"))
    assert len(shards) == manifest["num_shards"] == 20  # none of the refused build's 7
    assert manifest["written"] == 300
    assert not (out / output_claim.CLAIM).exists()  # released
    inspected = CliRunner().invoke(cli.main, ["inspect", str(out / "train-*"), "--verify"])
    assert inspected.exit_code == 0 and "300 records" in inspected.output, inspected.output


def test_builds_started_together_never_mix(tmp_path):
    """Two --overwrite builds with different shard counts started at the same moment: each
    either finishes or refuses in one line, and the folder holds exactly one complete build."""
    tree = tmp_path / "train"
    fabricate.image_tree(tree, classes=("a", "b"), per_class=60, odd=False)
    out = tmp_path / "out"
    runs = [subprocess.Popen(_build(tree, out, "--overwrite", "--shards", str(n)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for n in (3, 5)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, err in results:
        if code == 2:
            assert "is being written by another build" in err, err
    manifest = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    shards = sorted(p.name for p in out.glob("train-*"))
    assert len(shards) == manifest["num_shards"] and manifest["written"] == 120
    assert all(name.endswith(f"-of-{manifest['num_shards']:05d}") for name in shards)


def test_a_claim_left_by_a_killed_build_is_taken_over_with_its_holder_named(tmp_path):
    tree = tmp_path / "train"
    fabricate.image_tree(tree, classes=("a", "b"), per_class=200, odd=False)
    out = tmp_path / "out"
    killed = subprocess.Popen(_build(tree, out, "--verify", "decode"), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(out / output_claim.CLAIM, killed)
    deadline = time.monotonic() + 60
    while not json.loads((out / output_claim.CLAIM).read_text() or "null") \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert (out / output_claim.CLAIM).exists()  # SIGKILL leaves it; its lock went with the process
    resumed = subprocess.run(_build(tree, out, "--verify", "decode", "--resume"),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (f"taking over the claim of a build that is no longer running (pid {killed.pid} on"
            in resumed.stderr), resumed.stderr[-2000:]
    assert json.loads((out / "manifest.json").read_text())["splits"]["train"]["written"] == 400
    assert not (out / output_claim.CLAIM).exists()


GCS_CLAIM = """
import json, time
from pipelines import output_claim
warnings = []
first = output_claim.Claim("gs://bucket/claimed", warnings.append)
first.__enter__()
try:
    output_claim.Claim("gs://bucket/claimed", warnings.append).__enter__()
    print("NOT REFUSED")
except output_claim.OutputClaimed as err:
    print("REFUSED", err)
first.check()
first.__exit__(None, None, None)
again = output_claim.Claim("gs://bucket/claimed", warnings.append)
again.__enter__()  # released: free again
# a holder whose heartbeat stopped long ago (a killed build) is taken over, and then has lost it
again._impl._stop.set(); again._impl._thread.join()
blob = again._impl.blob
holder = dict(again._impl.holder, heartbeat=time.time() - 2 * output_claim.STALE_SECONDS, pid=4242)
blob.upload_from_string(json.dumps(holder), if_generation_match=again._impl.generation)
again._impl.generation = blob.generation
taker = output_claim.Claim("gs://bucket/claimed", warnings.append)
taker.__enter__()
print("WARN", warnings[-1])
print("STALE HOLDER BEAT", again._impl._write(again._impl.generation))
taker.check()
taker.__exit__(None, None, None)
print("GONE", not blob.exists())
"""


def test_on_gcs_the_claim_is_a_generation_matched_object(gcs):
    out = in_env(gcs, GCS_CLAIM)
    assert "REFUSED gs://bucket/claimed is being written by another build (pid " in out, out
    assert "NOT REFUSED" not in out
    assert ("WARN gs://bucket/claimed: taking over the claim of a build whose heartbeat "
            "stopped") in out
    assert "(pid 4242 on " in out
    assert "STALE HOLDER BEAT None" in out  # the old holder's next heartbeat fails: it lost it
    assert "GONE True" in out, out

"""A build is a plan before it runs: `--dry-run` prints it and writes nothing, and the build
that follows does what the plan said (its shards, its counts)."""

import json
import os
import tempfile

import pytest

from inception_data.build_options import BuildOptions
from pipelines import image_folder, plan, runner, scratch, skeleton
from tests import fabricate


@pytest.fixture
def tree(tmp_path):
    images = fabricate.image_tree(tmp_path / "train", per_class=5)  # + 3 odd, 3 bad files
    fabricate.image_tree(tmp_path / "validation", per_class=2, odd=False)
    (tmp_path / "train" / "empty-class").mkdir()
    return {"train": tmp_path / "train", "validation": tmp_path / "validation",
            "out": tmp_path / "out", "images": images}


def _scratch_folders() -> set[str]:
    """This process's scratch folders (the build runs in it; other test processes build too)."""
    return {name for name in os.listdir(tempfile.gettempdir())
            if name.startswith(f"{scratch.SCRATCH_PREFIX}{os.getpid()}-")}


def test_dry_run_prints_the_plan_and_writes_nothing(tree):
    before = _scratch_folders()
    result = fabricate.build("--train-dir", tree["train"], "--validation-dir", tree["validation"],
                             "--output-dir", tree["out"], "--shards", "3", "--dry-run")
    out = result.output
    assert not tree["out"].exists()  # not even the folder
    assert _scratch_folders() <= before  # the scratch folder of the listing is gone too
    assert f"output folder: {tree['out']}" in out
    # every class with its count, the empty one included; odd files count, bad ones do not
    assert "labels: 4 classes numbered 1..4 (0: background)" in out
    listed = len(tree["images"]["good"]) + len(tree["images"]["bad"])  # judged while writing
    assert f"train: {tree['train']}: {listed} files in 4 classes to convert" in out
    lines = out.splitlines()
    assert any(line.split() == ["1", "cats", "7"] for line in lines), out
    assert any(line.split() == ["3", "empty-class", "0"] for line in lines), out
    assert "shards: 3 (train-00000-of-00003 .. train-00002-of-00003)" in out
    assert "shards: 1 (validation-00000-of-00001), about 6 images each" in out
    assert "design: local, 1 process (--workers 1)" in out
    assert "estimated time:" in out
    assert out.count("label 'empty-class' has no images under") == 2  # train, validation
    assert "warning: train: label 'empty-class' has no images" in out
    assert f"dry run: nothing written to {tree['out']}" in out


def test_dry_run_of_a_finished_build_changes_nothing(tree):
    fabricate.build("--train-dir", tree["train"], "--output-dir", tree["out"])
    def files():
        return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tree["out"].rglob("*")
                if p.is_file()}

    before = files()
    result = fabricate.build("--train-dir", tree["train"], "--output-dir", tree["out"],
                             "--dry-run")
    assert "(holds a build: add --overwrite or --resume)" in result.output
    assert files() == before


def test_the_build_does_what_its_plan_said(tree):
    config = image_folder.BuildConfig(
        output_dir=str(tree["out"]), roots={"train": str(tree["train"]),
                                            "validation": str(tree["validation"])},
        shards={"train": None, "validation": 2},
        options=BuildOptions(workers=1, progress=False, dry_run=True))
    made = skeleton.run(config, image_folder.FolderSource())
    assert isinstance(made, plan.BuildPlan) and not tree["out"].exists()
    config = image_folder.BuildConfig(**{**config.__dict__,
                                         "options": BuildOptions(workers=1, progress=False)})
    manifest = skeleton.run(config, image_folder.FolderSource())
    for split in made.splits:
        written = manifest["splits"][split.split]
        assert sorted(p.name for p in tree["out"].glob(f"{split.split}-*-of-*")) == \
            split.shard_names()
        per_class = {c.label: c.count for c in split.classes if c.count}
        rejected = written["rejected"] - split.rejected  # found bad while writing
        assert written["written"] + rejected == split.images == sum(per_class.values())
    assert made.estimated_seconds > 0 and made.input_files == sum(
        s.images + s.rejected for s in made.splits)
    assert json.loads((tree["out"] / "manifest.json").read_text())["splits"].keys() == \
        {"train", "validation"}


def test_a_distributed_plan_says_what_its_workers_will_list(tree):
    design = plan.design_of(
        runner.plan(["--runner", "DataflowRunner", "--setup_file", "setup.py"]),
        0, 0, None)
    assert design[1] == "distributed on DataflowRunner" and design[3] is None
    out = fabricate.build("--train-dir", tree["train"], "--output-dir", tree["out"],
                          "--dry-run", *fabricate.SHUFFLING_RUNNER, workers=None).output
    assert "train: " + str(tree["train"]) + ": listed by the workers during the run" in out
    assert "design: distributed on " in out and "estimated time: not estimated here" in out
    assert not tree["out"].exists()
    split = plan.SplitPlan("train", "gs://b/train", None, 0, None)
    assert split.images is None and split.shard_names() == []


def test_the_estimate_chooses_like_the_worker_count():
    one = plan.design_of(runner.plan([]), 10_000_000, 1_000, None)
    many = plan.design_of(runner.plan([]), 100 * 10 ** 9, 1_000_000, None)
    assert one[1] == "local, 1 process" and "would cost more" in one[2]
    if (os.cpu_count() or 1) > 1:
        assert many[1].startswith("local, ") and many[1].endswith("processes")
    assert many[3] > one[3] > plan.START_SECONDS

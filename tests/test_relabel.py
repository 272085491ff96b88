"""`inception-data relabel-validation` on real ImageNet JPEGs under real validation names."""

import os

import pytest
from click.testing import CliRunner

from inception_data import labels
from inception_data_cli import main as cli
from tests import fabricate


@pytest.fixture
def flat_val(tmp_path):
    """The first 30 real samples copied to ILSVRC2012_val_00000001.JPEG ... 00000030."""
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())[:30]
    val = tmp_path / "val"
    val.mkdir()
    for i, sample in enumerate(samples, start=1):
        (val / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(sample.read_bytes())
    synsets = labels.packaged_file(labels.VALIDATION_FILE).split()
    assert len(synsets) == 50000 and synsets[0] == "n01751748"
    return val, synsets


def relabel(*args):
    result = CliRunner().invoke(cli.main, ["relabel-validation", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


def snapshot(root):
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size)
                  for p in root.rglob("*") if p.is_file())


def test_dry_run_changes_nothing(flat_val):
    val, _ = flat_val
    before = snapshot(val)
    output = relabel(val, "--dry-run")
    assert "30 to move" in output and "49970 missing" in output and "nothing changed" in output
    assert snapshot(val) == before


def test_move_into_synset_folders_then_second_run_is_a_no_op(flat_val):
    val, synsets = flat_val
    sizes = dict(snapshot(val))
    relabel(val)
    for i in range(1, 31):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        placed = val / synsets[i - 1] / name
        assert placed.stat().st_size == sizes[name] and not (val / name).exists()
    assert (val / "n01751748" / "ILSVRC2012_val_00000001.JPEG").exists()
    before = snapshot(val)
    output = relabel(val)
    assert "30 already in place" in output and "nothing to do" in output
    assert snapshot(val) == before


def test_partial_run_misplaced_and_unexpected_files(flat_val):
    val, synsets = flat_val
    # an earlier run placed image 1, put image 2 in a wrong folder, and a stray file exists
    (val / synsets[0]).mkdir()
    os.rename(val / "ILSVRC2012_val_00000001.JPEG",
              val / synsets[0] / "ILSVRC2012_val_00000001.JPEG")
    (val / "n99999999").mkdir()
    os.rename(val / "ILSVRC2012_val_00000002.JPEG",
              val / "n99999999" / "ILSVRC2012_val_00000002.JPEG")
    (val / "notes.txt").write_text("mine")
    output = relabel(val, "--mode", "copy")
    assert "1 already in place" in output and "29 to copy (1 in a wrong folder)" in output
    assert "unexpected (left alone)" in output and (val / "notes.txt").read_text() == "mine"
    assert (val / synsets[1] / "ILSVRC2012_val_00000002.JPEG").exists()
    assert (val / "ILSVRC2012_val_00000003.JPEG").exists()  # copy keeps the source
    assert (val / synsets[2] / "ILSVRC2012_val_00000003.JPEG").exists()
    assert "nothing to do" in relabel(val, "--mode", "copy")

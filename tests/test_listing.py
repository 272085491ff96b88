"""Listing: symlinked trees, what becomes a reject, and that every file is listed once."""

import collections
import json
import os

import pytest
from apache_beam.io.filesystems import FileSystems

from pipelines import listing, notices
from tests import fabricate


def build(*args, expect=0):
    return fabricate.build(*args, workers=None, expect=expect)


def events_of(root, labels):
    """The listing's events and the warnings it noted (pipelines/notices.py)."""
    with notices.collected() as warnings:
        tree = listing.Tree(str(root))
        label_of = {name: i for i, name in enumerate(labels, start=1)}
        found = list(listing.tree_events("train", tree, label_of, listing.Keying(0)))
    return found, warnings


@pytest.fixture
def photos(tmp_path):
    """A real photo library elsewhere on disk: /data/flowers/train/<class>/*.jpg."""
    library = tmp_path / "data" / "flowers" / "train"
    for seed, name in enumerate(["daisy", "roses", "tulips"]):
        for i in range(3):
            fabricate.write(library / name / f"{name}{i}.jpg",
                            fabricate.jpeg_bytes(seed=seed * 9 + i))
    return library


def test_a_subset_made_of_symlinked_class_folders_builds(photos, tmp_path):
    subset = tmp_path / "subset"
    subset.mkdir()
    for name in ("daisy", "tulips"):  # ln -s /data/flowers/train/daisy subset/daisy
        (subset / name).symlink_to(photos / name, target_is_directory=True)
    out = tmp_path / "out"
    result = build("--train-dir", subset, "--output-dir", out, "--workers", "1")
    assert "train: 6 written" in result.output
    manifest = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    assert manifest["per_class"] == {"daisy": 3, "tulips": 3}


def test_mixed_links_and_folders_lose_nothing_and_train_dir_may_be_a_link(photos, tmp_path):
    mixed = tmp_path / "mixed"
    fabricate.write(mixed / "daisy" / "own.jpg", fabricate.jpeg_bytes(seed=50))
    (mixed / "daisy" / "linked.jpg").symlink_to(photos / "daisy" / "daisy0.jpg")  # a file link
    (mixed / "roses").symlink_to(photos / "roses", target_is_directory=True)
    (tmp_path / "alias").symlink_to(mixed, target_is_directory=True)
    out = tmp_path / "out"
    build("--train-dir", tmp_path / "alias", "--labels-file", _labels(tmp_path, "daisy", "roses"),
          "--output-dir", out, "--workers", "1")
    manifest = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    assert manifest["per_class"] == {"daisy": 2, "roses": 3}
    assert manifest["found"] == manifest["written"] == 5


def _labels(tmp_path, *names):
    path = tmp_path / "labels.txt"
    path.write_text("".join(f"{n}\n" for n in names))
    return path


def test_loops_are_warned_about_once_and_not_followed(photos, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "daisy").symlink_to(photos / "daisy", target_is_directory=True)
    (tree / "again").symlink_to(tree, target_is_directory=True)  # back to the root
    (tree / "up").symlink_to(tmp_path, target_is_directory=True)  # to an ancestor
    found, warnings = events_of(tree, ["daisy"])
    assert sorted(w.split(" links back")[0] for w in warnings if "loop" in w) == [
        str(tree / "again"), str(tree / "up")]
    assert len(warnings) == 2
    classes = [e for e in found if isinstance(e, listing.ClassFiles)]
    assert [(c.label, len(c.items)) for c in classes] == [(1, 3)]


def test_broken_links_and_pipes_are_rejects_with_a_reason(tmp_path):
    root = tmp_path / "train"
    fabricate.write(root / "cats" / "a.jpg", fabricate.jpeg_bytes())
    (root / "cats" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "cats" / "self.jpg").symlink_to(root / "cats" / "self.jpg")
    os.mkfifo(root / "cats" / "pipe.jpg")
    (root / "cats" / "nested").mkdir()
    (root / "dogs").symlink_to(tmp_path / "no-such-folder")  # a dangling class link
    found, warnings = events_of(root, ["cats"])
    rejects = {os.path.basename(e.path): e for e in found if isinstance(e, listing.Reject)}
    assert {n: r.kind for n, r in rejects.items()} == {
        "gone.jpg": "broken symlink", "self.jpg": "broken symlink",
        "pipe.jpg": "not a regular file"}
    assert "nowhere.jpg" in rejects["gone.jpg"].reason
    assert "fix the link or remove it" in rejects["gone.jpg"].reason
    size = (root / "cats" / "a.jpg").stat().st_size
    assert [e for e in found if isinstance(e, listing.Found)] == [listing.Found("train", 4, size)]
    assert any("dogs is a broken symlink" in w for w in warnings)
    assert any("1 sub-directory" in w for w in warnings)


def test_every_file_is_listed_once_local_and_distributed(photos, tmp_path, monkeypatch):
    # Count directory scans and filesystem matches during whole builds (one process).
    scans, matches = collections.Counter(), []
    real_scandir, real_match = os.scandir, FileSystems.match

    def counting_scandir(path="."):
        if isinstance(path, (str, os.PathLike)):  # shutil.rmtree scans by file descriptor
            scans[os.path.realpath(path)] += 1
        return real_scandir(path)

    def recording_match(patterns, limits=None):
        matches.extend(patterns)
        return real_match(patterns, limits)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    monkeypatch.setattr(FileSystems, "match", staticmethod(recording_match))
    for name, runner in (("local", ["--workers", "1"]),
                         ("distributed", fabricate.SHUFFLING_RUNNER)):
        scans.clear()
        matches.clear()
        build("--train-dir", photos, "--output-dir", tmp_path / name, *runner)
        classes = [str(photos / c) for c in ("daisy", "roses", "tulips")]
        assert {d: scans[os.path.realpath(d)] for d in classes} == {d: 1 for d in classes}, name
        assert not [p for p in matches if str(photos) in p], name  # no second listing


def test_files_beside_the_class_directories_are_rejects_not_lost(tmp_path):
    """An image saved in the train root, and a file named like a class, belong to no class:
    each is a reject with its reason, and found == written + rejected."""
    tree = tmp_path / "train"
    for name in ("a", "b"):
        fabricate.write(tree / name / f"{name}.jpg", fabricate.jpeg_bytes(seed=len(name)))
    fabricate.write(tree / "stray.jpg", fabricate.jpeg_bytes(seed=7))
    fabricate.write(tree / "c", fabricate.jpeg_bytes(seed=8))  # a file where a class goes
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    result = fabricate.build("--train-dir", tree,
                           "--labels-file", labels, "--output-dir", tmp_path / "out")
    assert "label 'c' has no images" in result.output
    rows = [json.loads(line) for line in (tmp_path / "out" / "rejects-train.jsonl").read_text()
            .splitlines()]
    assert sorted((os.path.basename(r["path"]), r["kind"]) for r in rows) == [
        ("c", "not in a class directory"), ("stray.jpg", "not in a class directory")]
    assert all("move it into its class directory" in r["reason"] for r in rows)
    split = json.loads((tmp_path / "out" / "manifest.json").read_text())["splits"]["train"]
    assert (split["found"], split["written"], split["rejected"]) == (4, 2, 2)

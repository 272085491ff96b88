"""`inception-data imagenet` from trees and from tars built in the test out of real samples."""

import io
import json
import tarfile

import pytest
import tensorflow as tf
from click.testing import CliRunner
from PIL import Image

from inception_data import labels, schema
from inception_data_cli import main as cli
from pipelines import layout
from tests import fabricate

SYNSETS = labels.parse_labels(labels.packaged_file(labels.SYNSETS_FILE))
VAL_SYNSETS = labels.packaged_file(labels.VALIDATION_FILE).split()


def invoke(*args, expect=0):
    result = CliRunner().invoke(cli.main, [*map(str, args)])
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory):
    """A miniature ILSVRC-2012: train/<synset>/<synset>_<n>.JPEG for 12 synsets (the first and
    the last of the challenge among them), a PNG and a CMYK JPEG hiding behind .JPEG names, a
    flat validation folder of 10 real-named images plus one stray file, annotations, and the
    same images as the original tar archives."""
    root = tmp_path_factory.mktemp("ilsvrc")
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())
    chosen = samples[:11] + samples[-1:]
    train = root / "train"
    for sample in chosen:
        synset = sample.name.split("_")[0]
        for n in (96, 7):
            fabricate.write(train / synset / f"{synset}_{n}.JPEG", sample.read_bytes())
    odd = fabricate.shared_data("odd-images")
    fabricate.write(train / "n01443537" / "n01443537_png.JPEG",
                    (odd / "rgb-photo.png").read_bytes())
    fabricate.write(train / "n01443537" / "n01443537_cmyk.JPEG", (odd / "cmyk.jpg").read_bytes())
    val = root / "val"
    for i, sample in enumerate(samples[100:110], start=1):
        fabricate.write(val / f"ILSVRC2012_val_{i:08d}.JPEG", sample.read_bytes())
    fabricate.write(val / "holiday.JPEG", samples[0].read_bytes())
    ann = root / "annotations"
    bbox = fabricate.shared_data("bbox")
    fabricate.write(ann / "n01440764" / "n01440764_96.xml",
                    (bbox / "train" / "n01440764" / "n01440764_96.xml").read_bytes())
    fabricate.write(ann / "ILSVRC2012_val_00000001.xml",
                    (bbox / "val" / "ILSVRC2012_val_00000001.xml").read_bytes())
    invoke("boxes", ann, "--output", root / "boxes.csv", "--workers", "1")
    # the archives, laid out as the real ones: a tar of per-synset tars, and a flat tar
    with tarfile.open(root / "train.tar", "w", format=tarfile.GNU_FORMAT) as outer:
        for synset_dir in sorted(train.iterdir()):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as inner:
                for image in sorted(synset_dir.iterdir()):
                    inner.add(image, arcname=image.name)
            info = tarfile.TarInfo(f"{synset_dir.name}.tar")
            info.size = buffer.tell()
            buffer.seek(0)
            outer.addfile(info, buffer)
    with tarfile.open(root / "val.tar", "w", format=tarfile.GNU_FORMAT) as flat:
        for image in sorted(val.iterdir()):
            flat.add(image, arcname=image.name)
    return root


def build(ilsvrc, out, *inputs):
    return invoke("imagenet", *inputs, "--bounding-boxes", ilsvrc / "boxes.csv",
                  "--output-dir", out, "--train-shards", "3", "--validation-shards", "2",
                  "--no-progress", "--workers", "1")


def parsed_records(out, split):
    files = sorted(str(p) for p in out.glob(f"{split}-*-of-*"))
    def parse(record):
        fields = tf.io.parse_single_example(record, schema.parse_spec())
        for key in schema.BBOX_KEYS + (schema.BBOX_LABEL,):
            fields[key] = tf.sparse.to_dense(fields[key])
        return fields

    rows = []
    for fields in tf.data.TFRecordDataset(files).map(parse).as_numpy_iterator():
        for key in schema.BBOX_KEYS + (schema.BBOX_LABEL,):
            fields[key] = fields[key].tolist()
        rows.append(fields)
    return rows


@pytest.fixture(scope="module")
def from_dirs(ilsvrc):
    out = ilsvrc / "out-dirs"
    result = build(ilsvrc, out, "--train-dir", ilsvrc / "train", "--validation-dir", ilsvrc / "val")
    return out, result


def test_labels_synsets_texts_and_every_field(from_dirs):
    out, _ = from_dirs
    rows = parsed_records(out, "train")
    assert len(rows) == 26
    by_name = {r[schema.FILENAME].decode(): r for r in rows}
    for row in rows:
        synset = row[schema.SYNSET].decode()
        assert row[schema.LABEL] == SYNSETS.names.index(synset) + 1
        assert row[schema.FILENAME].decode().startswith(synset)
        assert row[schema.COLORSPACE] == b"RGB" and row[schema.CHANNELS] == 3
        assert row[schema.FORMAT] == b"JPEG"
        image = tf.io.decode_jpeg(row[schema.ENCODED], channels=3)
        assert tuple(image.shape[:2]) == (row[schema.HEIGHT], row[schema.WIDTH])
    tench = by_name["n01440764_96.JPEG"]
    assert tench[schema.LABEL] == 1 and tench[schema.TEXT] == b"tench, Tinca tinca"
    assert by_name["n15075141_7.JPEG"][schema.LABEL] == 1000
    assert tench[schema.BBOX_XMIN] == pytest.approx([0.068]) and \
        tench[schema.BBOX_YMAX] == pytest.approx([0.8133])
    assert tench[schema.BBOX_LABEL] == [1]
    assert by_name["n01440764_7.JPEG"][schema.BBOX_XMIN] == []  # no annotation, no boxes
    for name in ("n01443537_png.JPEG", "n01443537_cmyk.JPEG"):
        with Image.open(io.BytesIO(by_name[name][schema.ENCODED])) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"]["per_class"]["n01440764"] == 2
    assert (out / "labels.txt").read_text() == SYNSETS.to_text()


def test_max_size_keeps_boxes_and_every_other_field(ilsvrc, from_dirs):
    # boxes are normalised to the image, so a scaled-down image keeps them as they are
    out = ilsvrc / "out-small"
    build(ilsvrc, out, "--train-dir", ilsvrc / "train", "--validation-dir", ilsvrc / "val",
          "--max-size", "128")
    for split in ("train", "validation"):
        full = {r[schema.FILENAME]: r for r in parsed_records(from_dirs[0], split)}
        small = {r[schema.FILENAME]: r for r in parsed_records(out, split)}
        assert full.keys() == small.keys()
        for name, row in small.items():
            longer = max(full[name][schema.HEIGHT], full[name][schema.WIDTH])
            assert max(row[schema.HEIGHT], row[schema.WIDTH]) == min(longer, 128), name
            image = tf.io.decode_jpeg(row[schema.ENCODED], channels=3)
            assert tuple(image.shape[:2]) == (row[schema.HEIGHT], row[schema.WIDTH])
            ratio = full[name][schema.WIDTH] / full[name][schema.HEIGHT]
            assert abs(row[schema.WIDTH] / row[schema.HEIGHT] - ratio) < 0.02, name
            same = {k: v for k, v in row.items()
                    if k not in (schema.ENCODED, schema.HEIGHT, schema.WIDTH)}
            assert same == {k: full[name][k] for k in same}, name
    assert small[b"ILSVRC2012_val_00000001.JPEG"][schema.BBOX_XMIN]  # boxes were there


def test_flat_validation_labelled_from_the_labels_file(from_dirs):
    out, _ = from_dirs
    rows = parsed_records(out, "validation")
    assert len(rows) == 10
    for row in rows:
        index = int(row[schema.FILENAME].decode()[15:23])
        assert row[schema.SYNSET].decode() == VAL_SYNSETS[index - 1]
        assert row[schema.LABEL] == SYNSETS.index(VAL_SYNSETS[index - 1])
    first = next(r for r in rows if r[schema.FILENAME] == b"ILSVRC2012_val_00000001.JPEG")
    assert first[schema.SYNSET] == b"n01751748"
    assert first[schema.BBOX_XMIN] == pytest.approx([0.222])
    rejects = (out / "rejects-validation.jsonl").read_text()
    assert "holiday.JPEG" in rejects and "not in the validation labels file" in rejects


def test_tars_give_identical_records_without_extracting(ilsvrc, from_dirs):
    out_dirs, _ = from_dirs
    out = ilsvrc / "out-tars"
    build(ilsvrc, out, "--train-tar", ilsvrc / "train.tar", "--validation-tar", ilsvrc / "val.tar")
    for split, count in (("train", 3), ("validation", 2)):
        names = sorted(p.name for p in out_dirs.glob(f"{split}-*"))
        assert len(names) == count
        for name in names:
            assert (out / name).read_bytes() == (out_dirs / name).read_bytes(), name
    assert not list(ilsvrc.glob("out-tars/**/*.JPEG"))  # nothing was extracted


def test_sorted_validation_folders_give_the_same_records(ilsvrc, from_dirs, tmp_path):
    out_dirs, _ = from_dirs
    val = tmp_path / "val"
    for image in (ilsvrc / "val").iterdir():
        if image.name.startswith("ILSVRC"):
            index = int(image.name[15:23])
            fabricate.write(val / VAL_SYNSETS[index - 1] / image.name, image.read_bytes())
    out = tmp_path / "out"
    build(ilsvrc, out, "--validation-dir", val)
    for name in sorted(p.name for p in out_dirs.glob("validation-*")):
        assert (out / name).read_bytes() == (out_dirs / name).read_bytes()


def test_unknown_synset_directory_is_reported_not_lost(ilsvrc, tmp_path):
    train = tmp_path / "train"
    fabricate.write(train / "n01440764" / "n01440764_1.JPEG", fabricate.jpeg_bytes())
    fabricate.write(train / "n99999999" / "n99999999_1.JPEG", fabricate.jpeg_bytes())
    result = build(ilsvrc, tmp_path / "out", "--train-dir", train)
    assert "n99999999 is not in the labels file" in result.output
    assert ("synset 'n01443537' has no images" in result.output
            or "label 'n01443537' has no images" in result.output)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())["splits"]["train"]
    assert (manifest["found"], manifest["written"], manifest["rejected"]) == (2, 1, 1)


def test_local_build_from_tars_writes_what_the_distributed_design_writes(
        ilsvrc, tmp_path, monkeypatch):
    # The local design (spilled listings, shard groups, boxes read per group) against the
    # distributed one (GroupByKey, boxes joined with a CoGroupByKey), with an image that has two
    # boxes listed in descending order: both give the same bytes, boxes in sorted order.
    monkeypatch.setattr(layout, "GROUP_IMAGES", 5)
    csv = tmp_path / "boxes.csv"
    csv.write_text((ilsvrc / "boxes.csv").read_text()
                   + "n01440764_7.JPEG,0.5,0.5,0.9,0.9\nn01440764_7.JPEG,0.1,0.2,0.3,0.4\n")
    args = ["imagenet", "--train-tar", ilsvrc / "train.tar", "--validation-tar",
            ilsvrc / "val.tar", "--bounding-boxes", csv, "--train-shards", "3",
            "--validation-shards", "2", "--no-progress"]
    invoke(*args, "--output-dir", tmp_path / "local", "--workers", "2")
    invoke(*args, "--output-dir", tmp_path / "shuffled", *fabricate.SHUFFLING_RUNNER)
    fabricate.same_outputs(tmp_path / "local", tmp_path / "shuffled")
    rows = {r[schema.FILENAME].decode(): r for r in parsed_records(tmp_path / "local", "train")}
    assert rows["n01440764_7.JPEG"][schema.BBOX_XMIN] == pytest.approx([0.1, 0.5])
    assert rows["n01440764_7.JPEG"][schema.BBOX_YMAX] == pytest.approx([0.4, 0.9])
    assert rows["n01440764_96.JPEG"][schema.BBOX_XMIN] == pytest.approx([0.068])

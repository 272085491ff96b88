"""boxes.parse and `inception-data boxes` on the real ILSVRC XMLs and synthetic ones."""

import json

import pytest
from click.testing import CliRunner

from inception_data import boxes
from inception_data_cli import main as cli
from tests import fabricate


def voc(objects, width=200, height=100, extra=""):
    body = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1 in objects)
    return (f"<annotation><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{extra}{body}</annotation>").encode()


def test_real_training_xml_by_hand():
    data = fabricate.shared_data("bbox", "train", "n01440764", "n01440764_96.xml").read_bytes()
    annotation = boxes.parse(data, "n01440764_96.xml", expected_synset="n01440764")
    # (34,128)-(430,305) in a 500x375 image:
    # 34/500 = 0.068, 128/375 = 0.341333.., 430/500 = 0.86, 305/375 = 0.813333..
    (box,) = annotation.boxes
    assert box.coordinates() == pytest.approx((0.068, 128 / 375, 0.86, 305 / 375))
    assert boxes.csv_rows(annotation) == ["n01440764_96.JPEG,0.0680,0.3413,0.8600,0.8133"]


def test_real_validation_xml_by_hand():
    data = fabricate.shared_data("bbox", "val", "ILSVRC2012_val_00000001.xml").read_bytes()
    annotation = boxes.parse(data, "val/ILSVRC2012_val_00000001.xml")
    # (111,108)-(441,193) in 500x375: 111/500 = 0.222, 108/375 = 0.288, 441/500 = 0.882,
    # 193/375 = 0.514666..
    assert boxes.csv_rows(annotation) == [
        "ILSVRC2012_val_00000001.JPEG,0.2220,0.2880,0.8820,0.5147"]
    assert annotation.boxes[0].synset == "n01751748"


def test_each_box_keeps_its_own_synset():
    data = voc([("n1", 0, 0, 100, 50), ("n2", 100, 50, 200, 100)])
    annotation = boxes.parse(data, "x.xml")
    assert [b.synset for b in annotation.boxes] == ["n1", "n2"]
    assert boxes.csv_rows(annotation) == ["x.JPEG,0.0000,0.0000,0.5000,0.5000",
                                          "x.JPEG,0.5000,0.5000,1.0000,1.0000"]


def test_reversed_swapped_out_of_range_clamped_degenerate_dropped():
    data = voc([("n1", 150, 80, 50, 20),     # reversed: swapped
                ("n1", -20, -10, 400, 300),  # out of range: clamped to the whole image
                ("n1", 60, 10, 60, 90),      # zero width: dropped
                ("n1", 250, 10, 300, 90)])   # entirely right of the image: clamps to nothing
    annotation = boxes.parse(data, "a.xml")
    assert [b.coordinates() for b in annotation.boxes] == [(0.25, 0.2, 0.75, 0.8),
                                                          (0.0, 0.0, 1.0, 1.0)]
    assert len(annotation.dropped) == 2 and all("degenerate" in r for r in annotation.dropped)


def test_synset_filters_and_directory_mismatch_reported():
    data = voc([("n1", 0, 0, 10, 10), ("n2", 0, 0, 10, 10), ("n3", 0, 0, 10, 10)])
    annotation = boxes.parse(data, "n1/a.xml", synsets=["n1", "n2"], expected_synset="n1")
    assert [b.synset for b in annotation.boxes] == ["n1"]
    assert any("not in the synsets file" in r for r in annotation.dropped)
    assert any("differs from its directory" in r for r in annotation.dropped)


@pytest.mark.parametrize("data, message", [
    (b"<annotation><size>", "not parsable XML"),
    (b"<annotation><object/></annotation>", "no <size>"),
    (voc([], width=0), "cannot be normalised"),
])
def test_unusable_files_raise_with_reason(data, message):
    with pytest.raises(boxes.AnnotationError, match=message):
        boxes.parse(data, "bad.xml")


def test_csv_round_trip():
    rows = list(boxes.read_csv(["a.JPEG,0.1,0.2,0.3,0.4\n", "\n", "a.JPEG,0,0,1,1\n"]))
    assert rows == [("a.JPEG", (0.1, 0.2, 0.3, 0.4)), ("a.JPEG", (0.0, 0.0, 1.0, 1.0))]
    with pytest.raises(ValueError, match="line 2"):
        list(boxes.read_csv(["a.JPEG,0,0,1,1\n", "a.JPEG,0.1,0.2\n"]))


def test_cli_writes_sorted_csv_and_reports_instead_of_crashing(tmp_path):
    ann = tmp_path / "train"
    real = fabricate.shared_data("bbox", "train", "n01440764", "n01440764_96.xml")
    fabricate.write(ann / "n01440764" / "n01440764_96.xml", real.read_bytes())
    fabricate.write(ann / "n01443537" / "n01443537_2.xml",
                    voc([("n01443537", 10, 10, 20, 20), ("n01443537", 5, 5, 5, 9)]))
    fabricate.write(ann / "n01443537" / "n01443537_1.xml", b"<annotation>")
    fabricate.write(ann / "n01443537" / "n01443537_0.xml", voc([("n01443537", 0, 0, 200, 100)]))
    out = tmp_path / "boxes.csv"
    result = CliRunner().invoke(cli.main, ["boxes", str(ann), "--output", str(out),
                                           "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == [
        "n01440764_96.JPEG,0.0680,0.3413,0.8600,0.8133",
        "n01443537_0.JPEG,0.0000,0.0000,1.0000,1.0000",
        "n01443537_2.JPEG,0.0500,0.1000,0.1000,0.2000",
    ]
    report = [json.loads(line)
              for line in (tmp_path / "boxes.csv.rejects.jsonl").read_text().splitlines()]
    assert sorted(r["kind"] for r in report) == ["dropped box", "unreadable xml"]
    assert "4 XML files: wrote 3 boxes for 3 images" in result.output


def test_a_box_with_no_area_at_the_csvs_precision_is_dropped_not_written():
    """<height>1e9</height> made every y coordinate round to 0.0000: a zero-area box in the
    CSV. Boxes are judged as the CSV will hold them."""
    annotation = boxes.parse(voc([("n1", 10, 20, 100, 300)], width=200, height="1e9"), "a.xml")
    assert annotation.boxes == ()
    assert "degenerate box" in annotation.dropped[0] and "<size> is 200x1e+09" in \
        annotation.dropped[0]
    assert boxes.csv_rows(annotation) == []

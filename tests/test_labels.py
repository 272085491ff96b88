import pytest

from inception_data import labels


def test_line_i_is_label_i_and_trailing_blank_lines_ignored():
    label_map = labels.parse_labels("daisy\nrose\ntulip\n\n\n")
    assert label_map.names == ("daisy", "rose", "tulip")
    assert [label_map.index(n) for n in label_map.names] == [1, 2, 3]
    assert label_map.to_text() == "daisy\nrose\ntulip\n"


@pytest.mark.parametrize("text, message", [
    ("a\n\nb\n", "line 2 is blank"),
    ("a\nb\na\n", "'a' appears on line 1 and line 3"),
    ("a/b\n", "contains '/'"),
    ("\n\n", "holds no labels"),
])
def test_bad_files_name_the_problem(text, message):
    with pytest.raises(labels.LabelError, match=message):
        labels.parse_labels(text, "my-labels.txt")


def test_from_directories_sorts():
    assert labels.from_directories(["b", "a", "c", "a"]).names == ("a", "b", "c")


def test_reconcile_reports_missing_and_unlisted():
    label_map = labels.parse_labels("a\nb\nc\n")
    result = labels.reconcile(label_map, ["a", "c", "zz"])
    assert result.missing == ("b",)
    assert result.unlisted == ("zz",)


def test_packaged_imagenet_files():
    synsets = labels.parse_labels(labels.packaged_file("imagenet_lsvrc_2015_synsets.txt"))
    assert len(synsets) == 1000
    assert synsets.index("n01440764") == 1 and synsets.index("n15075141") == 1000


def test_a_labels_file_of_nul_bytes_or_with_a_nul_in_a_label_is_refused(tmp_path):
    for name, data in (("nul.txt", b"\0\0\0\0\n"), ("inside.txt", b"a\0b\ncat\n")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(labels.LabelError, match=r"line 1 .* contains the control character"):
            labels.load_labels(str(path))

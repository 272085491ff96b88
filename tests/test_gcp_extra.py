"""Google Cloud is the [gcp] extra: without it, gs:// paths and the Dataflow runner are an
error that names the extra; local builds do not need it."""

from click.testing import CliRunner

from inception_data_cli import main as cli
from inception_data_cli import options
from tests import fabricate


def run(*args):
    return CliRunner().invoke(cli.main, [*map(str, args)])


def test_the_test_extra_installs_google_cloud_support():
    assert options.gcp_installed()


def test_without_the_extra_cloud_paths_and_dataflow_name_it(monkeypatch, tmp_path):
    monkeypatch.setattr(options, "gcp_installed", lambda: False)
    fabricate.image_tree(tmp_path / "train", odd=False)
    for args in (("--output-dir", "gs://bucket/out"),
                 ("--output-dir", tmp_path / "out", "--runner", "DataflowRunner")):
        result = run("build", "--train-dir", tmp_path / "train", *args)
        assert result.exit_code == 2, result.output
        assert "pip install 'inception-data[gcp]'" in result.output
        assert not (tmp_path / "out").exists()
    result = run("boxes", "gs://bucket/annotations", "--output", tmp_path / "boxes.csv")
    assert result.exit_code == 2 and "inception-data[gcp]" in result.output
    # local paths need nothing from Google Cloud
    result = run("build", "--train-dir", tmp_path / "train", "--output-dir", tmp_path / "out",
                 "--no-progress", "--workers", "1")
    assert result.exit_code == 0, result.output

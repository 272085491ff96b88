"""The ImageNet pipeline translates for Dataflow without submitting: with --template_location
the DataflowRunner builds the job, stages this project (the CLI passes --setup_file itself, so
Beam builds the project's sdist from setup.py) and writes the job
file - all against the GCS emulator - and never calls the Dataflow service."""

import io
import json
import tarfile

from tests import fabricate
from tests.conftest import in_env

SCRIPT = """
import sys
from apache_beam.io.filesystems import FileSystems
sample = open(%(sample)r, 'rb').read()
for i in range(3):
    with FileSystems.create(f'gs://bucket/train/n01440764/n01440764_{i}.JPEG') as out:
        out.write(sample)
from inception_data_cli import main as cli
sys.argv = ['inception-data', 'imagenet', '--train-dir', 'gs://bucket/train',
            '--output-dir', 'gs://bucket/out', '--no-progress', '--runner', 'DataflowRunner',
            '--project', 'test-project', '--region', 'us-central1',
            '--temp_location', 'gs://bucket/tmp', '--staging_location', 'gs://bucket/staging',
            '--template_location', 'gs://bucket/template.json']  # staging: automatic
try:
    cli.main()
except SystemExit as exit:
    assert not exit.code, exit.code
import json
found = {}
for meta in FileSystems.match(['gs://bucket/template.json', 'gs://bucket/staging/*/*'])[0 : 2]:
    for item in meta.metadata_list:
        with FileSystems.open(item.path) as handle:
            found[item.path] = handle.read().hex()
print(json.dumps(found))
"""


def test_imagenet_job_translates_and_stages_the_project(gcs):
    sample = fabricate.shared_data("imagenet-samples", "n01440764_tench.JPEG")
    output = in_env(gcs, SCRIPT % {"sample": str(sample)})
    assert "run the same command with --resume" in output
    files = {path: bytes.fromhex(data)
             for path, data in json.loads(output.strip().splitlines()[-1]).items()}
    job = json.loads(files["gs://bucket/template.json"])
    assert job["type"] == "JOB_TYPE_BATCH"
    staged = {path.rsplit("/", 1)[-1]: data for path, data in files.items() if "/staging/" in path}
    assert "pipeline.pb" in staged and "workflow.tar.gz" in staged
    from apache_beam.portability.api import beam_runner_api_pb2

    graph = beam_runner_api_pb2.Pipeline.FromString(staged["pipeline.pb"])
    names = {t.unique_name for t in graph.components.transforms.values()}
    for stage in ("ListImages", "AssignShards", "GroupByShard", "WriteShards", "WriteRejects",
                  "WriteSummary"):
        assert stage in names, stage
    with tarfile.open(fileobj=io.BytesIO(staged["workflow.tar.gz"])) as sdist:
        members = sdist.getnames()
    for needed in ("inception_data_cli/main.py", "inception_data/images.py",
                   "pipelines/imagenet.py", "labels/imagenet_lsvrc_2015_synsets.txt",
                   "pyproject.toml"):
        assert any(name.endswith(needed) for name in members), needed

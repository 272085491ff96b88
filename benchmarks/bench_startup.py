"""What a small build costs before it converts anything: the fixed cost of `inception-data build`.

Times, as whole processes, interleaved over several rounds (medians printed): the Python
interpreter alone; `import apache_beam`; a one-element Beam pipeline on the in-process runner a
small local build uses (the least any Beam build pays); our build of a 1-image tree (every fixed
cost: imports, label and output checks, the pipeline's construction and run, the manifest); our
build of a 1,000-image tree (#15's target: under 1.0 s); the floor converter (floor_build.py) on
the same 1,000 images. Trees are real ImageNet samples from ../shared/data, hard-linked;
outputs go to RAM (/dev/shm). The installed extras matter: with apache-beam[gcp], importing Beam
imports Google Cloud clients too.

Usage: python benchmarks/bench_startup.py [--rounds 5] [--workdir /tmp/bench-startup]
"""

import argparse
import os
import pathlib
import shutil
import statistics
import sys

import checkouts
from bench_build import SAMPLES, make_tree, timed

HERE = pathlib.Path(__file__).resolve().parent
# The least a Beam build pays: import Beam and run a one-element pipeline (Create, Map,
# GroupByKey) on the in-process runner a small local build uses.
EMPTY_PIPELINE = """
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
options = PipelineOptions(["--direct_num_workers=1", "--direct_running_mode=in_memory"])
with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
    _ = p | beam.Create([1]) | beam.Map(lambda x: (x, x)) | beam.GroupByKey()
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", type=pathlib.Path, default=pathlib.Path("/tmp/bench-startup"))
    parser.add_argument("--output-root", type=pathlib.Path,
                        default=pathlib.Path("/dev/shm/bench-startup" if os.path.isdir("/dev/shm")
                                             else "/tmp/bench-startup/out"))
    args = parser.parse_args()
    if not SAMPLES.exists():
        sys.exit(f"needs the real samples in {SAMPLES}")
    trees = {n: args.workdir / f"tree-{n}" for n in (1, 1000)}
    for size, tree in trees.items():
        make_tree(tree, size, classes=min(size, 100))
    out = args.output_root / "out"
    tool, kwargs = checkouts.command()

    def build(size):
        return [*tool, "build", "--no-progress", "--train-dir", str(trees[size]),
                "--output-dir", str(out), "--overwrite"]

    variants = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import apache_beam": [sys.executable, "-c", "import apache_beam"],
        "empty Beam pipeline": [sys.executable, "-c", EMPTY_PIPELINE],
        "ours, 1 image": build(1),
        "ours, 1,000 images": build(1000),
        "floor, 1,000 images": [sys.executable, str(HERE / "floor_build.py"),
                                str(trees[1000]), str(out), "1", str(os.cpu_count())],
    }
    seconds = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, command in variants.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            seconds[name].append(timed(command, **kwargs))
    shutil.rmtree(out, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    for name, values in seconds.items():
        print(f"{name:22s} median {median[name]:6.2f} s  (min {min(values):.2f}, "
              f"max {max(values):.2f}, {len(values)} runs)")
    fixed = median["ours, 1 image"]
    print(f"\nour fixed cost (1 image) is {fixed / median['ours, 1,000 images']:.0%} of a "
          f"1,000-image build; the 999 other images add "
          f"{median['ours, 1,000 images'] - fixed:.2f} s (floor, whole process: "
          f"{median['floor, 1,000 images']:.2f} s). Target: 1,000 images under 1.0 s.")


if __name__ == "__main__":
    main()

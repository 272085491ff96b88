"""Precise batch norm on a short run, measured: one checkpoint evaluated four ways.

Builds ../shared/data/imagenette-small (10 real ImageNet classes, 1000 training and 300
validation photos) with the installed `inception-data`, trains a short run with train.py with
the moving statistics only (--precise-bn-batches 0), then evaluates its last checkpoint with the
raw and the averaged weights, each with batch norm's moving statistics and with statistics
re-estimated over --precise-bn-batches training batches, and prints the four precision@1 and
what the re-estimate cost.

Usage: python benchmarks/precise_bn.py [--steps 200] [--model mobilenet_v2] [--image-size 96]
                                       [--workdir /tmp/precise-bn]
"""

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parent
DATA = PROJECT.parent / "shared" / "data" / "imagenette-small"
TOOL = shutil.which("inception-data") or str(pathlib.Path(sys.executable).parent / "inception-data")


def run(*args) -> str:
    result = subprocess.run([*map(str, args)], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), cwd=PROJECT)
    if result.returncode:
        sys.exit(result.stdout[-2000:] + result.stderr[-3000:])
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bn-batches", type=int, default=10)
    parser.add_argument("--workdir", default="/tmp/precise-bn")
    args = parser.parse_args()
    work = pathlib.Path(args.workdir)
    data = work / "data"
    if not (data / "manifest.json").exists():
        run(TOOL, "build", "--no-progress", "--train-dir", DATA / "train", "--validation-dir",
            DATA / "validation", "--output-dir", data, "--overwrite", "--shards", "4",
            "--validation-shards", "2")
    runs = work / f"{args.model}-{args.steps}"
    shutil.rmtree(runs, ignore_errors=True)
    common = ["--data-dir", data, "--train-dir", runs, "--model", args.model, "--image-size",
              args.image_size, "--batch-size", args.batch_size, "--seed", 1]
    start = time.perf_counter()
    run(sys.executable, "train.py", *common, "--num-towers", 2, "--max-steps", args.steps,
        "--checkpoint-steps", args.steps, "--log-every", 50, "--precise-bn-batches", 0)
    print(f"{args.model} at {args.image_size} px, {args.steps} steps of {args.batch_size} on 2 "
          f"CPU towers: {time.perf_counter() - start:.0f} s")
    print(f"{'weights':10s} {'statistics':28s} precision@1  eval seconds")
    for weights, ema in (("raw", ["--no-ema"]), ("averaged", [])):
        for stats, bn in (("moving (momentum 0.99)", 0),
                          (f"re-estimated, {args.bn_batches} batches", args.bn_batches)):
            start = time.perf_counter()
            out = run(sys.executable, "train.py", *common, "--eval", *ema,
                      "--precise-bn-batches", bn)
            top1 = float(re.search(r"precision @ 1 = ([\d.]+)", out).group(1))
            print(f"{weights:10s} {stats:28s} {top1:11.4f}  {time.perf_counter() - start:6.1f}")


if __name__ == "__main__":
    main()

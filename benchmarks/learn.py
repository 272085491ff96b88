"""Does training learn? Build a real 10-class ImageNet subset with the CLI, train from scratch
for a fixed wall-clock budget, evaluate the moving-average weights on the held-out split every
few minutes, and print the curve.

    python benchmarks/learn.py                                  # Inception v3, 30 minutes
    python benchmarks/learn.py --model mobilenet_v2 --minutes 30
    python benchmarks/learn.py -- --initial-learning-rate 0.05  # extra train.py flags after --

Data: ../shared/data/imagenette-small (1,000 training and 300 validation 224 px photos of 10
classes; chance is 10%). Each run writes to a fresh temporary folder (or --work-dir).
The columns: step, minutes, mean training loss without the L2 term (the smoothed cross-entropy
of the main head) and training top-1 over the last progress interval, then validation
precision@1 and recall@5 of the moving-average weights.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "imagenette-small"

# Small images and a batch of 32 so that a 2-core CPU gets through ~75 epochs in 30 minutes;
# everything else is the model's recipe (trainer/recipes.py).
DEFAULTS = {
    "inception_v3": ["--image-size", "96", "--batch-size", "32"],
    "inception_resnet_v2": ["--image-size", "96", "--batch-size", "32"],
    "mobilenet_v2": ["--image-size", "96", "--batch-size", "32"],
    "resnet34": ["--image-size", "64", "--batch-size", "32"],
    "resnet50": ["--image-size", "96", "--batch-size", "32"],
    "vgg16": ["--image-size", "64", "--batch-size", "32"],
}


def build(out: pathlib.Path) -> None:
    subprocess.run([sys.executable, "-m", "inception_data_cli", "build", "--no-progress",
                    "--train-dir", str(DATA / "train"), "--validation-dir",
                    str(DATA / "validation"), "--labels-file", str(DATA / "labels.txt"),
                    "--output-dir", str(out), "--overwrite"], check=True, cwd=ROOT)


def curve(train_dir: pathlib.Path) -> list[dict]:
    """Each evaluation joined with the progress line logged at the same step."""
    def rows(name):
        path = train_dir / "logs" / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    progress = {row["step"]: row for row in rows("train")}
    joined = []
    for row in rows("validation"):
        before = [s for s in progress if s <= row["step"]]
        last = progress[max(before)] if before else {}
        joined.append({**row, "train_xent": last.get("xent"), "train_top1": last.get("top1")})
    return joined


def print_curve(points: list[dict]) -> None:
    print(f"{'step':>6} {'min':>6} {'train xent':>10} {'train top1':>10} {'val p@1':>8} "
          f"{'val r@5':>8}")
    for p in points:
        print(f"{p['step']:6d} {p['minutes']:6.1f} {p['train_xent'] or float('nan'):10.3f} "
              f"{p['train_top1'] or float('nan'):10.3f} {p['precision_at_1']:8.3f} "
              f"{p['recall_at_5']:8.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="inception_v3", choices=sorted(DEFAULTS))
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--eval-every-minutes", type=float, default=3.0)
    parser.add_argument("--work-dir", help="default: a fresh temporary folder")
    parser.add_argument("extra", nargs="*", help="more train.py flags (after --)")
    args = parser.parse_args(argv)
    if not DATA.exists():
        print(f"{DATA} is absent: this benchmark needs ../shared/data", file=sys.stderr)
        return 2
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="learn-"))
    build(work / "data")
    train_dir = work / f"run-{args.model}"
    command = [sys.executable, str(ROOT / "train.py"), "--data-dir", str(work / "data"),
               "--train-dir", str(train_dir), "--model", args.model, "--log-every", "20",
               "--max-minutes", str(args.minutes), "--eval-every-minutes",
               str(args.eval_every_minutes), "--checkpoint-steps", "100000", "--seed", "0",
               *DEFAULTS[args.model], *args.extra]
    print(" ".join(command), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(command, check=True, env=env)
    points = curve(train_dir)
    print_curve(points)
    best = max((p["precision_at_1"] for p in points), default=float("nan"))
    print(f"{args.model}: best validation precision@1 {best:.3f} in {args.minutes:g} minutes "
          f"(chance 0.100)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

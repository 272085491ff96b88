"""Does a checkpoint transfer? Fine-tuning against scratch on few images, measured side by side.

From ../shared/data/imagenette-small (10 real ImageNet classes): a network is trained on 5
classes (all 100 training photos each), then the other 5 classes with only --per-class photos
each are learned twice for the same steps: fine-tuned from that checkpoint (`--fine-tune
--pretrained-checkpoint`, new logits) and from scratch. Both are evaluated on the 5 classes'
150 validation photos every --eval-every steps; the script prints both curves, and a third:
fine-tuned with the head alone for the first --freeze-base-steps steps (the base frozen, its
batch norm in inference mode), then every layer.

Usage: python benchmarks/transfer.py [--model mobilenet_v2] [--image-size 96]
       [--source-steps 300] [--steps 120] [--per-class 20] [--freeze-base-steps 40]
       [--workdir /tmp/transfer]
"""

import argparse
import json
import pathlib
import shutil
import sys

HERE = pathlib.Path(__file__).resolve().parent
PROJECT = HERE.parent
DATA = PROJECT.parent / "shared" / "data" / "imagenette-small"

from precise_bn import TOOL, run  # noqa: E402 (benchmarks/ is this script's folder on sys.path)


def subset(work: pathlib.Path, name: str, synsets, per_class: int | None) -> pathlib.Path:
    """A build of `synsets` (their first `per_class` training photos; every validation one)."""
    out = work / f"data-{name}"
    if (out / "manifest.json").exists():
        return out
    tree = work / f"tree-{name}"
    for split in ("train", "validation"):
        for synset in synsets:
            (tree / split / synset).mkdir(parents=True, exist_ok=True)
            photos = sorted((DATA / split / synset).iterdir())
            for photo in photos[:per_class] if split == "train" and per_class else photos:
                (tree / split / synset / photo.name).symlink_to(photo)
    run(TOOL, "build", "--no-progress", "--train-dir", tree / "train", "--validation-dir",
        tree / "validation", "--output-dir", out, "--overwrite", "--shards", "2",
        "--validation-shards", "2")
    return out


def curve(train_dir: pathlib.Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (train_dir / "logs" / "validation.jsonl").read_text()
            .splitlines()]
    return [(row["step"], row["precision_at_1"]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--source-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--freeze-base-steps", type=int, default=40)
    parser.add_argument("--workdir", default="/tmp/transfer")
    args = parser.parse_args()
    work = pathlib.Path(args.workdir)
    synsets = sorted(p.name for p in (DATA / "train").iterdir())
    source = subset(work, "source", synsets[:5], None)
    target = subset(work, "target", synsets[5:], args.per_class)
    common = ["--model", args.model, "--image-size", args.image_size, "--batch-size", 32,
              "--num-towers", 2, "--seed", 1, "--log-every", args.eval_every]
    source_run = work / f"source-{args.model}-{args.source_steps}"
    if not list(source_run.glob("ckpt-*.keras")):
        run(sys.executable, "train.py", "--data-dir", source, "--train-dir", source_run, *common,
            "--max-steps", args.source_steps, "--checkpoint-steps", args.source_steps,
            "--eval-every-steps", args.source_steps)
    print(f"source: {args.model} at {args.image_size} px on 5 classes x 100 photos, "
          f"{args.source_steps} steps: validation precision@1 {curve(source_run)[-1][1]:.3f}")
    checkpoint = sorted(source_run.glob("ckpt-*.keras"))[-1]
    curves = {}
    tune = ["--fine-tune", "--pretrained-checkpoint", checkpoint, "--initial-learning-rate", 0.0003]
    for name, extra in (("fine-tuned", tune),
                        ("head first", tune + ["--freeze-base-steps", args.freeze_base_steps]),
                        ("scratch", [])):
        train_dir = work / f"{name.replace(' ', '-')}-{args.model}-{args.steps}"
        shutil.rmtree(train_dir, ignore_errors=True)
        run(sys.executable, "train.py", "--data-dir", target, "--train-dir", train_dir, *common,
            "--max-steps", args.steps, "--checkpoint-steps", args.steps, "--eval-every-steps",
            args.eval_every, *extra)
        curves[name] = curve(train_dir)
    print(f"target: the other 5 classes, {args.per_class} training photos each, 150 validation "
          f"photos; precision@1 of the averaged weights (chance 0.2)")
    print(f"step  fine-tuned  head first ({args.freeze_base_steps} steps)  scratch")
    for (step, tuned), (_, head), (_, scratch) in zip(
            curves["fine-tuned"], curves["head first"], curves["scratch"]):
        print(f"{step:4d}  {tuned:10.3f}  {head:23.3f}  {scratch:7.3f}")


if __name__ == "__main__":
    main()

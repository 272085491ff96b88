"""Train, evaluate and fine-tune image classifiers on shards built by `inception-data`.

The original inception_train.py built one model tower per GPU, split each batch across the
towers, averaged their gradients and applied them to shared variables. Here that is
tf.distribute.MirroredStrategy (one replica per GPU) driving Keras models through `fit`; the
data comes from `inception_data.input_fn`, one input pipeline per replica. Models and their
recipes: trainer/recipes.py (`--model`); every recipe value is a flag.

    python train.py --data-dir out/ --train-dir runs/flowers --num-gpus 8 --batch-size 256
    python train.py --data-dir out/ --train-dir runs/flowers --eval
    python train.py --data-dir mnist/tfrecords --train-dir runs/mnist --model resnet34
    python train.py --data-dir flowers/ --train-dir runs/ft --fine-tune \\
        --pretrained-checkpoint runs/imagenet/ckpt-100000.keras --initial-learning-rate 0.001
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys


def _tensorflow_log_level(argv) -> str:
    """TensorFlow's C++ warnings are mostly start-up chatter, hidden; with --on-error skip each
    skipped record is one of them (tf.data's ignore_errors logs the reason), so they show."""
    skip = "--on-error=skip" in argv or ["--on-error", "skip"] in map(list, zip(argv, argv[1:]))
    return "1" if skip else "2"


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _tensorflow_log_level(sys.argv))
if __name__ == "__main__":  # before TensorFlow starts threads, which inherit the blocked signals
    from trainer import stop

    stop.install()  # SIGTERM and Ctrl-C end the process at once, whatever it is doing

from inception_data.quiet_start import import_tensorflow  # noqa: E402

tf = import_tensorflow()  # without the C++ start-up notices that look like failures
import keras  # noqa: E402

from trainer import recipes, run  # noqa: E402
from trainer.data import DataError  # noqa: E402
from trainer.errors import TrainingError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="output of inception-data build/imagenet")
    p.add_argument("--train-dir", required=True, help="checkpoints and TensorBoard logs")
    p.add_argument("--model", choices=recipes.MODELS, default="inception_v3")
    p.add_argument("--num-gpus", type=int, help="GPUs to use (default: all; 0: CPU)")
    p.add_argument("--num-towers", type=int, help="CPU only: split the CPU into N logical "
                                                  "devices, one tower each")
    p.add_argument("--batch-size", type=int, default=32, help="global batch, split across towers")
    p.add_argument("--max-steps", type=int, default=10_000_000)
    p.add_argument("--max-minutes", type=float, help="stop after this much wall-clock time")
    p.add_argument("--image-size", type=int, help="default: the model's (299 for Inception), "
                   "or the images' own for MNIST/CIFAR-size images")
    p.add_argument("--eval", action="store_true", help="evaluate the latest checkpoint")
    p.add_argument("--watch", action="store_true", help="with --eval: evaluate new checkpoints")
    p.add_argument("--eval-interval-secs", type=float, default=60)
    p.add_argument("--eval-every-steps", type=int, help="while training: evaluate the moving "
                   "averages on the validation split every N steps")
    p.add_argument("--eval-every-minutes", type=float, help="... or every N minutes")
    p.add_argument("--checkpoint", help="with --eval: this checkpoint instead of the latest")
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw weights")
    p.add_argument("--precise-bn-batches", type=int, default=10,
                   help="before each evaluation and checkpoint, re-estimate batch norm's "
                        "statistics over this many training batches, for the weights "
                        "evaluated (0: keep the moving statistics)")
    p.add_argument("--fine-tune", action="store_true",
                   help="start from --pretrained-checkpoint with new logits layers")
    p.add_argument("--pretrained-checkpoint")
    p.add_argument("--freeze-base-steps", type=int, default=0,
                   help="with --pretrained or --fine-tune: train only the new head for this "
                        "many steps (the base frozen, its batch norm in inference mode, the "
                        "head at 10x the peak rate), then every layer at the peak rate")
    p.add_argument("--pretrained", metavar="imagenet|PATH",
                   help="start from published ImageNet weights: 'imagenet' (Keras fetches them "
                        "into $KERAS_HOME/models) or the same no-top .h5 file's path; new logits")
    recipe = p.add_argument_group("recipe (default: the model's row in trainer/recipes.py)")
    recipe.add_argument("--optimizer", choices=["rmsprop", "sgd", "adam"])
    recipe.add_argument("--initial-learning-rate", type=float, help="peak learning rate, "
                        "as given (default: the recipe's rate x global batch / 256)")
    recipe.add_argument("--warmup-epochs", type=float)
    recipe.add_argument("--epochs-per-decay", type=float)
    recipe.add_argument("--learning-rate-decay-factor", type=float)
    recipe.add_argument("--label-smoothing", type=float)
    recipe.add_argument("--aux-loss-weight", type=float)
    recipe.add_argument("--weight-decay", type=float)
    recipe.add_argument("--batch-norm-momentum", type=float)
    recipe.add_argument("--ema-decay", type=float, help="0 disables")
    p.add_argument("--checkpoint-steps", type=int, default=1000)
    p.add_argument("--keep-checkpoints", type=int, default=5)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--seed", type=int, help="a reproducible run on one machine: input order, "
                        "distortions, initial weights and dropout")
    p.add_argument("--distortions", choices=["fast", "inception", "none"], default="fast")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="a record that does not decode, or a damaged shard: stop with the "
                        "error (default), or skip the record (or the rest of the shard: one "
                        "line names it; TensorFlow logs each; evaluation says how many)")
    recipe.add_argument("--min-crop-area", type=float,
                        help="smallest share of the image a training crop covers (recipes: "
                             "0.25; the original's 0.05 suits long ImageNet runs)")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute on GPUs")
    p.add_argument("--jit-compile", choices=["auto", "on", "off"], default="auto",
                   help="XLA for the training step; auto = on GPUs only")
    p.add_argument("--peer-timeout", type=float, default=20, metavar="MINUTES",
                   help="under TF_CONFIG: how long to wait for every task of the cluster (a "
                        "line every 30 s names those not reached); machines of a real cluster "
                        "can take minutes to be scheduled and pull their image")
    p.add_argument("--benchmark-steps", type=int,
                   help="only measure images/s with real and synthetic input")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> run.TrainConfig:
    names = {f.name for f in dataclasses.fields(run.TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and k != "distortions"}
    return run.TrainConfig(
        **values, learning_rate=args.initial_learning_rate,
        decay_factor=args.learning_rate_decay_factor, bn_momentum=args.batch_norm_momentum,
        distortions=None if args.distortions == "none" else args.distortions)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.mixed_precision:
        if tf.config.list_physical_devices("GPU"):
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            print("warning: --mixed-precision needs a GPU; training in float32", file=sys.stderr)
    config = config_from(args)
    try:
        if args.benchmark_steps:
            run.benchmark(config, args.benchmark_steps)
        elif args.eval and args.watch:
            run.watch(config, args.eval_interval_secs)
        elif args.eval:
            run.evaluate(config, args.checkpoint)
        else:
            run.train(config)
    except (TrainingError, DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

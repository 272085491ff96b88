"""Train, evaluate and fine-tune image classifiers on shards built by `inception-data`.

The original inception_train.py built one model tower per GPU, split each batch across the
towers, averaged their gradients and applied them to shared variables. Here that is
tf.distribute.MirroredStrategy (one replica per GPU) driving Keras models through `fit`; the
data comes from `inception_data.input_fn`, one input pipeline per replica. Models and their
recipes: trainer/recipes.py (`--model`); every option, recipe values included, is defined once
in trainer/options.py, from which this command line is made.

    python train.py --data-dir out/ --train-dir runs/flowers --num-gpus 8 --batch-size 256
    python train.py --data-dir out/ --train-dir runs/flowers --eval
    python train.py --data-dir mnist/tfrecords --train-dir runs/mnist --model resnet34
    python train.py --data-dir flowers/ --train-dir runs/ft --fine-tune \\
        --pretrained-checkpoint runs/imagenet/ckpt-100000.keras --initial-learning-rate 0.001
"""

from __future__ import annotations

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

from trainer import options, run  # noqa: E402
from trainer.data import DataError  # noqa: E402
from trainer.errors import TrainingError  # noqa: E402


def parse_args(argv=None) -> options.TrainOptions:
    """The command line, made from trainer/options.py (every default is shown by --help)."""
    return options.parse_args(argv, description=__doc__.split("\n\n")[0])


def main(argv=None) -> int:
    config = parse_args(argv)
    if config.mixed_precision:
        if tf.config.list_physical_devices("GPU"):
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            print("warning: --mixed-precision needs a GPU; training in float32", file=sys.stderr)
    try:
        if config.benchmark_steps:
            run.benchmark(config, config.benchmark_steps)
        elif config.eval and config.watch:
            run.watch(config, config.eval_interval_secs)
        elif config.eval:
            run.evaluate(config, config.checkpoint)
        else:
            run.train(config)
    except (TrainingError, DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

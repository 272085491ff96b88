"""Train, evaluate and fine-tune Inception v3 on shards built by `inception-data`.

The original inception_train.py built one model tower per GPU, split each batch across the
towers, averaged their gradients and applied them to shared variables. Here that is
tf.distribute.MirroredStrategy (one replica per GPU, gradients all-reduced) driving Keras'
InceptionV3 through `fit`; the data comes from `inception_data.input_fn`, one input pipeline per
replica. The Inception recipe's defaults (auxiliary head weighted 0.4, label smoothing 0.1, L2
weight decay 4e-5, batch-norm decay 0.9997, RMSProp decay 0.9 momentum 0.9 epsilon 1.0, learning
rate 0.1 x 0.16 every 30 epochs, weight EMA 0.9999) are flags.

    python train.py --data-dir out/ --train-dir runs/flowers --num-gpus 8 --batch-size 256
    python train.py --data-dir out/ --train-dir runs/flowers --eval
    python train.py --data-dir flowers/ --train-dir runs/ft --fine-tune \\
        --pretrained-checkpoint runs/imagenet/ckpt-000100.keras --initial-learning-rate 0.001
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

import inception_data  # noqa: E402
from inception_data import labels as labels_lib  # noqa: E402

LOGITS, AUX_LOGITS = "logits", "aux_logits"
CHECKPOINT = re.compile(r"ckpt-(\d+)\.keras$")


class TrainingError(RuntimeError):
    """A problem the user must fix; the message says what."""


# ---------------------------------------------------------------- data

def dataset_info(data_dir: str) -> tuple[list[str], dict]:
    """(label names, manifest) written by `inception-data build` / `imagenet`."""
    try:
        labels_path = os.path.join(data_dir, "labels.txt")
        with tf.io.gfile.GFile(labels_path) as handle:
            names = list(labels_lib.parse_labels(handle.read(), labels_path).names)
        with tf.io.gfile.GFile(os.path.join(data_dir, "manifest.json")) as handle:
            manifest = json.load(handle)
    except tf.errors.NotFoundError as err:
        raise TrainingError(f"{data_dir} lacks labels.txt or manifest.json; point --data-dir at "
                            f"the output of `inception-data build` ({err})") from None
    return names, manifest


def towers(strategy) -> int:
    return strategy.num_replicas_in_sync


def per_replica_batch(global_batch: int, strategy) -> int:
    """The original split each global batch evenly across towers."""
    if global_batch % towers(strategy):
        raise TrainingError(f"--batch-size {global_batch} does not split evenly across "
                            f"{towers(strategy)} towers; use a multiple of {towers(strategy)}")
    return global_batch // towers(strategy)


def training_data(args, strategy, num_classes: int):
    """A distributed dataset of (images, (one-hot, one-hot)) for the main and auxiliary heads."""
    batch = per_replica_batch(args.batch_size, strategy)
    pattern = os.path.join(args.data_dir, "train-*")

    def make(context):
        dataset = inception_data.input_fn(
            pattern, is_training=True, batch_size=batch, image_size=args.image_size,
            input_context=context, seed=args.seed, deterministic=args.seed is not None,
            num_classes=num_classes - 1,
            distortions=None if args.distortions == "none" else args.distortions)
        return dataset.map(lambda images, labels: (images, _targets(labels, num_classes)))

    return strategy.distribute_datasets_from_function(make)


def _targets(labels, num_classes):
    one_hot = tf.one_hot(labels, num_classes)
    return one_hot, one_hot


# ---------------------------------------------------------------- model

def _aux_head(features, num_classes: int):
    """The original's auxiliary classifier on Mixed_6e (Keras: mixed7): 5x5 average pool
    stride 3, 1x1 conv 128, a conv covering the pooled map (5x5 at 299 px) to 768, logits."""
    pool = min(5, features.shape[1])
    x = keras.layers.AveragePooling2D(pool, strides=3, name="aux_pool")(features)
    for filters, kernel, name in ((128, 1, "aux_conv1"), (768, x.shape[1], "aux_conv2")):
        x = keras.layers.Conv2D(filters, kernel, use_bias=False, name=name)(x)
        x = keras.layers.BatchNormalization(scale=False, name=f"{name}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = keras.layers.Flatten(name="aux_flatten")(x)
    return keras.layers.Dense(num_classes, dtype="float32", name=AUX_LOGITS)(x)


def build_model(num_classes: int, image_size: int = 299, *, weight_decay: float = 4e-5,
                bn_decay: float = 0.9997, bn_epsilon: float = 0.001,
                dropout_keep: float = 0.8) -> keras.Model:
    """Inception v3 with the auxiliary head; outputs (logits, aux_logits) over `num_classes`
    (background included)."""
    base = keras.applications.InceptionV3(include_top=False, weights=None,
                                          input_shape=(image_size, image_size, 3))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(base.output)
    x = keras.layers.Dropout(1.0 - dropout_keep, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name=LOGITS)(x)
    aux = _aux_head(base.get_layer("mixed7").output, num_classes)
    model = keras.Model(base.input, [logits, aux], name="inception_v3")
    # Rebuilt from its config so every layer gets the recipe's regularizer and batch-norm
    # settings at construction (Keras applications take neither as arguments). TF-slim's
    # l2_regularizer(w) is w * sum(x^2) / 2, Keras' L2(w) is w * sum(x^2): hence w / 2.
    config = model.get_config()
    for layer in config["layers"]:
        settings = layer["config"]
        if layer["class_name"] in ("Conv2D", "Dense"):
            settings["kernel_regularizer"] = keras.regularizers.L2(weight_decay / 2)
        elif layer["class_name"] == "BatchNormalization":
            settings.update(momentum=bn_decay, epsilon=bn_epsilon)
    return keras.Model.from_config(config)


def learning_rate(args, steps_per_epoch: int):
    """initial x decay_factor every `epochs_per_decay` epochs, staircase (the original's)."""
    return keras.optimizers.schedules.ExponentialDecay(
        args.initial_learning_rate, decay_steps=max(1, int(steps_per_epoch * args.epochs_per_decay)),
        decay_rate=args.learning_rate_decay_factor, staircase=True)


def _jit(choice: str) -> bool:
    if choice == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return choice == "on"


def compile_model(model, args, steps_per_epoch: int) -> None:
    optimizer = keras.optimizers.RMSprop(
        learning_rate=learning_rate(args, steps_per_epoch), rho=0.9, momentum=0.9, epsilon=1.0,
        use_ema=args.ema_decay > 0, ema_momentum=args.ema_decay or 0.99)
    smoothing = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                     label_smoothing=args.label_smoothing)
    model.compile(optimizer=optimizer, loss={LOGITS: smoothing, AUX_LOGITS: smoothing},
                  loss_weights={LOGITS: 1.0, AUX_LOGITS: args.aux_loss_weight},
                  metrics={LOGITS: [keras.metrics.CategoricalAccuracy(name="top1")]},
                  jit_compile=_jit(args.jit_compile))


# ---------------------------------------------------------------- checkpoints

def checkpoints(train_dir: str) -> list[tuple[int, str]]:
    """(step, path) of the checkpoints in `train_dir`, oldest first."""
    found = []
    for path in tf.io.gfile.glob(os.path.join(train_dir, "ckpt-*.keras")):
        match = CHECKPOINT.search(path)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class KeepCheckpoints(keras.callbacks.Callback):
    """Saves the whole model (weights, optimizer state with the weights' moving averages, step)
    every `every` steps and at the end, keeping the newest `keep`. Each file is written under a
    temporary name first."""

    def __init__(self, train_dir: str, every: int, keep: int):
        super().__init__()
        self.train_dir, self.every, self.keep = train_dir, every, keep

    def save(self):
        step = int(self.model.optimizer.iterations.numpy())
        final = os.path.join(self.train_dir, f"ckpt-{step:06d}.keras")
        tmp = os.path.join(self.train_dir, f".tmp-ckpt-{step:06d}.keras")
        self.model.save(tmp)
        tf.io.gfile.rename(tmp, final, overwrite=True)
        for _, old in checkpoints(self.train_dir)[:-self.keep]:
            tf.io.gfile.remove(old)

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        # Not on_train_end: fit() swaps the moving averages into the weights before that, and
        # a checkpoint must keep both (raw weights to resume, averages to evaluate).
        step = int(self.model.optimizer.iterations.numpy())
        if not checkpoints(self.train_dir) or checkpoints(self.train_dir)[-1][0] != step:
            self.save()


def load_checkpoint(path: str, num_classes: int | None, *, fine_tune: bool = False):
    model = keras.models.load_model(path, compile=not fine_tune)
    classes = model.get_layer(LOGITS).units
    if num_classes is not None and classes != num_classes and not fine_tune:
        raise TrainingError(
            f"{path} predicts {classes} classes (background included) but the data has "
            f"{num_classes}; pass --fine-tune to start new logits layers, or use the data the "
            f"checkpoint was trained on")
    return model


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies every layer's weights from `source` except the logits layers (fine-tuning);
    returns the names of the layers left fresh."""
    fresh = []
    for layer in target.layers:
        if layer.name in (LOGITS, AUX_LOGITS) or not layer.weights:
            fresh += [layer.name] if layer.weights else []
            continue
        layer.set_weights(source.get_layer(layer.name).get_weights())
    return fresh


# ---------------------------------------------------------------- callbacks

class Throughput(keras.callbacks.Callback):
    """Every `every` steps: a line with step, loss and images/s, and TensorBoard scalars
    (learning rate, images/s) next to Keras' loss and accuracy."""

    def __init__(self, global_batch: int, every: int, log_dir: str | None):
        super().__init__()
        self.global_batch, self.every = global_batch, every
        self.writer = tf.summary.create_file_writer(log_dir) if log_dir else None
        self.start = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.start is None:
            self.start = (time.perf_counter(), int(self.model.optimizer.iterations.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        loss = float((logs or {}).get("loss", float("nan")))
        if not math.isfinite(loss):
            raise TrainingError(f"loss is {loss} at step {step}; lower --initial-learning-rate "
                                f"or check the data (inception-data inspect --verify)")
        if step % self.every:
            return
        began, first = self.start
        rate = (step - first) * self.global_batch / max(time.perf_counter() - began, 1e-9)
        lr = float(self.model.optimizer.learning_rate.numpy())
        print(f"step {step}: loss = {loss:.4f} ({rate:.1f} images/s, lr {lr:.5g})", flush=True)
        if self.writer:
            with self.writer.as_default(step=step):
                tf.summary.scalar("learning_rate", lr)
                tf.summary.scalar("images_per_second", rate)
        self.start = (time.perf_counter(), step)


# ---------------------------------------------------------------- strategy

def make_strategy(num_gpus: int | None, num_towers: int | None):
    """MirroredStrategy over GPUs, or over N logical CPU devices (`--num-towers`, how the tests
    exercise the multi-tower path without GPUs), or the default strategy."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and num_gpus != 0:
        use = gpus[: num_gpus or len(gpus)]
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(use))])
    if num_towers and num_towers > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * num_towers)
        except RuntimeError:  # already set up in this process (tests call train() repeatedly)
            if len(tf.config.list_logical_devices("CPU")) < num_towers:
                raise TrainingError(f"this process already split the CPU into fewer than "
                                    f"{num_towers} devices; run --num-towers in a new process")
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(num_towers)])
    return tf.distribute.get_strategy()


# ---------------------------------------------------------------- train / eval / benchmark

def _new_model(args, num_classes: int, steps_per_epoch: int):
    model = build_model(num_classes, args.image_size, weight_decay=args.weight_decay)
    fresh = []
    if args.fine_tune:
        if not args.pretrained_checkpoint:
            raise TrainingError("--fine-tune needs --pretrained-checkpoint PATH")
        source = load_checkpoint(args.pretrained_checkpoint, None, fine_tune=True)
        fresh = transfer_weights(source, model)
    compile_model(model, args, steps_per_epoch)
    return model, fresh


def train(args) -> keras.Model:
    names, manifest = dataset_info(args.data_dir)
    num_classes, examples = len(names) + 1, manifest["splits"]["train"]["written"]
    strategy = make_strategy(args.num_gpus, args.num_towers)
    steps_per_epoch = max(1, math.ceil(examples / args.batch_size))
    tf.io.gfile.makedirs(args.train_dir)
    with strategy.scope():
        existing = checkpoints(args.train_dir)
        if existing:
            model = load_checkpoint(existing[-1][1], num_classes)
            print(f"resuming from {existing[-1][1]} at step {existing[-1][0]}")
        else:
            model, fresh = _new_model(args, num_classes, steps_per_epoch)
            if fresh:
                print(f"fine-tuning from {args.pretrained_checkpoint}; new layers: {fresh}")
    step = int(model.optimizer.iterations.numpy())
    if step >= args.max_steps:
        print(f"already at step {step} >= --max-steps {args.max_steps}; nothing to do")
        return model
    print(f"{towers(strategy)} tower(s), global batch {args.batch_size}, {num_classes} classes "
          f"(background included), {examples} training examples, {steps_per_epoch} steps/epoch")
    callbacks = [
        KeepCheckpoints(args.train_dir, args.checkpoint_steps, args.keep_checkpoints),
        Throughput(args.batch_size, args.log_every, os.path.join(args.train_dir, "logs")),
        keras.callbacks.TensorBoard(os.path.join(args.train_dir, "logs"),
                                    update_freq=args.log_every),
    ]
    model.fit(training_data(args, strategy, num_classes), epochs=1,
              steps_per_epoch=args.max_steps - step, callbacks=callbacks,
              verbose=1 if sys.stdout.isatty() else 0)
    return model


def use_moving_averages(model) -> bool:
    """Swaps the optimizer's moving averages into the weights (what evaluation and export
    use). Returns False when the model was trained without them."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "use_ema", False):
        return False
    optimizer.finalize_variable_values(model.trainable_variables)
    return True


def evaluate(args, checkpoint: str | None = None) -> dict:
    """precision@1 and recall@5 over every validation example (the original's metrics)."""
    names, manifest = dataset_info(args.data_dir)
    num_classes = len(names) + 1
    if checkpoint is None:
        found = checkpoints(args.train_dir)
        if not found:
            raise TrainingError(f"no checkpoint (ckpt-*.keras) in {args.train_dir}")
        checkpoint = found[-1][1]
    model = load_checkpoint(checkpoint, num_classes)
    averaged = use_moving_averages(model) and not args.no_ema
    dataset = inception_data.input_fn(os.path.join(args.data_dir, "validation-*"),
                                      is_training=False, batch_size=args.batch_size,
                                      image_size=args.image_size, num_classes=len(names))
    top1 = top5 = count = 0
    for images, labels in dataset:
        logits = model(images, training=False)[0]
        top1 += int(tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.int32)))
        top5 += int(tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 5), tf.int32)))
        count += int(labels.shape[0])
    result = {"precision@1": top1 / max(count, 1), "recall@5": top5 / max(count, 1),
              "examples": count, "checkpoint": checkpoint, "moving_averages": averaged}
    print(f"precision @ 1 = {result['precision@1']:.4f} recall @ 5 = {result['recall@5']:.4f} "
          f"[{count} examples] ({os.path.basename(checkpoint)}"
          f"{', moving-average weights' if averaged else ''})", flush=True)
    return result


def watch(args) -> None:
    """Evaluates each new checkpoint as it appears, until one at --max-steps is evaluated."""
    seen = set()
    while True:
        for step, path in checkpoints(args.train_dir):
            if path not in seen:
                seen.add(path)
                evaluate(args, path)
                if step >= args.max_steps:
                    return
        time.sleep(args.eval_interval_secs)


def benchmark(args) -> dict:
    """Training images/s with the real input pipeline and with synthetic input, side by side."""
    names, manifest = dataset_info(args.data_dir)
    num_classes = len(names) + 1
    strategy = make_strategy(args.num_gpus, args.num_towers)
    batch = per_replica_batch(args.batch_size, strategy)
    with strategy.scope():
        model, _ = _new_model(args, num_classes, steps_per_epoch=1000)

    def synthetic(context):
        images = tf.random.uniform([batch, args.image_size, args.image_size, 3], -1, 1)
        labels = tf.random.uniform([batch], 1, num_classes, dtype=tf.int32)
        return tf.data.Dataset.from_tensors((images, _targets(labels, num_classes))).repeat()

    rates = {}
    for name, data in (("real input", training_data(args, strategy, num_classes)),
                       ("synthetic input", strategy.distribute_datasets_from_function(synthetic))):
        model.fit(data, epochs=1, steps_per_epoch=2, verbose=0)  # warm up, trace
        start = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=args.benchmark_steps, verbose=0)
        rates[name] = args.benchmark_steps * args.batch_size / (time.perf_counter() - start)
        print(f"{name:16s} {rates[name]:8.1f} images/s", flush=True)
    bound = "input pipeline" if rates["real input"] < 0.9 * rates["synthetic input"] else "model"
    print(f"real / synthetic = {rates['real input'] / rates['synthetic input']:.2f}: the "
          f"{bound} is the bottleneck on this machine")
    return rates


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="output of inception-data build/imagenet")
    p.add_argument("--train-dir", required=True, help="checkpoints and TensorBoard logs")
    p.add_argument("--num-gpus", type=int, help="GPUs to use (default: all; 0: CPU)")
    p.add_argument("--num-towers", type=int, help="CPU only: split the CPU into N logical "
                                                  "devices, one tower each")
    p.add_argument("--batch-size", type=int, default=32, help="global batch, split across towers")
    p.add_argument("--max-steps", type=int, default=10_000_000)
    p.add_argument("--image-size", type=int, default=299)
    p.add_argument("--eval", action="store_true", help="evaluate the latest checkpoint")
    p.add_argument("--watch", action="store_true", help="with --eval: evaluate new checkpoints")
    p.add_argument("--eval-interval-secs", type=float, default=60)
    p.add_argument("--checkpoint", help="with --eval: this checkpoint instead of the latest")
    p.add_argument("--no-ema", action="store_true", help="evaluate the raw weights")
    p.add_argument("--fine-tune", action="store_true",
                   help="start from --pretrained-checkpoint with new logits layers")
    p.add_argument("--pretrained-checkpoint")
    p.add_argument("--initial-learning-rate", type=float, default=0.1)
    p.add_argument("--epochs-per-decay", type=float, default=30.0)
    p.add_argument("--learning-rate-decay-factor", type=float, default=0.16)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--aux-loss-weight", type=float, default=0.4)
    p.add_argument("--weight-decay", type=float, default=4e-5)
    p.add_argument("--ema-decay", type=float, default=0.9999, help="0 disables")
    p.add_argument("--checkpoint-steps", type=int, default=1000)
    p.add_argument("--keep-checkpoints", type=int, default=5)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--seed", type=int, help="seeded, reproducible input order and distortions")
    p.add_argument("--distortions", choices=["fast", "inception", "none"], default="fast")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute on GPUs")
    p.add_argument("--jit-compile", choices=["auto", "on", "off"], default="auto",
                   help="XLA for the training step; auto = on GPUs only (on a CPU compiling "
                        "Inception v3 takes longer than short runs gain)")
    p.add_argument("--benchmark-steps", type=int,
                   help="only measure images/s with real and synthetic input")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.mixed_precision:
        if tf.config.list_physical_devices("GPU"):
            keras.mixed_precision.set_global_policy("mixed_float16")
        else:
            print("warning: --mixed-precision needs a GPU; training in float32", file=sys.stderr)
    try:
        if args.benchmark_steps:
            benchmark(args)
        elif args.eval:
            watch(args) if args.watch else evaluate(args, args.checkpoint)
        else:
            train(args)
    except (TrainingError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Keras callbacks of the trainer: progress lines and TensorBoard, periodic evaluation of the
moving-average weights, a NaN guard, a wall-clock budget, a look at the training inputs.

Progress lines report means over the steps since the previous line (the callback resets Keras'
running metrics after each line), so they show where training is now, not since step 0.
"""

from __future__ import annotations

import json
import math
import os
import time

import keras
import tensorflow as tf

from trainer import cluster, loop
from trainer.errors import TrainingError


def step_of(model) -> int:
    """The optimizer's step: what checkpoints, progress and evaluation are keyed by."""
    return int(model.optimizer.iterations.numpy())


def metric(logs: dict, name: str) -> float:
    """A metric from Keras' logs: `top1` for one output, `logits_top1` for two."""
    for key, value in logs.items():
        if key == name or key.endswith("_" + name) and not key.startswith("aux_"):
            return float(value)
    return float("nan")


@keras.saving.register_keras_serializable(package="inception_data")
class ExampleCount(keras.metrics.Metric):
    """How many examples the metrics saw: evaluation during training reports it. A count kept
    in the input pipeline is wrong under several towers (Keras' distributed iteration runs the
    pipeline's map functions twice per element on 2 towers: 12 counted for 6 examples); metric
    variables are summed across towers."""

    def __init__(self, name="examples", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total",
                                       aggregation="sum")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add(keras.ops.cast(keras.ops.shape(y_true)[0], self.dtype))

    def result(self):
        return self.total

    def reset_state(self):
        self.total.assign(0.0)


class NanGuard(keras.callbacks.Callback):
    """Stops with an error that says what to do as soon as the loss is not finite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingError(
                f"loss is {loss} at step {step_of(self.model)}; lower the learning rate "
                f"(--initial-learning-rate) or check the data (inception-data inspect --verify)")


class Progress(keras.callbacks.Callback):
    """Every `every` steps: a line with the loss (with and without the L2 term), training
    top-1, images/s and the learning rate, the same as TensorBoard scalars, and a JSON line in
    `train.jsonl`."""

    def __init__(self, global_batch: int, every: int, logbook: Logbook | None):
        super().__init__()
        self.global_batch, self.every, self.logbook = global_batch, every, logbook
        self.began = self.mark = None

    def on_train_begin(self, logs=None):  # (a run with a frozen phase calls fit twice)
        self.began = self.began or time.perf_counter()
        self.mark = (time.perf_counter(), step_of(self.model))

    def on_train_batch_end(self, batch, logs=None):
        step = step_of(self.model)
        if step % self.every:
            return
        now, (then, first) = time.perf_counter(), self.mark
        logs = logs or {}
        row = {"step": step, "minutes": round((now - self.began) / 60, 3),
               "loss": float(logs.get("loss", math.nan)), "xent": metric(logs, "xent"),
               "top1": metric(logs, "top1"),
               "images_per_second": (step - first) * self.global_batch / max(now - then, 1e-9),
               "learning_rate": float(keras.ops.convert_to_numpy(
                   self.model.optimizer.learning_rate))}
        _report(self.model, self.logbook, "train", row,
                f"step {step}: loss = {row['loss']:.4f} (cross-entropy {row['xent']:.4f}, "
                f"top-1 {row['top1']:.3f}; {row['images_per_second']:.1f} images/s, "
                f"lr {row['learning_rate']:.5g}, {row['minutes']:.1f} min)")
        self.mark = (time.perf_counter(), step)


def _report(model, logbook, split: str, row: dict, line: str) -> None:
    """Prints `line`, logs `row`, and restarts Keras' running metrics so that the next line
    reports only the steps after this one (evaluate() shares the compiled metrics)."""
    print(line, flush=True)
    if logbook:
        logbook.write(split, row)
    model.reset_metrics()


class Logbook:
    """One TensorBoard writer for a run (`<log_dir>/events*`) plus `<log_dir>/<split>.jsonl`,
    one JSON object per progress line or evaluation (what benchmarks/learn.py reads)."""

    def __init__(self, log_dir: str, resumed_at: int | None = None):
        tf.io.gfile.makedirs(log_dir)
        self.log_dir, self.writer = log_dir, tf.summary.create_file_writer(log_dir)
        if resumed_at is not None:
            self._forget_after(resumed_at)

    def _forget_after(self, step: int) -> None:
        """A run resumed from its checkpoint at `step` logs the steps after it again: the rows
        an interrupted run wrote past it go, so that each step has one row."""
        for split in ("train", "validation"):
            path = os.path.join(self.log_dir, f"{split}.jsonl")
            if not tf.io.gfile.exists(path):
                continue
            with tf.io.gfile.GFile(path) as handle:
                lines = handle.read().splitlines()
            kept = [line for line in lines if _step_of_row(line) <= step]
            if len(kept) < len(lines):
                with tf.io.gfile.GFile(path, "w") as handle:
                    handle.write("".join(line + "\n" for line in kept))

    def write(self, split: str, row: dict) -> None:
        with self.writer.as_default(step=row["step"]):
            for key, value in row.items():
                if key not in ("step", "minutes") and math.isfinite(value):
                    tf.summary.scalar(f"{split}/{key}", value)
        self.writer.flush()
        with tf.io.gfile.GFile(os.path.join(self.log_dir, f"{split}.jsonl"), "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def images(self, name: str, images, step: int) -> None:
        """`images` in [-1, 1], as the model sees them."""
        with self.writer.as_default(step=step):
            tf.summary.image(name, (images + 1.0) / 2.0, max_outputs=len(images))
        self.writer.flush()


def _step_of_row(line: str) -> float:
    """The step of a jsonl row; a row a kill cut short counts as past every step."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


class PeriodicEvaluation(keras.callbacks.Callback):
    """Evaluates the moving-average weights (Keras' SwapEMAWeights) on the validation split
    every `every_steps` steps or `every_minutes` minutes, whichever is set, at a multiple of
    `align` (the progress interval, whose metrics evaluation would otherwise reset), and once
    more at the end. Writes `validation.jsonl` and TensorBoard scalars."""

    def __init__(self, dataset, expected: int, *, every_steps: int | None,
                 every_minutes: float | None, align: int, logbook: Logbook | None,
                 bn_batches=None):
        super().__init__()
        self.bn_batches = bn_batches  # () -> training batches that re-estimate batch norm
        self.dataset, self.expected = dataset, expected  # the split's records
        self.every_steps, self.every_minutes = every_steps, every_minutes
        self.align, self.logbook = align, logbook
        self.began = self.last = None
        self.done_at = -1

    def on_train_begin(self, logs=None):
        if self.began is None:
            self.began = self.last = time.perf_counter()

    def _due(self, step: int) -> bool:
        if step % self.align:
            return False
        if self.every_steps:
            return step % self.every_steps == 0
        if not self.every_minutes:
            return False

        late = time.perf_counter() - self.last >= 60 * self.every_minutes
        return cluster.any_worker(self.model.distribute_strategy, late)

    def on_train_batch_end(self, batch, logs=None):
        if self._due(step_of(self.model)):
            self.run()

    def on_train_end(self, logs=None):
        if step_of(self.model) != self.done_at:
            self.run()

    def run(self) -> dict:
        from trainer import batch_norm

        step = step_of(self.model)
        swap = self.model.optimizer.use_ema
        with batch_norm.averaged_weights(self.model):
            if self.bn_batches:  # for the weights evaluated: the averages
                batch_norm.recompute(self.model, self.bn_batches())
            result = loop.evaluate(self.model, self.dataset)
        row = {"step": step, "minutes": round((time.perf_counter() - self.began) / 60, 3),
               "precision_at_1": metric(result, "top1"), "recall_at_5": metric(result, "top5"),
               "xent": metric(result, "xent"), "examples": metric(result, "examples")}
        if math.isnan(row["examples"]):  # a model compiled before ExampleCount existed
            row["examples"] = row["skipped"] = None
        else:
            row["examples"] = int(row["examples"])
            row["skipped"] = self.expected - row["examples"]  # as `train.py --eval` reports
        _report(self.model, self.logbook, "validation", row,
                f"eval at step {step} ({row['minutes']:.1f} min): precision @ 1 = "
                f"{row['precision_at_1']:.4f} recall @ 5 = {row['recall_at_5']:.4f}"
                f"{' (moving-average weights)' if swap else ''}"
                f"{skipped_note(row['skipped'] or 0)}")
        self.last, self.done_at = time.perf_counter(), step
        return row


def skipped_note(skipped: int) -> str:
    """What an evaluation says of the validation records it could not use (--on-error skip)."""
    return (f"; {skipped} record(s) skipped: they do not decode, or their shard is damaged "
            f"(the warnings above name each)" if skipped else "")


class WallClockBudget(keras.callbacks.Callback):
    """Stops training after `minutes` of wall-clock time (benchmarks with a fixed budget).
    Across workers, at a multiple of `align` steps, when any worker's time is up: a worker
    that stopped alone would leave the others waiting in their next all-reduce."""

    def __init__(self, minutes: float, align: int = 1):
        super().__init__()
        self.minutes, self.align, self.began, self.across = minutes, align, None, False

    def on_train_begin(self, logs=None):

        self.began = self.began or time.perf_counter()
        self.across = cluster.is_multi_worker(self.model.distribute_strategy)

    def on_train_batch_end(self, batch, logs=None):
        over = time.perf_counter() - self.began >= 60 * self.minutes
        if self.across:

            if step_of(self.model) % self.align:
                return
            over = cluster.any_worker(self.model.distribute_strategy, over)
        if over:
            print(f"stopping after the --max-minutes budget ({self.minutes:g} min) at step "
                  f"{step_of(self.model)}", flush=True)
            self.model.stop_training = True


class InputPreview(keras.callbacks.Callback):
    """Writes a few training inputs, as the model sees them, to TensorBoard at the start."""

    def __init__(self, dataset, logbook: Logbook):
        super().__init__()
        self.dataset, self.logbook = dataset, logbook

    def on_train_begin(self, logs=None):
        if self.dataset is None:  # shown at the first fit already
            return
        images, _ = next(iter(self.dataset))
        self.logbook.images("training inputs", images, step_of(self.model))
        self.dataset = None

"""Checkpoints: whole-model `.keras` files, `ckpt-<step>.keras`, newest N kept.

A `.keras` file holds the architecture (its name is the model's key, e.g. `resnet34`), the
weights, and the optimizer state with the weights' moving averages and the step, so `--eval`,
`--fine-tune` and resuming rebuild the right network without being told. Keras' ModelCheckpoint
keeps every file and tf.train.CheckpointManager (which rotates) stores no architecture, hence
the small rotation here.
"""

from __future__ import annotations

import os
import re

import keras
import tensorflow as tf

from inception_data import paths
from trainer import optimizers as _registered  # noqa: F401  (custom optimizers for loading)
from trainer import recipes as _schedules  # noqa: F401  (the learning-rate schedule class)
from trainer.callbacks import step_of
from trainer.errors import TrainingError
from trainer.models import AUX_LOGITS, LOGITS

_NAME = re.compile(r"ckpt-(\d+)\.keras$")


def listing(train_dir: str) -> list[tuple[int, str]]:
    """(step, path) of the checkpoints in `train_dir`, oldest first."""
    found = []
    for path in tf.io.gfile.glob(os.path.join(paths.glob_escape(train_dir), "ckpt-*.keras")):
        match = _NAME.search(path)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest(train_dir: str) -> str:
    found = listing(train_dir)
    if not found:
        raise TrainingError(f"no checkpoint (ckpt-*.keras) in {train_dir}")
    return found[-1][1]


class KeepCheckpoints(keras.callbacks.Callback):
    """Saves every `every` steps and at the end, keeping the newest `keep`; each file is
    written under a temporary name first, so a killed run leaves no half checkpoint. Across
    workers, every worker re-estimates batch norm alike and only the chief (`write`) saves."""

    def __init__(self, train_dir: str, every: int, keep: int, bn_batches=None,
                 write: bool = True):
        super().__init__()
        self.train_dir, self.every, self.keep, self.write = train_dir, every, keep, write
        self.bn_batches = bn_batches  # () -> training batches that re-estimate batch norm

    def save(self):
        if self.bn_batches:  # statistics for the weights --eval uses: the averages, if kept
            from trainer import batch_norm

            with batch_norm.averaged_weights(self.model):
                batch_norm.recompute(self.model, self.bn_batches())
        if not self.write:
            return
        step = step_of(self.model)
        final = os.path.join(self.train_dir, f"ckpt-{step:06d}.keras")
        tmp = os.path.join(self.train_dir, f".tmp-ckpt-{step:06d}.keras")
        self.model.save(tmp)
        tf.io.gfile.rename(tmp, final, overwrite=True)
        for _, old in listing(self.train_dir)[:-self.keep]:
            tf.io.gfile.remove(old)

    def on_train_batch_end(self, batch, logs=None):
        if step_of(self.model) % self.every == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        # The end of a training phase (trainer/loop.py): a checkpoint keeps both the raw
        # weights (to resume) and the optimizer's averages (to evaluate).
        step = step_of(self.model)
        found = listing(self.train_dir)
        # a worker that does not write re-estimates anyway rather than race the chief's listing
        if not found or found[-1][0] != step or not self.write:
            self.save()


def load(path: str, num_classes: int | None, *, fine_tune: bool = False) -> keras.Model:
    """The model in `path`; refuses a class count other than the data's unless fine-tuning."""
    model = keras.models.load_model(path, compile=not fine_tune)
    classes = model.get_layer(LOGITS).units
    if num_classes is not None and classes != num_classes and not fine_tune:
        raise TrainingError(
            f"{path} has {classes} outputs but the data needs "
            f"{num_classes}; pass --fine-tune to start new logits layers, or use the data the "
            f"checkpoint was trained on")
    return model


def transfer_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies every layer's weights from `source` except the logits layers (fine-tuning);
    returns the names of the layers left fresh. Layers are paired by position, not name:
    both come from `models.build`, and Keras numbers unnamed layers (Inception's `conv2d_7`)
    per process, so a network built after another one in the same process has other names."""
    if len(source.layers) != len(target.layers):
        raise TrainingError(f"the checkpoint's {source.name} has {len(source.layers)} layers, "
                            f"this version builds {len(target.layers)}: it cannot be fine-tuned")
    fresh = []
    for old, layer in zip(source.layers, target.layers):
        if layer.name in (LOGITS, AUX_LOGITS) or not layer.weights:
            fresh += [layer.name] if layer.weights else []
            continue
        layer.set_weights(old.get_weights())
    return fresh

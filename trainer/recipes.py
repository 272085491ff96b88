"""One table of training recipes, one row per model, and the learning-rate schedule.

Every value is a default that `train.py` flags override. Learning rates are given for a global
batch of 256 and scaled to the actual global batch: linearly for SGD and RMSProp (Goyal et al.
2017, "Accurate, Large Minibatch SGD"), with the square root for Adam (its steps are already
normalised by the gradient's scale), after a linear warm-up.

The original Inception recipe (RMSProp with epsilon 1.0, learning rate 0.1, batch-norm decay
0.9997, EMA 0.9999 without warm-up) was made for 100k+ step runs on many GPUs. Measured on 2 CPU
cores at a global batch of 32 on a real 10-class ImageNet subset (docs/training.md, "Does it
learn?"): its 0.1 diverges, 0.1 scaled to the batch (0.0125) stays at chance-level training
accuracy for 300-600 steps with a cross-entropy above that of a uniform guess, while Adam at
0.001 reaches 0.44 validation precision@1 after 460 steps and 0.61 after 30 minutes. So the
Inception and MobileNet rows default to Adam; `--optimizer rmsprop --initial-learning-rate ...`
gives the original's optimizer back for long runs.

All models take inputs in [-1, 1] (what `input_fn` yields): they are trained from random
initialisation, so no model-specific input scaling is needed.
"""

from __future__ import annotations

import dataclasses

import keras

REFERENCE_BATCH = 256


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one model is trained. See the module docstring for the units."""

    optimizer: str  # "rmsprop" (decay 0.9, momentum 0.9, epsilon 1.0), "sgd" (Nesterov 0.9), "adam"
    learning_rate: float  # at a global batch of REFERENCE_BATCH
    min_crop_area: float  # smallest share of the image a training crop covers
    weight_decay: float  # L2 in TF-slim's convention: w * sum(x^2) / 2
    label_smoothing: float
    bn_momentum: float
    warmup_epochs: float
    epochs_per_decay: float
    decay_factor: float
    ema_decay: float  # with the original's warm-up: min(decay, (1 + step) / (10 + step))
    dropout: float  # before the logits
    image_size: int  # default input size for full-size photos
    min_image_size: int  # the network's smallest input (Keras applications check it)
    aux_loss_weight: float = 0.0  # the auxiliary head (Inception v3 only)


# Adam's 0.001 measured at a global batch of 32, stated per 256 images (square-root scaling).
_INCEPTION = dict(optimizer="adam", learning_rate=0.001 * 8 ** 0.5, weight_decay=4e-5,
                  label_smoothing=0.1,
                  bn_momentum=0.99, warmup_epochs=2, epochs_per_decay=30, decay_factor=0.16,
                  ema_decay=0.9999, dropout=0.2, image_size=299, min_image_size=75,
                  min_crop_area=0.25)
_RESNET = dict(optimizer="sgd", learning_rate=0.1, weight_decay=2e-4, label_smoothing=0.1,
               bn_momentum=0.99, warmup_epochs=2, epochs_per_decay=30, decay_factor=0.1,
               ema_decay=0.9999, dropout=0.0, image_size=224, min_image_size=32,
               min_crop_area=0.25)

RECIPES: dict[str, Recipe] = {
    "inception_v3": Recipe(**_INCEPTION, aux_loss_weight=0.4),
    "inception_resnet_v2": Recipe(**_INCEPTION),
    "resnet50": Recipe(**_RESNET),
    "resnet34": Recipe(**{**_RESNET, "min_image_size": 8}),
    "vgg16": Recipe(**{**_RESNET, "learning_rate": 0.01, "weight_decay": 1e-3, "dropout": 0.5}),
    "mobilenet_v2": Recipe(**{**_INCEPTION, "image_size": 224, "min_image_size": 32}),
    # a smoke-test network (models.tiny_features): Adam, small images
    "tiny": Recipe(**{**_INCEPTION, "image_size": 64, "min_image_size": 8}),
}
MODELS = tuple(RECIPES)


def recipe(model: str, **overrides) -> Recipe:
    """The recipe of `model` with the non-None `overrides` applied."""
    if model not in RECIPES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return dataclasses.replace(RECIPES[model],
                               **{k: v for k, v in overrides.items() if v is not None})


def scaled_learning_rate(rec: Recipe, global_batch: int) -> float:
    """The recipe's rate (for REFERENCE_BATCH images per step) at `global_batch`: linear for
    SGD and RMSProp, square root for Adam."""
    ratio = global_batch / REFERENCE_BATCH
    return rec.learning_rate * (ratio ** 0.5 if rec.optimizer == "adam" else ratio)


@keras.saving.register_keras_serializable(package="inception_data")
class WarmupStaircaseDecay(keras.optimizers.schedules.LearningRateSchedule):
    """0 -> `peak` linearly over `warmup_steps`, then `peak` x `factor` every `decay_steps`
    (staircase, counted from step 0, as the original's ExponentialDecay). Keras has the decay
    and has warm-up only for cosine decay, hence this small class."""

    def __init__(self, peak: float, warmup_steps: int, decay_steps: int, factor: float):
        self.peak, self.warmup_steps = float(peak), int(warmup_steps)
        self.decay_steps, self.factor = max(1, int(decay_steps)), float(factor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        decayed = self.peak * self.factor ** keras.ops.floor(step / self.decay_steps)
        if not self.warmup_steps:
            return decayed
        warm = self.peak * (step + 1.0) / self.warmup_steps
        return keras.ops.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "decay_steps": self.decay_steps, "factor": self.factor}


def schedule(rec: Recipe, peak: float, steps_per_epoch: int) -> WarmupStaircaseDecay:
    return WarmupStaircaseDecay(peak, round(rec.warmup_epochs * steps_per_epoch),
                                round(rec.epochs_per_decay * steps_per_epoch), rec.decay_factor)

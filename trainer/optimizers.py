"""Optimizers with the original Inception's weight moving average, warm-up included.

The original kept an exponential moving average of the weights with TF's
`ExponentialMovingAverage(0.9999, num_updates=global_step)`, whose decay is
min(0.9999, (1 + step) / (10 + step)): early on the average follows the weights closely, so an
evaluation after a few hundred steps means something. Keras' optimizer EMA uses the full decay
from the first step (after 600 steps at 0.9999 the average is still 94% the initial weights),
so these subclasses override the one method that updates the average. Everything else,
including `SwapEMAWeights` and saving the averages with the model, is Keras' own.

That method and the list of averages are private Keras API: Keras has no public hook for the
decay schedule (a Python `ema_momentum` is frozen into the traced train step, so a callback
cannot change it). pyproject.toml bounds keras to the releases tested, and
tests/test_train.py::test_the_private_keras_hooks_we_override_still_exist fails, naming them,
when a release changes them.
"""

from __future__ import annotations

import keras
from keras import ops

HOOK = "_update_model_variables_moving_average"  # private Keras API, see above
AVERAGES = "_model_variables_moving_average"
TRAINABLE = "_trainable_variables"  # the variables the averages follow, in the same order


def averaged_pairs(optimizer) -> list[tuple]:
    """(weight, its moving average) for every averaged weight of a built optimizer."""
    return [(variable, average) for variable, average
            in zip(getattr(optimizer, TRAINABLE), getattr(optimizer, AVERAGES))
            if average is not None]


class _EmaWarmup:
    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        step = ops.cast(self.iterations, "float32")
        momentum = ops.minimum(self.ema_momentum, (1.0 + step) / (10.0 + step))
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                decay = ops.cast(momentum, var.dtype)
                average.assign(decay * average + (1.0 - decay) * var)


@keras.saving.register_keras_serializable(package="inception_data")
class RMSprop(_EmaWarmup, keras.optimizers.RMSprop):
    """RMSprop whose weight EMA warms up as TF's num_updates did."""


@keras.saving.register_keras_serializable(package="inception_data")
class SGD(_EmaWarmup, keras.optimizers.SGD):
    """SGD whose weight EMA warms up as TF's num_updates did."""


@keras.saving.register_keras_serializable(package="inception_data")
class Adam(_EmaWarmup, keras.optimizers.Adam):
    """Adam whose weight EMA warms up as TF's num_updates did."""


def make(name: str, learning_rate, ema_decay: float) -> keras.optimizers.Optimizer:
    """The recipe's optimizer; `ema_decay` 0 turns the weight average off."""
    ema = dict(use_ema=ema_decay > 0, ema_momentum=ema_decay or 0.99)
    if name == "rmsprop":  # the Inception paper's settings
        return RMSprop(learning_rate, rho=0.9, momentum=0.9, epsilon=1.0, **ema)
    if name == "sgd":
        return SGD(learning_rate, momentum=0.9, nesterov=True, **ema)
    if name == "adam":
        return Adam(learning_rate, **ema)
    raise ValueError(f"unknown optimizer {name!r}; choose rmsprop, sgd or adam")

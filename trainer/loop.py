"""The training and evaluation loop the trainer owns: Keras' public per-batch steps
(`Model.train_step`, `Model.test_step`) run with `strategy.run`, under Keras callbacks.

Why not `Model.fit`: Keras 3's fit and evaluate do not run under MultiWorkerMirroredStrategy
(keras-team/keras#20585, open for Keras 3.7 to 3.15): before the first step they take the
shapes of one batch by `strategy.reduce`-ing it, and after each step they reduce the replicas'
logs with `strategy.reduce("MEAN", v, axis=0)`, both of which that strategy refuses. Mending
them meant replacing private Keras functions; owning the loop needs only public API, and every
run (one tower, several, several machines) goes through this one loop.

What fit did and this does, in the same order: build what the step creates (the optimizer's
slots, the compiled loss and metrics) before the first trace, in cross-replica context; reset
the metrics; per batch: callbacks' batch begin, one traced step on every replica, the replicas'
logs averaged with an all-reduce (what fit's mean over towers was), batch end, stop when a
callback sets `model.stop_training`; then epoch end and train end. Unlike fit, the loop never
writes the optimizer's weight averages into the weights at the end (fit's EMA "finalize"): a
checkpoint keeps both, evaluation swaps the averages in itself (batch_norm.averaged_weights),
and training that goes on in the same process goes on from the weights themselves.

Evaluation runs `test_step` on every replica and reads the metrics once at the end in
cross-replica context, where each metric's variables are summed over every replica of every
worker (evaluate's own final read): the counts and means are those of the whole split.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

# model -> (id of the optimizer it was compiled with, {kind: traced step}); a recompiled
# model (a new optimizer) starts again: built once and traced once per compilation
_COMPILED = weakref.WeakKeyDictionary()


def _compiled(model: keras.Model) -> dict:
    """The traced steps of the model as compiled now; builds it the first time (_build)."""
    known = _COMPILED.get(model)
    if known is None or known[0] != id(model.optimizer):
        _build(model)
        known = _COMPILED[model] = (id(model.optimizer), {})
    return known[1]


def _mean_over_replicas(logs):
    """The logs of every replica, averaged across all replicas of all workers (replica
    context); a plain tensor for one replica is placed on its device first."""
    context = tf.distribute.get_replica_context()
    return context.all_reduce("MEAN", tf.nest.map_structure(tf.identity, logs))


def _function(model: keras.Model, kind: str):
    """The traced step for the model as compiled now: "train" (one batch; the replicas' mean
    logs) or "test" (one batch if there is one, in every replica's metrics; False at the end
    of the data, which every worker of a cluster agrees on)."""
    made = _compiled(model)
    if kind not in made:
        strategy = model.distribute_strategy

        def train(iterator):
            logs = strategy.run(lambda data: _mean_over_replicas(model.train_step(data)),
                                args=(next(iterator),))
            return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0],
                                         logs)

        def test(iterator):
            batch = iterator.get_next_as_optional()

            def one():
                strategy.run(model.test_step, args=(batch.get_value(),))
                return tf.constant(True)

            return tf.cond(batch.has_value(), one, lambda: tf.constant(False))

        made[kind] = tf.function(train if kind == "train" else test,
                                jit_compile=bool(model.jit_compile) and kind == "train",
                                reduce_retracing=True)
    return made[kind]


def _build(model: keras.Model) -> None:
    """Creates, in cross-replica context, what the first step would otherwise create inside
    the replicas: the optimizer's variables, and the compiled loss and metrics (from one
    zero-filled image through the network in inference mode, which changes no state). The
    metrics are reset after."""
    images = tf.zeros([1, *model.input_shape[1:]])
    with model.distribute_strategy.scope():
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        predictions = model(images, training=False)
        targets = (tf.zeros_like(predictions) if len(model.outputs) == 1
                   else tuple(tf.zeros_like(p) for p in predictions))  # data.one_hot_targets
        model.compute_loss(images, targets, predictions)
        model.compute_metrics(images, targets, predictions, sample_weight=None)
    model.reset_metrics()


def _plain(logs) -> dict:
    return {name: np.asarray(value).item() if np.ndim(value) == 0 else np.asarray(value)
            for name, value in logs.items()}


def fit(model: keras.Model, dataset, steps: int, callbacks=(), verbose: int = 0) -> dict:
    """Trains `steps` batches of the distributed `dataset` (an endless training stream) as one
    epoch under Keras `callbacks`; returns the last logs."""
    train = _function(model, "train")
    calls = keras.callbacks.CallbackList(list(callbacks), add_history=False,
                                         add_progbar=verbose != 0, verbose=verbose, epochs=1,
                                         steps=steps, model=model)
    model.stop_training = False
    model.reset_metrics()
    calls.on_train_begin()
    calls.on_epoch_begin(0)
    logs, iterator = {}, iter(dataset)
    for batch in range(steps):
        calls.on_train_batch_begin(batch)
        logs = _plain(train(iterator))
        calls.on_train_batch_end(batch, logs)
        if model.stop_training:
            break
    # (the last step's logs: the metrics themselves may have been reset by a callback since -
    # Progress resets them at each line - and would read 0)
    calls.on_epoch_end(0, logs)
    calls.on_train_end(logs)
    return logs


def evaluate(model: keras.Model, dataset) -> dict:
    """The compiled metrics over every batch of the finite `dataset` (a tf.data.Dataset of
    global batches, spread over the replicas here as Keras' evaluate does; under a cluster,
    sharded by batch), every example counted once, as a dict."""
    strategy = model.distribute_strategy
    if not isinstance(dataset, tf.distribute.DistributedDataset):
        dataset = strategy.experimental_distribute_dataset(dataset)
    test = _function(model, "test")
    model.reset_metrics()
    iterator = iter(dataset)
    while bool(test(iterator)):
        pass
    return _plain(model.get_metrics_result())

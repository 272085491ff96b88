"""Train, evaluate and benchmark: `TrainOptions` in, a trained model or metrics out. Across
machines (TF_CONFIG): trainer/cluster.py.

Towers are tf.distribute.MirroredStrategy replicas (one per GPU, or N logical CPU devices with
`num_towers`, how the tests exercise the multi-tower path); the global batch is split evenly
across them, as the original inception_train.py split each batch across its towers.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import sys
import time

import keras
import tensorflow as tf

from trainer import (
    batch_norm,
    checkpoints,
    cluster,
    data,
    loop,
    models,
    optimizers,
    recipes,
    run_record,
    stop,
)
from trainer import callbacks as cb
from trainer.errors import TrainingError
from trainer.options import TrainOptions


def _datasets(config: TrainOptions, info: data.DatasetInfo, strategy, *, training: bool,
              image_size: int, outputs: int, seed: int | None = None, start_step: int = 0,
              global_batch: int | None = None, rec: recipes.Recipe | None = None):
    """data.datasets with this run's reading options (batch, distortions, crop area, on_error),
    read from `config` (and the recipe `rec` of the model trained) here and nowhere else."""
    return data.datasets(info, strategy, training=training,
                         global_batch=global_batch or config.batch_size, image_size=image_size,
                         outputs=outputs, seed=seed, start_step=start_step,
                         distortions=config.distortions,
                         min_crop_area=(rec or config.recipe()).min_crop_area,
                         on_error=config.on_error)


def image_size(config: TrainOptions, info: data.DatasetInfo, rec: recipes.Recipe) -> int:
    """--image-size, else the images' own size for small images (raised to the network's
    minimum), else the recipe's."""
    if config.image_size:
        return config.image_size
    if info.preprocessing == "small":
        return max(info.image_size, rec.min_image_size)
    return rec.image_size


@functools.cache
def make_strategy(num_gpus: int | None, num_towers: int | None):
    """MultiWorkerMirroredStrategy when TF_CONFIG names several tasks (trainer/cluster.py);
    else MirroredStrategy over GPUs, or over N logical CPU devices, or the default strategy.
    One per process and device set: two MirroredStrategy objects in one process number their
    collective ops alike, and the second model's all-reduce then fails with a shape mismatch."""
    if cluster.from_env().multi_worker:
        return cluster.strategy(num_gpus, num_towers)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and num_gpus != 0:
        use = gpus[: num_gpus or len(gpus)]
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(use))])
    if num_towers and num_towers > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * num_towers)
        except RuntimeError as err:  # already set up in this process (tests call train() again)
            if len(tf.config.list_logical_devices("CPU")) < num_towers:
                raise TrainingError(f"this process already split the CPU into fewer than "
                                    f"{num_towers} devices; run --num-towers in a new "
                                    f"process") from err
        return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(num_towers)])
    return tf.distribute.get_strategy()


def _seed(seed: int | None) -> None:
    """--seed: the initial weights and dropout too, not only the input, and TensorFlow's
    deterministic kernels. Without the latter a seeded 2-tower VGG-16 run gave other losses
    from its first step in 1 of ~4 runs (3.3218 vs 3.3222): reductions whose order depends on
    thread timing."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()


def _jit(choice: str) -> bool:
    if choice == "auto":  # on a CPU, compiling takes longer than short runs gain
        return bool(tf.config.list_physical_devices("GPU"))
    return choice == "on"


def compile_model(model: keras.Model, rec: recipes.Recipe, *, learning_rate: float,
                  steps_per_epoch: int, jit: str = "auto") -> None:
    """Optimizer, learning-rate schedule, smoothed cross-entropy per output (the auxiliary
    one weighted), and Keras' metrics on the main logits: top-1, top-5 and the cross-entropy
    without the L2 term."""
    optimizer = optimizers.make(rec.optimizer, recipes.schedule(rec, learning_rate,
                                                                steps_per_epoch), rec.ema_decay)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                label_smoothing=rec.label_smoothing)
    metrics = [keras.metrics.CategoricalAccuracy(name="top1"),
               keras.metrics.TopKCategoricalAccuracy(5, name="top5"),
               keras.metrics.CategoricalCrossentropy(from_logits=True, name="xent",
                                                     label_smoothing=rec.label_smoothing),
               cb.ExampleCount()]
    if len(model.outputs) == 1:
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=_jit(jit))
        return
    model.compile(optimizer=optimizer, loss={n: loss for n in model.output_names},
                  loss_weights={models.LOGITS: 1.0, models.AUX_LOGITS: rec.aux_loss_weight},
                  metrics={models.LOGITS: metrics}, jit_compile=_jit(jit))


HEAD_RATE = 10  # the head alone (--freeze-base-steps) trains at this many times the peak rate


def _peak_rate(config: TrainOptions, rec: recipes.Recipe) -> float:
    return config.learning_rate or recipes.scaled_learning_rate(rec, config.batch_size)


def freeze_base(model: keras.Model, frozen: bool) -> None:
    """Every layer but the head frozen (or not). A frozen BatchNormalization layer runs in
    inference mode in Keras 3: the base normalises with its pretrained statistics and does
    not update them while the new head learns. Takes effect at the next compile."""
    for layer in model.layers:
        if not models.is_head(layer):
            layer.trainable = not frozen


def base_frozen(model: keras.Model) -> bool:
    return any(not layer.trainable for layer in model.layers
               if not models.is_head(layer) and layer.weights)


def _new_model(config: TrainOptions, info, steps_per_epoch: int):
    """A fresh model, or with --fine-tune the checkpoint's network (its name says which) with
    new logits layers; compiled. Returns (model, recipe, fresh layer names, peak rate)."""
    name, source, fresh = config.model, None, []
    if config.pretrained and config.fine_tune:
        raise TrainingError("--pretrained starts from published ImageNet weights, --fine-tune "
                            "from one of our checkpoints: give one of them")
    if config.fine_tune:
        if not config.pretrained_checkpoint:
            raise TrainingError("--fine-tune needs --pretrained-checkpoint PATH")
        source = checkpoints.load(config.pretrained_checkpoint, None, fine_tune=True)
        name = source.name
    rec = config.recipe(name)
    try:
        model = models.build(name, info.num_classes, image_size(config, info, rec), rec,
                             pretrained=config.pretrained)
    except models.PretrainedError as err:
        raise TrainingError(str(err)) from None
    if source is not None:
        fresh = checkpoints.transfer_weights(source, model)
    elif config.pretrained:
        fresh = [models.LOGITS] + ([models.AUX_LOGITS] if len(model.outputs) > 1 else [])
    peak = _peak_rate(config, rec)
    if config.freeze_base_steps:
        if not fresh:
            raise TrainingError("--freeze-base-steps trains a new head on a pretrained base: "
                                "give --pretrained or --fine-tune --pretrained-checkpoint")
        freeze_base(model, True)
    compile_model(model, rec, learning_rate=peak * (HEAD_RATE if config.freeze_base_steps else 1),
                  steps_per_epoch=steps_per_epoch, jit=config.jit_compile)
    return model, rec, fresh, peak


def train(config: TrainOptions) -> keras.Model:
    stop.where["train_dir"] = config.train_dir  # what a SIGTERM's line names
    team = cluster.from_env()
    if team.multi_worker:  # every task started, before the strategy waits for them
        cluster.rendezvous(team, config.train_dir, config.peer_timeout)
    with stop.abruptly():  # (the strategy's wait holds Python's lock: no line can be printed)
        strategy = make_strategy(config.num_gpus, config.num_towers)  # before any other TF op
    saved = run_record.RunRecord.read(config.train_dir)
    _seed(config.seed if config.seed is not None or saved is None or not saved.seed_given
          else saved.seed)  # a resumed --seed run stays deterministic without the flag
    info = data.load(config.data_dir)
    steps_per_epoch = max(1, math.ceil(info.train_examples / config.batch_size))
    tf.io.gfile.makedirs(config.train_dir)
    with strategy.scope():
        existing = checkpoints.listing(config.train_dir)
        if existing:
            model = checkpoints.load(existing[-1][1], info.num_classes)
            print(f"resuming {model.name} from {existing[-1][1]} at step {existing[-1][0]}")
        else:
            model, rec, fresh, peak = _new_model(config, info, steps_per_epoch)
            if fresh:
                print(f"fine-tuning from {config.pretrained or config.pretrained_checkpoint}"
                      f"; new layers: {fresh}")
            print(f"{model.name}: {info.preprocessing} preprocessing at {model.input_shape[1]} px, "
                  f"{rec.optimizer} peak learning rate {peak:.5g} (warm-up "
                  f"{rec.warmup_epochs:g} epochs), batch-norm momentum {rec.bn_momentum}, "
                  f"weight EMA {rec.ema_decay}, crops of >= {rec.min_crop_area:g} of the image")
    step = cb.step_of(model)
    record = _run_record(config, saved, strategy, team)
    if step >= config.max_steps:
        print(f"already at step {step} >= --max-steps {config.max_steps}; nothing to do")
        return model
    size, rec = model.input_shape[1], config.recipe(model.name)
    workers = f"worker {team.index + 1} of {team.workers}{' (chief)' if team.chief else ''}, " \
        if team.multi_worker else ""
    print(f"{workers}{strategy.num_replicas_in_sync} tower(s), global batch {config.batch_size}, "
          f"{info.num_classes} outputs ({len(info.names)} classes"
          f"{' + background' if info.label_offset else ''}), {info.train_examples} training "
          f"examples, {steps_per_epoch} steps/epoch, data seed {record.seed}", flush=True)
    callbacks = _callbacks(config, info, strategy, model, rec, step=step,
                           writer=team.chief, seed=record.seed)

    def fit_until(end: int) -> None:
        start = cb.step_of(model)
        if end > start and not model.stop_training:  # (stop: --max-minutes)
            # the stream from this step on: a resumed run reads what an uninterrupted one would
            train_data = _datasets(config, info, strategy, training=True, image_size=size,
                                   outputs=len(model.outputs), seed=record.seed,
                                   start_step=start, rec=rec)
            loop.fit(model, train_data, end - start, callbacks,
                     verbose=1 if sys.stdout.isatty() else 0)

    try:
        if base_frozen(model):  # --freeze-base-steps: the head alone up to that step, then
            fit_until(min(config.freeze_base_steps, config.max_steps))  # every layer
            if cb.step_of(model) < config.max_steps and not model.stop_training:
                _unfreeze(model, strategy, config, steps_per_epoch)
        fit_until(config.max_steps)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        raise TrainingError(data.read_error(err, info.pattern("train"))) from None
    except tf.errors.UnavailableError as err:
        if not team.multi_worker:
            raise
        found = checkpoints.listing(config.train_dir)
        raise TrainingError(
            f"another worker of the cluster stopped ({cluster.unhealthy(err.message)}); start "
            f"every worker again with the same command: they resume from the newest checkpoint "
            f"in {config.train_dir}"
            f"{f' (step {found[-1][0]})' if found else ' (none yet: from the start)'}") from None
    return model


def _run_record(config: TrainOptions, saved, strategy, team) -> run_record.RunRecord:
    """The run's data seed and global batch: saved in the training folder at the first start
    (a drawn seed when --seed is not given, the same on every worker), and required of every
    restart, so that it continues the same stream."""
    drawn = cluster.chiefs(strategy, run_record.draw(), team.chief) if config.seed is None \
        else config.seed
    record = run_record.resolve(saved, config.seed, config.batch_size, drawn, config.train_dir)
    if saved is None and team.chief:
        record.write(config.train_dir)
    return record


def _unfreeze(model, strategy, config: TrainOptions, steps_per_epoch: int) -> None:
    """Every layer trainable, under a new optimizer (one built for the head's variables cannot
    update the base's) that goes on counting steps where the first one stopped."""
    step, rec = cb.step_of(model), config.recipe(model.name)
    peak = _peak_rate(config, rec)
    with strategy.scope():
        freeze_base(model, False)
        compile_model(model, rec, learning_rate=peak, steps_per_epoch=steps_per_epoch,
                      jit=config.jit_compile)
        model.optimizer.iterations.assign(step)
    print(f"step {step}: the base unfrozen (--freeze-base-steps); every layer trains at peak "
          f"learning rate {peak:.5g}", flush=True)


def _callbacks(config: TrainOptions, info, strategy, model, rec, *, step: int,
               writer: bool = True, seed: int) -> list:
    """NaN guard, progress, periodic evaluation, time budget, checkpoints, input preview.
    Every worker of a cluster runs them all (their evaluations and batch-norm estimates are
    collective or must agree); only the `writer` (the chief) writes files. `seed`: the run's
    data seed (the batch-norm estimates read the start of its stream, on every worker alike)."""
    size, outputs = model.input_shape[1], len(model.outputs)
    logbook = cb.Logbook(os.path.join(config.train_dir, "logs"), resumed_at=step) \
        if writer else None
    callbacks = [cb.NanGuard(), cb.Progress(config.batch_size, config.log_every, logbook)]
    statistics = _bn_batches(config, info, size, outputs, rec, seed=seed)
    if info.validation_examples and (config.eval_every_steps or config.eval_every_minutes):
        callbacks.append(cb.PeriodicEvaluation(
            _datasets(config, info, strategy, training=False, image_size=size, outputs=outputs),
            info.validation_examples,
            every_steps=config.eval_every_steps, every_minutes=config.eval_every_minutes,
            align=config.log_every, logbook=logbook, bn_batches=statistics))
    if config.max_minutes:
        callbacks.append(cb.WallClockBudget(config.max_minutes, align=config.log_every))
    callbacks.append(checkpoints.KeepCheckpoints(config.train_dir, config.checkpoint_steps,
                                                 config.keep_checkpoints, bn_batches=statistics,
                                                 write=writer))
    if step == 0 and writer:
        preview = _datasets(config, info, tf.distribute.get_strategy(), training=True,
                            image_size=size, outputs=outputs, seed=seed, global_batch=8,
                            rec=rec)
        callbacks.append(cb.InputPreview(preview, logbook))
    return callbacks


def _bn_batches(config: TrainOptions, info, size: int, outputs: int, rec, *, seed=None):
    """A callable giving the training batches that re-estimate batch norm before an evaluation
    or a checkpoint (batch_norm.recompute), or None with --precise-bn-batches 0."""
    if not config.precise_bn_batches:
        return None
    dataset = _datasets(config, info, tf.distribute.get_strategy(), training=True,
                        image_size=size, outputs=outputs, seed=seed, rec=rec)
    return lambda: itertools.islice(iter(dataset), config.precise_bn_batches)


def evaluate(config: TrainOptions, checkpoint: str | None = None) -> dict:
    """precision@1 and recall@5 over every validation example (the original's metrics), with
    the moving-average weights unless `no_ema`."""
    info = data.load(config.data_dir)
    checkpoint = checkpoint or checkpoints.latest(config.train_dir)
    model = checkpoints.load(checkpoint, info.num_classes)
    averaged = not config.no_ema and model.optimizer.use_ema
    dataset = data.Counted(_datasets(
        config, info, tf.distribute.get_strategy(), training=False,
        image_size=model.input_shape[1], outputs=len(model.outputs)))
    saved = run_record.RunRecord.read(config.train_dir)
    statistics = _bn_batches(config, info, model.input_shape[1], len(model.outputs),
                             config.recipe(model.name),
                             seed=config.seed if saved is None else saved.seed)
    try:
        with (batch_norm.averaged_weights(model) if averaged else contextlib.nullcontext()):
            if statistics:  # for exactly the weights evaluated
                batch_norm.recompute(model, statistics())
            result = loop.evaluate(model, dataset.dataset)
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as err:
        raise TrainingError(data.read_error(err, info.pattern("validation"))) from None
    examples = dataset.count()
    out = {"precision@1": cb.metric(result, "top1"), "recall@5": cb.metric(result, "top5"),
           "examples": examples, "skipped": info.validation_examples - examples,
           "checkpoint": checkpoint, "moving_averages": averaged}
    print(f"precision @ 1 = {out['precision@1']:.4f} recall @ 5 = {out['recall@5']:.4f} "
          f"[{examples} examples{cb.skipped_note(out['skipped'])}] ({model.name}, "
          f"{os.path.basename(checkpoint)}{', moving-average weights' if averaged else ''}"
          f"{', batch norm re-estimated' if statistics else ''})",
          flush=True)
    return out


def watch(config: TrainOptions, interval_secs: float) -> None:
    """Evaluates each new checkpoint as it appears, until one at max_steps is evaluated."""
    seen = set()
    while True:
        for step, path in checkpoints.listing(config.train_dir):
            if path not in seen:
                seen.add(path)
                evaluate(config, path)
                if step >= config.max_steps:
                    return
        time.sleep(interval_secs)


def benchmark(config: TrainOptions, steps: int) -> dict:
    """Training images/s with the real input pipeline and with synthetic input, side by side."""
    stop.where["train_dir"] = config.train_dir  # what a SIGTERM's line names
    strategy = make_strategy(config.num_gpus, config.num_towers)  # first
    info = data.load(config.data_dir)
    with strategy.scope():
        model, rec, _, _ = _new_model(config, info, steps_per_epoch=1000)
    size = model.input_shape[1]
    outputs, batch = len(model.outputs), config.batch_size // strategy.num_replicas_in_sync

    def synthetic(context):
        images = tf.random.uniform([batch, size, size, 3], -1, 1)
        labels = tf.random.uniform([batch], info.label_offset, info.num_classes, dtype=tf.int32)
        targets = data.one_hot_targets(labels, info.num_classes, outputs)
        return tf.data.Dataset.from_tensors((images, targets)).repeat()

    rates = {}
    real = _datasets(config, info, strategy, training=True, image_size=size,
                     outputs=outputs, seed=config.seed, rec=rec)
    made_up = strategy.distribute_datasets_from_function(synthetic)
    for name, dataset in (("real input", real), ("synthetic input", made_up)):
        loop.fit(model, dataset, 2)  # warm up
        start = time.perf_counter()
        loop.fit(model, dataset, steps)
        rates[name] = steps * config.batch_size / (time.perf_counter() - start)
        print(f"{name:16s} {rates[name]:8.1f} images/s", flush=True)
    bound = "input pipeline" if rates["real input"] < 0.9 * rates["synthetic input"] else "model"
    print(f"real / synthetic = {rates['real input'] / rates['synthetic input']:.2f}: the "
          f"{bound} is the bottleneck on this machine")
    return rates

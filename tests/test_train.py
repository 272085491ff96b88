"""The trainer's pieces as plain functions: recipes, schedule, weight-average warm-up, models
(ResNet-34's structure), loss, NaN guard, dataset presets, checkpoints. The end-to-end runs on
2 CPU towers are in test_train_runs.py (marked slow)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer import callbacks, checkpoints, data, models, optimizers, recipes, run


def test_every_model_has_a_recipe_and_the_learning_rate_scales_with_the_batch():
    assert set(recipes.MODELS) == {"inception_v3", "inception_resnet_v2", "resnet50", "resnet34",
                                   "vgg16", "mobilenet_v2", "tiny"}
    sgd = recipes.recipe("resnet50", learning_rate=0.1)
    assert recipes.scaled_learning_rate(sgd, 256) == pytest.approx(0.1)
    assert recipes.scaled_learning_rate(sgd, 32) == pytest.approx(0.0125)  # linear
    rmsprop = recipes.recipe("inception_v3", optimizer="rmsprop", learning_rate=0.1)
    assert recipes.scaled_learning_rate(rmsprop, 64) == pytest.approx(0.025)
    adam = recipes.recipe("inception_v3")  # square root: 0.001 at 32, what learn.py measured
    assert adam.optimizer == "adam"
    assert recipes.scaled_learning_rate(adam, 32) == pytest.approx(0.001)
    assert recipes.scaled_learning_rate(adam, 128) == pytest.approx(0.002)
    tuned = recipes.recipe("resnet34", label_smoothing=0.0, weight_decay=None)
    assert tuned.label_smoothing == 0.0
    assert tuned.weight_decay == recipes.RECIPES["resnet34"].weight_decay
    with pytest.raises(ValueError, match="unknown model 'resnet18'"):
        recipes.recipe("resnet18")


def test_schedule_warms_up_linearly_then_decays_in_stairs():
    rec = recipes.recipe("inception_v3", warmup_epochs=1, epochs_per_decay=3, decay_factor=0.5)
    schedule = recipes.schedule(rec, 0.2, steps_per_epoch=10)  # warm-up 10, decay every 30
    for step, value in ((0, 0.02), (4, 0.1), (9, 0.2), (10, 0.2), (29, 0.2), (30, 0.1),
                        (59, 0.1), (60, 0.05)):
        assert float(schedule(step)) == pytest.approx(value, rel=1e-6), step
    restored = recipes.WarmupStaircaseDecay.from_config(schedule.get_config())
    assert float(restored(45)) == pytest.approx(0.1)


def test_weight_average_warms_up_like_tf_num_updates():
    """min(decay, (1 + t) / (10 + t)) at update t (0-based), as ExponentialMovingAverage with
    num_updates=global_step: the average tracks the weights early on."""
    weight = keras.Variable(np.zeros(1, np.float32))
    optimizer = optimizers.make("sgd", 1.0, ema_decay=0.9999)
    optimizer.nesterov, optimizer.momentum = False, 0.0  # plain steps: w -= 1 each update
    optimizer.build([weight])
    expected_avg, value = 0.0, 0.0
    for t in range(5):
        optimizer.apply_gradients([(tf.ones(1), weight)])
        value -= 1.0
        decay = min(0.9999, (1 + t) / (10 + t))
        expected_avg = decay * expected_avg + (1 - decay) * value
        average = getattr(optimizer, optimizers.AVERAGES)[0]
        assert float(average.numpy()[0]) == pytest.approx(expected_avg, rel=1e-5), t


def test_the_private_keras_hooks_we_override_still_exist():
    """trainer/optimizers.py overrides a private Keras method: a release that renames it or
    stops calling it would silently give Keras' own averages. This fails first, by name."""
    base = keras.optimizers.Optimizer
    assert callable(getattr(base, optimizers.HOOK, None)), (
        f"keras {keras.__version__} has no Optimizer.{optimizers.HOOK}: "
        f"update trainer/optimizers.py")
    weight = keras.Variable(np.zeros(2, np.float32))
    optimizer = optimizers.make("adam", 0.1, ema_decay=0.9999)
    optimizer.build([weight])
    assert len(getattr(optimizer, optimizers.AVERAGES, [])) == 1, (
        f"keras {keras.__version__}: Optimizer.{optimizers.AVERAGES} changed")
    calls = []
    original = getattr(optimizer, optimizers.HOOK)
    setattr(optimizer, optimizers.HOOK, lambda variables: calls.append(1) or original(variables))
    optimizer.apply_gradients([(tf.ones(2), weight)])
    assert calls == [1], f"keras {keras.__version__} no longer calls Optimizer.{optimizers.HOOK}"


@pytest.fixture(scope="module")
def inception():
    rec = recipes.recipe("inception_v3")
    model = models.build("inception_v3", 5, 75, rec)
    run.compile_model(model, rec, learning_rate=0.01, steps_per_epoch=10)
    return model


def test_inception_aux_head_on_mixed7_and_the_recipe_is_applied(inception):
    assert inception.name == "inception_v3"
    assert [o.shape[-1] for o in inception.outputs] == [5, 5]
    layer = inception.get_layer("aux_pool")
    assert layer._inbound_nodes[0].parent_nodes[0].operation.name == "mixed7"
    assert inception.get_layer("dropout").rate == pytest.approx(0.2)
    bns = [layer for layer in inception.layers
           if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(layer.momentum == pytest.approx(0.99) for layer in bns)
    convs = [layer for layer in inception.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(layer.kernel_regularizer.l2 == pytest.approx(2e-5) for layer in convs)


def test_loss_is_main_plus_0_4_aux_with_smoothing_plus_weight_decay(inception):
    images = tf.random.stateless_uniform([3, 75, 75, 3], [1, 2], -1, 1)
    labels = tf.one_hot([1, 2, 4], 5)
    main, aux = inception(images, training=False)

    def smoothed_ce(logits):  # label smoothing 0.1 over 5 classes, by hand
        target = labels * 0.9 + 0.1 / 5
        return float(tf.reduce_mean(-tf.reduce_sum(target * tf.nn.log_softmax(logits), -1)))

    kernels = [layer.kernel for layer in inception.layers if hasattr(layer, "kernel")]
    decay = 4e-5 * sum(float(tf.nn.l2_loss(k)) for k in kernels)  # slim: w * sum(x^2) / 2
    expected = smoothed_ce(main) + 0.4 * smoothed_ce(aux) + decay
    got = float(inception.compute_loss(x=images, y=(labels, labels), y_pred=(main, aux)))
    assert got == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(recipes.MODELS))
def test_each_network_steps_evaluates_and_its_checkpoint_reloads(name, tmp_path):
    """Each network as train.py builds it for 32 px images of 3 classes (Inception raised to
    its 75 px minimum): one training step and one evaluation step through the compiled losses
    and metrics, then a checkpoint (weights, optimizer slots, weight averages, step) that
    reloads equal and fine-tunes into new logits. Steps run eagerly: tracing the graph of one
    step takes 3-100 s per network on this CPU; the traced path on 2 towers is
    test_train_runs.py's."""
    rec = recipes.recipe(name)
    cifar = data.DatasetInfo("d", ("airplane", "cat", "ship"), 12, 6, 32)
    size = run.image_size(run.TrainOptions(data_dir="d", train_dir="t", model=name), cifar, rec)
    assert size == (75 if name.startswith("inception") else 32)
    with pytest.raises(ValueError, match=f"at least {rec.min_image_size} px"):
        models.build(name, 4, rec.min_image_size - 1, rec)
    model = models.build(name, cifar.num_classes, size, rec)
    heads = [models.LOGITS, models.AUX_LOGITS] if name == "inception_v3" else [models.LOGITS]
    assert model.name == name and model.output_names == heads
    run.compile_model(model, rec, learning_rate=0.01, steps_per_epoch=10)
    model.run_eagerly = True
    images = tf.random.stateless_uniform([4, size, size, 3], [1, 2], -1, 1)
    targets = data.one_hot_targets(tf.constant([1, 2, 3, 1]), cifar.num_classes, len(heads))
    start = [np.array(w) for w in model.trainable_weights]
    logs = model.train_on_batch(images, targets, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    moved = [not np.array_equal(a, np.asarray(b)) for a, b in zip(start, model.trainable_weights)]
    assert np.mean(moved) > 0.9, f"{sum(moved)} of {len(moved)} weights moved"
    result = model.test_on_batch(images, targets, return_dict=True)
    assert 0.0 <= callbacks.metric(result, "top1") <= callbacks.metric(result, "top5") <= 1.0

    saver = checkpoints.KeepCheckpoints(str(tmp_path), every=1, keep=2)
    saver.set_model(model)
    saver.save()
    path = checkpoints.latest(str(tmp_path))
    assert path.endswith("ckpt-000001.keras")
    loaded = checkpoints.load(path, cifar.num_classes)
    assert loaded.name == name and type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.use_ema and int(loaded.optimizer.iterations) == 1
    for a, b in zip(model.weights, loaded.weights):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):  # slots, averages
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    if name == "vgg16":  # (the check runs after loading: once is enough)
        with pytest.raises(callbacks.TrainingError, match="has 4 outputs but the data needs 6"):
            checkpoints.load(path, 6)
    if name not in ("inception_v3", "resnet34"):  # the same code for every network
        return
    tuned = models.build(name, 3, size, rec)
    assert checkpoints.transfer_weights(loaded, tuned) == heads
    first = next(i for i, layer in enumerate(tuned.layers)
                 if isinstance(layer, keras.layers.Conv2D))
    assert np.array_equal(tuned.layers[first].get_weights()[0],
                          loaded.layers[first].get_weights()[0])


def test_resnet34_blocks_and_parameter_count():
    rec = recipes.recipe("resnet34", dropout=0.0)
    model = models.build("resnet34", 1000, 224, rec)
    blocks = {}
    for layer in model.layers:
        if layer.name.endswith("_add"):
            stage = layer.name.split("_")[0]
            blocks[stage] = blocks.get(stage, 0) + 1
    assert blocks == {"stage1": 3, "stage2": 4, "stage3": 6, "stage4": 3}
    widths = [model.get_layer(f"stage{s}_block1_2_conv").filters for s in range(1, 5)]
    assert widths == [64, 128, 256, 512]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 21_797_672  # He et al.'s ResNet-34 with a 1000-way classifier
    assert model.get_layer("stem_conv").kernel_size == (7, 7)
    small = models.build("resnet34", 10, 32, rec)
    assert small.get_layer("stem_conv").kernel_size == (3, 3)
    assert "stem_pool" not in [layer.name for layer in small.layers]


def test_nan_loss_stops_with_a_clear_error(inception):
    guard = callbacks.NanGuard()
    guard.set_model(inception)
    with pytest.raises(callbacks.TrainingError, match="loss is nan at step"):
        guard.on_train_batch_end(0, {"loss": float("nan")})
    guard.on_train_batch_end(0, {"loss": 1.5})


def test_metric_reads_single_and_multi_output_logs():
    assert callbacks.metric({"top1": 0.5}, "top1") == 0.5
    assert callbacks.metric({"aux_logits_top1": 0.1, "logits_top1": 0.7}, "top1") == 0.7
    assert np.isnan(callbacks.metric({}, "top5"))


def test_dataset_presets():
    photos = data.DatasetInfo("d", ("daisy", "roses"), 10, 5, 500)
    assert photos.preprocessing == "inception" and photos.flip and photos.num_classes == 3
    digits = data.DatasetInfo("d", tuple("0123456789"), 10, 5, 28)
    assert digits.preprocessing == "small" and not digits.flip
    cifar = data.DatasetInfo("d", ("airplane", "cat"), 10, 5, 32)
    assert cifar.preprocessing == "small" and cifar.flip
    config = run.TrainOptions(data_dir="d", train_dir="t", model="inception_v3")
    assert run.image_size(config, digits, config.recipe()) == 75  # raised to the minimum
    config = run.TrainOptions(data_dir="d", train_dir="t", model="resnet34")
    assert run.image_size(config, cifar, config.recipe()) == 32
    assert run.image_size(config, photos, config.recipe()) == 224


def test_tower_dropout_draws_a_new_seeded_mask_each_step(tmp_path):
    layer = models.TowerDropout(0.25, seed=11)
    x = tf.ones([64, 256])
    assert np.array_equal(layer(x, training=False), x)
    first, second = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert int(layer.draws.numpy()) == 2  # evaluation calls draw nothing
    for out in (first, second):
        assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
        assert abs((out == 0).mean() - 0.25) < 0.014  # 16,384 draws: 4 sigma
    assert not np.array_equal(first, second)
    again = models.TowerDropout(0.25, seed=11)
    assert np.array_equal(again(x, training=True), first)  # same seed, same first mask
    assert not np.array_equal(models.TowerDropout(0.25, seed=12)(x, training=True), first)
    # a saved model keeps the seed and the draw count, so a resumed run continues the sequence
    inputs = keras.Input((256,))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras").get_layer(layer.name)
    assert loaded.seed == 11 and int(loaded.draws.numpy()) == 2
    assert np.array_equal(loaded(x, training=True), layer(x, training=True))


def test_logbook_writes_json_lines(tmp_path):
    book = callbacks.Logbook(str(tmp_path))
    book.write("validation", {"step": 5, "minutes": 0.5, "precision_at_1": 0.25})
    rows = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert rows == [{"step": 5, "minutes": 0.5, "precision_at_1": 0.25}]
    assert list(tmp_path.glob("events.out.tfevents*"))


def test_precise_batch_norm_averages_the_statistics_of_the_batches_it_is_given():
    from trainer import batch_norm

    inputs = keras.Input((4,))
    normed = keras.layers.BatchNormalization(momentum=0.99, name="bn")(inputs)
    model = keras.Model(inputs, models.TowerDropout(0.5, seed=3, name="dropout")(normed))
    layer = model.get_layer("bn")
    layer.moving_mean.assign(np.full(4, 50.0, np.float32))  # stale: far from the data
    dropout = model.get_layer("dropout")
    dropout.draws.assign(7)
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, scale, (16, 4)).astype(np.float32)
               for loc, scale in ((1.0, 2.0), (3.0, 1.0), (-2.0, 0.5))]
    used = batch_norm.recompute(model, [(b, None) for b in batches])
    assert used == 3
    np.testing.assert_allclose(layer.moving_mean, np.mean([b.mean(0) for b in batches], 0),
                               rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance, np.mean([b.var(0) for b in batches], 0),
                               rtol=1e-4)
    assert layer.momentum == 0.99 and int(dropout.draws.numpy()) == 7  # as they were
    assert batch_norm.recompute(model, []) == 0


def test_a_training_run_starts_without_tensorflow_chatter_and_errors_still_show(tmp_path):
    """TensorFlow's C++ start-up lines (oneDNN notice, 'Could not find cuda drivers', an
    E-line 'failed call to cuInit' on a machine without a GPU) are dropped; a real error is the
    one line on stderr."""
    import pathlib
    import subprocess
    import sys

    train = pathlib.Path(__file__).resolve().parents[1] / "train.py"
    result = subprocess.run([sys.executable, str(train), "--data-dir", str(tmp_path / "none"),
                             "--train-dir", str(tmp_path / "runs")], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'none'} lacks labels.txt or manifest.json; point --data-dir at the "
        f"output of `inception-data build` ({tmp_path / 'none'}/labels.txt; No such file or "
        f"directory)"], result.stderr


@pytest.mark.parametrize("name, size", [("resnet50", 64), ("mobilenet_v2", 96)])
def test_pretrained_weights_from_a_file_load_layer_by_layer(name, size, tmp_path):
    """Weights saved here from the same Keras architecture, with known values, are the
    trainer's network's below its new logits; ResNet-50 gets Caffe's input inside the model."""
    rec = recipes.recipe(name)
    app = models._KERAS_BASES[name](include_top=False, weights=None, input_shape=(size, size, 3))
    rng = np.random.default_rng(1)
    app.set_weights([rng.normal(size=w.shape).astype("float32") for w in app.get_weights()])
    path = tmp_path / f"{name}.weights.h5"
    app.save_weights(path)
    model = models.build(name, 4, size, rec, pretrained=str(path))
    mine = [layer for layer in model.layers if layer.weights and layer.name != models.LOGITS
            and not isinstance(layer, models.TowerDropout)]  # the new head
    theirs = [layer for layer in app.layers if layer.weights]
    assert len(mine) == len(theirs) > 50
    for ours, published in zip(mine, theirs):
        for a, b in zip(ours.get_weights(), published.get_weights()):
            assert np.array_equal(a, b), ours.name
    assert ("caffe_input" in [layer.name for layer in model.layers]) == (name in models.CAFFE_INPUT)
    # the recipe still applies to the rebuilt layers
    assert all(layer.momentum == pytest.approx(rec.bn_momentum) for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))


def test_each_weight_set_gets_the_input_it_was_trained_with():
    """input_fn's [-1, 1] becomes, inside the model, what keras.applications' preprocess_input
    makes of the same 0..255 image: Caffe's BGR minus the means for ResNet-50 and VGG-16."""
    from PIL import Image

    from tests import fabricate

    photo = sorted(fabricate.shared_data("imagenet-samples").iterdir())[0]
    pixels = np.asarray(Image.open(photo).convert("RGB").resize((32, 32)), np.float32)[None]
    unit = pixels / 127.5 - 1.0  # what input_fn yields
    ours = models.CaffeInput()(unit).numpy()
    for module in (keras.applications.resnet50, keras.applications.vgg16):
        np.testing.assert_allclose(ours, module.preprocess_input(pixels.copy()), atol=1e-3)
    for module in (keras.applications.inception_v3, keras.applications.mobilenet_v2,
                   keras.applications.inception_resnet_v2):  # the [-1, 1] they take as it is
        np.testing.assert_allclose(unit, module.preprocess_input(pixels.copy()), atol=1e-5)


def test_imagenet_weights_without_network_say_which_file_to_put_where(tmp_path, monkeypatch):
    from keras.src.utils import file_utils  # where the applications fetch from (tests only)

    def offline(fname, origin=None, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure "
                        f"in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(models.PretrainedError) as raised:
        models.build("mobilenet_v2", 4, 96, recipes.recipe("mobilenet_v2"), pretrained="imagenet")
    message = str(raised.value)
    assert "put mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in message
    assert f"in {tmp_path / 'keras'}/models/" in message and "--pretrained PATH" in message
    with pytest.raises(models.PretrainedError, match="resnet34 has no published"):
        models.build("resnet34", 4, 32, recipes.recipe("resnet34"), pretrained="imagenet")


def test_a_frozen_base_keeps_its_weights_and_batch_norm_statistics_while_the_head_learns(
        tmp_path):
    """--freeze-base-steps: every layer but the logits (and Inception's aux head) frozen; the
    base's batch norm runs in inference mode (its moving statistics stay the pretrained
    ones); a checkpoint keeps the frozen flags, and unfreezing trains every layer again."""
    rec = recipes.recipe("mobilenet_v2")
    model = models.build("mobilenet_v2", 4, 32, rec)
    run.freeze_base(model, True)
    assert run.base_frozen(model)
    learning = [layer.name for layer in model.layers if layer.trainable and layer.weights]
    assert learning == [models.LOGITS]
    run.compile_model(model, rec, learning_rate=0.01, steps_per_epoch=10)
    model.run_eagerly = True
    images = tf.random.stateless_uniform([4, 32, 32, 3], [1, 2], -1, 1)
    targets = data.one_hot_targets(tf.constant([1, 2, 3, 1]), 4, 1)
    before = {w.path: np.array(w) for w in model.weights}
    model.train_on_batch(images, targets)
    changed = {w.path for w in model.weights if not np.array_equal(before[w.path], np.array(w))}
    assert changed and all(path.startswith(models.LOGITS + "/") or "draws" in path
                           for path in changed), changed  # (dropout's draw count)
    # a checkpoint of the frozen phase reloads frozen (a resumed run goes on with the head)
    path = str(tmp_path / "ckpt-000001.keras")
    model.save(path)
    assert run.base_frozen(checkpoints.load(path, 4))
    run.freeze_base(model, False)
    assert not run.base_frozen(model)
    run.compile_model(model, rec, learning_rate=0.01, steps_per_epoch=10)
    model.run_eagerly = True
    before = [np.array(w) for w in model.trainable_weights]
    model.train_on_batch(images, targets)
    moved = [not np.array_equal(a, np.asarray(b)) for a, b in zip(before, model.trainable_weights)]
    assert np.mean(moved) > 0.9
    # Inception's auxiliary head is new with published weights: it learns with the logits
    inception = models.build("inception_v3", 4, 75, recipes.recipe("inception_v3"))
    run.freeze_base(inception, True)
    learning = {layer.name for layer in inception.layers if layer.trainable and layer.weights}
    assert {models.LOGITS, models.AUX_LOGITS, "aux_conv1", "aux_conv2_bn"} <= learning
    assert all(name == models.LOGITS or name.startswith("aux_") for name in learning), learning
    assert len([layer for layer in inception.layers if layer.weights]) > len(learning) + 100


def test_evaluation_says_how_many_records_it_could_not_read():
    assert callbacks.skipped_note(0) == ""
    note = callbacks.skipped_note(3)
    assert note.startswith("; 3 record(s) skipped") and "shard is damaged" in note


def test_weights_that_are_not_the_networks_are_one_short_line(tmp_path):
    """--pretrained with another network's weights (Keras' own message lists every layer:
    5,546 characters), a folder or a missing file (h5py's names buffers): one line, under 400
    characters, that says what is wrong and what to give."""
    other = models._KERAS_BASES["mobilenet_v2"](include_top=False, weights=None,
                                                input_shape=(32, 32, 3))
    path = tmp_path / "mobilenet_v2.weights.h5"
    other.save_weights(path)
    rec = recipes.recipe("resnet50")
    expected = {
        str(path): f"--pretrained {path} does not hold resnet50's weights (106 of its layers "
                   f"could not be loaded; the first: Layer 'conv1_conv' expected 2 variables",
        str(tmp_path): f"--pretrained {tmp_path} is a folder: give the no-top weights file of "
                       f"resnet50 (a .h5 of Keras' applications), such as {tmp_path}/<file>.h5",
        str(tmp_path / "no.h5"): f"--pretrained {tmp_path / 'no.h5'} does not exist: give the "
                                 f"no-top weights file of resnet50"}
    for given, says in expected.items():
        with pytest.raises(models.PretrainedError) as raised:
            models.build("resnet50", 4, 32, rec, pretrained=given)
        message = str(raised.value)
        assert message.startswith(says) and len(message) < 400 and "\n" not in message, message

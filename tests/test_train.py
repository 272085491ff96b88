"""train.py: unit tests of the recipe, and the whole cycle (train on 2 CPU towers, resume,
evaluate, fine-tune) on shards built from real images with the CLI."""

import json
import math
import re
import subprocess
import sys
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from inception_data import cli
from tests import fabricate

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import train  # noqa: E402


def args(*extra):
    return train.parse_args(["--data-dir", "unused", "--train-dir", "unused", *extra])


@pytest.fixture(scope="module")
def small_model():
    model = train.build_model(5, 75)
    train.compile_model(model, args(), steps_per_epoch=10)
    return model


def test_aux_head_is_fed_by_mixed7_and_heads_have_num_classes(small_model):
    assert [o.shape[-1] for o in small_model.outputs] == [5, 5]
    layer = small_model.get_layer("aux_pool")
    assert layer._inbound_nodes[0].parent_nodes[0].operation.name == "mixed7"
    assert small_model.get_layer("dropout").rate == pytest.approx(0.2)  # keep 0.8
    bns = [l for l in small_model.layers if isinstance(l, __import__("keras").layers.BatchNormalization)]
    assert bns and all(l.momentum == pytest.approx(0.9997) and l.epsilon == 0.001 for l in bns)


def test_loss_is_main_plus_0_4_aux_with_smoothing_plus_weight_decay(small_model):
    images = tf.random.stateless_uniform([3, 75, 75, 3], [1, 2], -1, 1)
    labels = tf.one_hot([1, 2, 4], 5)
    main, aux = small_model(images, training=False)

    def smoothed_ce(logits):  # label smoothing 0.1 over 5 classes, by hand
        target = labels * 0.9 + 0.1 / 5
        return float(tf.reduce_mean(-tf.reduce_sum(target * tf.nn.log_softmax(logits), -1)))

    kernels = [l.kernel for l in small_model.layers if hasattr(l, "kernel")]
    decay = 4e-5 * sum(float(tf.nn.l2_loss(k)) for k in kernels)  # slim: w * sum(x^2) / 2
    expected = smoothed_ce(main) + 0.4 * smoothed_ce(aux) + decay
    got = float(small_model.compute_loss(x=images, y=(labels, labels), y_pred=(main, aux)))
    assert got == pytest.approx(expected, rel=1e-4)


def test_learning_rate_schedule_at_epoch_boundaries():
    schedule = train.learning_rate(args(), steps_per_epoch=100)  # decay every 30 epochs
    for step, value in ((0, 0.1), (2999, 0.1), (3000, 0.016), (5999, 0.016), (6000, 0.00256)):
        assert float(schedule(step)) == pytest.approx(value, rel=1e-6), step


def test_global_batch_split_across_towers():
    class Towers:
        num_replicas_in_sync = 4

    assert train.per_replica_batch(256, Towers()) == 64
    with pytest.raises(train.TrainingError, match="multiple of 4"):
        train.per_replica_batch(30, Towers())


def test_nan_loss_stops_with_a_clear_error(small_model):
    callback = train.Throughput(global_batch=8, every=10, log_dir=None)
    callback.set_model(small_model)
    callback.on_train_batch_begin(0)
    with pytest.raises(train.TrainingError, match="loss is nan at step"):
        callback.on_train_batch_end(0, {"loss": float("nan")})


# ---------------------------------------------------------------- the whole cycle

def build_shards(root, classes, per_class, offset):
    """class<i>/ of real ImageNet samples, 2/3 train and 1/3 validation, built with the CLI."""
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())
    for c in range(classes):
        for i in range(per_class):
            split = "train" if i < per_class * 2 // 3 else "validation"
            source = samples[offset + c * 40 + i]
            fabricate.write(root / split / f"class{c}" / source.name, source.read_bytes())
    result = CliRunner().invoke(cli.main, [
        "build", "--no-progress", "--workers", "1", "--train-dir", str(root / "train"),
        "--validation-dir", str(root / "validation"), "--output-dir", str(root / "out"),
        "--shards", "2", "--validation-shards", "2"])
    assert result.exit_code == 0, result.output
    return root / "out"


def run_train(*argv, expect=0):
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), *map(str, argv)],
                            capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert result.returncode == expect, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def per_step_losses(output):
    """Keras logs running means within a fit call; recover each step's own loss."""
    means = [float(m) for m in re.findall(r"^step \d+: loss = ([\d.]+)", output, re.M)]
    return [n * m - (n - 1) * p for n, (m, p) in enumerate(zip(means, [0.0] + means), start=1)]


def test_train_resume_evaluate_and_fine_tune(tmp_path):
    data = build_shards(tmp_path / "three", classes=3, per_class=6, offset=0)
    runs = tmp_path / "runs"
    # global batch 12 = the whole training split each step: the loss then tracks fitting, not
    # which 4 random crops a step happened to draw
    common = ["--data-dir", data, "--train-dir", runs, "--image-size", 75, "--batch-size", 12,
              "--distortions", "none", "--initial-learning-rate", 0.001, "--log-every", 1,
              "--keep-checkpoints", 2, "--seed", 1]
    output = run_train(*common, "--num-towers", 2, "--max-steps", 16, "--checkpoint-steps", 8)
    assert "2 tower(s), global batch 12, 4 classes" in output
    losses = per_step_losses(output)
    assert len(losses) == 16 and all(math.isfinite(l) for l in losses)
    assert np.mean(losses[-4:]) < np.mean(losses[:4]), losses  # it overfits 12 images
    assert sorted(p.name for p in runs.glob("ckpt-*")) == ["ckpt-000008.keras",
                                                           "ckpt-000016.keras"]
    assert list((runs / "logs").rglob("*tfevents*"))

    output = run_train(*common, "--num-towers", 2, "--max-steps", 18, "--checkpoint-steps", 100)
    assert "resuming from" in output and "at step 16" in output
    assert re.search(r"^step 17: ", output, re.M) and re.search(r"^step 18: ", output, re.M)
    assert not re.search(r"^step [1-9]: ", output, re.M)
    assert sorted(p.name for p in runs.glob("ckpt-*")) == ["ckpt-000016.keras",
                                                           "ckpt-000018.keras"]

    output = run_train(*common, "--eval")
    manifest = json.loads((data / "manifest.json").read_text())
    examples = manifest["splits"]["validation"]["written"]
    match = re.search(r"precision @ 1 = ([\d.]+) recall @ 5 = ([\d.]+) \[(\d+) examples\]", output)
    assert match and int(match.group(3)) == examples == 6
    assert "moving-average weights" in output
    assert 0.0 <= float(match.group(1)) <= float(match.group(2)) <= 1.0

    model = train.load_checkpoint(str(runs / "ckpt-000018.keras"), 4)
    raw = [w.numpy().copy() for w in model.trainable_variables]
    assert train.use_moving_averages(model)  # the EMA was saved and restored with the model
    assert any(not np.array_equal(r, w.numpy()) for r, w in zip(raw, model.trainable_variables))

    other = build_shards(tmp_path / "two", classes=2, per_class=6, offset=300)
    tuned = ["--data-dir", other, "--image-size", 75, "--batch-size", 4, "--log-every", 1,
             "--max-steps", 2, "--distortions", "none"]
    output = run_train(*tuned, "--train-dir", tmp_path / "wrong", "--pretrained-checkpoint",
                       runs / "ckpt-000018.keras", "--eval", "--checkpoint",
                       runs / "ckpt-000018.keras", expect=2)
    assert "predicts 4 classes" in output and "--fine-tune" in output
    output = run_train(*tuned, "--train-dir", tmp_path / "ft", "--fine-tune",
                       "--pretrained-checkpoint", runs / "ckpt-000018.keras",
                       "--initial-learning-rate", 0.001)
    assert "new layers: ['logits', 'aux_logits']" in output and "3 classes" in output
    tuned_model = train.load_checkpoint(str(tmp_path / "ft" / "ckpt-000002.keras"), 3)
    source = train.load_checkpoint(str(runs / "ckpt-000018.keras"), 4)
    assert tuned_model.get_layer("logits").units == 3
    # a layer far from the head starts from the pretrained weights (2 small steps later)
    start, now = source.get_layer("conv2d").get_weights()[0], tuned_model.get_layer("conv2d").get_weights()[0]
    assert np.abs(now - start).mean() < 0.1 * np.abs(start).mean()

"""train.py end to end on shards built with the CLI, on 2 CPU towers: a seeded run repeats
exactly; the cycle of train, periodic evaluation, resume, evaluate and fine-tune on real images.
Each network is stepped, evaluated and checkpointed in process in test_train.py. These runs use
small networks and run train.py's main in this process: a train.py process costs 15-25 s
before its first step whatever the network (imports, towers, tracing), tracing Inception v3's
step alone takes ~40 s on this CPU, and the code they exercise is the same for every network.
Slow: run `pytest -m "not slow"` for the fast loop."""

import contextlib
import importlib.util
import io
import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import fabricate

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parents[1]


def build(root, *, train, validation):
    fabricate.build("--train-dir", train, "--validation-dir", validation, "--output-dir",
                    root / "out", "--shards", "2", "--validation-shards", "2")
    return root / "out"


def real_shards(root, classes, per_class, offset):
    """class<i>/ of real ImageNet samples, 2/3 train and 1/3 validation."""
    samples = sorted(fabricate.shared_data("imagenet-samples").iterdir())
    for c in range(classes):
        for i in range(per_class):
            split = "train" if i < per_class * 2 // 3 else "validation"
            source = samples[offset + c * 40 + i]
            fabricate.write(root / split / f"class{c}" / source.name, source.read_bytes())
    return build(root, train=root / "train", validation=root / "validation")


def cifar_like_shards(root):
    """32x32 PNGs of 3 classes (what `download cifar10` writes), 4 train and 2 validation each."""
    for split, count in (("train", 4), ("validation", 2)):
        for c, name in enumerate(("airplane", "cat", "ship")):
            for i in range(count):
                fabricate.write(root / split / name / f"{c}{i}.png",
                                fabricate.png_bytes(32, 32, seed=10 * c + i))
    return build(root, train=root / "train", validation=root / "validation")


def _train_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = _train_script()


def run_train(*argv, expect=0):
    """train.py's main with these arguments, in this process (conftest.py gave it 2 logical
    CPU devices for --num-towers 2); returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = TRAIN.main([str(a) for a in argv])
    assert code == expect, out.getvalue()[-3000:]
    return out.getvalue()


def varied_shards(root, per_class=4):
    """32x32 PNGs of 3 classes, each image different (so the order of the data shows in the
    losses), `per_class` train and 2 validation each."""
    for split, count in (("train", per_class), ("validation", 2)):
        for c, name in enumerate(("airplane", "cat", "ship")):
            for i in range(count):
                fabricate.write(root / split / name / f"{c}{i}.png",
                                fabricate.png_bytes(
                                    32, 32, seed=100 * c + i + 50 * (split != "train")))
    return build(root, train=root / "train", validation=root / "validation")


def logged(train_dir):
    """{step: loss} from the run's train.jsonl (full float precision)."""
    rows = [json.loads(line)
            for line in (train_dir / "logs" / "train.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


# The tiny network (models.tiny_features: batch norm and dropout) at a rate that moves it:
# a step's loss then depends on everything before it. 12 training images, batch 4: 3 steps an
# epoch. Distortions on: the crops, flips and colours of each step resume too.
RESUMABLE = ["--model", "tiny", "--batch-size", 4, "--log-every", 1,
             "--initial-learning-rate", 0.05, "--warmup-epochs", 0, "--precise-bn-batches", 2]


@pytest.mark.parametrize("towers", [1, 2])
def test_a_run_resumed_anywhere_equals_the_uninterrupted_run(tmp_path, towers):
    """Grain's test of a loader, on the trainer: stop after k steps, start again from the
    checkpoint (a new model, dataset and optimizer from the file), and the losses of every step
    equal the uninterrupted run's to the last bit; k mid-epoch, at an epoch's last step and past
    one epoch. The seed fixes the data order and distortions, the weights and the dropout;
    another seed gives other losses."""
    data = varied_shards(tmp_path / "data")
    common = [*RESUMABLE, "--data-dir", data, "--num-towers", towers, "--checkpoint-steps", 100,
              "--seed", 5]
    whole = tmp_path / "whole"
    output = run_train(*common, "--train-dir", whole, "--max-steps", 8)
    assert f"{towers} tower(s), global batch 4" in output and "3 steps/epoch" in output
    chain = tmp_path / "chain"
    for stop in (2, 3, 5, 8):  # mid-epoch, an epoch's last step, past one epoch, the end
        output = run_train(*common, "--train-dir", chain, "--max-steps", stop)
    assert "resuming tiny from" in output and "at step 5" in output
    expected = logged(whole)
    assert sorted(expected) == list(range(1, 9)) and len(set(expected.values())) > 4
    assert logged(chain) == expected
    run_train(*common[:-1], 6, "--train-dir", tmp_path / "other", "--max-steps", 2)
    assert logged(tmp_path / "other")[2] != expected[2]


def test_a_run_killed_while_writing_a_checkpoint_resumes_exactly(tmp_path):
    """SIGKILL to a train.py process in the middle of writing a checkpoint (its temporary file
    on disk): the restarted run resumes from the newest whole checkpoint, ignores the partial
    one, and every step after it logs the loss of the uninterrupted run."""
    data = varied_shards(tmp_path / "data")
    common = [*RESUMABLE, "--data-dir", data, "--checkpoint-steps", 1, "--seed", 7]
    runs = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, common),
                                "--train-dir", str(runs), "--max-steps", "1000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not (list(runs.glob(".tmp-ckpt-*")) and list(runs.glob("ckpt-*"))):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint written in 240 s"
            time.sleep(0.002)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert list(runs.glob(".tmp-ckpt-*")), "the kill came after the write: nothing to ignore"
    saved = max(int(p.name[5:11]) for p in runs.glob("ckpt-*.keras"))
    output = run_train(*common, "--train-dir", runs, "--max-steps", saved + 3)
    assert f"at step {saved}" in output
    run_train(*common, "--train-dir", tmp_path / "whole", "--max-steps", saved + 3)
    assert logged(runs) == logged(tmp_path / "whole")
    assert sorted(logged(runs)) == list(range(1, saved + 4))


def test_an_unseeded_run_keeps_its_drawn_data_seed_and_refuses_another(tmp_path):
    """Without --seed, the data seed is drawn at the first start and kept in run.json: a
    restart continues the same stream; a restart with another seed or global batch would
    not, and is refused in one line."""
    data = varied_shards(tmp_path / "data", per_class=2)
    common = ["--model", "tiny", "--log-every", 1, "--precise-bn-batches", 0, "--data-dir", data,
              "--train-dir", tmp_path / "run", "--batch-size", 4]
    output = run_train(*common, "--max-steps", 1)
    seed = json.loads((tmp_path / "run" / "run.json").read_text())["seed"]
    assert f"data seed {seed}" in output
    output = run_train(*common, "--max-steps", 2)
    assert f"data seed {seed}" in output and "at step 1" in output
    refused = run_train(*common, "--max-steps", 3, "--seed", seed + 1, expect=2)
    assert f"error: --seed {seed + 1}, but this run's data stream comes from seed {seed}" in refused
    refused = run_train(*[a if a != 4 else 2 for a in common], "--max-steps", 3, expect=2)
    assert "error: --batch-size 2, but this run trains with a global batch of 4" in refused


def per_step_losses(output):
    return [float(m) for m in re.findall(r"^step \d+: loss = ([\d.]+)", output, re.M)]


def test_train_resume_evaluate_and_fine_tune(tmp_path):
    data = real_shards(tmp_path / "three", classes=3, per_class=6, offset=0)
    runs = tmp_path / "runs"
    # global batch 12 = the whole training split each step, and crops of the whole image: the
    # loss then tracks fitting, not which random crops a step happened to draw. Two towers of 6
    # images (batch-norm statistics of 6) still make single steps noisy, so halves are
    # compared. The tiny network at 32 px (Adam at 0.01) overfits the 12 images (halves of the
    # 8 steps: 1.31 / 0.90); --seed fixes
    # the weights too: the run is reproducible. (ResNet-34 and Inception v3 ran this cycle
    # until tracing their steps took most of the suite's time; test_train.py steps and
    # reloads every network.)
    common = ["--data-dir", data, "--train-dir", runs, "--model", "tiny", "--image-size", 32,
              "--batch-size", 12, "--distortions", "none", "--min-crop-area", 1.0,
              "--initial-learning-rate", 0.01, "--warmup-epochs", 0,
              "--log-every", 1, "--keep-checkpoints", 2, "--seed", 1,
              "--precise-bn-batches", 2]  # before each evaluation and checkpoint, on 2 towers
    output = run_train(*common, "--num-towers", 2, "--max-steps", 8, "--checkpoint-steps", 4,
                       "--eval-every-steps", 4)
    assert "2 tower(s), global batch 12, 4 outputs (3 classes + background)" in output
    assert "tiny: inception preprocessing at 32 px" in output
    losses = per_step_losses(output)  # each line is the mean of its own step (metrics reset)
    assert len(losses) == 8 and all(math.isfinite(loss) for loss in losses)
    assert np.mean(losses[4:]) < np.mean(losses[:4]), losses  # it overfits 12 images
    assert re.search(r"^step 8: .*top-1 [\d.]+; [\d.]+ images/s, lr 0.01\b", output, re.M)
    assert sorted(p.name for p in runs.glob("ckpt-*")) == ["ckpt-000004.keras",
                                                           "ckpt-000008.keras"]
    assert list((runs / "logs").glob("*tfevents*"))
    rows = [json.loads(line) for line in (runs / "logs" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert all(r["xent"] < r["loss"] for r in rows)  # the loss without the L2 term
    evaluated = [json.loads(line)
                 for line in (runs / "logs" / "validation.jsonl").read_text().splitlines()]
    assert [(r["step"], r["examples"]) for r in evaluated] == [(4, 6), (8, 6)]  # 2 towers

    # resumed on 1 tower: a checkpoint does not depend on the towers it was trained on (and
    # one tower traces in half the time of two)
    output = run_train(*common, "--max-steps", 10, "--checkpoint-steps", 100)
    assert "resuming tiny from" in output and "at step 8" in output
    assert re.search(r"^step 9: ", output, re.M) and re.search(r"^step 10: ", output, re.M)
    assert not re.search(r"^step [1-8]: ", output, re.M)
    assert sorted(p.name for p in runs.glob("ckpt-*")) == ["ckpt-000008.keras",
                                                           "ckpt-000010.keras"]

    output = run_train(*common, "--eval")
    manifest = json.loads((data / "manifest.json").read_text())
    examples = manifest["splits"]["validation"]["written"]
    match = re.search(r"precision @ 1 = ([\d.]+) recall @ 5 = ([\d.]+) \[(\d+) examples\]", output)
    assert match and int(match.group(3)) == examples == 6
    assert "moving-average weights, batch norm re-estimated" in output
    assert 0.0 <= float(match.group(1)) <= float(match.group(2)) <= 1.0

    other = real_shards(tmp_path / "two", classes=2, per_class=6, offset=300)
    tuned = ["--data-dir", other, "--image-size", 32, "--batch-size", 4, "--log-every", 1,
             "--max-steps", 2, "--distortions", "none", "--precise-bn-batches", 2]
    output = run_train(*tuned, "--train-dir", tmp_path / "wrong", "--eval", "--checkpoint",
                       runs / "ckpt-000010.keras", expect=2)
    assert "has 4 outputs but the data needs 3" in output and "--fine-tune" in output
    output = run_train(*tuned, "--train-dir", tmp_path / "ft", "--fine-tune", "--model",
                       "inception_v3", "--pretrained-checkpoint", runs / "ckpt-000010.keras",
                       "--initial-learning-rate", 0.001)
    # the checkpoint says which network it holds; --model does not override it
    assert "new layers: ['logits']" in output
    assert "3 outputs (2 classes + background)" in output
    assert "tiny: inception preprocessing at 32 px" in output
    from trainer import checkpoints
    tuned_model = checkpoints.load(str(tmp_path / "ft" / "ckpt-000002.keras"), 3)
    source = checkpoints.load(str(runs / "ckpt-000010.keras"), 4)
    assert tuned_model.get_layer("logits").units == 3
    # a layer far from the head starts from the pretrained weights (2 small steps later)
    start = source.get_layer("tiny1_conv").get_weights()[0]
    now = tuned_model.get_layer("tiny1_conv").get_weights()[0]
    assert np.abs(now - start).mean() < 0.1 * np.abs(start).mean()


def test_a_run_from_published_weights_fine_tunes_and_evaluates(tmp_path):
    """--pretrained PATH (weights saved here from Keras' own MobileNetV2, as the published
    file would be) starts the network below new logits from them, trains and evaluates."""
    import keras

    data = cifar_like_shards(tmp_path)
    app = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = tmp_path / "mobilenet_v2_no_top.weights.h5"
    app.save_weights(weights)
    common = ["--data-dir", data, "--train-dir", tmp_path / "runs", "--model", "mobilenet_v2",
              "--batch-size", 4, "--log-every", 1, "--seed", 2, "--precise-bn-batches", 2]
    # the head alone for 1 step (the base frozen), then every layer
    output = run_train(*common, "--max-steps", 2, "--pretrained", weights,
                       "--initial-learning-rate", 0.0001, "--freeze-base-steps", 1,
                       "--checkpoint-steps", 1)
    assert f"fine-tuning from {weights}; new layers: ['logits']" in output
    assert re.search(r"^step 1: loss = [\d.]+", output, re.M)
    assert "step 1: the base unfrozen (--freeze-base-steps); every layer trains at peak " \
        "learning rate 0.0001" in output
    assert re.search(r"^step 2: loss = [\d.]+", output, re.M)
    output = run_train(*common, "--eval")
    assert re.search(r"precision @ 1 = [\d.]+ recall @ 5 = [\d.]+ \[6 examples\]", output)
    from trainer import checkpoints
    tuned = checkpoints.load(str(tmp_path / "runs" / "ckpt-000002.keras"), 4)
    start, now = app.get_layer("Conv1").get_weights()[0], tuned.get_layer("Conv1").get_weights()[0]
    assert np.abs(now - start).mean() < 0.1 * np.abs(start).mean()  # from the given weights
    assert not np.array_equal(now, start)  # and trained in the second step
    frozen = checkpoints.load(str(tmp_path / "runs" / "ckpt-000001.keras"), 4)
    assert np.array_equal(frozen.get_layer("Conv1").get_weights()[0], start)
    assert np.array_equal(frozen.get_layer("bn_Conv1").moving_mean,
                          app.get_layer("bn_Conv1").moving_mean)


def test_on_error_skip_trains_and_evaluates_past_damaged_shards(tmp_path):
    """--on-error skip reaches every dataset of the run (training, its preview, evaluation):
    a truncated training shard is named once (from its index, when the datasets are made), a
    truncated validation shard once per pass, and the rest is read; evaluation says how many
    records it skipped."""
    data = cifar_like_shards(tmp_path)
    damaged = [data / "train-00001-of-00002", data / "validation-00001-of-00002"]
    for shard in damaged:
        whole = shard.read_bytes()
        shard.write_bytes(whole[: len(whole) * 2 // 3])
    output = run_train("--data-dir", data, "--train-dir", tmp_path / "run", "--model", "tiny",
                       "--batch-size", 4, "--max-steps", 2, "--log-every", 1,
                       "--eval-every-steps", 2, "--on-error", "skip")
    train, validation = damaged
    assert output.count(f"warning: input_fn: {train} is truncated: it has ") == 1, output
    assert "(3 of its 6 records are whole): the records after the damage are left out " \
           "(on_error='skip'); rebuild it" in output
    assert f"warning: input_fn: {validation} is truncated at byte " in output, output[-3000:]
    assert re.search(r"^step 2: loss", output, re.M)
    assert re.search(r"^eval at step 2 .*; 1 record\(s\) skipped: .*shard is damaged", output,
                     re.M), output[-3000:]
    row = json.loads((tmp_path / "run" / "logs" / "validation.jsonl").read_text().splitlines()[-1])
    assert (row["examples"], row["skipped"]) == (5, 1)  # of 6: the truncated shard's last one
    assert "Traceback" not in output


def test_benchmark_mode_measures_real_and_synthetic_input(tmp_path):
    """`--benchmark-steps`: images/s through the trainer's own loop with the real pipeline and
    with synthetic input, and which one bounds this machine."""
    data = cifar_like_shards(tmp_path / "data")
    out = run_train("--data-dir", data, "--train-dir", tmp_path / "bench", "--model", "tiny",
                    "--batch-size", 4, "--benchmark-steps", 3)
    rates = dict(re.findall(r"^(real input|synthetic input)\s+([\d.]+) images/s", out, re.M))
    assert set(rates) == {"real input", "synthetic input"} and all(
        float(rate) > 0 for rate in rates.values()), out
    assert re.search(r"real / synthetic = [\d.]+: the (input pipeline|model) is the bottleneck",
                     out), out

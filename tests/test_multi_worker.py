"""Training across machines (trainer/cluster.py): TF_CONFIG, and real 2-worker runs on
127.0.0.1 with ports the test picks, a worker killed and the cluster resumed, and the losses
of 2 workers against 1 worker with the same global batch and seed."""

import io
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests import fabricate
from tests.test_train_runs import build, run_train
from trainer import cluster
from trainer.callbacks import TrainingError

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = "vgg16"  # the quickest network to trace (9 s to its first step here; MobileNetV2 30 s)


def tf_config(workers, kind="worker", index=0, chief=None):
    spec = {"worker": workers, **({"chief": chief} if chief else {})}
    return json.dumps({"cluster": spec, "task": {"type": kind, "index": index}})


def test_the_cluster_comes_from_tf_config():
    assert cluster.from_env({}) == cluster.SINGLE
    two = ["10.0.0.1:2222", "10.0.0.2:2222"]
    assert cluster.from_env({"TF_CONFIG": tf_config(two, index=0)}) == cluster.Cluster(2, 0, True)
    assert cluster.from_env({"TF_CONFIG": tf_config(two, index=1)}) == cluster.Cluster(2, 1, False)
    # with a chief task, the chief writes and worker 0 does not
    with_chief = {"TF_CONFIG": tf_config(two, "worker", 0, chief=["10.0.0.9:2222"])}
    assert cluster.from_env(with_chief) == cluster.Cluster(3, 1, False)
    chief = {"TF_CONFIG": tf_config(two, "chief", 0, chief=["10.0.0.9:2222"])}
    assert cluster.from_env(chief) == cluster.Cluster(3, 0, True)
    assert not cluster.from_env({"TF_CONFIG": tf_config(two[:1])}).multi_worker


@pytest.mark.parametrize("text, says", [
    ("{not json", "TF_CONFIG is not the JSON TensorFlow expects"),
    (tf_config(["a:1"], "ps", 0), "task type(s) ['ps']"),
    (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]},
                 "task": {"type": "worker", "index": 0}}), "no parameter servers"),
    (tf_config(["a:1", "b:1"], "worker", 2), "task worker 2 is not in its cluster"),
])
def test_a_tf_config_train_py_cannot_use_is_one_clear_error(text, says):
    with pytest.raises(TrainingError, match=re.escape(says)):
        cluster.from_env({"TF_CONFIG": text})


def test_the_stopped_task_is_named_from_tensorflows_error():
    message = ("{{function_node __wrapped__CollectiveReduceV2_device_/job:worker/replica:0/"
               "task:0/device:CPU:0}} Collective ops is aborted by: Error reported from "
               "/job:worker/task:1: The following tasks are unhealthy (stopped sending "
               "heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.")
    assert cluster.unhealthy(message) == "stopped: /job:worker/replica:0/task:1"
    message = ("Graph execution error:\n\nDetected at node CollectiveReduceV2\nAdditional GRPC "
               "error information from remote target /job:worker/replica:0/task:1 while "
               "calling /tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received from peer "
               "{grpc_status:14, grpc_message:\"Socket closed\"}")
    assert cluster.unhealthy(message) == "stopped: /job:worker/replica:0/task:1 (Socket closed)"
    assert cluster.unhealthy("Graph execution error:\n\nsomething else") == "something else"


def test_the_private_keras_hooks_the_cluster_fixes_mend_still_exist():
    """trainer/cluster.py replaces one method and one function of Keras' TensorFlow trainer
    under MultiWorkerMirroredStrategy; a release that renames them fails here, by name (the
    2-worker runs below fail too, less plainly)."""
    import keras
    from keras.src.backend.tensorflow import trainer as keras_trainer

    assert callable(getattr(keras_trainer.TensorFlowTrainer, cluster.BUILD_HOOK, None)), (
        f"keras {keras.__version__}: TensorFlowTrainer.{cluster.BUILD_HOOK} is gone; update "
        f"trainer/cluster.py")
    assert callable(getattr(keras_trainer, cluster.REDUCE_HOOK, None)), (
        f"keras {keras.__version__}: {cluster.REDUCE_HOOK} is gone; update trainer/cluster.py")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(tmp_path, name, *argv, workers=2):
    """train.py processes, one per worker of a cluster on 127.0.0.1; output in <name>-<i>.log."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    processes = []
    for index in range(workers):
        env = {**os.environ, "TF_CONFIG": tf_config(addresses, index=index)}
        log = open(tmp_path / f"{name}-{index}.log", "w")
        processes.append(subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *map(str, argv)], env=env, cwd=ROOT,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return processes


def wait(processes, timeout=240):
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1, deadline - time.monotonic())) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def constant_images(root):
    """8 training and 2 validation copies of one single-colour photo-size image: every crop,
    flip and resize method gives the same pixels, so a step's loss does not depend on which
    tower or worker reads which image, and 2 workers must log what 1 worker logs."""
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), (200, 40, 90)).save(buffer, "PNG")
    for split, count in (("train", 8), ("validation", 2)):
        for i in range(count):
            fabricate.write(root / split / "a" / f"{i}.png", buffer.getvalue())
    return build(root, train=root / "train", validation=root / "validation")


def steps_logged(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_two_workers_train_as_one_resume_after_a_worker_is_killed(tmp_path):
    data = constant_images(tmp_path / "data")
    # lr 0.05: large steps, so a gradient summed instead of averaged, or a worker's own
    # half-batch loss, shows in the losses
    common = ["--data-dir", data, "--model", MODEL, "--image-size", 32,
              "--batch-size", 4, "--log-every", 1, "--seed", 3, "--distortions", "none",
              "--min-crop-area", 1.0, "--initial-learning-rate", 0.05,
              "--precise-bn-batches", 2, "--checkpoint-steps", 2]
    runs = tmp_path / "runs"
    cluster_run = start_workers(tmp_path, "first", *common, "--train-dir", runs,
                                "--max-steps", 1000, "--eval-every-steps", 4)
    deadline = time.monotonic() + 180
    while not (runs / "ckpt-000004.keras").exists() and time.monotonic() < deadline:
        assert all(p.poll() is None for p in cluster_run), (tmp_path / "first-0.log").read_text()
        time.sleep(0.5)
    os.killpg(cluster_run[1].pid, signal.SIGKILL)  # worker 2 of 2 dies (a preempted machine)
    codes = wait(cluster_run, timeout=120)
    chief = (tmp_path / "first-0.log").read_text()
    assert codes[0] == 2, chief[-3000:]
    error = [line for line in chief.splitlines() if line.startswith("error:")]
    # (the health check names the task, or the collective under way its closed socket)
    assert len(error) == 1 and "another worker of the cluster stopped (stopped: " \
        "/job:worker/replica:0/task:1" in error[0] and "start every worker again" in error[0]
    assert "Traceback" not in chief
    assert "worker 1 of 2 (chief), 2 tower(s), global batch 4" in chief

    # one writer: each step logged once, one events file, checkpoints only in --train-dir
    first = steps_logged(runs / "logs" / "train.jsonl")
    assert [r["step"] for r in first] == list(range(1, len(first) + 1)) and len(first) >= 4
    assert len(list((runs / "logs").glob("*tfevents*"))) == 1
    evaluated = steps_logged(runs / "logs" / "validation.jsonl")
    assert evaluated and all(r["examples"] == 2 and r["step"] % 4 == 0 for r in evaluated)
    # the same losses on both workers: the logs are means over every replica
    second = (tmp_path / "first-1.log").read_text()
    both = [re.findall(r"^step (\d+): loss = ([\d.]+)", text, re.M) for text in (chief, second)]
    assert both[0][:4] == both[1][:4] and len(both[1]) >= 4

    # 1 worker with 2 towers, the same global batch and seed: the same losses to float
    # precision (the gradients are averaged over all 4 images either way)
    single = run_train(*common, "--train-dir", tmp_path / "single", "--num-towers", 2,
                       "--max-steps", 4, "--checkpoint-steps", 100)
    assert "2 tower(s), global batch 4" in single
    alone = steps_logged(tmp_path / "single" / "logs" / "train.jsonl")
    assert np.allclose([r["loss"] for r in alone], [r["loss"] for r in first[:4]], rtol=1e-5,
                       atol=0), (alone, first[:4])
    assert alone[-1]["loss"] < alone[0]["loss"] - 0.05  # they learnt: the comparison has teeth

    # the cluster starts again and resumes from the newest checkpoint
    saved = max(int(p.name[5:11]) for p in runs.glob("ckpt-*.keras"))
    resumed = start_workers(tmp_path, "again", *common, "--train-dir", runs,
                            "--max-steps", saved + 1)
    codes = wait(resumed)
    logs = [(tmp_path / f"again-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for text in logs:
        assert f"at step {saved}" in text and f"resuming {MODEL} from" in text
        assert re.search(rf"^step {saved + 1}: loss", text, re.M)
        assert not re.search(rf"^step {saved}: ", text, re.M)
    assert (runs / f"ckpt-{saved + 1:06d}.keras").exists()
    assert len(list((runs / "logs").glob("*tfevents*"))) == 2  # the chief's of each run

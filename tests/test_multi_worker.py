"""Training across machines (trainer/cluster.py): TF_CONFIG, and real 2-worker runs on
127.0.0.1 with ports the test picks, a worker killed and the cluster resumed, and the losses
of 2 workers against 1 worker with the same global batch and seed."""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_train_runs import run_train, varied_shards
from trainer import cluster
from trainer.errors import TrainingError

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = "tiny"  # models.tiny_features: traced in a second


def tf_config(workers, kind="worker", index=0, chief=None):
    spec = {"worker": workers, **({"chief": chief} if chief else {})}
    return json.dumps({"cluster": spec, "task": {"type": kind, "index": index}})


def test_the_cluster_comes_from_tf_config():
    def where(environ):
        found = cluster.from_env(environ)
        return found.workers, found.index, found.chief

    assert cluster.from_env({}) == cluster.SINGLE
    two = ["10.0.0.1:2222", "10.0.0.2:2222"]
    assert where({"TF_CONFIG": tf_config(two, index=0)}) == (2, 0, True)
    assert where({"TF_CONFIG": tf_config(two, index=1)}) == (2, 1, False)
    # with a chief task, the chief writes and worker 0 does not
    with_chief = {"TF_CONFIG": tf_config(two, "worker", 0, chief=["10.0.0.9:2222"])}
    assert where(with_chief) == (3, 1, False)
    assert cluster.from_env(with_chief).tasks == (("chief 0", "10.0.0.9:2222"),
                                                  ("worker 0", two[0]), ("worker 1", two[1]))
    chief = {"TF_CONFIG": tf_config(two, "chief", 0, chief=["10.0.0.9:2222"])}
    assert where(chief) == (3, 0, True)
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


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(tmp_path, name, *argv, workers=2, started=None):
    """train.py processes, one per worker of a cluster on 127.0.0.1 (the first `started` of
    them: all by default); output in <name>-<i>.log."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    processes = []
    for index in range(workers if started is None else started):
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


def steps_logged(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


@pytest.mark.slow
def test_two_workers_train_as_one_and_resume_exactly_after_a_worker_is_killed(tmp_path):
    """2 workers of 1 replica read, at every step, the records 1 worker of 2 towers reads
    (inception_data/order.py): on different images in a changing order the two log the same
    losses (to the float rounding of their all-reduces). A worker killed; the cluster restarted
    resumes from the newest checkpoint where the interrupted one was, step for step; and the
    checkpoint resumed on 1 worker of 2 towers (another worker count) continues that stream."""
    data = varied_shards(tmp_path / "data")
    # lr 0.05: large steps, so a gradient summed instead of averaged, a worker's own half-batch
    # loss, or another worker's images, shows in the losses
    common = ["--data-dir", data, "--model", MODEL, "--batch-size", 4, "--log-every", 1,
              "--seed", 3, "--initial-learning-rate", 0.05, "--warmup-epochs", 0,
              "--precise-bn-batches", 2, "--checkpoint-steps", 2]
    runs = tmp_path / "runs"
    cluster_run = start_workers(tmp_path, "first", *common, "--train-dir", runs,
                                "--max-steps", 1000, "--eval-every-steps", 4)
    deadline = time.monotonic() + 180
    log = runs / "logs" / "train.jsonl"
    while not ((runs / "ckpt-000004.keras").exists() and len(steps_logged(log)) > 4) \
            and time.monotonic() < deadline:  # a step past the checkpoint: to compare below
        assert all(p.poll() is None for p in cluster_run), (tmp_path / "first-0.log").read_text()
        time.sleep(0.05)
    os.killpg(cluster_run[1].pid, signal.SIGKILL)  # worker 2 of 2 dies (a preempted machine)
    codes = wait(cluster_run, timeout=120)
    first = steps_logged(runs / "logs" / "train.jsonl")  # what the cluster did before
    chief = (tmp_path / "first-0.log").read_text()
    assert codes[0] == 2, chief[-3000:]
    error = [line for line in chief.splitlines() if line.startswith("error:")]
    # (the health check names the task, or the collective under way its closed socket)
    assert len(error) == 1 and "another worker of the cluster stopped (stopped: " \
        "/job:worker/replica:0/task:1" in error[0] and "start every worker again" in error[0]
    assert "Traceback" not in chief
    assert "worker 1 of 2 (chief), 2 tower(s), global batch 4" in chief

    # one writer: each step logged once, one events file, checkpoints only in --train-dir
    assert [r["step"] for r in first] == list(range(1, len(first) + 1)) and len(first) >= 4
    assert len(list((runs / "logs").glob("*tfevents*"))) == 1
    evaluated = steps_logged(runs / "logs" / "validation.jsonl")
    assert evaluated and all(r["examples"] == 6 and r["step"] % 4 == 0 for r in evaluated)
    # the same losses on both workers: the logs are means over every replica
    second = (tmp_path / "first-1.log").read_text()
    both = [re.findall(r"^step (\d+): loss = ([\d.]+)", text, re.M) for text in (chief, second)]
    assert both[0][:4] == both[1][:4] and len(both[1]) >= 4

    # 1 worker with 2 towers, the same global batch and seed: the same losses
    saved = max(int(p.name[5:11]) for p in runs.glob("ckpt-*.keras"))
    single = run_train(*common, "--train-dir", tmp_path / "single", "--num-towers", 2,
                       "--max-steps", saved + 2, "--checkpoint-steps", 100)
    assert "2 tower(s), global batch 4" in single
    alone = [r["loss"] for r in steps_logged(tmp_path / "single" / "logs" / "train.jsonl")]
    assert np.allclose(alone[:len(first)], [r["loss"] for r in first], rtol=1e-5, atol=0), \
        (alone, first)
    assert len(set(np.round(alone, 3))) > 3  # the steps differ: the comparison has teeth

    # the checkpoint resumed on 1 worker of 2 towers: the stream goes on (another worker count)
    shutil.copytree(runs, tmp_path / "regrouped")
    run_train(*common, "--train-dir", tmp_path / "regrouped", "--num-towers", 2,
              "--max-steps", saved + 2)
    regrouped = steps_logged(tmp_path / "regrouped" / "logs" / "train.jsonl")
    assert np.allclose([r["loss"] for r in regrouped], alone, rtol=1e-5, atol=0)

    # the cluster starts again and resumes from the newest checkpoint, exactly
    resumed = start_workers(tmp_path, "again", *common, "--train-dir", runs,
                            "--max-steps", saved + 2)
    codes = wait(resumed)
    logs = [(tmp_path / f"again-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    for text in logs:
        assert f"at step {saved}" in text and f"resuming {MODEL} from" in text
        assert re.search(rf"^step {saved + 1}: loss", text, re.M)
        assert not re.search(rf"^step {saved}: ", text, re.M)
    again = steps_logged(runs / "logs" / "train.jsonl")
    assert [r["step"] for r in again] == list(range(1, saved + 3))
    before = {r["step"]: r["loss"] for r in first}  # (steps past the checkpoint: to the bit)
    assert all(before[r["step"]] == r["loss"] for r in again if r["step"] in before)
    assert np.allclose([r["loss"] for r in again], alone, rtol=1e-5, atol=0)
    assert (runs / f"ckpt-{saved + 2:06d}.keras").exists()
    assert len(list((runs / "logs").glob("*tfevents*"))) == 2  # the chief's of each run


def read_until(process, log, text, seconds):
    """Waits for `text` in the process's log (it must still run)."""
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in {seconds} s: {log.read_text()}"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_worker_without_its_cluster_names_the_missing_task_and_stops_in_one_line(tmp_path):
    """TF_CONFIG of 2 workers, only worker 0 started: a line names worker 1 and its address
    while it waits; --peer-timeout ends the wait with one line; SIGTERM ends it at once."""
    data = varied_shards(tmp_path / "data", per_class=2)
    common = ["--data-dir", data, "--model", MODEL]
    (alone,) = start_workers(tmp_path, "timeout", *common, "--train-dir", tmp_path / "a",
                             "--peer-timeout", 0.2, started=1)
    (waiting,) = start_workers(tmp_path, "sigterm", *common, "--train-dir", tmp_path / "b",
                               started=1)
    log = tmp_path / "sigterm-0.log"
    read_until(waiting, log, "not started yet: worker 1 (127.0.0.1:", 120)
    os.killpg(waiting.pid, signal.SIGTERM)
    began = time.monotonic()
    assert waiting.wait(timeout=15) == 143 and time.monotonic() - began < 15
    assert log.read_text().splitlines()[-1] == \
        f"stopped by SIGTERM: no checkpoint yet: the same command starts again ({tmp_path}/b)"
    assert wait([alone], timeout=120) == [2]
    text = (tmp_path / "timeout-0.log").read_text()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.match(
        r"error: worker 1 \(127\.0\.0\.1:\d+\) did not start in 1\d s \(--peer-timeout 0\.2 "
        r"min\): start every task of TF_CONFIG with the same command", errors[0]), text
    assert "Traceback" not in text and "waiting for the cluster" in text


@pytest.mark.slow
def test_ctrl_c_while_training_ends_train_py_at_once(tmp_path):
    """Ctrl-C in the middle of training, evaluating and writing checkpoints: exit 130 at once
    with one line; and the run's output holds no error line of TensorFlow's (an ordinary run
    printed an E-line at every checkpoint)."""
    data = varied_shards(tmp_path / "data", per_class=2)
    log = tmp_path / "train.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data), "--train-dir",
             str(tmp_path / "runs"), "--model", MODEL, "--max-steps", "100000",
             "--checkpoint-steps", "2", "--log-every", "1", "--eval-every-steps", "2"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    try:
        read_until(process, log, "eval at step 4", 180)
        process.send_signal(signal.SIGINT)
        began = time.monotonic()
        assert process.wait(timeout=15) == 130 and time.monotonic() - began < 15
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    lines = log.read_text().splitlines()
    assert re.fullmatch(rf"stopped by SIGINT: the newest checkpoint is step \d+; the same "
                        rf"command resumes there \({tmp_path}/runs\)", lines[-1]), lines[-1]
    assert "eval at step 4" in log.read_text()
    assert not [line for line in lines if re.match(r"E\d{4} ", line)], lines

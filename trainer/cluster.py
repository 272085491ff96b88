"""Training on several machines: the cluster from TF_CONFIG, who writes, and what all agree on.

TF_CONFIG is the cluster convention of TensorFlow, Vertex AI and Kubeflow's TFJob: every
process gets the same `cluster` ({"worker": ["host:port", ...]}, optionally a "chief") and its
own `task`. With more than one task, the trainer runs under MultiWorkerMirroredStrategy: each
worker trains with its GPUs (or one CPU replica), the gradients are all-reduced across every
replica, and each worker's input pipeline reads its own shards (`input_fn`'s input_context).
The chief (task "chief", else worker 0) alone writes checkpoints, logs and TensorBoard; every
worker runs the same callbacks so that their collective ops stay in step.

Keras 3's `fit` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585), so
every run, on one machine or several, trains and evaluates in trainer/loop.py's loop, which
uses only Keras' public per-batch steps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time

import tensorflow as tf

from trainer.errors import TrainingError


@dataclasses.dataclass(frozen=True)
class Cluster:
    workers: int  # training tasks (the chief and the workers)
    index: int  # this task's place among them, the chief first
    chief: bool
    tasks: tuple[tuple[str, str], ...] = ()  # (name, host:port) of each, in that order

    @property
    def multi_worker(self) -> bool:
        return self.workers > 1


SINGLE = Cluster(workers=1, index=0, chief=True)


def from_env(environ=None) -> Cluster:
    """The cluster TF_CONFIG describes, or one machine when it is unset or names one task."""
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not text:
        return SINGLE
    try:
        config = json.loads(text)
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
        kind, index = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as err:
        raise TrainingError(f"TF_CONFIG is not the JSON TensorFlow expects ({err}): "
                            f'{{"cluster": {{"worker": ["host:port", ...]}}, "task": '
                            f'{{"type": "worker", "index": N}}}}') from None
    other = sorted(set(cluster) - {"chief", "worker"})
    if other or kind not in ("chief", "worker"):
        raise TrainingError(
            f"TF_CONFIG names task type(s) {other or [kind]}: train.py trains with \"chief\" "
            f"and \"worker\" tasks (all-reduce, no parameter servers); evaluate with a separate "
            f"`train.py --eval --watch` without TF_CONFIG")
    chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    tasks = len(chiefs) + len(workers)
    place = index if kind == "chief" else len(chiefs) + index
    if not 0 <= place < tasks:
        raise TrainingError(f"TF_CONFIG's task {kind} {index} is not in its cluster "
                            f"({len(chiefs)} chief, {len(workers)} worker(s))")
    names = [(f"chief {i}", a) for i, a in enumerate(chiefs)] + \
        [(f"worker {i}", a) for i, a in enumerate(workers)]
    return Cluster(workers=tasks, index=place, chief=place == 0, tasks=tuple(names))


def strategy(num_gpus: int | None, num_towers: int | None) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy for the TF_CONFIG cluster, with every local GPU (or one CPU
    replica per worker: the strategy takes no CPU device list). Call `rendezvous` first."""
    if num_towers and num_towers > 1:
        raise TrainingError("--num-towers splits one machine's CPU into towers; across "
                            "workers (TF_CONFIG) each worker trains with its GPUs, or with one "
                            "CPU replica: drop --num-towers")
    if num_gpus is not None:
        raise TrainingError("--num-gpus picks GPUs on one machine; across workers (TF_CONFIG) "
                            "each worker uses its visible GPUs (set CUDA_VISIBLE_DEVICES)")
    return tf.distribute.MultiWorkerMirroredStrategy()


HEARTBEAT, FRESH, EVERY = 5.0, 30.0, 30.0  # seconds: presence written, counted, reported


def rendezvous(team: Cluster, train_dir: str, minutes: float, *, clock=time.monotonic) -> None:
    """Waits until every task of the cluster has started, before the strategy is made: the
    strategy's own wait holds Python's lock, so nothing could report on it or stop it (SIGTERM
    waited 4 minutes). Each task writes `<train_dir>/.cluster/<task>.json` every 5 s while it
    waits (--train-dir is shared by every task); a task is there when its file is at most 30 s
    older than this task's own (times of one file system, so no clock skew). Prints the tasks
    not there yet 3 s in and every 30 s; raises TrainingError after `minutes`."""
    folder = os.path.join(train_dir, ".cluster")
    tf.io.gfile.makedirs(folder)
    mine = os.path.join(folder, _file_name(team.tasks[team.index][0]))
    others = [task for i, task in enumerate(team.tasks) if i != team.index]
    began, reported, written = clock(), clock() - EVERY + 3.0, -HEARTBEAT
    while True:
        if clock() - written >= HEARTBEAT:
            _write(mine, team.tasks[team.index])
            written = clock()
        missing = _missing(folder, mine, others)
        if not missing:
            return
        waited = clock() - began
        names = ", ".join(f"{name} ({address})" for name, address in missing)
        if waited >= 60 * minutes:
            raise TrainingError(
                f"{names} did not start in {waited:.0f} s (--peer-timeout {minutes:g} min): "
                f"start every task of TF_CONFIG with the same command and the same "
                f"--train-dir (shared by all of them), or raise --peer-timeout")
        if clock() - reported >= EVERY:
            print(f"waiting for the cluster ({waited:.0f} s of --peer-timeout {minutes:g} "
                  f"min): not started yet: {names}", flush=True)
            reported = clock()
        time.sleep(0.5)


def _file_name(task: str) -> str:
    return task.replace(" ", "-") + ".json"


def _write(path: str, task: tuple[str, str]) -> None:
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps({"task": task[0], "address": task[1]}) + "\n")


def _missing(folder: str, mine: str, others) -> list[tuple[str, str]]:
    try:
        own = tf.io.gfile.stat(mine).mtime_nsec
    except tf.errors.OpError:
        return list(others)
    missing = []
    for name, address in others:
        try:
            fresh = tf.io.gfile.stat(os.path.join(folder, _file_name(name))).mtime_nsec >= \
                own - FRESH * 1e9
        except tf.errors.OpError:
            fresh = False
        if not fresh:
            missing.append((name, address))
    return missing


def is_multi_worker(strategy) -> bool:
    return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode())


def any_worker(strategy, flag: bool) -> bool:
    """True when `flag` is true on any worker: decisions from each worker's own clock (a time
    budget, evaluation every N minutes) must be the same on every worker, or one of them
    waits forever in an all-reduce the others never join. One all-reduce of a scalar."""
    if not is_multi_worker(strategy):
        return flag
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, tf.constant(float(flag)), axis=None)
    return float(total) > 0


def chiefs(strategy, value: int, chief: bool) -> int:
    """The chief's `value` (a non-negative integer below 2**52), on every worker: what one
    process draws (an unseeded run's data seed) must be the same on all of them."""
    if not is_multi_worker(strategy):
        return value
    mine = tf.constant(float(value if chief else 0), tf.float64)  # exact below 2**53
    return int(strategy.reduce(tf.distribute.ReduceOp.SUM, mine, axis=None))


def unhealthy(message: str) -> str:
    """Which task TensorFlow's collective-op error says stopped, e.g. "/job:worker/task:1":
    its health check names the tasks that stopped sending heartbeats; a collective that was
    under way when the peer died names the remote target whose socket closed."""
    found = re.search(r"unhealthy[^:]*:\s*((?:/job:\S+\s*)+)", message)
    if found:
        return "stopped: " + ", ".join(found.group(1).split())
    found = re.search(r"remote target (/job:[^\s:]+(?::\d+)?[^\s]*?)\s.*?grpc_message:\"([^\"]+)",
                      message, re.S)
    if found:
        return f"stopped: {found.group(1)} ({found.group(2)})"
    lines = [line.strip() for line in message.splitlines() if line.strip()
             and not line.strip().endswith("error:")]
    return lines[-1][:200] if lines else "no reason given"

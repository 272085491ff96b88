"""The training order as a function, not a buffer: where a reader is, is one number.

The stream of a split of N records is numbered by position q = 0, 1, 2, ...: position q is
record `index_shuffle(q mod N, (seed, q div N))`, a stateless pseudo-random permutation of the
whole split drawn anew for each epoch q div N (`tf.random.experimental.index_shuffle`). So every
epoch holds every record exactly once, in an order that depends on (seed, epoch) alone, and the
stream from any position on is computed, not replayed: a run that resumes at batch K reads
neither the records before it nor any buffer.

Batches and workers: the stream is cut into per-replica batches of B consecutive positions;
global step k takes the P = W x R batches kP .. kP + P - 1, where W input pipelines (workers)
each feed R replicas. Pipeline w's j-th batch is therefore global batch
(j div R) P + w R + (j mod R): the pipelines read disjoint parts whose union is the stream, and
step k covers positions k P B .. (k + 1) P B - 1 whatever W and R are. A run that resumes with
another number of workers (the same global batch) reads exactly the batches it would have.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one input pipeline's batches sit in the global stream."""

    batch_size: int  # records per batch (per replica)
    pipelines: int = 1  # W: input pipelines (workers)
    pipeline: int = 0  # w: this one
    replicas: int = 1  # R: replicas this pipeline feeds (its batches go to them in turn)

    @classmethod
    def of(cls, batch_size: int, input_context=None) -> Layout:
        if input_context is None:
            return cls(batch_size)
        pipelines = input_context.num_input_pipelines
        replicas = max(1, input_context.num_replicas_in_sync // pipelines)
        return cls(batch_size, pipelines, input_context.input_pipeline_id, replicas)

    @property
    def global_batch(self) -> int:
        """Records per global step."""
        return self.batch_size * self.pipelines * self.replicas

    def first_batch(self, step: int) -> int:
        """This pipeline's first batch at global step `step`."""
        return step * self.replicas

    def global_batch_index(self, batch):
        """This pipeline's batch `batch` (int or int64 tensor) -> its global batch index."""
        step, replica = batch // self.replicas, batch % self.replicas
        return step * (self.pipelines * self.replicas) + self.pipeline * self.replicas + replica

    def position(self, local):
        """This pipeline's `local`-th record -> its position in the global stream."""
        batch, within = local // self.batch_size, local % self.batch_size
        return self.global_batch_index(batch) * self.batch_size + within

    def records_before(self, limit: int) -> int:
        """How many of this pipeline's records lie at positions below `limit` (one epoch of a
        `limit`-record split): its positions grow with its record count, so they are its
        first ones."""
        count, batch = 0, 0
        while self.global_batch_index(batch) * self.batch_size < limit:
            count += min(self.batch_size, limit - self.global_batch_index(batch) * self.batch_size)
            batch += 1
        return count


def record_at(position, *, seed: int, records: int):
    """The record at `position` (int64 scalar tensor) of the stream of a `records`-record split:
    epoch position // records, permuted by (seed, epoch)."""
    position = tf.cast(position, tf.int64)
    epoch, index = position // records, position % records
    if records == 1:
        return index
    return tf.random.experimental.index_shuffle(
        index, tf.stack([tf.constant(seed, tf.int64), epoch]), tf.constant(records - 1, tf.int64))


def counted(layout: Layout, *, start_step: int = 0, count: int | None = None) -> tf.data.Dataset:
    """t = 0, 1, 2, ... of this pipeline's records (int64 scalars) from global step
    `start_step` on: the first `count` of them (one epoch: Layout.records_before), or for
    ever. Layout.position(t) is each one's place in the stream."""
    local = tf.data.Dataset.counter(layout.first_batch(start_step) * layout.batch_size)
    if count is not None:
        local = local.take_while(tf.autograph.experimental.do_not_convert(lambda t: t < count))
    return local


def batch_entropy(labels, batch: int) -> float:
    """The mean Shannon entropy (bits) of the class labels within each full batch of `labels`
    (a stream of class ids in reading order): how mixed the batches of an order are. A
    perfect shuffle of C equal classes approaches log2(C) for large batches; shards read one
    after another, one class each, give 0. benchmarks/order_quality.py compares orders by it."""
    import numpy as np

    labels = np.asarray(labels)
    values = []
    for start in range(0, len(labels) - batch + 1, batch):
        counts = np.bincount(labels[start:start + batch])
        shares = counts[counts > 0] / batch
        values.append(-(shares * np.log2(shares)).sum())
    return float(np.mean(values))

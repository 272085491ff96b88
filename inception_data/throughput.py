"""Images per second of a tf.data pipeline: what `inception-data benchmark-input` and
benchmarks/bench_input.py report.
"""

from __future__ import annotations

import time


def images_per_second(dataset, *, batches: int = 50, warmup: int = 5) -> tuple[float, int]:
    """Iterates `warmup` then `batches` batches; returns (images/s, images timed).

    The first element of each batch must have the batch dimension first.
    """
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            break
        first = batch[0] if isinstance(batch, tuple) else batch
        images += int(first.shape[0])
    return images / (time.perf_counter() - start), images

"""Speed of a tf.data pipeline: images per second and the time of each batch (the slowest
batches show stalls that an average hides, e.g. at epoch boundaries). What `inception-data
benchmark-input` and benchmarks/bench_input.py report.
"""

from __future__ import annotations

import dataclasses
import statistics
import time


@dataclasses.dataclass(frozen=True)
class Timing:
    """`images` delivered in `batches`, each batch's seconds in order."""

    images: int
    seconds: tuple[float, ...]

    @property
    def images_per_second(self) -> float:
        return self.images / sum(self.seconds) if self.seconds else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def p99(self) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]

    @property
    def slowest(self) -> float:
        return max(self.seconds)

    def line(self) -> str:
        return (f"{self.images_per_second:8.1f} images/s   batch median "
                f"{self.median * 1e3:6.1f} ms, p99 {self.p99 * 1e3:6.1f}, max "
                f"{self.slowest * 1e3:7.1f} ({self.slowest / self.median:.1f}x the median)")


def time_batches(dataset, *, batches: int = 50, warmup: int = 5) -> Timing:
    """Iterates `warmup` then up to `batches` batches, timing each. The first element of each
    batch must have the batch dimension first."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    images, seconds = 0, []
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            break
        now = time.perf_counter()
        seconds.append(now - start)
        start = now
        first = batch[0] if isinstance(batch, tuple) else batch
        images += int(first.shape[0])
    return Timing(images, tuple(seconds))


def images_per_second(dataset, *, batches: int = 50, warmup: int = 5) -> tuple[float, int]:
    """(images/s, images timed) over `batches` batches after `warmup` (see time_batches)."""
    timing = time_batches(dataset, batches=batches, warmup=warmup)
    return timing.images_per_second, timing.images

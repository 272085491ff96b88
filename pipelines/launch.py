"""Running a build's pipeline: the Beam pipeline made and run on the runner plan
(pipelines/runner.py), a progress bar from the shards committed, the summary checked and the
manifest committed, and the summary line. Nothing here touches image bytes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from inception_data import paths, sharding
from pipelines import report
from pipelines.runner import Plan


class ShardProgress:
    """A tqdm bar fed by polling the output directory for committed shards.

    The local runner executes DoFns in worker processes, so the launcher cannot count records
    directly; a shard appears under its final name only once complete, which makes committed
    shards an honest progress measure. With a known image count the bar counts images
    (committed fraction of each split's shards times the images listed); when the count is
    unknown until the workers have listed everything (tar archives) it counts shards.
    """

    def __init__(self, output_dir: str, splits: Sequence[str], total_images: int,
                 total_shards: int | None = None, interval: float = 1.0):
        self._patterns = [FileSystems.join(paths.glob_escape(output_dir), f"{s}-*-of-*")
                          for s in splits]
        self._total_images, self._total_shards = total_images, total_shards
        self._interval = interval
        self._stop = threading.Event()
        self._completed = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _position(self) -> float:
        shards = fraction = 0.0
        for result in paths.beam_match(self._patterns):
            for meta in result.metadata_list:
                parsed = sharding.parse_shard_name(meta.path.rsplit("/", 1)[-1])
                if parsed:
                    shards += 1
                    fraction += 1.0 / parsed[2]
        if self._total_images:
            return fraction / len(self._patterns) * self._total_images
        return shards

    def _run(self) -> None:
        from tqdm import tqdm

        by_image = bool(self._total_images)
        total = self._total_images if by_image else self._total_shards
        with tqdm(total=total, unit="img" if by_image else "shard", desc="converting",
                  smoothing=0.1) as bar:
            while not self._stop.wait(self._interval):
                bar.update(max(0, round(self._position()) - bar.n))
            if self._completed and total:
                bar.update(max(0, total - bar.n))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, exc_type, *_):
        self._completed = exc_type is None
        self._stop.set()
        self._thread.join()


def run(build, plan: Plan, *, output_dir, splits, max_rejects=None, total_images=0,
        total_shards=None, progress=True, before_commit=lambda: None) -> dict | None:
    """Builds the pipeline with `build(pipeline)`, runs it, then checks its summary and commits
    the manifest (report.commit_manifest: raises report.TooManyRejects beyond --max-rejects),
    after `before_commit()` (which raises if the build lost its claim on the folder).
    Returns the manifest, or None when a remote runner returned before the job finished."""
    start = time.monotonic()
    pipeline = beam.Pipeline(runner=plan.runner(), options=plan.options)
    build(pipeline)
    if progress and plan.local_runner:
        with ShardProgress(output_dir, splits, total_images, total_shards):
            pipeline.run().wait_until_finish()
    else:
        pipeline.run().wait_until_finish()
    if not FileSystems.exists(FileSystems.join(output_dir, report.SUMMARY)):
        if plan.local_runner:
            raise RuntimeError(f"the pipeline finished without writing {report.SUMMARY} in "
                               f"{output_dir}; this is a bug, please report it")
        return None  # e.g. a Dataflow template was written, or the job runs on
    before_commit()
    manifest = report.commit_manifest(output_dir, max_rejects)
    manifest["seconds"] = time.monotonic() - start
    return manifest


def summary_line(manifest: dict) -> str:
    splits = manifest["splits"].values()
    written = sum(s["written"] for s in splits)
    rejected = sum(s["rejected"] for s in splits)
    seconds = manifest.get("seconds", 0.0)
    rate = written / seconds if seconds else 0.0
    estimate = manifest.get("estimated_seconds")
    return (f"wrote {written} images, rejected {rejected}, in {seconds:.1f} s "
            f"({rate:.1f} images/s" + (f"; the plan estimated {estimate:.1f} s)" if estimate
                                       else ")"))

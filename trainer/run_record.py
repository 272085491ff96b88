"""`run.json` in the training folder: what a run keeps so that a restart continues it exactly.

The data stream of a run is a function of its seed and global batch (inception_data/order.py):
global step k reads the records at positions k x batch .. (k + 1) x batch - 1 of the stream of
that seed. A checkpoint holds the step; this file holds the seed (drawn at the first start when
--seed is not given) and the global batch. A restart with another seed or batch would not
continue the same stream, so it is refused in one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets

import tensorflow as tf

from trainer.errors import TrainingError

RECORD = "run.json"
SEED_BITS = 31  # a drawn seed crosses workers as a float64 all-reduce (cluster.chiefs)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    seed: int  # the data stream's: input order and distortions
    global_batch: int
    seed_given: bool  # --seed (which also seeds weights and dropout) or drawn

    @classmethod
    def read(cls, train_dir: str) -> RunRecord | None:
        path = os.path.join(train_dir, RECORD)
        try:
            with tf.io.gfile.GFile(path) as handle:
                return cls(**json.load(handle))
        except tf.errors.NotFoundError:
            return None
        except (ValueError, TypeError) as err:
            raise TrainingError(f"{path} is not a run record ({err}): delete it to draw a new "
                                f"data seed (the order of the data then starts anew)") from None

    def write(self, train_dir: str) -> None:
        """Written whole or not at all (a temporary name, then a rename)."""
        path = os.path.join(train_dir, RECORD)
        with tf.io.gfile.GFile(path + ".tmp", "w") as handle:
            handle.write(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def draw() -> int:
    return secrets.randbits(SEED_BITS)


def resolve(saved: RunRecord | None, seed: int | None, global_batch: int, drawn: int,
            train_dir: str) -> RunRecord:
    """The run's record: the saved one, which a restart must agree with, or a new one from
    --seed (or `drawn`)."""
    if saved is None:
        return RunRecord(seed if seed is not None else drawn, global_batch, seed is not None)
    where = os.path.join(train_dir, RECORD)
    if seed is not None and seed != saved.seed:
        raise TrainingError(f"--seed {seed}, but this run's data stream comes from seed "
                            f"{saved.seed} ({where}): resume with --seed {saved.seed} (or "
                            f"without --seed), or start a new --train-dir")
    if global_batch != saved.global_batch:
        raise TrainingError(f"--batch-size {global_batch}, but this run trains with a global "
                            f"batch of {saved.global_batch} ({where}): resume with --batch-size "
                            f"{saved.global_batch}, or start a new --train-dir")
    return saved

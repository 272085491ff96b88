"""`ReadOptions`: the tuning knobs of `input_fn`, in one frozen object (as `tfds.ReadConfig`).

`input_fn`'s own signature keeps what users set on every call (the files, training or not, the
batch, the image size, the seed and where to start, what to do with bad records, the
distribution context); everything else lives here, each default written once.
"""

from __future__ import annotations

import dataclasses

ON_ERROR = ("raise", "skip")
PREPROCESSING = ("inception", "small")
DISTORTIONS = ("fast", "inception", None)
OUTPUTS = ("float32", "uint8")

# Splits whose shards total at most this many bytes are read into memory once, by the first
# pass over them, and every later record comes from there: small datasets are then read from
# their files once (ImageNet-size photos: ~9,000 records per GiB).
CACHE_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How `input_fn` reads; the defaults are what the benchmarks measure.

    Attributes:
        distortions: training colour jitter: "fast" (default; one affine colour transform per
            image, see preprocessing.py), "inception" (TensorFlow's colour ops, the original
            recipe) or None (crop and flip only).
        preprocessing: "inception" (crops for photos) or "small" (pad-and-crop for MNIST- and
            CIFAR-size images).
        flip: random left-right flips in training with the "small" preset (off for digits).
        min_crop_area: the smallest share of the image a training crop covers: 0.05, the
            original Inception recipe's (`train.py`'s recipes use 0.25, which short runs on
            small datasets learn from faster).
        num_classes: N, the classes without the background class; a label above the highest
            of the shards' convention then fails, naming the file.
        label_offset: the label of the first class: 1 (label 0 is the background, as the
            original scripts numbered them) or 0 (`build --no-background`). None: read from
            the shards' manifest.json (1 where there is none).
        with_metadata: also yield a dict with file name, text, synset, size and ragged boxes.
        repeat: repeat forever; None: when training.
        drop_remainder: None: when training (static batch shapes); evaluation keeps its last
            partial batch, so that it sees every example.
        deterministic: elements in a fixed order; None: when seeded or evaluating. False lets
            parallel stages hand on whichever element is ready (a little faster; the records
            of each epoch are still each read once).
        allow_incomplete: read a shard set that lacks shards, or whose shards disagree with
            their manifest or index, logging each gap, instead of raising.
        cache_bytes: splits of at most this many bytes are kept in memory after their first
            pass (0: never). Training only.
        read_parallelism: records read at once in training (random reads, one per record):
            None: 16 for local files, 64 for other file systems (gs://: latency-bound).
        cycle_length: shards read at once in evaluation.
        num_parallel_calls: parallelism of decoding and preprocessing (tf.data.AUTOTUNE when
            None).
        output: "float32" (default): images in [-1, 1], colour jitter included. "uint8":
            the same crops, flips and resizes rounded to 0..255, 4x smaller batches for the
            host and the host-to-device copy, with the scaling left to the accelerator
            (`inception_data.to_model_range(images)`); it changes what the pipeline does, so it
            requires `distortions=None` (colour jitter, if wanted, is the model's: e.g. Keras'
            RandomContrast / RandomBrightness layers on the device).
    """

    distortions: str | None = "fast"
    preprocessing: str = "inception"
    flip: bool = True
    min_crop_area: float = 0.05
    num_classes: int | None = None
    label_offset: int | None = None
    with_metadata: bool = False
    repeat: bool | None = None
    drop_remainder: bool | None = None
    deterministic: bool | None = None
    allow_incomplete: bool = False
    cache_bytes: int = CACHE_BYTES
    read_parallelism: int | None = None
    cycle_length: int = 16
    num_parallel_calls: int | None = None
    output: str = "float32"

    def __post_init__(self):
        for name, value, allowed in (("distortions", self.distortions, DISTORTIONS),
                                     ("preprocessing", self.preprocessing, PREPROCESSING)):
            if value not in allowed:
                raise ValueError(f"ReadOptions({name}={value!r}); expected one of {allowed}")
        if not 0 < self.min_crop_area <= 1:
            raise ValueError(f"ReadOptions(min_crop_area={self.min_crop_area}); expected a "
                             f"share of the image in (0, 1]")
        if self.output not in OUTPUTS:
            raise ValueError(f"ReadOptions(output={self.output!r}); expected one of {OUTPUTS}")
        if self.output == "uint8" and self.distortions is not None:
            raise ValueError(f"ReadOptions(output='uint8') leaves colour to the accelerator: "
                             f"pass distortions=None with it (not {self.distortions!r})")
        if self.label_offset not in (None, 0, 1):
            raise ValueError(f"ReadOptions(label_offset={self.label_offset}); expected 0, 1 "
                             f"or None (from the manifest)")

    def replace(self, **changes) -> ReadOptions:
        return dataclasses.replace(self, **changes)


FIELDS = frozenset(field.name for field in dataclasses.fields(ReadOptions))

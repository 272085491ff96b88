"""inception-data: image folders -> sharded tf.Example TFRecords -> tf.data input for Inception.

`input_fn` is imported lazily so that `import inception_data` (and the CLI) does not pay for
importing TensorFlow until it is needed. `ReadOptions` (input_fn's tuning knobs) and the typed
errors of `inception_data.read_errors` import without TensorFlow.
"""

import os

from inception_data.read_options import ReadOptions
from inception_data.version import __version__

# TensorFlow's default CPU allocator (where oneDNN's is not in use: TF_ENABLE_ONEDNN_OPTS=0, or
# builds without it) maps every 34 MB batch of 299 px float images afresh: ~11,000 page faults
# a batch, 2,270 us of CPU per training image against 1,426 with TensorFlow's BFC allocator,
# which keeps them (measured on 2 cores, small photos). TensorFlow reads this when it makes its
# first tensor, so it is set on import, before; a setting of the user's wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

__all__ = ["__version__", "input_fn", "ReadOptions", "to_model_range"]


def __getattr__(name):
    if name == "input_fn":
        from inception_data.reader import input_fn

        return input_fn
    if name == "to_model_range":  # for ReadOptions(output="uint8"), on the accelerator
        from inception_data.preprocessing import to_model_range

        return to_model_range
    raise AttributeError(f"module 'inception_data' has no attribute {name!r}")

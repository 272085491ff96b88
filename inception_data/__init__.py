"""inception-data: image folders -> sharded tf.Example TFRecords -> tf.data input for Inception.

`input_fn` is imported lazily so that `import inception_data` (and the CLI) does not pay for
importing TensorFlow until it is needed. `ReadOptions` (input_fn's tuning knobs) and the typed
errors of `inception_data.read_errors` import without TensorFlow.
"""

from inception_data.read_options import ReadOptions
from inception_data.version import __version__

__all__ = ["__version__", "input_fn", "ReadOptions"]


def __getattr__(name):
    if name == "input_fn":
        from inception_data.reader import input_fn

        return input_fn
    raise AttributeError(f"module 'inception_data' has no attribute {name!r}")

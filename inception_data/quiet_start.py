"""TensorFlow imported without its start-up chatter on a machine where nothing is wrong.

TensorFlow's C++ runtime prints a handful of lines while it loads and looks for devices, before
absl logging is set up, so TF_CPP_MIN_LOG_LEVEL does not reach them: "All log messages before
absl::InitializeLog() ...", the oneDNN notice, "Could not find cuda drivers", and on a machine
without a GPU an E-line "failed call to cuInit". A training run that starts with an error line
looks like it failed. `import_tensorflow()` imports TensorFlow and lists the devices with the
process's stderr (fd 2) captured, then writes back every captured line except those known
notices: an unknown line, a real error, still shows.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

CHATTER = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|^To enable the following instructions:")


def import_tensorflow():
    """Imports TensorFlow (and finds its devices) without its known start-up notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # where the cuInit line comes from
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        for line in capture.read().decode(errors="replace").splitlines():
            if line.strip() and not CHATTER.search(line):
                print(line, file=sys.stderr)
    return tf

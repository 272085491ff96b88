"""The trainer's one error type: what train.py prints as one line and exits 2 on."""


class TrainingError(RuntimeError):
    """A problem the user must fix; the message says what."""

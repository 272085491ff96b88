"""The trainer behind `train.py`: models, their recipes, data wiring, checkpoints, evaluation.

`train.py` parses flags into an `options.TrainOptions` and calls `run.train` / `run.evaluate`;
every piece here is importable and tested on its own. The input comes from `inception_data.input_fn`
like in any user's code.
"""

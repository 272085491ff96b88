"""Every option of train.py, each defined once: its default, its flag, its help.

`TrainOptions` is the one place, as `inception_data.build_options.BuildOptions` is for the
build: train.py's command line is made from its fields (`parser()`), and `--help` shows every
default. A field whose default is None and which is marked `recipe` takes its value from the
model's row in trainer/recipes.py (`TrainOptions.recipe()`); `--help` lists those values per
model. Adding an option is its field here and the code that uses it.

Minimum crop area: the training crop covers at least `min_crop_area` of the image. The
original Inception used 0.05, which suits 100k+ step ImageNet runs, and `input_fn` keeps it
as its own default (the original's preprocessing); train.py's recipes use 0.25, measured
better for the short runs on small datasets this trainer is mostly used for (docs/training.md).
`--min-crop-area 0.05` gives the original's back.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from trainer import recipes

DISTORTIONS = ("fast", "inception", "none")


def option(default: Any, *flags: str, help: str, recipe: bool = False, parse=None,
           **argparse_kwargs) -> dataclasses.Field:
    """A TrainOptions field: its default, its flags (default: `--field-name`), its help, and
    `recipe=True` when None means "the model's recipe decides". `parse`: the command line's
    value -> the field's (e.g. "none" -> None)."""
    return dataclasses.field(default=default, metadata={
        "flags": flags, "help": help, "recipe": recipe, "parse": parse,
        "argparse": argparse_kwargs})


def recipe_option(*flags: str, help: str) -> dataclasses.Field:
    """A float of the model's recipe: None (the recipe's value) unless given."""
    return option(None, *flags, help=help, recipe=True, type=float)


def _no_distortions(value: str) -> str | None:
    return None if value == "none" else value


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything a run needs. None, for a recipe field: the model's recipe decides."""

    # what to train on and where
    data_dir: str = option(None, help="output of inception-data build/imagenet", required=True)
    train_dir: str = option(None, help="checkpoints, run.json and TensorBoard logs",
                            required=True)
    model: str = option("inception_v3", choices=recipes.MODELS, help="the network")
    # the machines
    num_gpus: int | None = option(None, type=int, help="GPUs to use (default: all; 0: CPU)")
    num_towers: int | None = option(
        None, type=int, help="CPU only: split the CPU into N logical devices, one tower each")
    batch_size: int = option(32, type=int, help="global batch, split across towers")
    mixed_precision: bool = option(False, action="store_true",
                                   help="float16 compute on GPUs")
    jit_compile: str = option("auto", choices=("auto", "on", "off"),
                              help="XLA for the training step; auto = on GPUs only")
    peer_timeout: float = option(
        20, type=float, metavar="MINUTES",
        help="under TF_CONFIG: how long to wait for every task of the cluster (a line every "
             "30 s names those not reached); machines of a real cluster can take minutes to "
             "be scheduled and pull their image")
    # how long
    max_steps: int = option(10_000_000, type=int, help="stop at this global step")
    max_minutes: float | None = option(None, type=float,
                                       help="stop after this much wall-clock time")
    # the input
    image_size: int | None = option(
        None, type=int, help="default: the model's (299 for Inception), or the images' own "
                             "for MNIST/CIFAR-size images")
    seed: int | None = option(None, type=int, help="a reproducible run: input order, "
                                                   "distortions, initial weights and dropout")
    distortions: str | None = option(
        "fast", choices=DISTORTIONS, parse=_no_distortions,
        help="training distortions: fast (crop, flip, colour in a fixed order), inception "
             "(the original's four colour orders), none")
    on_error: str = option(
        "raise", choices=("raise", "skip"),
        help="a record that does not decode, or a damaged shard: stop with the error, or skip "
             "the record (or the rest of the shard: one line names it; TensorFlow logs each; "
             "evaluation says how many)")
    # the recipe (default: the model's row in trainer/recipes.py)
    optimizer: str | None = option(None, choices=("rmsprop", "sgd", "adam"), recipe=True,
                                   help="the optimizer")
    learning_rate: float | None = recipe_option(
        "--initial-learning-rate",
        help="peak learning rate, as given (default: the recipe's rate per 256 images, scaled "
             "to the global batch)")
    warmup_epochs: float | None = recipe_option(help="linear warm-up of the learning rate")
    epochs_per_decay: float | None = recipe_option(help="staircase decay period")
    decay_factor: float | None = recipe_option("--learning-rate-decay-factor",
                                               help="staircase decay factor")
    label_smoothing: float | None = recipe_option(help="label smoothing")
    aux_loss_weight: float | None = recipe_option(help="Inception v3's auxiliary head")
    weight_decay: float | None = recipe_option(help="L2, TF-slim's convention")
    bn_momentum: float | None = recipe_option("--batch-norm-momentum",
                                              help="batch norm's moving averages")
    ema_decay: float | None = recipe_option(help="moving average of the weights (0 disables)")
    min_crop_area: float | None = recipe_option(
        help="smallest share of the image a training crop covers (input_fn's own default is "
             "the original's 0.05, for long ImageNet runs)")
    # starting points
    fine_tune: bool = option(False, action="store_true",
                             help="start from --pretrained-checkpoint with new logits layers")
    pretrained_checkpoint: str | None = option(None, help="a checkpoint of this trainer")
    pretrained: str | None = option(
        None, metavar="imagenet|PATH",
        help="start from published ImageNet weights: 'imagenet' (Keras fetches them into "
             "$KERAS_HOME/models) or the same no-top .h5 file's path; new logits")
    freeze_base_steps: int = option(
        0, type=int,
        help="with --pretrained or --fine-tune: train only the new head for this many steps "
             "(the base frozen, its batch norm in inference mode, the head at 10x the peak "
             "rate), then every layer at the peak rate")
    # checkpoints, logs, evaluation
    checkpoint_steps: int = option(1000, type=int, help="save a checkpoint every N steps")
    keep_checkpoints: int = option(5, type=int, help="checkpoints kept")
    log_every: int = option(100, type=int, help="a progress line every N steps")
    eval_every_steps: int | None = option(
        None, type=int, help="while training: evaluate the moving averages on the validation "
                             "split every N steps")
    eval_every_minutes: float | None = option(None, type=float, help="... or every N minutes")
    precise_bn_batches: int = option(
        10, type=int, help="before each evaluation and checkpoint, re-estimate batch norm's "
                           "statistics over this many training batches, for the weights "
                           "evaluated (0: keep the moving statistics)")
    no_ema: bool = option(False, action="store_true", help="evaluate the raw weights")
    # what train.py does instead of training
    eval: bool = option(False, action="store_true", help="evaluate the latest checkpoint")
    watch: bool = option(False, action="store_true",
                         help="with --eval: evaluate new checkpoints as they come")
    eval_interval_secs: float = option(60, type=float, help="with --watch: seconds between looks")
    checkpoint: str | None = option(None, help="with --eval: this checkpoint, not the latest")
    benchmark_steps: int | None = option(
        None, type=int, help="only measure images/s with real and synthetic input")

    def recipe(self, model: str | None = None) -> recipes.Recipe:
        """The recipe of `model` (default: this run's) with this run's overrides."""
        return recipes.recipe(model or self.model, **{
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.metadata["recipe"] and f.name != "learning_rate"})


def flags_of(field: dataclasses.Field) -> tuple[str, ...]:
    return field.metadata["flags"] or ("--" + field.name.replace("_", "-"),)


def _recipe_defaults(name: str) -> str:
    """`name`'s value in every model's recipe, grouped: '0.25 (all models)'."""
    by_value: dict[Any, list[str]] = {}
    for model, row in recipes.RECIPES.items():
        by_value.setdefault(getattr(row, name), []).append(model)
    if len(by_value) == 1:
        return f"{next(iter(by_value))} for every model"
    return "; ".join(f"{value:g} for {', '.join(models)}" if isinstance(value, float)
                     else f"{value} for {', '.join(models)}" for value, models in by_value.items())


def _help(field: dataclasses.Field) -> str:
    text = field.metadata["help"]
    if field.metadata["recipe"]:
        if field.name == "learning_rate":
            return text
        return f"{text} (default: the model's recipe: {_recipe_defaults(field.name)})"
    kwargs = field.metadata["argparse"]
    if kwargs.get("required") or kwargs.get("action") or field.default is None:
        return text  # (None: the help says what happens without it)
    return f"{text} (default: {field.default})"


def parser(description: str = "") -> argparse.ArgumentParser:
    """train.py's command line, made from TrainOptions' fields."""
    made = argparse.ArgumentParser(description=description)
    for field in dataclasses.fields(TrainOptions):
        kwargs = dict(field.metadata["argparse"])
        if not kwargs.get("required"):
            kwargs["default"] = field.default
        if "type" in kwargs and "metavar" not in kwargs:  # the flag's name, not the field's
            kwargs["metavar"] = flags_of(field)[0][2:].replace("-", "_").upper()
        made.add_argument(*flags_of(field), dest=field.name, help=_help(field), **kwargs)
    return made


def from_args(namespace: argparse.Namespace) -> TrainOptions:
    values = {}
    for field in dataclasses.fields(TrainOptions):
        value = getattr(namespace, field.name)
        parse = field.metadata["parse"]
        values[field.name] = parse(value) if parse is not None and value is not None else value
    return TrainOptions(**values)


def parse_args(argv=None, description: str = "") -> TrainOptions:
    return from_args(parser(description).parse_args(argv))

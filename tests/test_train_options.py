"""train.py's options are defined once (trainer/options.py): the command line is made from
them, `--help` shows every default, and the recipes fill what the user leaves out."""

import contextlib
import dataclasses
import io

import pytest

from trainer import options, recipes

REQUIRED = ["--data-dir", "d", "--train-dir", "t"]


def help_text() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        options.parser().parse_args(["--help"])
    return " ".join(out.getvalue().split())


def test_the_command_line_gives_the_fields_defaults():
    parsed = options.parse_args(REQUIRED)
    assert parsed == options.TrainOptions(data_dir="d", train_dir="t")


def test_every_field_is_a_flag_and_every_default_is_in_help():
    text = help_text()
    for field in dataclasses.fields(options.TrainOptions):
        flag = options.flags_of(field)[0]
        assert flag in text, flag
        kwargs = field.metadata["argparse"]
        if field.default is not None and not kwargs.get("action"):
            assert f"(default: {field.default})" in text, flag
    assert "(default: the model's recipe: 0.25 for every model)" in text  # --min-crop-area
    assert "adam for inception_v3" in text and "sgd for resnet50" in text  # --optimizer


def test_flags_that_differ_from_their_field_names():
    parsed = options.parse_args([*REQUIRED, "--initial-learning-rate", "0.5",
                                 "--learning-rate-decay-factor", "0.3",
                                 "--batch-norm-momentum", "0.9", "--distortions", "none"])
    assert (parsed.learning_rate, parsed.decay_factor, parsed.bn_momentum) == (0.5, 0.3, 0.9)
    assert parsed.distortions is None  # "none": no distortions


def test_recipes_fill_what_the_user_leaves_out():
    default = options.parse_args([*REQUIRED, "--model", "resnet50"]).recipe()
    assert default == recipes.RECIPES["resnet50"]
    mine = options.parse_args([*REQUIRED, "--model", "resnet50", "--min-crop-area", "0.05",
                               "--optimizer", "adam"]).recipe()
    assert (mine.min_crop_area, mine.optimizer) == (0.05, "adam")
    assert mine.learning_rate == default.learning_rate


def test_a_bad_choice_is_a_usage_error():
    with contextlib.redirect_stderr(io.StringIO()) as err, pytest.raises(SystemExit) as exit:
        options.parse_args([*REQUIRED, "--model", "alexnet"])
    assert exit.value.code == 2 and "invalid choice: 'alexnet'" in err.getvalue()

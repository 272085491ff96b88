"""The runnable examples of the docs run here, as the docs show them: docs/reading.md's resuming
with Keras fit and with a loop of one's own (a run stopped and started again ends with the
weights of the run that was not stopped, to the bit)."""

import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf

from tests import fabricate

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def example(doc: str, title: str) -> str:
    """The python block of `doc` whose first line is `# docs example: <title>`."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / doc).read_text(), re.S)
    found = [b for b in blocks if b.startswith(f"# docs example: {title}\n")]
    assert len(found) == 1, f"{doc} has {len(found)} examples titled {title!r}"
    return found[0]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    fabricate.jpeg_tree(root / "train", classes=3, size=(80, 64), name="c{c}")
    fabricate.build("--train-dir", root / "train", "--output-dir", root / "out", "--shards", "2")
    return root / "out"


def run(code: str, pattern: str, workdir: pathlib.Path, steps: int):
    namespace = {}
    exec(compile(code, "docs/reading.md", "exec"), namespace)
    namespace.update(PATTERN=pattern, WORKDIR=str(workdir))
    return namespace["train"](steps).get_weights()


@pytest.mark.parametrize("title", ["resume with fit", "resume with a custom loop"])
def test_the_resuming_examples_resume_to_the_bit(shards, tmp_path, title):
    code = example("reading.md", title)
    pattern = str(shards / "train-*")
    tf.config.experimental.enable_op_determinism()  # (what a bitwise comparison needs)
    whole = run(code, pattern, tmp_path / "whole", 6)
    run(code, pattern, tmp_path / "stopped", 3)  # stopped after 3 steps, started again
    resumed = run(code, pattern, tmp_path / "stopped", 6)
    assert len(whole) == len(resumed) and all(np.array_equal(a, b)
                                              for a, b in zip(whole, resumed))
    assert not all(np.array_equal(a, b) for a, b in
                   zip(whole, run(code, pattern, tmp_path / "short", 3)))  # it did train


def test_ci_runs_exactly_the_readme_test_command():
    """One way to run the tests: the README's command (linter first), which .ci/run runs."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```\n(python3 -m venv .venv && [^\n]*pytest[^\n]*)\n```", readme)
    assert len(commands) == 1, commands
    assert "ruff check ." in commands[0]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith("#")]
    assert ci[-1] == commands[0]

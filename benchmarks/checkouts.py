"""Running `inception-data` from another checkout of this project, side by side with this one.

Benchmarks compare a change with the code before it in one run (the same machine, minutes
apart) instead of against figures from another day: `--previous DIR` with DIR a checkout of the
earlier commit (e.g. `git worktree add /tmp/previous HEAD~3`). That checkout runs with its own
directory first on the import path - as the current directory, which Beam's local worker
processes put first too - and this environment's installed dependencies.
"""

import os
import pathlib
import shutil
import sys


def command(checkout: pathlib.Path | None = None) -> tuple[list[str], dict]:
    """(argv prefix, subprocess keyword arguments) that run `inception-data` of `checkout`, or
    of this installation when None."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if checkout is None:
        tool = shutil.which("inception-data") or str(pathlib.Path(sys.executable).parent /
                                                     "inception-data")
        return [tool], {"env": env}
    checkout = checkout.resolve()
    # the command moved from inception_data/cli.py to the inception_data_cli package
    module = ("inception_data_cli" if (checkout / "inception_data_cli").is_dir()
              else "inception_data.cli")
    env["PYTHONPATH"] = str(checkout)
    return [sys.executable, "-m", module], {"env": env, "cwd": str(checkout)}

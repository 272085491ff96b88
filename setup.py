"""Lets Beam stage this project for Dataflow workers: `--setup_file ./setup.py`.

Everything is declared in pyproject.toml; Beam runs `python setup.py sdist` on this file.
"""

from setuptools import setup

setup()

"""Beam pipelines of inception-data (see docs/design.md)."""

from inception_data import quiet_beam  # noqa: F401  (before any apache_beam import)

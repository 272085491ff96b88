"""The package's version, in a module of its own that imports nothing (the manifest and the
decode verdict record it)."""

__version__ = "0.1.0"

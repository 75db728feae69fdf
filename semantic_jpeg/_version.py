"""The package version: the single source read by pyproject.toml (setuptools dynamic metadata) and ``__init__``."""

__version__ = "0.1.0"

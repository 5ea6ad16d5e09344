"""The engine: models, workflows and recipes, free of any UI."""

__version__ = "0.1.0"  # the project's version (pyproject.toml reads it from here)

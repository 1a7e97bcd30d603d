"""Lockgate: a self-hosted, secure MLOps platform.

The public Python API is declared in ``__all__``; everything else may move between releases.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

"""What a run, an entry or a dataset records about the software that made it."""

from __future__ import annotations

import importlib
import platform

from . import __version__

__all__ = ["versions"]


def versions(*modules: str, python: bool = False) -> dict[str, str]:
    """{"oneshot-gan": ..., <module>: its __version__ ..., "python": ... (if asked)}. Module versions rather than
    distribution metadata: onnxruntime may be installed as onnxruntime-gpu."""
    out = {"oneshot-gan": __version__}
    out.update({name: str(importlib.import_module(name).__version__) for name in modules})
    if python:
        out["python"] = platform.python_version()
    return out

"""fastres: MLPerf Inference ResNet50 — the reference harness and an optimized native
harness as LoadGen SUTs, run head to head (``python -m fastres.bench``), and a library."""

from __future__ import annotations

from . import errors
from ._build_info import build_info
from ._core import Executor, ExecutorConfig, NullEngine, PythonEngine, SampleLibrary
from ._version import __version__

__all__ = [
    "Executor",
    "ExecutorConfig",
    "NullEngine",
    "PythonEngine",
    "SampleLibrary",
    "__version__",
    "build_info",
    "errors",
]

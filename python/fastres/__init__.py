"""fastres: MLPerf Inference ResNet50 — the reference harness and an optimized native
harness as LoadGen SUTs, run head to head (``python -m fastres.bench``), and a library."""

from __future__ import annotations

from . import errors
from ._build_info import build_info
from ._core import CudaArray, Executor, ExecutorConfig, NullEngine, PythonEngine, SampleLibrary
from ._version import __version__

__all__ = [
    "CudaArray",
    "Executor",
    "ExecutorConfig",
    "NullEngine",
    "PythonEngine",
    "SampleLibrary",
    "__version__",
    "build_info",
    "errors",
]

try:  # CUDA builds only: an engine of known cost for the CUDA pipeline
    from ._core import TimedEngine  # noqa: F401
except ImportError:
    pass
else:
    __all__.append("TimedEngine")

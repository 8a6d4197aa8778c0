"""``fastres.build_info()``: what was compiled in and what this machine offers."""

from __future__ import annotations

import importlib.util
import platform
from typing import Any

from . import _core
from ._version import __version__


def _dali_info() -> dict[str, Any]:
    spec = importlib.util.find_spec("nvidia.dali") if importlib.util.find_spec("nvidia") else None
    if spec is None:
        return {"importable": False, "version": None, "hint": "pip install 'fastres[dali]'"}
    try:
        import nvidia.dali as dali  # noqa: PLC0415 (optional, heavy)
    except Exception as exc:  # a broken install must not break build_info
        return {"importable": False, "version": None, "hint": f"import failed: {exc}"}
    return {"importable": True, "version": getattr(dali, "__version__", None), "hint": None}


def build_info() -> dict[str, Any]:
    """Report the compiled-in features (CUDA, TensorRT and their versions) and what the
    running machine offers (CUDA devices found, DALI importable).

    Safe on a machine without a GPU or driver: ``cuda.devices`` is then empty and
    ``cuda.status`` says why.
    """
    compiled = _core.build_info()
    cuda = _core.cuda_runtime_info()
    return {
        "fastres": __version__,
        "core": compiled["version"],
        "compiler": compiled["compiler"],
        "python": platform.python_version(),
        "with_cuda": compiled["with_cuda"],
        "with_tensorrt": compiled["with_tensorrt"],
        "tensorrt_version": compiled["tensorrt_version"],
        "cuda": cuda,
        "dali": _dali_info(),
    }

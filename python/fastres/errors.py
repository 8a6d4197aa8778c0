"""The exceptions fastres raises. C++ errors of the core are translated to these in one place
(``cpp/bindings/module.cpp``). Every message names the thing, the value and the fix."""

from __future__ import annotations


class FastresError(Exception):
    """Base class of every fastres error."""


class InvalidArgument(FastresError, ValueError):
    """A user-supplied value, file or setting is wrong; the message says how to fix it."""


class DataError(InvalidArgument):
    """A dataset file (val_map.txt, an image, a calibration list, a store) is missing or bad."""


class ModelError(InvalidArgument):
    """A model file is missing or its inputs/outputs are not what fastres expects."""


class EngineError(FastresError, RuntimeError):
    """An engine failed while running a batch."""


class CudaError(FastresError, RuntimeError):
    """A CUDA runtime call failed; the message names the call."""


class Unavailable(FastresError, ImportError):
    """An optional feature is not installed or not compiled in; the message says what to install."""


__all__ = [
    "FastresError",
    "InvalidArgument",
    "DataError",
    "ModelError",
    "EngineError",
    "CudaError",
    "Unavailable",
]

"""The OpenVINO engine for the native executor (CPU), an optional extra: ``pip install
'fastres[openvino]'``.

OpenVINO is the CPU counterpart of a TensorRT-style compiler runtime: it compiles the whole
graph for the machine (Q/DQ models become int8 convolutions with VNNI/AMX, layouts chosen per
layer) and runs it in *streams*, each a group of cores with its own infer requests. The engine
maps the executor's stream slots onto OpenVINO streams: ``slots`` slots get ``slots`` streams
of ``threads // slots`` cores, and each slot thread owns one infer request (keyed by OS thread
id, for the reason the ONNX Runtime engine gives). ``InferRequest.infer`` releases the GIL, so
two slots run two batches at once.

``openvino`` is imported only when an engine is built; without it :class:`Unavailable` says what
to install.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError, InvalidArgument, ModelError, Unavailable
from ..model import MLPERF_INPUT
from .onnxruntime import _cores
from .quantize import TOP1_OUTPUT

INSTALL_HINT = "pip install 'fastres[openvino]'"
HINTS = ("THROUGHPUT", "LATENCY")


def import_openvino() -> Any:
    """The ``openvino`` module, or :class:`Unavailable` naming the extra to install."""
    try:
        import openvino
    except ImportError as exc:
        raise Unavailable(f"the OpenVINO engine needs the openvino package ({exc}); install it "
                          f"with: {INSTALL_HINT}") from None
    return openvino


def available() -> bool:
    """Whether ``openvino`` can be imported (without importing it twice on failure)."""
    try:
        import_openvino()
    except Unavailable:
        return False
    return True


class OpenVinoEngine:
    """A callable for ``fastres.PythonEngine``: ``engine(inputs, labels, indices)``.

    ``model_path``: an ONNX model whose ``output_name`` is the top-1 label per sample (the
    surgered models of :mod:`fastres.engines.quantize`; ``offset`` is added, −1 for the MLPerf
    model's ``ArgMax:0``). ``slots`` executor slots share one compiled model with ``slots``
    streams; ``threads`` (default: the usable cores) is split between them. ``hint``:
    OpenVINO's performance hint. ``precision``: an inference precision hint for fp32 models
    (``"bf16"`` on CPUs with AVX512-BF16/AMX), None to leave OpenVINO's default.
    Thread-safe: each calling thread gets its own infer request.
    """

    input_dtype = "float32"
    input_shape = (3, 224, 224)

    def __init__(self, model_path: str | os.PathLike[str], *, slots: int = 1,
                 threads: int | None = None, input_name: str = MLPERF_INPUT,
                 output_name: str = TOP1_OUTPUT, offset: int = 0, max_batch: int = 32,
                 hint: str = "THROUGHPUT", precision: str | None = None) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InvalidArgument(f"slots must be a positive integer, got {slots!r}")
        threads = _cores() if threads is None else threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise InvalidArgument(f"threads must be a positive integer, got {threads!r}")
        if hint not in HINTS:
            raise InvalidArgument(f"hint {hint!r}: choose one of {', '.join(HINTS)}")
        ov = import_openvino()
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ModelError(f"model file not found: {self.model_path}")
        self.slots, self.threads, self.hint, self.precision = slots, threads, hint, precision
        self.input_name, self.output_name, self.offset = input_name, output_name, offset
        self.max_batch = max_batch
        core = ov.Core()
        try:
            model = core.read_model(str(self.model_path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses
            raise ModelError(f"{self.model_path}: OpenVINO cannot read it: {exc}") from None
        names = {n for o in model.outputs for n in o.get_names()}
        if output_name not in names:
            raise ModelError(f"{self.model_path}: no output named {output_name!r}; it has "
                             f"{', '.join(sorted(names))}")
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "NUM_STREAMS": str(slots),
                                  "INFERENCE_NUM_THREADS": threads}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{self.model_path}: OpenVINO cannot compile it for the CPU "
                             f"({config}): {exc}") from None
        self._output = self.compiled.output(output_name)
        self._by_thread: dict[int, Any] = {}
        self._spare: list[Any] = []
        self._built = 0
        self._lock = threading.Lock()

    @property
    def requests_built(self) -> int:
        """Infer requests created: one per slot once warm, never one per batch."""
        with self._lock:
            return self._built

    def _new_request(self) -> Any:
        with self._lock:
            self._built += 1
        return self.compiled.create_infer_request()

    def _request(self) -> Any:
        tid = threading.get_ident()
        req = self._by_thread.get(tid)
        if req is None:
            with self._lock:
                req = self._spare.pop() if self._spare else None
            if req is None:
                req = self._new_request()
            self._by_thread[tid] = req
        return req

    def warm_up(self) -> None:
        """One infer request per slot, each run once at batch 1 and at ``max_batch``, before the
        timed run: OpenVINO prepares its kernels per input shape on first sight (the model's
        batch is dynamic), which would otherwise land in the first timed batches."""
        with self._lock:
            missing = self.slots - self._built
        for _ in range(missing):
            req = self._new_request()
            for n in sorted({1, self.max_batch}):
                req.infer({0: np.zeros((n, *self.input_shape), np.float32)})
            with self._lock:
                self._spare.append(req)

    def __call__(self, inputs: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        try:
            result = self._request().infer({0: inputs}, share_inputs=True)
            top1 = np.asarray(result[self._output])
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"OpenVINO failed on a batch of {len(inputs)} from "
                              f"{self.model_path.name}: {exc}") from exc
        top1 = top1.reshape(-1)
        if self.offset:
            labels[:] = top1 + self.offset
        else:
            labels[:] = top1


__all__ = ["OpenVinoEngine", "import_openvino", "available", "INSTALL_HINT"]

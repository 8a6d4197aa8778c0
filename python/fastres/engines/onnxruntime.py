"""The ONNX Runtime engine for the native executor (CPU).

One ``InferenceSession`` per stream slot. The executor calls an engine from exactly one worker
thread per slot, so a session per calling thread is a session per slot. Sessions are keyed by
the OS thread id, not ``threading.local``: the slot threads are C++ threads that hold a Python
thread state only for the duration of each call, so thread-local data would vanish after
every batch (and a new session would be built for each one). Each session's
intra-op threads are set so that ``slots × threads`` does not exceed the cores: two slots
fighting over the same cores are slower than one slot with all of them.

The model takes ``input_tensor:0`` float32 NCHW. With the MLPerf interface (``ArgMax:0`` with
class 0 as background) the engine answers ``ArgMax − 1`` as int32, as the native SUT reports;
the surgered fp32 and INT8 models of :mod:`fastres.engines.quantize` answer the label itself
(``top1:0``, int32), so they run with ``output_name=TOP1_OUTPUT, offset=0`` and the answer is
copied as is. The INT8 engine is this class over the CPU Q/DQ form (``int8_cpu.onnx``): ONNX
Runtime fuses its Q/DQ pairs into u8×s8 integer kernels.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError, InvalidArgument
from ..model import MLPERF_INPUT, MLPERF_OUTPUT, check_model

#: MLPerf's ResNet50 has a background class 0: label = ArgMax − 1.
BACKGROUND_OFFSET = -1


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class OnnxRuntimeEngine:
    """A callable for ``fastres.PythonEngine``: ``engine(inputs, labels, indices)``.

    Thread-safe: each calling thread (stream slot) gets its own session, built on first use
    or up front by :meth:`warm_up`. ``intra_op_threads`` defaults to ``cores // slots``.
    """

    def __init__(self, model_path: str | os.PathLike[str], *, slots: int = 1,
                 intra_op_threads: int | None = None, input_name: str = MLPERF_INPUT,
                 output_name: str = MLPERF_OUTPUT, offset: int = BACKGROUND_OFFSET,
                 max_batch: int = 32) -> None:
        if not isinstance(slots, int) or slots < 1:
            raise InvalidArgument(f"slots must be a positive integer, got {slots!r}")
        if intra_op_threads is None:
            intra_op_threads = max(1, _cores() // slots)
        if not isinstance(intra_op_threads, int) or intra_op_threads < 1:
            raise InvalidArgument(f"intra_op_threads must be a positive integer, got {intra_op_threads!r}")
        check_model(model_path, input_name, output_name)
        self.model_path = Path(model_path)
        self.slots = slots
        self.intra_op_threads = intra_op_threads
        self.input_name = input_name
        self.output_name = output_name
        self.offset = offset
        self.max_batch = max_batch
        self._by_thread: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._sessions: list[Any] = []
        self._spare: list[Any] = []  # built by warm_up, not yet claimed by a slot thread

    # the engine IO the executor needs
    input_dtype = "float32"
    input_shape = (3, 224, 224)

    def _new_session(self) -> Any:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(self.model_path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])

    def _session(self) -> Any:
        tid = threading.get_ident()
        sess = self._by_thread.get(tid)
        if sess is None:
            with self._lock:
                sess = self._spare.pop() if self._spare else None
            if sess is None:
                sess = self._new_session()
                with self._lock:
                    self._sessions.append(sess)
            self._by_thread[tid] = sess
        return sess

    @property
    def sessions_built(self) -> int:
        """How many sessions exist: one per slot once warm, never one per batch."""
        with self._lock:
            return len(self._sessions)

    def warm_up(self) -> None:
        """Build one session per slot now and run each once at batch 1 and at ``max_batch``, so
        that model errors surface before a test and no slot builds its session (a second or
        more) or grows its memory arena to a full batch inside the timed run."""
        with self._lock:
            missing = self.slots - len(self._sessions)
        for _ in range(missing):
            sess = self._new_session()
            for n in sorted({1, self.max_batch}):
                probe = np.zeros((n, *self.input_shape), np.float32)
                sess.run([self.output_name], {self.input_name: probe})
            with self._lock:
                self._sessions.append(sess)
                self._spare.append(sess)

    def __call__(self, inputs: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        try:
            (top1,) = self._session().run([self.output_name], {self.input_name: inputs})
        except Exception as exc:
            raise EngineError(f"ONNX Runtime failed on a batch of {len(inputs)} from "
                              f"{self.model_path.name}: {exc}") from exc
        top1 = np.asarray(top1)
        if top1.ndim == 2:  # logits/probabilities instead of ArgMax
            top1 = top1.argmax(axis=1)
        if self.offset:
            labels[:] = top1.reshape(-1).astype(np.int64) + self.offset
        else:  # the surgered models' int32 labels: one copy, no arithmetic
            labels[:] = top1.reshape(-1)

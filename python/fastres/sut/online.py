"""Online preprocessing for the native SUT — **beyond MLPerf**: MLPerf preprocesses the dataset
before the timed run, and a run that preprocesses inside it is not comparable with MLPerf
results. Every output of such a run carries :data:`ONLINE_LABEL`.

The QSL and the executor stay as they are; what a sample *is* changes:

- ``LoadSamplesToRam`` reads the raw JPEG bytes of the performance samples into RAM
  (:class:`EncodedSamples`, one arena per load, untimed).
- The executor needs fixed-size samples, so its ``SampleLibrary`` holds a 24-byte *handle* per
  sample, ``(arena, offset, nbytes)`` as int64, and gathers a batch of handles as it would
  gather a batch of tensors.
- The engine is :class:`OnlineEngine`: inside the timed path it turns the batch's handles into
  views of the encoded bytes, runs the DALI pipeline of :mod:`fastres.data.dali` on them
  (``external_source`` fed with the batch) and hands the result to an *inner* engine (the
  ONNX Runtime / OpenVINO callables of :mod:`fastres.engines`, any ``fn(inputs, labels,
  indices)``), which writes the int32 labels.

CPU (``device="cpu"``, run and tested): the inner engine reads DALI's own output buffer, a
NumPy view of it (:meth:`fastres.data.dali.DaliPreprocessor.run_batch`): no copy by fastres
between DALI and the engine. DALI itself copies the encoded bytes into its input when fed and
writes its output once. ``output="copy"`` instead copies DALI's output into a per-slot buffer
the engine owns, to measure what that copy costs (bench/RESULTS.md).

GPU (``device="gpu"``, WRITTEN, NOT RUN: no machine this was developed on had both a GPU and
DALI, and fastres's CUDA executor path has no Python engine yet): mixed nvJPEG decoding, and
DALI's device output bound to the executor slot's CUDA stream is handed to a GPU inner engine
as a :class:`fastres.data.dali.DeviceBatch` (``__cuda_array_interface__`` v3 / DLPack), with no
host round trip. The contract a CUDA engine plugs into is :data:`GPU_ENGINE_CONTRACT`.

Bad JPEGs inside the timed path: without ``skip_bad`` the batch fails with the file named
(the executor completes every sample of it, as failed, so LoadGen loses no response and
nothing hangs; the run counts SUT errors). With ``skip_bad`` the bad sample is answered
:data:`SKIPPED_LABEL` (-1, so the accuracy counts it as wrong) and counted in
:meth:`OnlineEngine.stats`; the other samples of its batch are answered normally.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from .. import loadgen as flg
from ..errors import DataError, EngineError, InvalidArgument, Unavailable
from .native import NativeSUT, run_native

ONLINE_LABEL = "online preprocessing — beyond MLPerf, not comparable with MLPerf results"
#: What an online run answers for a bad JPEG skipped with ``skip_bad``: no class has it, and it
#: is what the LoadGen sink answers for the samples of a failed batch, so either way the
#: accuracy counts the sample as wrong; ``OnlineEngine.stats()`` and the SUT's error count tell
#: the two apart.
SKIPPED_LABEL = -1
HANDLE_DTYPE = "int64"
#: (arena, offset, nbytes): the fixed-size sample the executor's SampleLibrary holds.
HANDLE_SHAPE = (3,)
OUTPUTS = ("view", "copy")

GPU_ENGINE_CONTRACT = """\
The GPU inner engine of the online mode, and the CUDA PythonEngine that calls OnlineEngine:

- The executor's CUDA path calls ``OnlineEngine(inputs, labels, indices, stream)`` from the
  slot's thread: ``inputs`` the slot's gathered handles (ignored: the handles are looked up on
  the host by ``indices`` instead, so no device-to-host read of them is needed), ``labels`` an
  object with ``__cuda_array_interface__`` over the slot's device int32 output ``[n]``,
  ``indices`` the QSL indices as a host uint64 NumPy array, ``stream`` the slot's
  ``cudaStream_t`` as an int.
- OnlineEngine calls the inner engine as ``inner(batch, labels, indices, stream)`` with
  ``batch`` a fastres.data.dali.DeviceBatch ``[n, 3, 224, 224]`` float32 in device memory,
  ready in stream order on ``stream``. The inner engine enqueues its work on ``stream`` (or
  makes its own stream wait on it), writes the top-1 labels into ``labels`` in stream order,
  and returns without synchronising.
- The executor records the slot's completion event on ``stream`` after the call and starts
  that slot's next batch only after the event completed; OnlineEngine keeps each slot's
  DeviceBatch alive until then.
"""


class EncodedSamples:
    """The QSL's memory in online mode: the raw encoded bytes of the loaded samples, and the
    handle table the executor's ``SampleLibrary`` loads from.

    ``data``: ``[N, 3]`` int64, row ``i`` the handle ``(arena, offset, nbytes)`` of sample
    ``i`` while it is loaded, ``(-1, 0, 0)`` otherwise. ``labels``: int32 ``[N]``.
    :meth:`load` and :meth:`unload` are LoadGen's QSL callbacks (its test thread; never during
    queries); :meth:`encoded` is called by the engine's slot threads and only reads.
    """

    format = "online-jpeg"

    def __init__(self, paths: Sequence[str | os.PathLike[str]],
                 labels: Sequence[int] | np.ndarray) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int32).reshape(-1)
        if not self.paths:
            raise InvalidArgument("online samples: no images given")
        if len(self.labels) != len(self.paths):
            raise InvalidArgument(f"online samples: {len(self.paths)} images but "
                                  f"{len(self.labels)} labels")
        self.data = np.zeros((len(self.paths), *HANDLE_SHAPE), dtype=np.int64)
        self.data[:, 0] = -1
        self._arenas: dict[int, np.ndarray] = {}
        self._live: dict[int, int] = {}
        self._next_arena = 0
        #: Samples whose file could not be read at load time: index → reason. The engine
        #: reports them when they are queried (a named error, or skipped with skip_bad).
        self.read_errors: dict[int, str] = {}

    @classmethod
    def from_store(cls, store: Any) -> EncodedSamples:
        """The images of a preprocessed store (less any it left out with skip_bad), in its order:
        the same samples, by QSL index, as an offline run over that store."""
        root = Path(store.index["root"])
        return cls([root / rel for rel in store.files], store.labels)

    @classmethod
    def from_dataset(cls, dataset: Any) -> EncodedSamples:
        """The images of an :class:`fastres.data.imagenet.ImagenetDataset`, in val_map order."""
        return cls([dataset.path(i) for i in range(len(dataset))], dataset.labels)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def bytes_loaded(self) -> int:
        return sum(a.nbytes for a in self._arenas.values())

    def load(self, indices: Sequence[int] | np.ndarray) -> None:
        """LoadSamplesToRam: read the files of ``indices`` not yet loaded into one new arena.
        Never raises for an image (LoadGen would abort): an unreadable file gets an empty
        handle and its reason in :attr:`read_errors`."""
        todo = [i for i in dict.fromkeys(int(i) for i in np.asarray(indices).reshape(-1))
                if self.data[i, 0] < 0]
        if not todo:
            return
        sizes = []
        for i in todo:
            try:
                sizes.append(os.stat(self.paths[i]).st_size)
            except OSError as exc:
                self.read_errors[i] = f"cannot read image: {exc.strerror or exc}"
                sizes.append(0)
        arena = np.empty(max(1, sum(sizes)), dtype=np.uint8)
        view = memoryview(arena)
        aid, offset = self._next_arena, 0
        self._next_arena += 1
        for i, size in zip(todo, sizes):
            got = 0
            if size:
                try:
                    with open(self.paths[i], "rb") as f:
                        got = f.readinto(view[offset:offset + size]) or 0
                except OSError as exc:
                    self.read_errors[i] = f"cannot read image: {exc.strerror or exc}"
            self.data[i] = (aid, offset, got)
            offset += size
        self._arenas[aid] = arena
        self._live[aid] = len(todo)

    def unload(self, indices: Sequence[int] | np.ndarray | None = None) -> None:
        """UnloadSamplesFromRam: forget ``indices`` (all when None); an arena is freed when none
        of its samples is loaded any more."""
        idx = (np.flatnonzero(self.data[:, 0] >= 0) if indices is None
               else np.asarray(indices, dtype=np.int64).reshape(-1))
        for i in dict.fromkeys(int(i) for i in idx):
            aid = int(self.data[i, 0])
            if aid < 0:
                continue
            self.data[i] = (-1, 0, 0)
            self.read_errors.pop(i, None)
            self._live[aid] -= 1
            if self._live[aid] == 0:
                del self._live[aid], self._arenas[aid]

    def encoded(self, handles: np.ndarray) -> list[np.ndarray]:
        """The encoded bytes behind a batch of handles ``[n, 3]``: views into the arenas."""
        out = []
        for aid, offset, nbytes in np.asarray(handles, dtype=np.int64).reshape(-1, 3).tolist():
            arena = self._arenas.get(aid)
            if arena is None:
                raise EngineError(f"online samples: handle ({aid}, {offset}, {nbytes}) names no "
                                  f"loaded arena; a query ran for a sample that is not loaded")
            out.append(arena[offset:offset + nbytes])
        return out


class OnlineEngine:
    """The online native SUT's engine callable: DALI preprocessing of the batch's JPEGs, then
    ``inner`` on the result, inside the timed path.

    ``inner``: ``fn(inputs, labels, indices)`` over ``[n, 3, 224, 224]`` float32 (CPU), or the
    GPU contract of :data:`GPU_ENGINE_CONTRACT`. ``samples``: the :class:`EncodedSamples` the
    handles point into. ``slots``: the executor's stream slots (``copy_streams``); each slot
    thread gets its own DALI pipeline of ``num_threads`` threads (default: the usable cores
    split among the slots), keyed by OS thread id (slot threads are C++ threads whose Python
    thread state lives only for the call, so ``threading.local`` would lose it each batch).
    ``output``: ``"view"`` (the inner engine reads DALI's buffer) or ``"copy"`` (into a per-slot
    buffer first; for measuring). Thread-safe across slots; one call per slot at a time.
    """

    def __init__(self, inner: Callable[..., Any], samples: EncodedSamples, *, fmt: str = "fp32",
                 device: str = "cpu", slots: int = 1, max_batch: int = 32,
                 num_threads: int | None = None, skip_bad: bool = False,
                 output: str = "view") -> None:
        from ..data import dali as fd
        from ..data.preprocess import format_spec

        fd._dali()  # Unavailable, naming the dali extra, before anything else
        if not callable(inner):
            raise InvalidArgument(f"inner engine {inner!r} is not callable")
        if output not in OUTPUTS:
            raise InvalidArgument(f"output={output!r}: choose one of {', '.join(OUTPUTS)}")
        self._fd = fd
        self.inner = inner
        self.samples = samples
        self.fmt = fmt
        self.dtype, self.sample_shape = format_spec(fmt)
        self.device = fd._check_device(device)
        self.slots = fd._check_positive(slots, "slots")
        self.max_batch = fd._check_positive(max_batch, "max_batch")
        self.num_threads = fd._check_positive(
            num_threads if num_threads is not None else max(1, fd._usable_cores() // self.slots),
            "num_threads")
        self.skip_bad = bool(skip_bad)
        self.output = output
        self._lock = threading.Lock()
        self._by_thread: dict[int, Any] = {}
        self._spare: list[Any] = []
        self._built = 0
        self._buffers: dict[int, np.ndarray] = {}
        self._in_flight: dict[int, Any] = {}  # GPU: each slot's last DeviceBatch
        self.reset_stats()

    # ---- per-slot DALI pipelines
    def _new_preprocessor(self) -> Any:
        with self._lock:
            self._built += 1
        return self._fd.DaliPreprocessor(self.fmt, device=self.device,
                                         batch_size=self.max_batch,
                                         num_threads=self.num_threads)

    def _preprocessor(self) -> Any:
        tid = threading.get_ident()
        pre = self._by_thread.get(tid)
        if pre is None:
            with self._lock:
                pre = self._spare.pop() if self._spare else None
            if pre is None:
                pre = self._new_preprocessor()
            with self._lock:
                self._by_thread[tid] = pre
        return pre

    @property
    def pipelines_built(self) -> int:
        """DALI pipelines created: one per slot once warm, never one per batch."""
        with self._lock:
            return self._built

    def warm_up(self) -> None:
        """Build one DALI pipeline per slot and run each once at ``max_batch`` (CPU) before the
        timed run, so that no slot builds a pipeline or grows its buffers inside it. The inner
        engine is warmed up by whoever built it."""
        with self._lock:
            missing = self.slots - self._built
        for _ in range(missing):
            pre = self._new_preprocessor()
            if self.device == "cpu":
                pre.run_batch([self._fd._placeholder_jpeg()] * self.max_batch)
            with self._lock:
                self._spare.append(pre)

    def close(self) -> None:
        """Stop every DALI pipeline now (the next call builds new ones)."""
        with self._lock:
            pres = list(self._by_thread.values()) + self._spare
            self._by_thread.clear()
            self._spare.clear()
            self._in_flight.clear()
        for pre in pres:
            pre.close()

    # ---- statistics
    def reset_stats(self) -> None:
        with self._lock:
            self._stats = {"batches": 0, "samples": 0, "preprocess_ns": 0, "inner_ns": 0,
                           "copied_bytes": 0, "zero_copy_batches": 0, "skipped_bad": 0}
            self._skipped: dict[int, str] = {}

    def stats(self) -> dict[str, Any]:
        """Since :meth:`reset_stats`: batches and samples run; ns spent in DALI (feeding,
        decoding, preprocessing) and in the inner engine, summed over slots; bytes fastres
        copied between DALI's output and the inner engine (0 with ``output="view"`` unless a
        batch held a bad image); batches the engine read from DALI's buffer directly; bad
        images skipped (one per sample and query) with the distinct files."""
        with self._lock:
            out: dict[str, Any] = dict(self._stats)
            out["skipped_bad_files"] = sorted(set(self._skipped.values()))
        out["device"], out["output"], out["label"] = self.device, self.output, ONLINE_LABEL
        return out

    def _record(self, n: int, t0: int, t1: int, t2: int, copied: int, zero_copy: bool,
                skipped: list[tuple[int, str]]) -> None:
        with self._lock:
            s = self._stats
            s["batches"] += 1
            s["samples"] += n
            s["preprocess_ns"] += t1 - t0
            s["inner_ns"] += t2 - t1
            s["copied_bytes"] += copied
            s["zero_copy_batches"] += int(zero_copy)
            s["skipped_bad"] += len(skipped)
            self._skipped.update(skipped)

    # ---- the engine call
    def _unreadable(self, indices: np.ndarray) -> list[tuple[int, str]]:
        """(row, message) of the batch's samples whose file could not be read at load time."""
        errors = self.samples.read_errors
        return [(j, f"{self.samples.paths[i]}: {errors[i]}") for j, i in
                enumerate(indices.tolist()) if i in errors] if errors else []

    def __call__(self, inputs: Any, labels: Any, indices: np.ndarray,
                 stream: int | None = None) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        if stream is None:
            self._run_cpu(inputs, labels, indices)
        else:
            self._run_gpu(labels, indices, int(stream))

    def _check_unreadable(self, indices: np.ndarray) -> list[tuple[int, str]]:
        unreadable = self._unreadable(indices)
        if unreadable and not self.skip_bad:
            raise DataError(f"{unreadable[0][1]}; check the file, or pass --skip-bad "
                            f"(skip_bad=True) to skip bad images")
        return unreadable

    def _run_cpu(self, inputs: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
        if self.device != "cpu":
            raise EngineError("online GPU preprocessing needs the executor's CUDA path (a CUDA "
                              "PythonEngine passing the slot's stream); this executor called "
                              "the engine without a stream")
        t0 = time.perf_counter_ns()
        n = len(indices)
        unreadable = self._check_unreadable(indices)
        encoded = self.samples.encoded(inputs)
        names = [self.samples.paths[i] for i in indices.tolist()]
        pre = self._preprocessor()
        copied, zero_copy = 0, False
        if self.output == "view":
            batch = pre.run_batch(encoded, names=names, skip_bad=self.skip_bad)
            x, bad, zero_copy = batch.array, batch.bad, batch.zero_copy
            if not zero_copy:
                copied = x.nbytes
        else:
            tid = threading.get_ident()
            buf = self._buffers.get(tid)
            if buf is None:
                buf = self._buffers[tid] = np.empty((self.max_batch, *self.sample_shape),
                                                    self.dtype)
            x = buf[:n]
            bad = pre.preprocess_into(encoded, x, names=names, skip_bad=self.skip_bad)
            copied = x.nbytes
        t1 = time.perf_counter_ns()
        self.inner(x, labels, indices)
        t2 = time.perf_counter_ns()
        skipped = {j: msg for j, msg in unreadable}
        skipped.update((b.index, f"{b.name}: {b.reason}") for b in bad
                       if b.index not in skipped)
        if skipped:
            labels[list(skipped)] = SKIPPED_LABEL
        self._record(n, t0, t1, t2, copied, zero_copy,
                     [(int(indices[j]), msg) for j, msg in skipped.items()])

    def _run_gpu(self, labels: Any, indices: np.ndarray, stream: int) -> None:
        # WRITTEN, NOT RUN (no machine with both a GPU and DALI): see GPU_ENGINE_CONTRACT.
        if self.device != "gpu":
            raise EngineError("the executor passed a CUDA stream but this online engine "
                              "preprocesses on the CPU; build it with device='gpu'")
        t0 = time.perf_counter_ns()
        unreadable = self._check_unreadable(indices)
        handles = self.samples.data[indices]  # the host table: no read-back of device handles
        encoded = self.samples.encoded(handles)
        names = [self.samples.paths[i] for i in indices.tolist()]
        pre = self._preprocessor()
        batch = pre.run_batch_on_stream(encoded, stream, names=names, skip_bad=self.skip_bad)
        # Released at this slot's next batch, which starts after this one's completion event.
        self._in_flight[threading.get_ident()] = batch
        t1 = time.perf_counter_ns()
        self.inner(batch, labels, indices, stream)
        t2 = time.perf_counter_ns()
        skipped = {j: msg for j, msg in unreadable}
        skipped.update((b.index, f"{b.name}: {b.reason}") for b in batch.bad
                       if b.index not in skipped)
        if skipped:
            _fill_device_int32(labels, sorted(skipped), SKIPPED_LABEL, stream)
        self._record(len(indices), t0, t1, t2, 0, True,
                     [(int(indices[j]), msg) for j, msg in skipped.items()])


def _fill_device_int32(labels: Any, rows: list[int], value: int, stream: int) -> None:
    """Set ``labels[rows] = value`` in device memory, in stream order after the inner engine's
    writes (the driver's ``cuMemsetD32Async``; the slot thread has the executor's CUDA context
    current). WRITTEN, NOT RUN."""
    cuda = ctypes.CDLL("libcuda.so.1")
    ptr = int(labels.__cuda_array_interface__["data"][0])
    word = ctypes.c_uint(value & 0xFFFFFFFF)
    for r in rows:
        rc = cuda.cuMemsetD32Async(ctypes.c_uint64(ptr + 4 * r), word, ctypes.c_size_t(1),
                                   ctypes.c_void_p(stream))
        if rc != 0:
            raise EngineError(f"cuMemsetD32Async on the labels of row {r} failed (CUresult {rc})")


def make_online_engine(inner: Callable[..., Any], samples: EncodedSamples, config: Any, *,
                       device: str = "cpu", skip_bad: bool = False, output: str = "view",
                       num_threads: int | None = None) -> tuple[Any, OnlineEngine]:
    """The executor engine of the online mode and its :class:`OnlineEngine` (warmed up): a
    ``PythonEngine`` over ``int64[3]`` handles, ``config.batch_size`` a batch, one DALI pipeline
    per slot (``config.copy_streams``). ``device="gpu"`` needs the executor's CUDA path with a
    CUDA PythonEngine (``fastres.PythonEngine(..., device="cuda")``, a build with CUDA):
    :class:`Unavailable` without one."""
    online = OnlineEngine(inner, samples, device=device, slots=int(config.copy_streams),
                          max_batch=int(config.batch_size), num_threads=num_threads,
                          skip_bad=skip_bad, output=output)
    if device == "gpu":
        if not _core.build_info()["with_cuda"]:
            raise Unavailable("online GPU preprocessing hands DALI's device output to a CUDA "
                              "engine through the executor's CUDA path, which this fastres build "
                              "does not have (rebuild with nvcc: FASTRES_WITH_CUDA=ON pip install "
                              ".); use device='cpu' (--dali-device cpu)")
        # WRITTEN, NOT RUN (no machine with both a GPU and DALI): a CUDA PythonEngine calls
        # online(inputs, labels, indices, stream) with device views (GPU_ENGINE_CONTRACT).
        online.warm_up()
        return _core.PythonEngine(online, HANDLE_DTYPE, HANDLE_SHAPE, int(config.batch_size),
                                  device="cuda"), online
    online.warm_up()
    return _core.PythonEngine(online, HANDLE_DTYPE, HANDLE_SHAPE, int(config.batch_size)), online


class OnlineSUT(NativeSUT):
    """The native SUT in online mode (beyond MLPerf; :data:`ONLINE_LABEL`): the same executor,
    LoadGen SUT and QSL, over :class:`EncodedSamples` instead of a preprocessed store.
    ``LoadSamplesToRam`` reads the JPEG bytes, then loads their handles into the executor's
    SampleLibrary."""

    label = ONLINE_LABEL

    def __init__(self, engine: Any, samples: EncodedSamples, *, scenario: str,
                 config: Any = None, issue: str = "fast",
                 performance_sample_count: int | None = None) -> None:
        if not isinstance(samples, EncodedSamples):
            raise InvalidArgument(f"OnlineSUT takes EncodedSamples, got {type(samples).__name__}")
        super().__init__(engine, samples, scenario=scenario, config=config, issue=issue,
                         performance_sample_count=performance_sample_count)

    def _load(self, indices: list[int]) -> None:
        self.store.load(indices)
        self.library.load(indices, self.store.data)

    def _unload(self, indices: list[int]) -> None:
        self.library.unload(indices)
        self.store.unload(indices)


def run_online(engine: Any, samples: EncodedSamples, scenario: str, mode: str,
               output_dir: str | os.PathLike[str], *, config: Any = None, issue: str = "fast",
               **settings_kwargs: Any) -> flg.RunResult:
    """One LoadGen test of the online native SUT; in accuracy mode the result carries top-1 from
    LoadGen's accuracy log (a skipped bad image counts as wrong)."""
    return run_native(engine, samples, scenario, mode, output_dir, config=config, issue=issue,
                      sut_class=OnlineSUT, **settings_kwargs)


__all__ = [
    "ONLINE_LABEL",
    "SKIPPED_LABEL",
    "GPU_ENGINE_CONTRACT",
    "EncodedSamples",
    "OnlineEngine",
    "OnlineSUT",
    "make_online_engine",
    "run_online",
]

"""The native SUT: fastres's C++ executor (the design of NVIDIA's LWIS harness) as a LoadGen
SUT and QSL, for all four scenarios.

LoadGen → ``IssueQuery`` only enqueues into the executor (the GIL released) → batcher thread →
stream slots run the engine → completion threads report each batch with ONE
``QuerySamplesComplete`` call from C++ (``fastres._core.LoadGenSink``), taking the GIL once per
batch. Responses are int32 labels 0..999, 4 bytes a sample, in executor-owned memory valid
until that call returns: the INT8 engines' models compute the label in the network, the fp32
``onnxruntime`` engine answers the MLPerf model's ArgMax − 1.

Issue path: ``ConstructFastSUT`` (LoadGen hands two lists of ints) by default, or
``ConstructSUT`` (a list of QuerySample objects, read in C++). ``bench/harness_overhead.py``
measures both; the fast one is the default because it measured faster (see bench/RESULTS.md).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from .. import loadgen as flg
from ..errors import InvalidArgument

#: Engines for the native SUT. ``onnxruntime``: the fp32 model as given (what the reference
#: runs); ``onnxruntime-int8`` / ``openvino-int8``: the calibrated INT8 model (CPU Q/DQ form, see
#: :mod:`fastres.engines.quantize`) in ONNX Runtime / OpenVINO; ``null``: no model, measures the
#: harness; ``tensorrt``: a TensorRT plan (:mod:`fastres.engines.tensorrt`) on a GPU.
ENGINES = ("openvino-int8", "onnxruntime-int8", "onnxruntime", "null", "torch", "tensorrt")
#: The engine ``python -m fastres.bench`` gives the native SUT unless told otherwise: the
#: fastest on this project's CPUs by ``bench/cpu_engines.py`` (see bench/RESULTS.md), OpenVINO
#: over the INT8 CPU form with one stream per slot. openvino is a core dependency; where it
#: cannot be installed (a platform without its wheels) the default falls back to the ONNX
#: Runtime INT8 engine, found without importing openvino (which takes a second).
DEFAULT_ENGINE = ("openvino-int8" if importlib.util.find_spec("openvino") is not None
                  else "onnxruntime-int8")
ISSUE_MODES = ("fast", "objects")

#: Defaults for a CPU: two slots (one per core) running batches of up to 32 within 2 ms.
DEFAULT_KNOBS: dict[str, int] = {"batch_size": 32, "copy_streams": 2, "infer_streams": 1,
                                 "complete_threads": 1, "batch_timeout_us": 2000, "deque_limit": 0}

#: Per-scenario defaults, as NVIDIA's harness configures each scenario separately. The
#: latency-bound scenarios run one batch at a time on one slot whose engine gets every core
#: (a SingleStream sample or a MultiStream query of 8 must not wait for a batch to fill);
#: the throughput scenarios run one slot per core.
SCENARIO_KNOBS: dict[str, dict[str, int]] = {
    "SingleStream": {"batch_size": 1, "copy_streams": 1, "batch_timeout_us": 0},
    "MultiStream": {"batch_size": 8, "copy_streams": 1, "batch_timeout_us": 0},
    # On a CPU a batch costs its size in time (no GPU-style batching gain), so Server answers
    # each query at once: measured on the tiny synthetic model at 421 QPS, p99 11.7 ms at batch
    # 1 against 16.6-37.5 ms at batch 2-8 with 0.5-1 ms timeouts.
    "Server": {"batch_size": 1, "copy_streams": 2, "batch_timeout_us": 0},
    # The INT8 engines run fastest at batch 16 with one slot (ONNX Runtime session / OpenVINO
    # stream) per core (bench/cpu_engines.py; bench/RESULTS.md); fp32 runs batches of 8 to 32
    # equally fast per image.
    "Offline": {"batch_size": 16, "copy_streams": 2, "batch_timeout_us": 2000},
}


#: The CUDA path's knobs (LWIS's names), for CUDA engines only: the executor refuses them for a
#: CPU engine. ``devices``: the CUDA devices, ``copy_streams`` slots on each (empty: device 0).
CUDA_KNOBS: dict[str, Any] = {"use_graphs": False, "start_from_device": False,
                              "run_infer_on_copy_streams": False, "use_spin_wait": False,
                              "devices": ()}

#: Per-scenario defaults on a GPU, after the shape of NVIDIA's LWIS configurations for ResNet50
#: (MLPerf v1.1-v2.1, e.g. A100 Server: batch 64, 4 copy and 3 inference streams, 2 ms deque
#: timeout with the deque limit, CUDA graphs). Offline takes large batches on two copy streams.
GPU_SCENARIO_KNOBS: dict[str, dict[str, Any]] = {
    "SingleStream": {"batch_size": 1, "copy_streams": 1, "infer_streams": 1, "batch_timeout_us": 0,
                     "use_graphs": True},
    "MultiStream": {"batch_size": 8, "copy_streams": 1, "infer_streams": 1, "batch_timeout_us": 0,
                    "use_graphs": True},
    "Server": {"batch_size": 64, "copy_streams": 4, "infer_streams": 3, "batch_timeout_us": 2000,
               "deque_limit": 64, "use_graphs": True},
    "Offline": {"batch_size": 256, "copy_streams": 2, "infer_streams": 1, "batch_timeout_us": 2000},
}

#: The watchdog the native SUT runs with unless told otherwise (``watchdog_ms``): a batch still
#: running after a minute is taken as hung, fails, and the run ends as failed instead of never.
DEFAULT_WATCHDOG_MS = 60_000

_BOOL_KNOBS = tuple(k for k, v in CUDA_KNOBS.items() if isinstance(v, bool))
#: Every knob make_config takes.
KNOWN_KNOBS = (*DEFAULT_KNOBS, "watchdog_ms", *CUDA_KNOBS)


def _knob_value(name: str, value: Any) -> Any:
    if name in _BOOL_KNOBS:
        if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer))
                                                   and int(value) in (0, 1)):
            return bool(value)
        raise InvalidArgument(f"executor knob {name}={value!r}: expected true/false (or 1/0)")
    if name == "devices":
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        try:
            devices = [int(v) for v in value]
        except (TypeError, ValueError):
            raise InvalidArgument(f"executor knob devices={value!r}: expected CUDA device "
                                  "indices, e.g. 0,1") from None
        if any(d < 0 for d in devices):
            raise InvalidArgument(f"executor knob devices={value!r}: indices are >= 0")
        return devices
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise InvalidArgument(f"executor knob {name}={value!r}: expected an integer")
    return int(value)


def make_config(scenario: str | None = None, *, device: str = "cpu", **knobs: Any) -> Any:
    """An ``ExecutorConfig``: :data:`DEFAULT_KNOBS` (and the watchdog,
    :data:`DEFAULT_WATCHDOG_MS`), then the scenario's defaults (:data:`SCENARIO_KNOBS`, or
    :data:`GPU_SCENARIO_KNOBS` with ``device="cuda"``), then ``knobs`` (NVIDIA's names, plus the
    CUDA knobs of :data:`CUDA_KNOBS` and ``watchdog_ms``; None means the default). An unknown
    knob is refused with the list of known ones."""
    unknown = sorted(set(knobs) - set(KNOWN_KNOBS))
    if unknown:
        raise InvalidArgument(f"unknown executor knob(s) {', '.join(unknown)}; known: "
                              f"{', '.join(KNOWN_KNOBS)}")
    if device not in ("cpu", "cuda"):
        raise InvalidArgument(f"device={device!r}: 'cpu' or 'cuda'")
    table = GPU_SCENARIO_KNOBS if device == "cuda" else SCENARIO_KNOBS
    scenario_knobs = table[flg.parse_scenario(scenario)] if scenario else {}
    values = {**DEFAULT_KNOBS, "watchdog_ms": DEFAULT_WATCHDOG_MS, **scenario_knobs,
              **{k: v for k, v in knobs.items() if v is not None}}
    return _core.ExecutorConfig(**{k: _knob_value(k, v) for k, v in values.items()})


def config_dict(config: Any) -> dict[str, Any]:
    """Every knob of an ``ExecutorConfig`` as plain values (for results.json and reports)."""
    out: dict[str, Any] = {k: int(getattr(config, k)) for k in (*DEFAULT_KNOBS, "watchdog_ms")}
    for k in _BOOL_KNOBS:
        out[k] = bool(getattr(config, k))
    out["devices"] = list(config.devices)
    return out


def engine_device(name: str) -> str:
    """"cuda" or "cpu": where the named engine runs, hence which knobs it takes
    (:data:`GPU_SCENARIO_KNOBS` and the CUDA knobs on "cuda"). ``torch`` runs on a GPU when
    PyTorch is installed and sees one."""
    if name == "tensorrt":
        return "cuda"
    if name == "torch" and importlib.util.find_spec("torch") is not None:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


def check_buffers(config: Any, sample_bytes: int) -> None:
    """Refuse a configuration whose stream-slot input buffers (batch_size × copy_streams ×
    sample bytes) would not fit in half of this machine's memory, before allocating them."""
    need = int(config.batch_size) * int(config.copy_streams) * int(sample_bytes)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return
    if need > total // 2:
        raise InvalidArgument(
            f"batch_size={config.batch_size} x copy_streams={config.copy_streams} x "
            f"{sample_bytes} bytes a sample needs {need / 2**30:,.1f} GiB of slot buffers, more "
            f"than half of this machine's {total / 2**30:,.1f} GiB; lower --batch-size or "
            "--copy-streams")


#: The calibration list the INT8 engines look for in the dataset folder when none is given.
CALIBRATION_LIST = "cal_image_list_option_1.txt"


def default_cache_dir(store: Any = None) -> Path:
    """The cache folder ``store`` was built in (``<cache>/store/<name>/``), else
    ``$FASTRES_CACHE`` or ``~/.cache/fastres`` as the bench CLI: the INT8 models then live
    beside the preprocessed data they were calibrated on."""
    path = getattr(store, "path", None)
    if path is not None and Path(path).parent.name == "store":
        return Path(path).parent.parent
    return Path(os.environ.get("FASTRES_CACHE", Path.home() / ".cache" / "fastres"))


def int8_models(store: Any, model: str | os.PathLike[str], *,
                cache_dir: str | os.PathLike[str] | None = None, calibration: Any = None,
                calibration_method: str = "minmax", input_name: str = "input_tensor:0",
                output_name: str = "ArgMax:0", quiet: bool = False) -> Any:
    """The INT8 models of ``model`` (:class:`fastres.engines.quantize.Int8Models`), built once
    and then fetched from ``cache_dir``; ``calibration`` as in :func:`make_engine`."""
    from ..engines.quantize import Calibration, build_int8
    from ..errors import DataError

    if calibration is None:
        root = getattr(store, "index", {}).get("root")
        if root is None:
            raise InvalidArgument("the INT8 engines need a calibration list: pass "
                                  "calibration='cal_image_list_option_1.txt'")
        calibration = Path(root) / CALIBRATION_LIST
        if not calibration.is_file():
            raise DataError(f"{calibration}: calibration list not found; the INT8 engines "
                            "calibrate on MLPerf's calibration list: pass its path (mlcommons/"
                            "inference calibration/ImageNet/cal_image_list_option_1.txt) or "
                            "put it in the dataset folder")
    if not isinstance(calibration, Calibration):
        calibration = Calibration.from_store(store, calibration)
    return build_int8(model, calibration,
                      default_cache_dir(store) if cache_dir is None else cache_dir,
                      method=calibration_method, input_name=input_name,
                      output_name=output_name, quiet=quiet)


def make_engine(name: str, store: Any, config: Any, *, model: str | os.PathLike[str] | None = None,
                input_name: str = "input_tensor:0", output_name: str = "ArgMax:0",
                cache_dir: str | os.PathLike[str] | None = None, calibration: Any = None,
                calibration_method: str = "minmax", quiet: bool = False) -> Any:
    """A C++ engine for the native executor, sized for ``store``'s samples and ``config``: the
    callable of :func:`engine_fn` in a ``PythonEngine``, or the C++ ``NullEngine``."""
    dtype = str(np.dtype(store.data.dtype))
    shape = tuple(int(d) for d in store.data.shape[1:])
    if name == "null":
        return _core.NullEngine(input_dtype=dtype, input_shape=shape, max_batch=config.batch_size,
                                answer="constant", constant=0)
    if name == "tensorrt":  # a C++ engine of its own, on CUDA
        if model is None:
            raise InvalidArgument("the tensorrt engine needs a model: pass model=...")
        return _tensorrt_engine(store, config, model, dtype=dtype, shape=shape, cache_dir=cache_dir,
                                calibration=calibration, calibration_method=calibration_method,
                                input_name=input_name, output_name=output_name, quiet=quiet)
    fn = engine_fn(name, store, config, model=model, input_name=input_name,
                   output_name=output_name, cache_dir=cache_dir, calibration=calibration,
                   calibration_method=calibration_method, quiet=quiet)
    # The torch engine on a GPU takes the executor's device buffers and the slot's stream.
    return _core.PythonEngine(fn, dtype, shape, int(config.batch_size),
                              device=getattr(fn, "device_kind", "cpu"))


def engine_fn(name: str, store: Any, config: Any, *, model: str | os.PathLike[str] | None = None,
              input_name: str = "input_tensor:0", output_name: str = "ArgMax:0",
              cache_dir: str | os.PathLike[str] | None = None, calibration: Any = None,
              calibration_method: str = "minmax", quiet: bool = False) -> Any:
    """The engine callable ``fn(inputs, labels, indices)`` (warmed up) that :func:`make_engine`
    wraps, for fp32 samples like ``store``'s; also the inner engine of the online mode
    (:mod:`fastres.sut.online`). ``null`` gives a callable that answers 0.

    - ``onnxruntime``: ``model`` as given (fp32, MLPerf interface, answers ArgMax − 1), one
      ONNX Runtime session per stream slot (``config.copy_streams``), the cores split among them.
    - ``onnxruntime-int8``: the INT8 model made from ``model`` by
      :func:`fastres.engines.quantize.build_int8` (softmax and background class removed, top-1
      as int32 inside the network, static calibration, CPU Q/DQ form), in ONNX Runtime, one
      session per slot. Built on first use (tens of seconds) and then fetched from the cache.
    - ``openvino-int8``: the same INT8 model in OpenVINO, one stream and infer request per slot;
      needs ``pip install 'fastres[openvino]'`` (:class:`fastres.errors.Unavailable` otherwise).
    - ``torch``: ``model`` run by PyTorch (:mod:`fastres.engines.torch`, op by op from the ONNX
      graph), on a CUDA device when PyTorch sees one (fp16, the executor's device buffers and
      the slot's stream, no host copies), else on the CPU; needs ``pip install torch``.
    - ``tensorrt``: a TensorRT plan built from ``model`` (:func:`fastres.engines.tensorrt.build_engine`:
      INT8 from the calibrated Q/DQ model, one optimization profile per copy stream, max batch
      ``config.batch_size``; the input format follows the store: fp32, or int8_linear for an
      int8 [3, 224, 224] store), cached under ``<cache_dir>/tensorrt/`` and run by the native
      engine on CUDA (``make_config(..., device="cuda")``). Needs TensorRT's Python package and a
      fastres build with ``FASTRES_WITH_TENSORRT``; :class:`fastres.errors.Unavailable` says which
      is missing before any work.
    - ``null``: no work, measures the harness.

    Keyword arguments for the INT8 engines (ignored by the others):

    - ``cache_dir``: where the INT8 models are cached (``<cache_dir>/int8/``); default: the
      cache folder ``store`` was built in (the bench CLI's ``--cache-dir``), else
      ``$FASTRES_CACHE`` or ``~/.cache/fastres``.
    - ``calibration``: the calibration list file (one image name a line, MLPerf's
      ``cal_image_list_option_1.txt``), or a :class:`fastres.engines.quantize.Calibration`.
      Default: ``cal_image_list_option_1.txt`` in the store's dataset folder (where the embedded
      synthetic default keeps it). Images are taken from ``store`` (fp32), or preprocessed from
      the dataset folder when the store lacks them (``--count``).
    - ``calibration_method``: ``minmax`` (default), ``entropy`` or ``percentile``.
    - ``quiet``: no progress display while building.
    """
    dtype = str(np.dtype(store.data.dtype))
    if name == "null":
        return _answer_zero
    if name not in ENGINES:
        raise InvalidArgument(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if model is None:
        raise InvalidArgument(f"the {name} engine needs a model: pass model=...")
    if name == "tensorrt":
        raise InvalidArgument("the tensorrt engine is a C++ engine, not a Python callable: use "
                              "make_engine('tensorrt', ...)")
    if dtype != "float32":
        raise InvalidArgument(f"the {name} engine takes fp32 samples; the store holds "
                              f"{getattr(store, 'format', dtype)}")
    slots = int(config.copy_streams)
    if name == "torch":
        from ..engines.torch import TorchEngine, from_onnx

        fn: Any = TorchEngine(from_onnx(model, input_name=input_name, output_name=output_name),
                              device=engine_device(name), max_batch=int(config.batch_size),
                              input_shape=tuple(int(d) for d in store.data.shape[1:]))
    elif name == "onnxruntime":
        from ..engines.onnxruntime import OnnxRuntimeEngine

        fn = OnnxRuntimeEngine(model, slots=slots, input_name=input_name,
                               output_name=output_name, max_batch=int(config.batch_size))
    else:
        from ..engines.quantize import TOP1_OUTPUT

        if name == "openvino-int8":  # fail on a missing extra before calibrating
            from ..engines.openvino import import_openvino

            import_openvino()
        models = int8_models(store, model, cache_dir=cache_dir, calibration=calibration,
                             calibration_method=calibration_method, input_name=input_name,
                             output_name=output_name, quiet=quiet)
        if name == "onnxruntime-int8":
            from ..engines.onnxruntime import OnnxRuntimeEngine

            fn = OnnxRuntimeEngine(models.cpu, slots=slots, input_name=input_name,
                                   output_name=TOP1_OUTPUT, offset=0,
                                   max_batch=int(config.batch_size))
        else:
            from ..engines.openvino import OpenVinoEngine

            # One slot: a latency-bound scenario, one request on every core.
            fn = OpenVinoEngine(models.cpu, slots=slots, input_name=input_name,
                                output_name=TOP1_OUTPUT, offset=0,
                                max_batch=int(config.batch_size),
                                hint="LATENCY" if slots == 1 else "THROUGHPUT")
    fn.warm_up()
    return fn


def _answer_zero(inputs: Any, labels: np.ndarray, indices: Any) -> None:
    """The null engine as a Python callable: no model, every answer 0."""
    labels[:] = 0


def _tensorrt_engine(store: Any, config: Any, model: Any, *, dtype: str, shape: tuple[int, ...],
                     cache_dir: Any, calibration: Any, calibration_method: str, input_name: str,
                     output_name: str, quiet: bool) -> Any:
    from ..engines import tensorrt as trt_engines

    trt_engines.check_available()  # before calibrating or building anything
    if dtype == "float32":
        input_format = "fp32"
    elif dtype == "int8" and len(shape) == 3:
        input_format = "int8_linear"
    else:
        raise InvalidArgument(f"the tensorrt engine takes fp32 or int8_linear samples; the store "
                              f"holds {getattr(store, 'format', dtype)} {list(shape)}")
    devices = list(getattr(config, "devices", []) or [0])
    options = trt_engines.BuildOptions(precision="int8", input_format=input_format,
                                       batch_size=int(config.batch_size),
                                       profiles=int(config.copy_streams), device=devices[0])
    models = int8_models(store, model, cache_dir=cache_dir, calibration=calibration,
                         calibration_method=calibration_method, input_name=input_name,
                         output_name=output_name, quiet=quiet)
    plan = trt_engines.build_engine(model, options,
                                    default_cache_dir(store) if cache_dir is None else cache_dir,
                                    int8=models, input_name=input_name, output_name=output_name,
                                    quiet=quiet)
    return trt_engines.load_engine(plan, device=devices[0])


class NativeSUT:
    """The executor as a LoadGen SUT and QSL over a preprocessed store.

    Build it in the thread that runs the test; ``close()`` (or leaving a ``with`` block)
    drains and stops the executor and destroys the LoadGen handles, after the test returned.
    ``errors`` counts samples answered without a result (engine failures, refused submits): a
    run with errors is not a result.
    """

    def __init__(self, engine: Any, store: Any, *, scenario: str, config: Any = None,
                 issue: str = "fast", performance_sample_count: int | None = None) -> None:
        self.scenario = flg.parse_scenario(scenario)
        if issue not in ISSUE_MODES:
            raise InvalidArgument(f"issue={issue!r}: choose one of {', '.join(ISSUE_MODES)}")
        self.config = config if config is not None else make_config(self.scenario)
        self.engine = engine
        self.store = store
        sample_bytes = int(np.prod(store.data.shape[1:])) * store.data.dtype.itemsize
        if engine.input_bytes != sample_bytes:
            raise InvalidArgument(
                f"engine {engine.name} takes {engine.input_bytes} bytes a sample "
                f"({engine.input_dtype} {engine.input_shape}) but the store's samples "
                f"({store.format}) have {sample_bytes}; preprocess into the engine's format")
        if performance_sample_count is None:
            performance_sample_count = flg.performance_sample_count(len(store))
        check_buffers(self.config, sample_bytes)
        self.library = _core.SampleLibrary.for_engine(engine)
        self.sink = _core.LoadGenSink()
        self.executor = _core.Executor(engine, self.library, self.config, self.sink)
        self._issue_errors = 0
        self._flush_error: str | None = None
        self.stopped = False
        self._lock = threading.Lock()
        self._sut: Any = None
        self._qsl: Any = None
        try:
            if issue == "fast":
                self._sut = flg.make_fast_sut(self._issue_fast, self._flush)
            else:
                self._sut = flg.make_sut(self._issue_objects, self._flush)
            self._qsl = flg.make_qsl(len(store), performance_sample_count, self._load, self._unload)
        except BaseException:
            self.close()
            raise

    # ---- LoadGen callbacks: never raise into LoadGen (it would abort the process)
    def _load(self, indices: list[int]) -> None:
        self.library.load(indices, self.store.data)
        # start_from_device: copy the library to the devices now, outside the timed run.
        self.executor.sync_library()

    def _unload(self, indices: list[int]) -> None:
        self.library.unload(indices)

    def _issue_fast(self, ids: list[int], indices: list[int]) -> None:
        try:
            self.executor.submit(ids, indices)
        except Exception:  # noqa: BLE001 - every sample must still be answered
            self._answer_empty(ids)

    def _issue_objects(self, samples: list[Any]) -> None:
        try:
            self.executor.submit_query_samples(samples)
        except Exception:  # noqa: BLE001
            self._answer_empty([s.id for s in samples])

    def _answer_empty(self, ids: list[int]) -> None:
        import mlperf_loadgen as lg

        with self._lock:
            self._issue_errors += len(ids)
        lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])

    def _flush(self) -> None:
        try:
            self.executor.flush()
        except Exception as exc:  # noqa: BLE001 - reported through .errors
            self._flush_error = str(exc)

    # ---- public
    @property
    def sut(self) -> int:
        if self._sut is None:
            raise InvalidArgument("the native SUT is closed")
        return self._sut.handle

    @property
    def qsl(self) -> int:
        if self._qsl is None:
            raise InvalidArgument("the native SUT is closed")
        return self._qsl.handle

    @property
    def errors(self) -> int:
        return self._issue_errors + int(self.sink.failed_samples)

    @property
    def last_error(self) -> str | None:
        return self.executor.last_error or self._flush_error

    @property
    def failure(self) -> str | None:
        """Why the run this SUT served is not a result (samples answered without a result, a
        failed flush, a stop), else None."""
        if self.errors:
            return (f"{self.errors} sample{'s' if self.errors != 1 else ''} answered without a "
                    f"result; last error: {self.last_error or 'submit refused'}")
        if self._flush_error:
            return f"flush failed: {self._flush_error}"
        if self.stopped:
            return "the native SUT was stopped during the run"
        return None

    def stop(self) -> None:
        """Stop the executor during a test: what it holds is completed, later queries are
        answered empty at once (LoadGen's test then ends) and the run is failed. Any thread
        but the executor's own; idempotent. Call close() after the test."""
        self.stopped = True
        try:
            self.executor.stop()
        except Exception as exc:  # noqa: BLE001 - failed batches: already counted in .errors
            self._flush_error = self._flush_error or str(exc)

    def stats(self) -> dict[str, Any]:
        return self.executor.stats().as_dict()

    def close(self) -> None:
        """Drain and stop the executor, destroy the LoadGen handles; idempotent. During a test
        it raises InvalidArgument and changes nothing (use stop(), close after the test)."""
        for handle in (getattr(self, "_sut", None), getattr(self, "_qsl", None)):
            if handle is not None and flg.in_running_test(handle):
                raise InvalidArgument("NativeSUT.close() during a LoadGen test would crash "
                                      "LoadGen: call stop() to end the run, close() after "
                                      "run_test returns")
        executor = getattr(self, "executor", None)
        if executor is not None:
            try:
                executor.stop()
            except Exception as exc:  # noqa: BLE001 - already counted in .errors
                self._flush_error = self._flush_error or str(exc)
        for handle in (self._sut, self._qsl):
            if handle is not None:
                handle.close()
        self._sut = self._qsl = None

    def __enter__(self) -> NativeSUT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_native(engine: Any, store: Any, scenario: str, mode: str, output_dir: str | os.PathLike[str],
               *, config: Any = None, issue: str = "fast", sut_class: type | None = None,
               **settings_kwargs: Any) -> flg.RunResult:
    """One LoadGen test of the native SUT (or of ``sut_class``, a subclass taking the same
    arguments, such as the online SUT); in accuracy mode the result carries top-1 read from
    LoadGen's accuracy log (int32 responses) against ``store.labels``."""
    settings = flg.make_settings(scenario, mode, **settings_kwargs)
    with (sut_class or NativeSUT)(engine, store, scenario=scenario, config=config, issue=issue) as sut:
        result = flg.run_test(sut.sut, sut.qsl, settings, output_dir)
        result.sut_errors = sut.errors
    if result.mode == "accuracy":
        result.accuracy = flg.accuracy_from_log(Path(output_dir) / "mlperf_log_accuracy.json",
                                                store.labels, dtype="int32")
    return result

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
#: harness.
ENGINES = ("openvino-int8", "onnxruntime-int8", "onnxruntime", "null")
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


def make_config(scenario: str | None = None, **knobs: Any) -> Any:
    """An ``ExecutorConfig``: :data:`DEFAULT_KNOBS`, then the scenario's defaults
    (:data:`SCENARIO_KNOBS`), then ``knobs`` (NVIDIA's names; None means the default). An
    unknown knob is refused with the list of known ones."""
    unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
    if unknown:
        raise InvalidArgument(f"unknown executor knob(s) {', '.join(unknown)}; known: "
                              f"{', '.join(DEFAULT_KNOBS)}")
    scenario_knobs = SCENARIO_KNOBS[flg.parse_scenario(scenario)] if scenario else {}
    values = {**DEFAULT_KNOBS, **scenario_knobs, **{k: v for k, v in knobs.items() if v is not None}}
    for name, value in values.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise InvalidArgument(f"executor knob {name}={value!r}: expected an integer")
    return _core.ExecutorConfig(**{k: int(v) for k, v in values.items()})


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
    fn = engine_fn(name, store, config, model=model, input_name=input_name,
                   output_name=output_name, cache_dir=cache_dir, calibration=calibration,
                   calibration_method=calibration_method, quiet=quiet)
    return _core.PythonEngine(fn, dtype, shape, int(config.batch_size))


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
    if dtype != "float32":
        raise InvalidArgument(f"the {name} engine takes fp32 samples; the store holds "
                              f"{getattr(store, 'format', dtype)}")
    slots = int(config.copy_streams)
    if name == "onnxruntime":
        from ..engines.onnxruntime import OnnxRuntimeEngine

        fn: Any = OnnxRuntimeEngine(model, slots=slots, input_name=input_name,
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

    def stats(self) -> dict[str, Any]:
        return self.executor.stats().as_dict()

    def close(self) -> None:
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
               *, config: Any = None, issue: str = "fast", **settings_kwargs: Any) -> flg.RunResult:
    """One LoadGen test of the native SUT; in accuracy mode the result carries top-1 read from
    LoadGen's accuracy log (int32 responses)."""
    settings = flg.make_settings(scenario, mode, **settings_kwargs)
    with NativeSUT(engine, store, scenario=scenario, config=config, issue=issue) as sut:
        result = flg.run_test(sut.sut, sut.qsl, settings, output_dir)
        result.sut_errors = sut.errors
    if result.mode == "accuracy":
        result.accuracy = flg.accuracy_from_log(Path(output_dir) / "mlperf_log_accuracy.json",
                                                store.labels, dtype="int32")
    return result

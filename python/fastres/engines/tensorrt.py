"""TensorRT engines: the builder (TensorRT's Python API) and the native runtime
(``fastres._core.TensorRTEngine``, a fastres build with ``FASTRES_WITH_TENSORRT``).

Dell's MLPerf v2.1 ResNet50 results ran TensorRT 8.4 engines under NVIDIA's LWIS harness. fastres
targets TensorRT 10 and 11, whose way to INT8 is *explicit* quantization (11.x removed implicit
calibration and the precision builder flags; networks are strongly typed), so:

- ``precision="int8"``: the TensorRT Q/DQ form of :mod:`fastres.engines.quantize` (calibrated once
  on MLPerf's calibration list, shared with the CPU engines), parsed as a strongly typed network.
- ``precision="fp16"`` / ``"fp32"``: the MLPerf model after :func:`~fastres.engines.quantize.surgery`
  (no softmax, no background class, the top-1 label as int32 inside the network), for fp16
  with every float tensor and weight converted to float16 here (:func:`to_fp16`, the strongly
  typed way: TensorRT 11 has no FP16 builder flag).

Every plan fastres builds therefore answers ``top1:0``, int32 labels 0..999, written by TensorRT
straight into the executor's output buffer (4 bytes a sample, no extra kernel). The runtime also
runs plans built elsewhere: an int64 ArgMax (the MLPerf model as given, ``label_offset=1``) is
narrowed on the device, float32 logits go through a device top-1 (``load_engine``).

- ``input_format``: ``"fp32"`` (the reference preprocessing's float32 NCHW) or ``"int8_linear"``
  (NVIDIA's int8 NCHW store: fp32 clipped and truncated, scale 1): the ONNX input becomes int8
  followed by ``DequantizeLinear(scale 1)``, so the network's own first quantization applies.
- Explicit batch, one optimization profile per copy stream (``profiles``), each min 1 and
  opt = max = ``batch_size``: every stream slot's execution context gets its own profile.
- Workspace (``workspace_mib``) and ``optimization_level`` (TensorRT's builder optimization level
  0-5) are exposed; :meth:`BuildOptions.validate` names a bad value and the range.
- Plans are cached under ``<cache_dir>/tensorrt/``, keyed by the source model's SHA-256, the
  options, :data:`BUILD_VERSION`, the TensorRT version and the GPU (name and compute capability):
  a plan runs only on the TensorRT version and GPU it was built for. Builds take minutes; a
  progress line shows TensorRT's build phases.

TensorRT is imported lazily. Without its Python package every builder entry point raises
:class:`fastres.errors.Unavailable` saying ``pip install tensorrt``; without a fastres build that
has the native engine, :func:`load_engine` says how to rebuild fastres with TensorRT.

What has and has not run: the network-independent logic here (options, profiles, cache keys) and
the ONNX preparation (:func:`prepare_onnx`, checked with ONNX Runtime) are tested on CPUs; the
TensorRT calls in :func:`build_plan` are written against TensorRT's documented Python API (10.x and
11.x) and have never run in this repository, which cannot install TensorRT (see the README).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import sha256_file
from ..errors import EngineError, InvalidArgument, ModelError, Unavailable
from ..model import MLPERF_INPUT, MLPERF_OUTPUT

__all__ = ["BuildOptions", "EnginePlan", "PRECISIONS", "INPUT_FORMATS", "import_tensorrt",
           "runtime_available", "check_available", "profile_shapes", "cache_key", "engine_dir",
           "prepare_onnx", "to_fp16", "int8_linear_input", "build_plan", "build_engine",
           "load_engine", "gpu_identity"]

PRECISIONS = ("int8", "fp16", "fp32")
INPUT_FORMATS = ("fp32", "int8_linear")
#: Bumped whenever the ONNX preparation or the build settings change: part of every cache key.
BUILD_VERSION = 1
#: TensorRT's builder optimization levels.
OPTIMIZATION_LEVELS = range(0, 6)
#: The answer every plan fastres builds has (fastres.engines.quantize.TOP1_OUTPUT).
TOP1 = "top1:0"

INSTALL_BUILDER = ("the TensorRT Python package: pip install tensorrt (TensorRT 10 or 11, for the "
                   "machine's CUDA: tensorrt-cu12 or tensorrt-cu13), on a machine with an NVIDIA GPU")
INSTALL_RUNTIME = ("a fastres build with the native TensorRT engine: install TensorRT's C++ headers "
                   "and libraries (NVIDIA's TensorRT tar archive, or the libnvinfer-dev and "
                   "libnvonnxparsers-dev packages), then rebuild fastres with "
                   "FASTRES_WITH_TENSORRT=ON and TensorRT_ROOT=<TensorRT folder>: "
                   "TensorRT_ROOT=/opt/tensorrt pip install . --config-settings="
                   "cmake.define.FASTRES_WITH_TENSORRT=ON")
_PLAN = "engine.plan"
_META = "meta.json"
_ONNX = "network.onnx"


# --------------------------------------------------------------------------------------------
# Availability


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`Unavailable` naming what to install."""
    try:
        import tensorrt
    except ImportError as exc:
        raise Unavailable(f"building TensorRT engines needs {INSTALL_BUILDER}; import failed: "
                          f"{exc}") from None
    version = str(getattr(tensorrt, "__version__", "0"))
    if int(version.split(".")[0] or 0) < 10:
        raise Unavailable(f"fastres builds with TensorRT 10 or 11; this is TensorRT {version}: "
                          "pip install -U tensorrt")
    return tensorrt


def runtime_available() -> bool:
    """Whether this fastres build has the native TensorRT engine (``_core.TensorRTEngine``)."""
    from .. import _core

    return hasattr(_core, "TensorRTEngine")


def _require_runtime() -> Any:
    from .. import _core

    if not hasattr(_core, "TensorRTEngine"):
        info = _core.build_info()
        raise Unavailable(f"running TensorRT engines needs {INSTALL_RUNTIME}; this build "
                          f"(fastres {info['version']}) has with_tensorrt="
                          f"{info['with_tensorrt']}, with_cuda={info['with_cuda']}")
    return _core


def check_available(*, build: bool = True) -> None:
    """Raise :class:`Unavailable` unless the TensorRT engine can run here (and, with ``build``, be
    built): both the native engine in this fastres build and TensorRT's Python package. Cheap;
    the CLI calls it before any work."""
    missing = []
    if not runtime_available():
        missing.append(INSTALL_RUNTIME)
    if build:
        try:
            import_tensorrt()
        except Unavailable as exc:
            missing.append(str(exc).split("; import failed")[0].removeprefix(
                "building TensorRT engines needs "))
    if missing:
        raise Unavailable("the tensorrt engine needs " + "; and ".join(missing))


# --------------------------------------------------------------------------------------------
# Options, profiles, cache keys (network-independent: tested without TensorRT)


def _positive(name: str, value: Any, lo: int = 1, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"TensorRT build option {name}={value!r}: expected an integer")
    if value < lo or (hi is not None and value > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise InvalidArgument(f"TensorRT build option {name}={value}: must be {rng}")
    return int(value)


@dataclass(frozen=True)
class BuildOptions:
    """How a plan is built. ``batch_size``: the largest batch (each profile's opt and max, min 1);
    ``profiles``: optimization profiles, one per executor copy stream (slot); ``workspace_mib``:
    TensorRT's workspace memory pool; ``optimization_level``: TensorRT's builder optimization level
    (0-5, 3 is TensorRT's default; higher searches longer); ``device``: the GPU to build on."""

    precision: str = "int8"
    input_format: str = "fp32"
    batch_size: int = 64
    profiles: int = 1
    workspace_mib: int = 4096
    optimization_level: int = 3
    device: int = 0

    def validate(self) -> BuildOptions:
        """Self, or :class:`InvalidArgument` naming the option, its value and what is allowed."""
        if self.precision not in PRECISIONS:
            raise InvalidArgument(f"TensorRT build option precision={self.precision!r}: choose one "
                                  f"of {', '.join(PRECISIONS)}")
        if self.input_format not in INPUT_FORMATS:
            raise InvalidArgument(f"TensorRT build option input_format={self.input_format!r}: "
                                  f"choose one of {', '.join(INPUT_FORMATS)}")
        _positive("batch_size", self.batch_size, 1, 1 << 16)
        _positive("profiles", self.profiles, 1, 64)
        _positive("workspace_mib", self.workspace_mib, 16, 1 << 20)
        _positive("optimization_level", self.optimization_level, OPTIMIZATION_LEVELS.start,
                  OPTIMIZATION_LEVELS.stop - 1)
        _positive("device", self.device, 0)
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_shapes(options: BuildOptions, sample_shape: tuple[int, ...] | list[int]
                   ) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) input shapes of each optimization profile: batch 1, ``batch_size``,
    ``batch_size`` with the per-sample shape fixed; one per profile (``options.profiles``)."""
    options.validate()
    sample = tuple(int(d) for d in sample_shape)
    if not sample or any(d <= 0 for d in sample):
        raise InvalidArgument(f"sample shape {list(sample_shape)}: every dimension must be > 0 "
                              "(the batch is the only dynamic one)")
    b = options.batch_size
    return [((1, *sample), (b, *sample), (b, *sample)) for _ in range(options.profiles)]


def cache_key(model_sha256: str, options: BuildOptions, tensorrt_version: str,
              gpu: dict[str, Any], *, source: dict[str, Any] | None = None
              ) -> tuple[dict[str, Any], str]:
    """The fields a cached plan must match and their digest: the source model's SHA-256, the
    options, :data:`BUILD_VERSION`, the TensorRT version and the GPU (name, compute capability);
    ``source`` adds what the ONNX was made with (the INT8 calibration's key)."""
    options.validate()
    fields = {"build_version": BUILD_VERSION, "model_sha256": model_sha256,
              "options": {k: v for k, v in options.as_dict().items() if k != "device"},
              "tensorrt": str(tensorrt_version),
              "gpu": {"name": str(gpu.get("name")),
                      "compute_capability": list(gpu.get("compute_capability") or ())},
              "source": source or {}}
    import hashlib

    blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return fields, hashlib.sha256(blob).hexdigest()


def _explain(old: dict[str, Any], new: dict[str, Any]) -> str:
    for k, what in (("model_sha256", "the model changed (SHA-256 differs)"),
                    ("tensorrt", "the TensorRT version changed"), ("gpu", "the GPU changed"),
                    ("options", "the build options changed"),
                    ("source", "the INT8 calibration changed"),
                    ("build_version", "fastres's build procedure changed")):
        if old.get(k) != new.get(k):
            detail = f" ({old.get(k)} → {new.get(k)})" if k in ("tensorrt", "gpu", "options") else ""
            return what + detail
    return "cache key mismatch"


def engine_dir(cache_dir: str | os.PathLike[str], model: str | os.PathLike[str],
               options: BuildOptions) -> Path:
    """Where :func:`build_engine` keeps the plan of ``model`` built with ``options`` (the folder
    is per model path and options; its meta.json holds the full key)."""
    options.validate()
    import hashlib

    path = Path(model).resolve()
    ident = hashlib.sha256(json.dumps({"model": str(path), **options.as_dict()},
                                      sort_keys=True).encode()).hexdigest()[:12]
    name = f"{path.stem}-{options.precision}-{options.input_format}-b{options.batch_size}" \
           f"-p{options.profiles}-{ident}"
    return Path(cache_dir).expanduser() / "tensorrt" / name


def gpu_identity(device: int = 0) -> dict[str, Any]:
    """Name and compute capability of CUDA device ``device`` (fastres's CUDA runtime query), or
    :class:`Unavailable` saying why there is none."""
    from .. import _core

    info = _core.cuda_runtime_info()
    for dev in info.get("devices", []):
        if dev["index"] == device:
            return {"name": dev["name"], "compute_capability": list(dev["compute_capability"])}
    raise Unavailable(f"CUDA device {device} not found ({info.get('status') or 'no such index'}); "
                      "TensorRT engines are built on the GPU they run on")


# --------------------------------------------------------------------------------------------
# ONNX preparation (TensorRT-independent: tested with ONNX Runtime)


def to_fp16(model: Any) -> Any:
    """A copy of ``model`` (an ``onnx.ModelProto``) computing in float16 with float32 IO: every
    float32 initializer, Constant and Cast target becomes float16, a Cast to float16 follows each
    float32 graph input and a Cast back to float32 precedes each float32 graph output. The
    strongly typed form of fp16 TensorRT 11 requires (no FP16 builder flag)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16

    def half(t: Any) -> Any:
        arr = numpy_helper.to_array(t)
        return numpy_helper.from_array(arr.astype(np.float16), t.name)

    for i, init in enumerate(g.initializer):
        if init.data_type == f32:
            g.initializer[i].CopyFrom(half(init))
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == f32:
                a.t.CopyFrom(half(a.t))
            if node.op_type == "Cast" and a.name == "to" and a.i == f32:
                a.i = f16
    renames: dict[str, str] = {}
    casts_in = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == f32 and inp.name not in {i.name for i in g.initializer}:
            cast = f"{inp.name}/fp16"
            renames[inp.name] = cast
            casts_in.append(helper.make_node("Cast", [inp.name], [cast], to=f16,
                                             name=f"{inp.name}/to_fp16"))
    for node in g.node:
        for k, name in enumerate(node.input):
            if name in renames:
                node.input[k] = renames[name]
    casts_out = []
    for out in g.output:
        if out.type.tensor_type.elem_type == f32:
            inner = f"{out.name}/fp16"
            for node in g.node:
                for k, name in enumerate(node.output):
                    if name == out.name:
                        node.output[k] = inner
            casts_out.append(helper.make_node("Cast", [inner], [out.name], to=f32,
                                              name=f"{out.name}/to_fp32"))
    nodes = casts_in + list(g.node) + casts_out
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # stale float32 annotations; shape inference redoes them
    return m


def int8_linear_input(model: Any, input_name: str = MLPERF_INPUT) -> Any:
    """A copy of ``model`` whose float input ``input_name`` becomes int8 (NVIDIA's int8_linear
    store: the fp32 values clipped and truncated, scale 1) followed by ``DequantizeLinear`` with
    scale 1 and zero point 0, so the rest of the network, its own input quantization included,
    sees the same values as from the fp32 store."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inputs = [i for i in g.input if i.name == input_name]
    if not inputs:
        raise ModelError(f"the model has no input {input_name!r} (inputs: "
                         f"{', '.join(i.name for i in g.input)}); pass input_name")
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ModelError(f"input {input_name!r} is not float32; int8_linear replaces a float32 input")
    dq_out = f"{input_name}/dequantized"
    for node in g.node:
        for k, name in enumerate(node.input):
            if name == input_name:
                node.input[k] = dq_out
    scale, zero = f"{input_name}/scale", f"{input_name}/zero_point"
    g.initializer.extend([numpy_helper.from_array(np.array(1.0, np.float32), scale),
                          numpy_helper.from_array(np.array(0, np.int8), zero)])
    g.node.insert(0, helper.make_node("DequantizeLinear", [input_name, scale, zero], [dq_out],
                                      name=f"{input_name}/int8_linear"))
    inp.type.tensor_type.elem_type = TensorProto.INT8
    return m


def prepare_onnx(model: str | os.PathLike[str], options: BuildOptions,
                 out_path: str | os.PathLike[str], *, int8_model: str | os.PathLike[str] | None = None,
                 input_name: str = MLPERF_INPUT, output_name: str = MLPERF_OUTPUT) -> dict[str, Any]:
    """Write the ONNX model TensorRT parses for ``options`` to ``out_path`` and return what was
    done. int8: ``int8_model`` (the TensorRT Q/DQ form of :func:`fastres.engines.quantize.build_int8`)
    is required. fp16/fp32: :func:`~fastres.engines.quantize.surgery` of ``model`` (top-1 int32
    inside the network), then :func:`to_fp16` for fp16. int8_linear: :func:`int8_linear_input`.
    The result passes ``onnx.checker`` and answers ``top1:0`` int32."""
    import onnx

    from .quantize import TOP1_OUTPUT, surgery

    options.validate()
    steps: list[str] = []
    if options.precision == "int8":
        if int8_model is None:
            raise InvalidArgument("precision='int8' needs the TensorRT Q/DQ model: pass int8_model="
                                  "build_int8(...).tensorrt (fastres.engines.quantize)")
        m = onnx.load(str(int8_model))
        steps.append("int8 Q/DQ (fastres.engines.quantize, TensorRT form)")
    else:
        m, _info = surgery(model, input_name=input_name, output_name=output_name)
        steps.append("surgery: top-1 int32 in the network, background class cut")
        if options.precision == "fp16":
            m = to_fp16(m)
            steps.append("float16 weights and activations, float32 input")
    if options.input_format == "int8_linear":
        m = int8_linear_input(m, input_name)
        steps.append("int8_linear input: DequantizeLinear(scale 1)")
    if [o.name for o in m.graph.output] != [TOP1_OUTPUT]:
        raise ModelError(f"the prepared model answers {[o.name for o in m.graph.output]}, not "
                         f"[{TOP1_OUTPUT!r}]; this is a bug in fastres.engines.tensorrt")
    onnx.checker.check_model(m, full_check=True)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out))
    return {"steps": steps, "input": input_name, "output": TOP1_OUTPUT}


# --------------------------------------------------------------------------------------------
# Building (TensorRT's Python API; never run here: see the module docstring)


class _Logger:
    """TensorRT's log to logging.getLogger('fastres.tensorrt'), made lazily (its base class is
    tensorrt.ILogger)."""

    @staticmethod
    def make(trt: Any) -> Any:
        import logging

        log = logging.getLogger("fastres.tensorrt")
        sev = trt.ILogger.Severity
        levels = {sev.INTERNAL_ERROR: logging.CRITICAL, sev.ERROR: logging.ERROR,
                  sev.WARNING: logging.WARNING, sev.INFO: logging.INFO, sev.VERBOSE: logging.DEBUG}

        class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if severity in (sev.INTERNAL_ERROR, sev.ERROR):
                    self.errors.append(msg)
                log.log(levels.get(severity, logging.DEBUG), msg)

        return Logger()


def _progress_monitor(trt: Any, quiet: bool) -> Any:
    """A trt.IProgressMonitor printing the top-level build phases (TensorRT 10+), or None."""
    if quiet or not hasattr(trt, "IProgressMonitor"):
        return None

    class Monitor(trt.IProgressMonitor):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._t0 = time.monotonic()
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                self._steps[phase_name] = num_steps
                if parent_phase is None:
                    print(f"fastres: TensorRT build: {phase_name} ({num_steps} steps, "
                          f"{time.monotonic() - self._t0:.0f}s)", file=sys.stderr, flush=True)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                self._steps.pop(phase_name, None)

    return Monitor()


def build_plan(onnx_path: str | os.PathLike[str], options: BuildOptions,
               plan_path: str | os.PathLike[str], *, quiet: bool = False) -> dict[str, Any]:
    """Build a serialized plan from the prepared ONNX model (:func:`prepare_onnx`) with TensorRT's
    Python API and write it to ``plan_path``: a strongly typed explicit-batch network, one
    optimization profile per ``options.profiles`` (:func:`profile_shapes`), the workspace pool
    limit and builder optimization level of ``options``. Raises :class:`ModelError` with the ONNX
    parser's errors, :class:`EngineError` with TensorRT's when the build fails."""
    trt = import_tensorrt()
    options.validate()
    logger = _Logger.make(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx_path}: TensorRT's ONNX parser refused the model: {errors}")
    if network.num_inputs != 1:
        raise ModelError(f"{onnx_path}: {network.num_inputs} inputs; fastres feeds one")
    inp = network.get_input(0)
    sample = tuple(int(d) for d in inp.shape)[1:]
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.optimization_level
    for lo, opt, hi in profile_shapes(options, sample):
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, lo, opt, hi)
        config.add_optimization_profile(profile)
    monitor = _progress_monitor(trt, quiet)
    if monitor is not None:
        config.progress_monitor = monitor
    t0 = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT could not build {onnx_path} ({options}): "
                          f"{'; '.join(logger.errors) or 'see the fastres.tensorrt log'}")
    out = Path(plan_path)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(memoryview(serialized))
    os.replace(tmp, out)
    return {"build_s": round(time.monotonic() - t0, 1), "input": inp.name,
            "sample_shape": list(sample)}


@dataclass(frozen=True)
class EnginePlan:
    """A cached plan: its path, the meta (key fields, options, timings), whether the cache served
    it, and the answer (``output``, ``label_offset``) :func:`load_engine` needs."""

    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    @property
    def output(self) -> str:
        return str(self.meta.get("output", TOP1))

    @property
    def label_offset(self) -> int:
        return int(self.meta.get("label_offset", 0))


def _cached(folder: Path, key: str, fields: dict[str, Any]) -> tuple[EnginePlan | None, str]:
    meta_path = folder / _META
    if not meta_path.is_file():
        return None, "" if not folder.exists() else "no meta.json (an interrupted build)"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"meta.json unreadable ({exc})"
    if meta.get("key") != key:
        return None, _explain(meta.get("fields", {}), fields)
    plan = folder / _PLAN
    if not plan.is_file() or sha256_file(plan) != meta.get("plan_sha256"):
        return None, f"{_PLAN} missing or not matching its SHA-256"
    return EnginePlan(plan, meta, reused=True), ""


def build_engine(model: str | os.PathLike[str], options: BuildOptions,
                 cache_dir: str | os.PathLike[str], *, int8: Any = None,
                 input_name: str = MLPERF_INPUT, output_name: str = MLPERF_OUTPUT,
                 quiet: bool = False) -> EnginePlan:
    """The plan of ``model`` built with ``options``, from the cache when its key matches
    (:func:`cache_key`), else built now (minutes) and cached, saying why unless ``quiet``.
    ``int8``: the :class:`fastres.engines.quantize.Int8Models` for precision int8."""
    options.validate()
    trt = import_tensorrt()
    _require_runtime()  # a plan nobody here can run is not worth minutes of building
    gpu = gpu_identity(options.device)
    source = {"int8_key": int8.meta.get("key")} if options.precision == "int8" and int8 else {}
    fields, key = cache_key(sha256_file(model), options, trt.__version__, gpu, source=source)
    folder = engine_dir(cache_dir, model, options)
    hit, why = _cached(folder, key, fields)
    if hit is not None:
        return hit
    say = (lambda msg: None) if quiet else (lambda msg: print(f"fastres: {msg}", file=sys.stderr,
                                                              flush=True))
    say(f"TensorRT plan in {folder} is stale: {why}; rebuilding" if why else
        f"building the TensorRT {options.precision} plan of {Path(model).name} for {gpu['name']} "
        f"(TensorRT {trt.__version__}, batch {options.batch_size}, {options.profiles} "
        "profile(s)); this takes minutes, once")
    folder.mkdir(parents=True, exist_ok=True)
    prep = prepare_onnx(model, options, folder / _ONNX,
                        int8_model=int8.tensorrt if int8 is not None else None,
                        input_name=input_name, output_name=output_name)
    built = build_plan(folder / _ONNX, options, folder / _PLAN, quiet=quiet)
    meta = {"key": key, "fields": fields, "model": str(Path(model).resolve()),
            "options": options.as_dict(), "prepare": prep, "build": built, "output": TOP1,
            "label_offset": 0, "created": time.time(), "plan_sha256": sha256_file(folder / _PLAN)}
    (folder / _META).write_text(json.dumps(meta, indent=1) + "\n")
    (folder / _ONNX).unlink(missing_ok=True)
    say(f"TensorRT plan written to {folder / _PLAN} in {built['build_s']:.0f}s")
    return EnginePlan(folder / _PLAN, meta, reused=False)


def load_engine(plan: EnginePlan | str | os.PathLike[str], *, output_name: str | None = None,
                label_offset: int | None = None, device: int = 0,
                graph_capturable: bool = True) -> Any:
    """The native engine (``fastres._core.TensorRTEngine``) of a plan: an :class:`EnginePlan`
    (its answer and offset from the build) or a plan file built elsewhere (then ``output_name``
    picks the answer when there are several, and ``label_offset`` is 1 for a model whose class 0
    is the background, as the MLPerf ResNet50's ``ArgMax:0``)."""
    core = _require_runtime()
    if isinstance(plan, EnginePlan):
        path, out = plan.path, output_name or plan.output
        offset = plan.label_offset if label_offset is None else label_offset
    else:
        path, out, offset = Path(plan), output_name or "", label_offset or 0
    if not Path(path).is_file():
        raise InvalidArgument(f"TensorRT plan {path}: not found; build one with "
                              "fastres.engines.tensorrt.build_engine")
    return core.TensorRTEngine(str(path), output_name=out, label_offset=int(offset),
                               device=int(device), graph_capturable=bool(graph_capturable),
                               name=Path(path).name)

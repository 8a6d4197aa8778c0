"""INT8 models for the optimized engines: graph surgery, static calibration, two Q/DQ forms.

Dell's v2.1 ResNet50 engines ran INT8 with the softmax dropped, the background class removed
and the top-1 computed inside the network. TensorRT 10+ has no implicit INT8 calibration any
more (``IInt8Calibrator`` is gone); INT8 now means *explicit* quantization, an ONNX model with
QuantizeLinear/DequantizeLinear (Q/DQ) nodes. So fastres calibrates once, on MLPerf's
calibration list, and writes the result in the two forms the two runtimes want:

- ``cpu``: Q/DQ with **unsigned** 8-bit activations (asymmetric) and per-channel signed
  symmetric weights — ONNX Runtime's fast path on x86 (u8 × s8 dot products, VNNI). A signed
  symmetric model runs on the same CPU several times slower (measured here: 22 against 93
  images/s), slower even than fp32.
- ``tensorrt``: Q/DQ with **signed** INT8 activations, zero point 0, per-channel symmetric
  weights and float biases — what TensorRT's explicit quantization accepts.

Both come from ONE set of activation ranges (``ranges.json``, ONNX Runtime's calibration cache
format), so the TensorRT engine and the CPU engine are calibrated identically.

Steps (:func:`build_int8` does them all, cached):

1. :func:`surgery` — the MLPerf-interface model (``input_tensor:0`` → ``ArgMax:0`` int64 with
   class 0 = background, ``softmax_tensor:0``) becomes ``input_tensor:0`` → ``top1:0`` int32
   [N] with labels 0..999: the softmax is dropped, the classifier's background row is cut
   (1001 → 1000 outputs), and ArgMax + Cast compute the label in the network, so an engine
   copies back 4 bytes a sample and applies no −1 offset. Checked with ``onnx.checker`` and an
   ONNX Runtime session.
2. ``quant_pre_process`` (ONNX Runtime's shape inference and graph cleanup), then ONNX Runtime's
   calibrator (:data:`METHODS`: minmax, entropy, percentile) on the calibration images.
3. ``quantize_static`` twice from the saved ranges: the CPU and the TensorRT form. The
   classifier stays fp32 in both: it is 0.05% of ResNet50's work, and 8-bit logits would make
   near-equal classes tie in the ArgMax.

The cache (``<cache_dir>/int8/<model>-<id>/``) is keyed by the model's SHA-256, the calibration
list (names, in order), a digest of the preprocessed calibration images, the settings, this
module's :data:`QUANTIZE_VERSION` and the ONNX Runtime version; anything else gives a rebuild
that says why. ``python -m fastres.engines.quantize`` builds the models for the embedded
default and prints the MLPerf 99% accuracy rule.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import sha256_file
from ..errors import DataError, InvalidArgument, ModelError
from ..model import MLPERF_INPUT, MLPERF_OUTPUT, check_model
from ..progress import Progress

#: The surgered models' output: the top-1 label 0..999 as int32, one per sample.
TOP1_OUTPUT = "top1:0"
#: Calibration methods, as ONNX Runtime's calibrators name them.
METHODS = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "minmax"
DEFAULT_PERCENTILE = 99.999
#: The two Q/DQ forms written from one set of ranges.
FORMS = ("cpu", "tensorrt")
#: Bumped whenever the surgery, the calibration procedure or the Q/DQ settings change: part of
#: every cache key.
QUANTIZE_VERSION = 1
#: MLPerf's accuracy rule for ResNet50: INT8 top-1 at least 99% of fp32 top-1.
ACCURACY_RULE = 0.99

#: Images per calibration run. Histogram calibrators hold every activation of a run in memory
#: (ResNet50: about 64 MB an image), so runs stay small; it is fixed (part of the version)
#: because histogram merging depends on how images are grouped.
_CALIBRATION_CHUNK = 8
_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear (axis) needs 13
_MODEL_FILES = {"fp32": "fp32.onnx", "cpu": "int8_cpu.onnx", "tensorrt": "int8_tensorrt.onnx"}
_RANGES_NAME = "ranges.json"
_META_NAME = "meta.json"
# Not quantized: ArgMax/TopK/Softmax would compare 8-bit logits (ties); the rest are not in
# ResNet50 or gain nothing on a CPU.
_OP_TYPES = ("Conv", "Gemm", "MatMul", "Add", "Mul", "Relu", "Clip", "MaxPool", "AveragePool",
             "GlobalAveragePool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Concat")


# --------------------------------------------------------------------------------------------
# Graph surgery


@dataclass(frozen=True)
class SurgeryInfo:
    """What :func:`surgery` changed: ``background`` (a class 0 was cut), ``classifier`` (how:
    ``"weights"`` when the classifier's weights were sliced, ``"slice"`` when a Slice node cuts
    the logits, ``"none"`` when the model had 1000 classes), the classifier's node names (kept
    fp32 by the quantizer) and the opset the model was converted from."""

    background: bool
    classifier: str
    classifier_nodes: tuple[str, ...]
    opset_from: int
    removed_outputs: tuple[str, ...]


def _producers(graph: Any) -> dict[str, Any]:
    return {out: node for node in graph.node for out in node.output}


def _initializers(graph: Any) -> dict[str, Any]:
    return {init.name: init for init in graph.initializer}


def _consumers(graph: Any, name: str) -> list[Any]:
    return [node for node in graph.node if name in node.input]


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _default_opset(model: Any) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _replace_initializer(graph: Any, node: Any, slot: int, array: np.ndarray, suffix: str) -> None:
    """Point ``node.input[slot]`` at a new initializer holding ``array`` (the old one may be
    shared with other nodes, so it is not edited in place)."""
    from onnx import numpy_helper

    name = f"{node.input[slot]}{suffix}"
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
    node.input[slot] = name


def _slice_classifier(graph: Any, logits: str, path: Path) -> tuple[str, tuple[str, ...], int]:
    """Cut class 0 out of the classifier's weights when it is a Gemm or a MatMul(+Add) with
    constant weights. Returns (how, classifier nodes, class count before) — ("", (), n) when the
    classifier is some other shape."""
    from onnx import numpy_helper

    producers, inits = _producers(graph), _initializers(graph)
    node = producers.get(logits)
    while node is not None and node.op_type == "Identity":
        node = producers.get(node.input[0])
    if node is None:
        return "", (), 0
    if node.op_type == "Gemm" and len(node.input) >= 2 and node.input[1] in inits:
        w = numpy_helper.to_array(inits[node.input[1]])
        trans_b = int(_attr(node, "transB", 0))
        n = w.shape[0] if trans_b else w.shape[1]
        if n != 1001:
            return "", (), n
        _replace_initializer(graph, node, 1, w[1:] if trans_b else w[:, 1:], "/no_background")
        if len(node.input) >= 3 and node.input[2] in inits:
            c = numpy_helper.to_array(inits[node.input[2]])
            if c.shape and c.shape[-1] == 1001:
                _replace_initializer(graph, node, 2, c[..., 1:], "/no_background")
            elif c.size != 1:
                raise ModelError(f"{path}: classifier {node.name or node.op_type} has a bias of "
                                 f"shape {list(c.shape)}; expected [1001] or a scalar")
        elif len(node.input) >= 3 and node.input[2]:
            return "", (), n
        return "weights", (node.name,), n
    add = None
    if node.op_type == "Add":
        const = [i for i, name in enumerate(node.input) if name in inits]
        other = [i for i in range(2) if i not in const]
        if len(const) != 1 or len(other) != 1:
            return "", (), 0
        add, bias_slot = node, const[0]
        node = producers.get(node.input[other[0]])
        if node is None:
            return "", (), 0
    if node.op_type == "MatMul" and node.input[1] in inits:
        w = numpy_helper.to_array(inits[node.input[1]])
        if w.ndim != 2 or w.shape[1] != 1001:
            return "", (), int(w.shape[-1])
        if len(_consumers(graph, node.output[0])) != 1:
            return "", (), 1001
        nodes = [node.name]
        if add is not None:
            b = numpy_helper.to_array(inits[add.input[bias_slot]])
            if not b.shape or b.shape[-1] != 1001:
                return "", (), 1001
            _replace_initializer(graph, add, bias_slot, b[..., 1:], "/no_background")
            nodes.append(add.name)
        _replace_initializer(graph, node, 1, w[:, 1:], "/no_background")
        return "weights", tuple(nodes), 1001
    return "", (), 0


def _logits_width(model: Any, logits: str) -> int | None:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name == logits:
            dims = vi.type.tensor_type.shape.dim
            if len(dims) == 2 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    return None


def _fixed_batch(model: Any, input_name: str) -> int | None:
    """The input's batch size when the model fixes it (calibration must then feed exactly
    that many images a run), else None."""
    for v in model.graph.input:
        if v.name == input_name:
            dim = v.type.tensor_type.shape.dim[0]
            return int(dim.dim_value) if dim.HasField("dim_value") else None
    return None


def _prune(graph: Any, keep_outputs: Sequence[str]) -> None:
    """Drop every node, initializer and value_info the kept outputs do not need."""
    producers = _producers(graph)
    needed: set[str] = set()
    stack = list(keep_outputs)
    live_nodes: set[int] = set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is not None and id(node) not in live_nodes:
            live_nodes.add(id(node))
            stack.extend(i for i in node.input if i)
    nodes = [n for n in graph.node if id(n) in live_nodes]
    del graph.node[:]
    graph.node.extend(nodes)
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)


def surgery(model: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None, *,
            input_name: str = MLPERF_INPUT, output_name: str = MLPERF_OUTPUT) -> tuple[Any, SurgeryInfo]:
    """The MLPerf-interface model with the top-1 label computed inside the network.

    ``output_name`` must be produced by an ArgMax over the logits (through Cast/Identity
    nodes). The result has one output, :data:`TOP1_OUTPUT` (int32 [N], labels 0..999): the
    softmax and every other output are dropped, a 1001-class classifier loses its background
    row (weights sliced when it is a Gemm or MatMul+Add, else a Slice node on the logits), and
    ``ArgMax → Cast(int32)`` replaces the int64 ArgMax. Models below opset 13 are converted to
    13 first (per-channel Q/DQ needs it). The result passes ``onnx.checker`` (full check) and
    loads and runs in ONNX Runtime; it is written to ``out_path`` when given.

    Raises :class:`ModelError` naming the model and what is missing.
    """
    import onnx
    from onnx import TensorProto, helper

    path = Path(model)
    check_model(path, input_name, output_name)
    proto = onnx.load(str(path))
    opset_from = _default_opset(proto)
    if opset_from < _OPSET:
        try:
            proto = onnx.version_converter.convert_version(proto, _OPSET)
        except Exception as exc:  # noqa: BLE001 - the converter raises many types
            raise ModelError(f"{path}: cannot convert opset {opset_from} to {_OPSET} for "
                             f"per-channel quantization: {exc}") from None
    graph = proto.graph
    producers = _producers(graph)

    node = producers.get(output_name)
    while node is not None and node.op_type in ("Cast", "Identity"):
        node = producers.get(node.input[0])
    if node is None or node.op_type != "ArgMax":
        what = "a graph input" if node is None else f"a {node.op_type} node"
        raise ModelError(f"{path}: output {output_name!r} comes from {what}, not from an ArgMax "
                         "over the logits; the INT8 surgery needs the MLPerf interface "
                         "(ArgMax:0 = ArgMax of the classifier's logits) — pass "
                         "--output-name naming the model's ArgMax output")
    axis = int(_attr(node, "axis", 0))
    if axis not in (1, -1):
        raise ModelError(f"{path}: the ArgMax behind {output_name!r} runs over axis {axis}; "
                         "expected the class axis 1 of [N, classes] logits")
    logits = node.input[0]

    how, classifier_nodes, width = _slice_classifier(graph, logits, path)
    if not how:
        width = width or _logits_width(proto, logits) or 0
        if width == 1001:
            sliced = logits + "/no_background"
            starts = helper.make_tensor(sliced + "/starts", TensorProto.INT64, [1], [1])
            ends = helper.make_tensor(sliced + "/ends", TensorProto.INT64, [1], [2**62])
            axes = helper.make_tensor(sliced + "/axes", TensorProto.INT64, [1], [1])
            graph.initializer.extend([starts, ends, axes])
            graph.node.append(helper.make_node("Slice", [logits, starts.name, ends.name, axes.name],
                                               [sliced], name=sliced))
            logits, how = sliced, "slice"
        elif width == 1000:
            how = "none"
        else:
            raise ModelError(f"{path}: the logits behind {output_name!r} have "
                             f"{width or 'an unknown number of'} classes; expected 1001 (MLPerf: "
                             "class 0 = background) or 1000")
    background = how != "none"

    argmax = TOP1_OUTPUT.replace(":0", "") + "/argmax"
    graph.node.append(helper.make_node("ArgMax", [logits], [argmax], name=argmax, axis=1,
                                       keepdims=0))
    graph.node.append(helper.make_node("Cast", [argmax], [TOP1_OUTPUT], name="top1/cast",
                                       to=TensorProto.INT32))
    removed = tuple(o.name for o in graph.output)
    batch = next(v for v in graph.input if v.name == input_name).type.tensor_type.shape.dim[0]
    top1 = helper.make_tensor_value_info(TOP1_OUTPUT, TensorProto.INT32, [None])
    top1.type.tensor_type.shape.dim[0].CopyFrom(batch)
    del graph.output[:]
    graph.output.append(top1)
    _prune(graph, [TOP1_OUTPUT])
    # Graph inputs other than the image that only fed dropped nodes would become dangling.
    keep_inputs = [v for v in graph.input if v.name == input_name
                   or any(v.name in n.input for n in graph.node)]
    del graph.input[:]
    graph.input.extend(keep_inputs)
    proto.producer_name = "fastres.engines.quantize"
    proto.producer_version = str(QUANTIZE_VERSION)

    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: the surgered model fails onnx.checker: {exc}") from None
    blob = proto.SerializeToString()
    sess = _session(blob, threads=1)
    n = _fixed_batch(proto, input_name) or 2
    probe = sess.run([TOP1_OUTPUT], {input_name: np.zeros((n, 3, 224, 224), np.float32)})[0]
    if probe.dtype != np.int32 or probe.shape != (n,):
        raise ModelError(f"{path}: the surgered model answers {probe.dtype}{list(probe.shape)}, "
                         f"expected int32[{n}]; this is a bug in fastres.engines.quantize")
    if out_path is not None:
        _atomic_write(Path(out_path), blob)
    info = SurgeryInfo(background=background, classifier=how,
                       classifier_nodes=tuple(n for n in classifier_nodes if n),
                       opset_from=opset_from, removed_outputs=removed)
    return proto, info


# --------------------------------------------------------------------------------------------
# Calibration input


@dataclass
class Calibration:
    """The calibration images, preprocessed: ``names`` as the list gives them, ``data`` their
    fp32 [N, 3, 224, 224] tensors, ``source`` the list file (for messages) and ``digest`` a
    SHA-256 of the tensors (part of the cache key: a changed image, or changed preprocessing,
    invalidates the INT8 models even when the names stay the same)."""

    names: list[str]
    data: np.ndarray
    source: str
    digest: str = field(default="")

    def __post_init__(self) -> None:
        if len(self.names) == 0:
            raise DataError(f"{self.source}: calibration list is empty; pass MLPerf's "
                            "cal_image_list_option_1.txt (500 images)")
        if self.data.dtype != np.float32 or self.data.ndim != 4 or self.data.shape[1:] != (3, 224, 224):
            raise InvalidArgument(f"calibration data must be float32 [N, 3, 224, 224] (the fp32 "
                                  f"preprocessed format), got {self.data.dtype}"
                                  f"{list(self.data.shape)}")
        if len(self.data) != len(self.names):
            raise InvalidArgument(f"{len(self.names)} calibration names but {len(self.data)} "
                                  "images")
        if not self.digest:
            h = hashlib.sha256()
            for i in range(0, len(self.data), 64):
                h.update(np.ascontiguousarray(self.data[i:i + 64]).tobytes())
            self.digest = h.hexdigest()

    @classmethod
    def from_store(cls, store: Any, calibration_list: str | os.PathLike[str], *,
                   root: str | os.PathLike[str] | None = None) -> Calibration:
        """The images of ``calibration_list`` (one file name a line) from an fp32 preprocessed
        store, matched by path or file name as :func:`fastres.data.imagenet.calibration_indices`
        does. Images the store lacks (e.g. past ``--count``) are preprocessed from ``root``
        (default: the store's dataset folder) as the reference does."""
        from ..data.imagenet import read_calibration_list
        from ..data.preprocess import preprocess_image

        if getattr(store, "format", "fp32") != "fp32":
            raise InvalidArgument(f"calibration needs the fp32 store, got a {store.format} store")
        names = read_calibration_list(calibration_list)
        by_path: dict[str, int] = {}
        by_name: dict[str, int] = {}
        for i, rel in enumerate(store.files):
            by_path.setdefault(rel, i)
            by_name.setdefault(os.path.basename(rel), i)
        folder = Path(root) if root is not None else Path(store.index.get("root", "."))
        data = np.empty((len(names), 3, 224, 224), np.float32)
        for j, name in enumerate(names):
            i = by_path.get(name, by_name.get(os.path.basename(name)))
            if i is not None:
                data[j] = store.data[i]
                continue
            image = folder / name
            if not image.is_file():
                raise DataError(f"{calibration_list}: calibration image {name!r} is neither in "
                                f"the dataset nor at {image}; use the calibration list that "
                                "matches this dataset (or put the image there)")
            data[j] = preprocess_image(image, "fp32")
        return cls(names, data, str(calibration_list))

    @classmethod
    def from_arrays(cls, names: Sequence[str], data: np.ndarray, source: str = "<arrays>") -> Calibration:
        """Calibration images already preprocessed by the caller."""
        return cls(list(names), np.asarray(data), source)


class _ChunkReader:
    """ONNX Runtime's CalibrationDataReader protocol over a slice of the calibration data."""

    def __init__(self, data: np.ndarray, input_name: str, start: int, stop: int,
                 batch: int) -> None:
        self._batches = iter(range(start, stop, batch))
        self._data, self._name, self._stop, self._batch = data, input_name, stop, batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        s = next(self._batches, None)
        if s is None:
            return None
        return {self._name: np.ascontiguousarray(self._data[s:min(s + self._batch, self._stop)])}

    def __len__(self) -> int:  # pragma: no cover - used by ORT's strided mode only
        return self._stop


# --------------------------------------------------------------------------------------------
# Settings and cache


def _check_settings(method: str, percentile: float) -> dict[str, Any]:
    if method not in METHODS:
        raise InvalidArgument(f"calibration method {method!r}: choose one of {', '.join(METHODS)}")
    settings: dict[str, Any] = {"method": method}
    if method == "percentile":
        if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
                or not 50 < percentile <= 100:
            raise InvalidArgument(f"percentile must be in (50, 100], got {percentile!r}")
        settings["percentile"] = float(percentile)
    return settings




def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise builders of one cache folder (two harnesses started at once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(folder.parent / f".{folder.name}.lock", "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class Int8Models:
    """The cached models of one (model, calibration, settings): ``fp32`` (surgered, same
    top-1 as the original), ``cpu`` and ``tensorrt`` (the two Q/DQ forms), ``ranges`` (the
    calibrated activation ranges both forms were made from, ONNX Runtime's calibration cache
    JSON), ``meta`` (key, settings, timings). ``reused`` is True when the cache served them."""

    folder: Path
    fp32: Path
    cpu: Path
    tensorrt: Path
    ranges: Path
    meta: dict[str, Any]
    reused: bool

    def path(self, form: str) -> Path:
        """The model of ``form`` (``fp32``, ``cpu`` or ``tensorrt``)."""
        if form not in _MODEL_FILES:
            raise InvalidArgument(f"unknown model form {form!r}; choose one of "
                                  f"{', '.join(_MODEL_FILES)}")
        return self.folder / _MODEL_FILES[form]


def _key_fields(model_sha: str, calibration: Calibration, settings: dict[str, Any],
                input_name: str, output_name: str) -> dict[str, Any]:
    import onnxruntime

    return {"version": QUANTIZE_VERSION, "onnxruntime": onnxruntime.__version__,
            "model_sha256": model_sha, "input_name": input_name, "output_name": output_name,
            "calibration_names": calibration.names, "calibration_digest": calibration.digest,
            "settings": settings}


def _explain(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("model_sha256") != new["model_sha256"]:
        return "the model changed (SHA-256 differs)"
    if old.get("calibration_names") != new["calibration_names"]:
        return (f"the calibration list changed ({len(old.get('calibration_names') or [])} → "
                f"{len(new['calibration_names'])} images, or other names)")
    if old.get("calibration_digest") != new["calibration_digest"]:
        return "the calibration images changed (same names, different preprocessed data)"
    if old.get("settings") != new["settings"]:
        return f"the settings changed ({old.get('settings')} → {new['settings']})"
    for k in ("version", "onnxruntime", "input_name", "output_name"):
        if old.get(k) != new[k]:
            return f"{k} changed ({old.get(k)} → {new[k]})"
    return "cache key mismatch"


def int8_dir(model: str | os.PathLike[str], cache_dir: str | os.PathLike[str], *,
             method: str = DEFAULT_METHOD, percentile: float = DEFAULT_PERCENTILE) -> Path:
    """The cache folder :func:`build_int8` uses for this model path and settings."""
    settings = _check_settings(method, percentile)
    path = Path(model).resolve()
    ident = _digest({"model": str(path), "settings": settings})[:16]
    return Path(cache_dir).expanduser() / "int8" / f"{path.stem}-{method}-{ident}"


def _cache_problem(folder: Path, key: str, fields: dict[str, Any]) -> str | None:
    """Why ``folder`` cannot be reused (None when it can; "" when there is nothing there)."""
    meta_path = folder / _META_NAME
    if not meta_path.is_file():
        return "" if not folder.exists() else "no meta.json (an interrupted build)"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        return f"meta.json unreadable ({exc})"
    if meta.get("key") != key:
        return _explain(meta.get("fields", {}), fields)
    for name in (*_MODEL_FILES.values(), _RANGES_NAME):
        if not (folder / name).is_file():
            return f"{name} missing"
    for form, sha in meta.get("sha256", {}).items():
        if sha256_file(folder / _MODEL_FILES[form]) != sha:
            return f"{_MODEL_FILES[form]} does not match its SHA-256 (modified or truncated)"
    return None


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(f"fastres: {msg}", file=sys.stderr, flush=True)


def build_int8(model: str | os.PathLike[str], calibration: Calibration,
               cache_dir: str | os.PathLike[str], *, method: str = DEFAULT_METHOD,
               percentile: float = DEFAULT_PERCENTILE, input_name: str = MLPERF_INPUT,
               output_name: str = MLPERF_OUTPUT, quiet: bool = False) -> Int8Models:
    """The surgered fp32 model and both INT8 forms of ``model``, calibrated once on
    ``calibration`` with ``method`` and cached under ``cache_dir/int8``.

    Reused when the model (SHA-256), the calibration (names and image digest), the settings,
    :data:`QUANTIZE_VERSION` and the ONNX Runtime version all match; otherwise rebuilt in place,
    saying why (unless ``quiet``). ``percentile`` applies to ``method="percentile"`` only.
    """
    settings = _check_settings(method, percentile)
    if not isinstance(calibration, Calibration):
        raise InvalidArgument(f"calibration must be a fastres.engines.quantize.Calibration, got "
                              f"{type(calibration).__name__}; make one with "
                              "Calibration.from_store(store, 'cal_image_list_option_1.txt')")
    model_path = Path(model)
    check_model(model_path, input_name, output_name)
    fields = _key_fields(sha256_file(model_path), calibration, settings, input_name, output_name)
    key = _digest(fields)
    folder = int8_dir(model_path, cache_dir, method=method, percentile=percentile)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the INT8 cache folder {folder.parent}: "
                        f"{exc.strerror or exc}; pass a writable --cache-dir") from None
    with _locked(folder):
        why = _cache_problem(folder, key, fields)
        if why is None:
            return _loaded(folder, reused=True)
        if why:
            _say(quiet, f"INT8 models in {folder} are stale: {why}; rebuilding them")
        else:
            _say(quiet, f"building the INT8 models of {model_path.name} ({method} calibration "
                        f"on {len(calibration.names)} images of {calibration.source}); "
                        "this happens once")
        _build(folder, model_path, calibration, settings, fields, key, input_name, output_name,
               quiet)
    return _loaded(folder, reused=False)


def _loaded(folder: Path, reused: bool) -> Int8Models:
    meta = json.loads((folder / _META_NAME).read_text())
    return Int8Models(folder=folder, fp32=folder / _MODEL_FILES["fp32"],
                      cpu=folder / _MODEL_FILES["cpu"], tensorrt=folder / _MODEL_FILES["tensorrt"],
                      ranges=folder / _RANGES_NAME, meta=meta, reused=reused)


@contextlib.contextmanager
def _ort_quiet() -> Iterator[None]:
    """ONNX Runtime's quantization tools print progress to stdout and warn through logging;
    fastres shows its own progress instead."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _calibrate(prepared: Path, calibration: Calibration, settings: dict[str, Any],
               input_name: str, work: Path, quiet: bool) -> Any:
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[settings["method"]]
    # One range set for both forms, so the ranges stay asymmetric (the CPU form's unsigned
    # activations need the true minimum); the TensorRT form symmetrises them when quantizing.
    options: dict[str, Any] = {"symmetric": False}
    if "percentile" in settings:
        options["percentile"] = settings["percentile"]
    with _ort_quiet():
        calibrator = create_calibrator(prepared, list(_OP_TYPES),
                                       augmented_model_path=str(work / "augmented.onnx"),
                                       calibrate_method=method, extra_options=options)
    n = len(calibration.data)
    import onnx

    fixed = _fixed_batch(onnx.load(str(prepared), load_external_data=False), input_name)
    batch = fixed or _CALIBRATION_CHUNK
    if fixed is not None and (fixed > _CALIBRATION_CHUNK or n % fixed):
        raise InvalidArgument(f"the model takes batches of exactly {batch} images; the "
                              f"{n} calibration images of {calibration.source} must be a "
                              f"multiple of it, at most {_CALIBRATION_CHUNK} a run")
    with Progress(n, f"calibrating INT8 ({settings['method']})", quiet=quiet, unit="img") as bar:
        for start in range(0, n, _CALIBRATION_CHUNK):
            stop = min(start + _CALIBRATION_CHUNK, n)
            with _ort_quiet():
                calibrator.collect_data(_ChunkReader(calibration.data, input_name, start, stop,
                                                     batch))
            bar.update(stop - start)
    with _ort_quiet():
        return calibrator.compute_data()


def _quantize(prepared: Path, ranges: Path, out: Path, form: str, method: Any,
              exclude: Sequence[str]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    common = {"WeightSymmetric": True, "OpTypesToExcludeOutputQuantization": []}
    if form == "cpu":
        activation, extra = QuantType.QUInt8, {**common, "ActivationSymmetric": False}
    else:
        # TensorRT: zero point 0 everywhere, and float biases (TensorRT has no INT32 DQ).
        activation, extra = QuantType.QInt8, {**common, "ActivationSymmetric": True,
                                              "QuantizeBias": False}
    with _ort_quiet():
        quantize_static(str(prepared), str(out), calibration_data_reader=None,
                        quant_format=QuantFormat.QDQ, op_types_to_quantize=list(_OP_TYPES),
                        per_channel=True, reduce_range=False, activation_type=activation,
                        weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                        calibrate_method=method, extra_options=extra,
                        calibration_cache_path=str(ranges))


def _build(folder: Path, model_path: Path, calibration: Calibration, settings: dict[str, Any],
           fields: dict[str, Any], key: str, input_name: str, output_name: str,
           quiet: bool) -> None:
    import onnx
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        _, info = surgery(model_path, tmp / _MODEL_FILES["fp32"], input_name=input_name,
                          output_name=output_name)
        timings["surgery_s"] = round(time.monotonic() - t0, 2)
        prepared = tmp / "prepared.onnx"
        with _ort_quiet():
            quant_pre_process(str(tmp / _MODEL_FILES["fp32"]), str(prepared))
        t1 = time.monotonic()
        tensors = _calibrate(prepared, calibration, settings, input_name, tmp, quiet)
        timings["calibration_s"] = round(time.monotonic() - t1, 2)
        save_tensors_data(tensors, tmp / _RANGES_NAME)
        # The classifier (names survive pre-processing) stays fp32: see the module docstring.
        names = {n.name for n in onnx.load(str(prepared), load_external_data=False).graph.node}
        exclude = [n for n in info.classifier_nodes if n in names]
        for form in FORMS:
            t2 = time.monotonic()
            _say(quiet, f"writing the INT8 {form} form")
            _quantize(prepared, tmp / _RANGES_NAME, tmp / _MODEL_FILES[form],
                      form, tensors.calibration_method, exclude)
            _check_form(tmp / _MODEL_FILES[form], form, input_name)
            timings[f"{form}_s"] = round(time.monotonic() - t2, 2)
        for name in ("prepared.onnx", "augmented.onnx"):
            with contextlib.suppress(FileNotFoundError):
                (tmp / name).unlink()
        for extra in tmp.glob("*.data"):
            extra.unlink()
        timings["total_s"] = round(time.monotonic() - t0, 2)
        meta = {
            "key": key, "fields": fields, "model": str(model_path.resolve()),
            "output": TOP1_OUTPUT, "surgery": {
                "background_removed": info.background, "classifier": info.classifier,
                "classifier_nodes": list(info.classifier_nodes), "opset_from": info.opset_from,
                "removed_outputs": list(info.removed_outputs)},
            "classifier_fp32": exclude, "timings": timings, "created": time.time(),
            "sha256": {form: sha256_file(tmp / f) for form, f in _MODEL_FILES.items()},
        }
        (tmp / _META_NAME).write_text(json.dumps(meta, indent=1) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _say(quiet, f"INT8 models written to {folder} in {timings['total_s']:.1f}s")


def _check_form(path: Path, form: str, input_name: str) -> None:
    """A written form loads, runs, and answers int32 labels."""
    import onnx

    n = _fixed_batch(onnx.load(str(path), load_external_data=False), input_name) or 1
    sess = _session(str(path), threads=1)
    out = sess.run([TOP1_OUTPUT], {input_name: np.zeros((n, 3, 224, 224), np.float32)})[0]
    if out.dtype != np.int32 or out.shape != (n,):
        raise ModelError(f"{path}: the INT8 {form} form answers {out.dtype}{list(out.shape)}; "
                         "this is a bug in fastres.engines.quantize")


# --------------------------------------------------------------------------------------------
# Inspection and accuracy


def _session(model: bytes | str, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def qdq_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The Q/DQ structure of a model: activation and weight zero-point types, whether every
    activation zero point is 0, whether weights are per-channel and symmetric, how many
    Conv/Gemm weights are quantized. Used by the tests and the accuracy report."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    act_types: set[str] = set()
    act_zero = True
    w_types: set[str] = set()
    w_per_channel = True
    w_symmetric = True
    weights = 0
    bias_dq_int32 = 0
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear":
            zp = inits.get(node.input[2]) if len(node.input) > 2 else None
            if zp is not None:
                act_types.add(zp.dtype.name)
                act_zero &= bool(np.all(zp == 0))
        elif node.op_type == "DequantizeLinear" and node.input[0] in inits:
            x = inits[node.input[0]]
            if x.dtype == np.int32:
                bias_dq_int32 += 1
                continue
            if x.ndim < 2:
                continue
            weights += 1
            scale = inits[node.input[1]]
            zp = inits.get(node.input[2]) if len(node.input) > 2 else None
            w_types.add(x.dtype.name)
            w_per_channel &= scale.size == x.shape[int(_attr(node, "axis", 1))] and scale.size > 1
            w_symmetric &= zp is None or bool(np.all(zp == 0))
    return {"activation_types": sorted(act_types), "activation_zero_points_zero": act_zero,
            "weight_types": sorted(w_types), "weights_per_channel": w_per_channel,
            "weights_symmetric": w_symmetric, "quantized_weights": weights,
            "int32_bias_dq": bias_dq_int32}


def predict(model: str | os.PathLike[str], data: np.ndarray, *, output_name: str = TOP1_OUTPUT,
            input_name: str = MLPERF_INPUT, offset: int = 0, batch: int = 16,
            desc: str | None = None, quiet: bool = True) -> np.ndarray:
    """Top-1 labels of ``model`` on ``data`` ([N, 3, 224, 224] fp32), as int64. ``offset`` is
    added to the model's output (−1 for the MLPerf model's ``ArgMax:0``)."""
    sess = _session(str(model), threads=None)
    out = np.empty(len(data), np.int64)
    with Progress(len(data), desc or f"running {Path(model).name}", quiet=quiet, unit="img") as bar:
        for s in range(0, len(data), batch):
            e = min(s + batch, len(data))
            (y,) = sess.run([output_name], {input_name: np.ascontiguousarray(data[s:e])})
            y = np.asarray(y)
            out[s:e] = (y.argmax(axis=1) if y.ndim == 2 else y.reshape(-1)) + offset
            bar.update(e - s)
    return out


@dataclass(frozen=True)
class AccuracyReport:
    """Top-1 of the original model and of each form on the same samples, and MLPerf's rule."""

    samples: int
    top1: dict[str, float]
    agreement: dict[str, float]

    def passes(self, form: str) -> bool:
        """MLPerf's rule: the form's top-1 ≥ 99% of the original fp32 model's."""
        return self.top1[form] >= ACCURACY_RULE * self.top1["original"]

    def format(self) -> str:
        ref = self.top1["original"]
        lines = [f"top-1 on {self.samples} samples (MLPerf rule: INT8 >= "
                 f"{ACCURACY_RULE:.0%} of fp32 = {ACCURACY_RULE * ref:.3%})"]
        for form, acc in self.top1.items():
            rule = "" if form in ("original", "fp32") else \
                ("  PASS" if self.passes(form) else "  FAIL")
            lines.append(f"  {form:<10} {acc:8.3%}  ({acc / ref if ref else float('nan'):7.2%} of "
                         f"fp32; same answer as fp32 on {self.agreement[form]:.2%}){rule}")
        return "\n".join(lines)


def check_accuracy(models: Int8Models, original: str | os.PathLike[str], data: np.ndarray,
                   labels: np.ndarray, *, forms: Sequence[str] = ("fp32", "cpu", "tensorrt"),
                   output_name: str = MLPERF_OUTPUT, input_name: str = MLPERF_INPUT,
                   quiet: bool = True) -> AccuracyReport:
    """Top-1 of the original model and of ``forms`` on ``data`` against ``labels`` (0..999),
    and how often each form answers as the original does."""
    ref = predict(original, data, output_name=output_name, input_name=input_name, offset=-1,
                  desc="fp32 original", quiet=quiet)
    labels = np.asarray(labels).reshape(-1)
    top1 = {"original": float(np.mean(ref == labels))}
    agreement = {"original": 1.0}
    for form in forms:
        pred = predict(models.path(form), data, input_name=input_name, desc=form, quiet=quiet)
        top1[form] = float(np.mean(pred == labels))
        agreement[form] = float(np.mean(pred == ref))
    return AccuracyReport(len(labels), top1, agreement)


def main(argv: list[str] | None = None) -> int:
    """``python -m fastres.engines.quantize``: build (or fetch) the INT8 models of the embedded
    default and print top-1 of every form against the fp32 original, with MLPerf's 99% rule."""
    import argparse

    from ..data.imagenet import ImagenetDataset
    from ..data.store import build_store
    from ..data.synthetic import make_default

    p = argparse.ArgumentParser(prog="python -m fastres.engines.quantize", description=main.__doc__)
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("FASTRES_CACHE", Path.home() / ".cache" / "fastres")))
    p.add_argument("--variant", default="resnet50", choices=("resnet50", "tiny"))
    p.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS)
    p.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE)
    p.add_argument("--forms", default="fp32,cpu,tensorrt",
                   help="forms to check (the TensorRT form runs slowly on a CPU)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    default = make_default(args.cache_dir / "synthetic", variant=args.variant, quiet=args.quiet)
    store = build_store(ImagenetDataset(default.dataset_dir, default.val_map), "fp32",
                        args.cache_dir, quiet=args.quiet)
    cal = Calibration.from_store(store, default.cal_list)
    t0 = time.monotonic()
    models = build_int8(default.model_path, cal, args.cache_dir, method=args.method,
                        percentile=args.percentile, quiet=args.quiet)
    print(f"INT8 models ({'reused' if models.reused else 'built'} in "
          f"{time.monotonic() - t0:.1f}s): {models.folder}")
    for form in FORMS:
        print(f"  {form}: {qdq_summary(models.path(form))}")
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    report = check_accuracy(models, default.model_path, np.asarray(store.data), store.labels,
                            forms=forms, quiet=args.quiet)
    print(report.format())
    return 0 if all(report.passes(f) for f in forms if f != "fp32") else 1


__all__ = [
    "TOP1_OUTPUT",
    "METHODS",
    "FORMS",
    "QUANTIZE_VERSION",
    "ACCURACY_RULE",
    "SurgeryInfo",
    "Calibration",
    "Int8Models",
    "AccuracyReport",
    "surgery",
    "build_int8",
    "int8_dir",
    "qdq_summary",
    "predict",
    "check_accuracy",
    "main",
]


if __name__ == "__main__":
    sys.exit(main())

"""A PyTorch ResNet50 engine: the GPU engine that needs no TensorRT.

Two ways to get the network, both with MLPerf's interface (float32 NCHW in, 1001 classes with
the background class 0, so a label is ``argmax - 1``):

- :func:`from_onnx`: an ONNX model (the MLPerf ``resnet50_v1.onnx``, or fastres's synthetic
  default) run op by op with PyTorch's functional operators, the weights taken from the model's
  initializers. :class:`OnnxModule` supports the operators these ResNet50 graphs use
  (:data:`SUPPORTED_OPS`) and names any other.
- :class:`ResNet50`: a torchvision-style ResNet50 v1.5 (stride on the 3x3 conv) with random
  weights, for measuring the pipeline when no model file matters.

:class:`TorchEngine` is the callable a :class:`fastres.PythonEngine` runs. On the CPU it
receives NumPy views; on a CUDA device (``PythonEngine(..., device="cuda")``) it receives the
executor's device buffers as ``__cuda_array_interface__`` views and the slot's stream, wraps
them without a copy (``torch.as_tensor``), runs the network on that stream
(``torch.cuda.ExternalStream``) and writes the labels there, without waiting: the executor
copies them back after the stream's work and waits itself. :class:`TorchBackend` is the same
network as a backend of the reference SUT (``backend_pytorch_native.py``'s way: a host batch
copied to the device, one synchronous call per query), so the two SUTs can be compared with one
engine.

PyTorch is optional and imported lazily: without it every entry point raises
:class:`fastres.errors.Unavailable` naming what to install. The CUDA path of this module has
been written against PyTorch's documented API but has not run in this repository's CI, which
has no GPU (see the README).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EngineError, InvalidArgument, ModelError, Unavailable
from ..model import MLPERF_INPUT, MLPERF_OUTPUT

__all__ = ["import_torch", "OnnxModule", "ResNet50", "from_onnx", "TorchEngine", "TorchBackend",
           "SUPPORTED_OPS"]

#: MLPerf's ResNet50 has 1001 classes, 0 the background: label = argmax - 1.
BACKGROUND_OFFSET = 1


def import_torch() -> Any:
    """The ``torch`` module, or :class:`Unavailable` saying how to get it."""
    try:
        import torch
    except ImportError as exc:
        raise Unavailable("the torch engine needs PyTorch: pip install torch (a CUDA build for "
                          f"GPUs, see pytorch.org); import failed: {exc}") from None
    return torch


def _device(torch: Any, device: str | None) -> Any:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Unavailable(f"device={device!r}: PyTorch sees no CUDA device (torch "
                          f"{torch.__version__}, built for CUDA {torch.version.cuda}); use "
                          "device='cpu' or a machine with an NVIDIA GPU")
    if dev.type not in ("cpu", "cuda"):
        raise InvalidArgument(f"device={device!r}: the torch engine runs on 'cpu' or 'cuda'")
    return dev


# ---------------------------------------------------------------------------- ONNX graph
def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads_2d(attrs: dict[str, Any]) -> tuple[int, int, int, int]:
    """ONNX pads [top, left, bottom, right] (x1_begin, x2_begin, x1_end, x2_end)."""
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ModelError(f"auto_pad={attrs['auto_pad']!r} is not supported; export with "
                         "explicit pads")
    return pads[0], pads[1], pads[2], pads[3]


def _op_conv(F: Any, torch: Any, x: Any, w: Any, b: Any = None, **a: Any) -> Any:
    top, left, bottom, right = _pads_2d(a)
    stride = tuple(a.get("strides", [1, 1]))
    dilation = tuple(a.get("dilations", [1, 1]))
    if top == bottom and left == right:
        return F.conv2d(x, w, b, stride, (top, left), dilation, a.get("group", 1))
    x = F.pad(x, (left, right, top, bottom))
    return F.conv2d(x, w, b, stride, 0, dilation, a.get("group", 1))


def _op_pool(kind: str) -> Callable[..., Any]:
    def run(F: Any, torch: Any, x: Any, **a: Any) -> Any:
        top, left, bottom, right = _pads_2d(a)
        k = tuple(a["kernel_shape"])
        stride = tuple(a.get("strides", [1, 1]))
        ceil = bool(a.get("ceil_mode", 0))
        symmetric = top == bottom and left == right
        if kind == "max":
            if not symmetric:
                x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
                top = left = 0
            return F.max_pool2d(x, k, stride, (top, left), ceil_mode=ceil)
        include_pad = bool(a.get("count_include_pad", 0))
        if not symmetric:
            x = F.pad(x, (left, right, top, bottom))
            top = left = 0
            include_pad = True
        return F.avg_pool2d(x, k, stride, (top, left), ceil_mode=ceil, count_include_pad=include_pad)
    return run


def _op_gemm(F: Any, torch: Any, a_: Any, b_: Any, c: Any = None, **a: Any) -> Any:
    if a.get("transA", 0):
        a_ = a_.t()
    if a.get("transB", 0):
        b_ = b_.t()
    y = (a_ @ b_) * a.get("alpha", 1.0)
    if c is not None:
        y = y + c * a.get("beta", 1.0)
    return y


def _op_reduce_mean(F: Any, torch: Any, x: Any, axes: Any = None, **a: Any) -> Any:
    if axes is None:
        axes = a.get("axes")
    dims = [int(d) for d in (axes.tolist() if hasattr(axes, "tolist") else axes)] if axes is not None \
        else list(range(x.dim()))
    return x.mean(dim=dims, keepdim=bool(a.get("keepdims", 1)))


def _op_squeeze(F: Any, torch: Any, x: Any, axes: Any = None, **a: Any) -> Any:
    axes = a.get("axes") if axes is None else axes.tolist()
    if axes is None:
        return x.squeeze()
    for d in sorted((int(d) % x.dim() for d in axes), reverse=True):
        x = x.squeeze(d)
    return x


def _op_unsqueeze(F: Any, torch: Any, x: Any, axes: Any = None, **a: Any) -> Any:
    axes = a.get("axes") if axes is None else axes.tolist()
    for d in sorted(int(d) for d in axes):
        x = x.unsqueeze(d if d >= 0 else d + x.dim() + 1)
    return x


def _op_reshape(F: Any, torch: Any, x: Any, shape: Any, **a: Any) -> Any:
    target = [int(v) for v in shape.tolist()]
    target = [x.shape[i] if v == 0 and not a.get("allowzero", 0) else v for i, v in enumerate(target)]
    return x.reshape(target)


def _op_argmax(F: Any, torch: Any, x: Any, **a: Any) -> Any:
    if a.get("select_last_index", 0):
        raise ModelError("ArgMax select_last_index=1 is not supported")
    return torch.argmax(x, dim=a.get("axis", 0), keepdim=bool(a.get("keepdims", 1)))


def _op_batchnorm(F: Any, torch: Any, x: Any, scale: Any, bias: Any, mean: Any, var: Any, **a: Any) -> Any:
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, a.get("epsilon", 1e-5))


def _op_cast(F: Any, torch: Any, x: Any, **a: Any) -> Any:
    from onnx import TensorProto

    to = {TensorProto.FLOAT: torch.float32, TensorProto.FLOAT16: torch.float16,
          TensorProto.INT64: torch.int64, TensorProto.INT32: torch.int32,
          TensorProto.INT8: torch.int8, TensorProto.UINT8: torch.uint8,
          TensorProto.BOOL: torch.bool}.get(a["to"])
    if to is None:
        raise ModelError(f"Cast to ONNX type {a['to']} is not supported")
    return x.to(to)


def _op_pad(F: Any, torch: Any, x: Any, pads: Any = None, value: Any = None, *rest: Any, **a: Any) -> Any:
    p = [int(v) for v in (pads.tolist() if pads is not None else a["pads"])]
    n = len(p) // 2
    torch_pads: list[int] = []
    for d in reversed(range(n)):  # torch: last dim first, (begin, end)
        torch_pads += [p[d], p[d + n]]
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    fill = float(value.item()) if value is not None else float(a.get("value", 0.0))
    return F.pad(x, torch_pads, mode=mode, value=fill) if mode == "constant" else F.pad(x, torch_pads, mode=mode)


_OPS: dict[str, Callable[..., Any]] = {
    "Conv": _op_conv,
    "Relu": lambda F, torch, x, **a: F.relu(x),
    "MaxPool": _op_pool("max"),
    "AveragePool": _op_pool("avg"),
    "GlobalAveragePool": lambda F, torch, x, **a: x.mean(dim=(2, 3), keepdim=True),
    "ReduceMean": _op_reduce_mean,
    "BatchNormalization": _op_batchnorm,
    "Add": lambda F, torch, a_, b_, **a: a_ + b_,
    "Sub": lambda F, torch, a_, b_, **a: a_ - b_,
    "Mul": lambda F, torch, a_, b_, **a: a_ * b_,
    "Div": lambda F, torch, a_, b_, **a: a_ / b_,
    "MatMul": lambda F, torch, a_, b_, **a: a_ @ b_,
    "Gemm": _op_gemm,
    "Flatten": lambda F, torch, x, **a: x.flatten(a.get("axis", 1) % max(x.dim(), 1)) if a.get("axis", 1) else x.reshape(1, -1),
    "Reshape": _op_reshape,
    "Squeeze": _op_squeeze,
    "Unsqueeze": _op_unsqueeze,
    "Transpose": lambda F, torch, x, **a: x.permute(*a["perm"]) if "perm" in a else x.permute(*reversed(range(x.dim()))),
    "Softmax": lambda F, torch, x, **a: torch.softmax(x, dim=a.get("axis", -1)),
    "ArgMax": _op_argmax,
    "Cast": _op_cast,
    "Identity": lambda F, torch, x, **a: x,
    "Pad": _op_pad,
    "Concat": lambda F, torch, *xs, **a: torch.cat(xs, dim=a["axis"]),
}
#: The ONNX operators :class:`OnnxModule` runs.
SUPPORTED_OPS = tuple(sorted(_OPS))


def _module_base() -> Any:
    return import_torch().nn.Module


class OnnxModule:
    """Runs an ONNX graph from its input to one output with PyTorch operators. The float
    initializers become buffers (so ``.to(device, dtype)`` moves them); integer initializers
    (shapes, axes) stay constants. Nodes not needed for ``output_name`` are dropped."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # A torch.nn.Module subclass made on first use, so importing this module needs no torch.
        impl = _onnx_module_class()
        return impl(*args, **kwargs)


_ONNX_MODULE_CLASS: Any = None


def _onnx_module_class() -> Any:
    global _ONNX_MODULE_CLASS
    if _ONNX_MODULE_CLASS is not None:
        return _ONNX_MODULE_CLASS
    torch = import_torch()
    F = torch.nn.functional

    class _OnnxModule(torch.nn.Module):
        def __init__(self, model: Any, input_name: str = MLPERF_INPUT,
                     output_name: str = MLPERF_OUTPUT) -> None:
            super().__init__()
            from onnx import numpy_helper

            graph = model.graph
            produced = {o: n for n in graph.node for o in n.output}
            inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
            for n in graph.node:  # Constant nodes are initializers in disguise
                if n.op_type == "Constant":
                    value = _attrs(n).get("value")
                    if value is not None:
                        inits[n.output[0]] = numpy_helper.to_array(value)
            if output_name not in produced and output_name not in inits:
                outputs = [o.name for o in graph.output]
                raise ModelError(f"the model has no output {output_name!r} (it has {outputs}); "
                                 "pass output_name=")
            if input_name not in {i.name for i in graph.input}:
                raise ModelError(f"the model has no input {input_name!r} (it has "
                                 f"{[i.name for i in graph.input if i.name not in inits]}); "
                                 "pass input_name=")
            # The nodes the output needs, in the graph's (topological) order.
            needed: set[str] = set()
            stack = [output_name]
            while stack:
                name = stack.pop()
                node = produced.get(name)
                if node is None or node.name in needed or node.op_type == "Constant":
                    continue
                needed.add(node.name or node.output[0])
                stack.extend(i for i in node.input if i)
            self._steps: list[tuple[Callable[..., Any], list[str], str, dict[str, Any]]] = []
            self._buffer_of: dict[str, str] = {}
            self._consts: dict[str, Any] = {}
            unsupported: set[str] = set()
            for node in graph.node:
                if (node.name or node.output[0]) not in needed:
                    continue
                op = _OPS.get(node.op_type)
                if op is None:
                    unsupported.add(node.op_type)
                    continue
                for i in node.input:
                    if i in inits and i not in self._buffer_of and i not in self._consts:
                        arr = inits[i]
                        if arr.dtype.kind == "f":
                            key = f"w{len(self._buffer_of)}"
                            self.register_buffer(key, torch.from_numpy(np.array(arr, copy=True)))
                            self._buffer_of[i] = key
                        else:
                            self._consts[i] = torch.from_numpy(np.array(arr, copy=True))
                self._steps.append((op, list(node.input), node.output[0], _attrs(node)))
            if unsupported:
                raise ModelError(f"the torch engine cannot run ONNX operator(s) "
                                 f"{', '.join(sorted(unsupported))}; it supports "
                                 f"{', '.join(SUPPORTED_OPS)}")
            self.input_name = input_name
            self.output_name = output_name

        def forward(self, x: Any) -> Any:
            env: dict[str, Any] = {self.input_name: x}
            for name, key in self._buffer_of.items():
                env[name] = getattr(self, key)
            env.update(self._consts)
            for op, inputs, output, attrs in self._steps:
                args = [env[i] if i else None for i in inputs]
                env[output] = op(F, torch, *args, **attrs)
            return env[self.output_name]

    _ONNX_MODULE_CLASS = _OnnxModule
    return _OnnxModule


def from_onnx(model_path: str | os.PathLike[str], *, input_name: str = MLPERF_INPUT,
              output_name: str = MLPERF_OUTPUT) -> Any:
    """An :class:`OnnxModule` for the model file (a ``torch.nn.Module``, on the CPU, eval mode)."""
    import onnx

    path = Path(model_path).expanduser()
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist; pass the MLPerf ResNet50 "
                         "ONNX model (resnet50_v1.onnx)")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ModelError(f"{str(path)!r} is not a readable ONNX model: {exc}") from exc
    return OnnxModule(model, input_name, output_name).eval()


# ---------------------------------------------------------------------------- ResNet50
def ResNet50(num_classes: int = 1001, seed: int = 0) -> Any:  # noqa: N802 - a class in spirit
    """A torchvision-style ResNet50 v1.5 (bottlenecks with the stride on the 3x3 conv, batch
    norm, projection shortcuts) with random weights drawn from ``seed``; 1001 classes as MLPerf's
    model. Returns a ``torch.nn.Module`` in eval mode taking float32 NCHW [N, 3, 224, 224]."""
    torch = import_torch()
    nn = torch.nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int) -> None:
            super().__init__()
            cout = width * 4
            self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                nn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            r = torch.relu(self.bn1(self.conv1(x)))
            r = torch.relu(self.bn2(self.conv2(r)))
            r = self.bn3(self.conv3(r))
            return torch.relu(r + (x if self.downsample is None else self.downsample(x)))

    class _ResNet50(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            layers, cin = [], 64
            for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                stage = []
                for b in range(blocks):
                    stage.append(Bottleneck(cin, width, stride if b == 0 else 1))
                    cin = width * 4
                layers.append(nn.Sequential(*stage))
            self.layer1, self.layer2, self.layer3, self.layer4 = layers
            self.fc = nn.Linear(2048, num_classes)

        def forward(self, x: Any) -> Any:
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(x.mean(dim=(2, 3)), 1))

    gen = torch.Generator().manual_seed(seed)
    net = _ResNet50()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.01, generator=gen)
                m.bias.zero_()
    return net.eval()


# ---------------------------------------------------------------------------- engines
def _labels_from(torch: Any, out: Any, offset: int) -> Any:
    """int32 labels from the network's output: ArgMax (1-D) or logits/probabilities (2-D)."""
    if out.dim() == 2:
        out = out.argmax(dim=1)
    out = out.reshape(-1)
    if offset:
        out = out - offset
    return out.to(torch.int32)


class TorchEngine:
    """The callable for ``fastres.PythonEngine``: ``engine(inputs, labels, indices[, stream])``.

    ``module``: a ``torch.nn.Module`` taking float32 NCHW and giving ArgMax (with the background
    offset) or 2-D scores. ``device``: "cuda[:N]" or "cpu" (default: CUDA when PyTorch sees one).
    ``dtype``: "float16" (default on CUDA, with channels-last memory: what the tensor cores want)
    or "float32". ``offset``: subtracted from the argmax (1: MLPerf's background class).

    On CUDA, slots may call concurrently (each with its own stream): the network is shared,
    which is safe for inference. On the CPU, PyTorch's intra-op threads are shared by the slots;
    ``threads`` sets them (default: all cores).
    """

    def __init__(self, module: Any, *, device: str | None = None, dtype: str | None = None,
                 offset: int = BACKGROUND_OFFSET, max_batch: int = 256,
                 input_shape: Sequence[int] = (3, 224, 224), threads: int | None = None) -> None:
        torch = import_torch()
        self.device = _device(torch, device)
        if dtype is None:
            dtype = "float16" if self.device.type == "cuda" else "float32"
        if dtype not in ("float16", "float32"):
            raise InvalidArgument(f"dtype={dtype!r}: 'float16' or 'float32'")
        if dtype == "float16" and self.device.type != "cuda":
            raise InvalidArgument("dtype='float16' runs on CUDA only; use float32 on the CPU")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidArgument(f"max_batch={max_batch!r}: a positive integer")
        self.dtype = getattr(torch, dtype)
        self.offset = int(offset)
        self.max_batch = max_batch
        self.input_shape = tuple(int(d) for d in input_shape)
        self.channels_last = self.device.type == "cuda" and len(self.input_shape) == 3
        if threads is not None and self.device.type == "cpu":
            torch.set_num_threads(int(threads))
        module = module.to(self.device).eval()
        if self.dtype != torch.float32:
            module = module.to(self.dtype)
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self._torch = torch
        self._lock = threading.Lock()

    # the engine IO the executor needs
    input_dtype = "float32"

    @property
    def device_kind(self) -> str:
        """"cuda" or "cpu": what ``fastres.PythonEngine(..., device=)`` must be given."""
        return self.device.type

    def _run(self, x: Any) -> Any:
        torch = self._torch
        if self.dtype != torch.float32:
            x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return _labels_from(torch, self.module(x), self.offset)

    def __call__(self, inputs: Any, labels: Any, indices: Any, stream: int | None = None) -> None:
        torch = self._torch
        try:
            with torch.inference_mode():
                if stream is None:  # CPU: NumPy views valid for this call
                    # The executor's views are read-only; PyTorch wants writable memory.
                    x = torch.from_numpy(np.array(inputs, copy=True))
                    labels[:] = self._run(x).numpy()
                    return
                ext = torch.cuda.ExternalStream(int(stream), device=self.device)
                with torch.cuda.stream(ext):
                    x = torch.as_tensor(inputs, device=self.device)
                    out = torch.as_tensor(labels, device=self.device)
                    out.copy_(self._run(x), non_blocking=True)
        except Exception as exc:  # torch raises RuntimeError for most things
            raise EngineError(f"the torch engine failed on a batch of {len(indices)}: {exc}") from exc

    def warm_up(self) -> None:
        """Run batch 1 and ``max_batch`` once (cuDNN picks its algorithms, the caching allocator
        grows) so none of it happens inside a timed run."""
        torch = self._torch
        with torch.inference_mode():
            for n in sorted({1, self.max_batch}):
                x = torch.zeros((n, *self.input_shape), dtype=torch.float32, device=self.device)
                self._run(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)


class TorchBackend:
    """The same network as a backend of the reference SUT (``fastres.sut.reference``):
    ``predict(batch)`` copies the host batch to the device, runs it and returns the ArgMax
    (1..1000 with the background class, as the MLPerf model's ``ArgMax:0``) as NumPy, waiting
    for it: what the reference's ``backend_pytorch_native.py`` does per query."""

    def __init__(self, engine: TorchEngine) -> None:
        self.engine = engine
        self.path = Path("<torch>")
        self.input_name = MLPERF_INPUT
        self.output_name = MLPERF_OUTPUT
        self.input_shape = [None, *engine.input_shape]
        self.outputs = [MLPERF_OUTPUT]
        self.providers = [f"torch:{engine.device}"]

    def predict(self, img: np.ndarray) -> list[np.ndarray]:
        torch = self.engine._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(img)).to(self.engine.device)
            labels = self.engine._run(x) + self.engine.offset  # back to ArgMax's 1..1000
            return [labels.to(torch.int64).cpu().numpy()]

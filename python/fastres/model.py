"""Checks a model file against the interface the harnesses expect, before any long work.

The MLPerf ResNet50 ONNX model (``resnet50_v1.onnx``) takes ``input_tensor:0`` float32
[N, 3, 224, 224] and gives ``ArgMax:0`` (int64 [N], class 0 = background) and
``softmax_tensor:0`` [N, 1001]. A model with other names can still be used by naming its input
and output (``--input-name``/``--output-name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError

MLPERF_INPUT = "input_tensor:0"
MLPERF_OUTPUT = "ArgMax:0"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int | str | None, ...]

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype}[{dims}]"


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


def _tensor_info(value_info) -> TensorInfo:
    import onnx

    tt = value_info.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "?"
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorInfo(value_info.name, dtype, tuple(dims))


def inspect_model(path: str | Path) -> ModelInfo:
    """Read a model's graph inputs and outputs (weights are not loaded)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}; pass --model path/to/resnet50_v1.onnx "
                         "(or omit --model to use the embedded synthetic model)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for damaged files
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_tensor_info(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_tensor_info(v) for v in model.graph.output)
    return ModelInfo(path, inputs, outputs)


def check_model(path: str | Path, input_name: str = MLPERF_INPUT,
                output_name: str = MLPERF_OUTPUT, data_format: str = "NCHW") -> ModelInfo:
    """Check that the model has the named input (float32, [N, 3, 224, 224] for NCHW or
    [N, 224, 224, 3] for NHWC) and the named output.

    Raises :class:`ModelError` listing what the model has and how to name the right tensors.
    """
    info = inspect_model(path)
    by_name_in = {t.name: t for t in info.inputs}
    by_name_out = {t.name: t for t in info.outputs}
    has = ("it has inputs: " + ", ".join(map(str, info.inputs)) +
           "; outputs: " + ", ".join(map(str, info.outputs)))
    if input_name not in by_name_in:
        raise ModelError(f"{info.path}: no input named {input_name!r}; {has}. "
                         "Name the image input with --input-name.")
    if output_name not in by_name_out:
        raise ModelError(f"{info.path}: no output named {output_name!r}; {has}. "
                         "Name the top-1 (ArgMax) output with --output-name.")
    inp = by_name_in[input_name]
    if inp.dtype != "float32":
        raise ModelError(f"{info.path}: input {inp} must be float32 (the reference harness feeds "
                         "fp32 NCHW images)")
    expected = {"NCHW": (3, 224, 224), "NHWC": (224, 224, 3)}[data_format]
    if len(inp.shape) != 4 or any(isinstance(d, int) and d != e
                                  for d, e in zip(inp.shape[1:], expected)):
        other = "NHWC" if data_format == "NCHW" else "NCHW"
        raise ModelError(f"{info.path}: input {inp} is not [N, {', '.join(map(str, expected))}] "
                         f"({data_format}); if the model takes {other}, pass --data-format {other}")
    return info

import types
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

def build_info() -> dict[str, Any]: ...
def cuda_runtime_info() -> dict[str, Any]: ...
def _raise_for_test(kind: str, msg: str) -> None: ...

_Indices = Sequence[int] | npt.NDArray[np.integer[Any]]

class SampleLibrary:
    """Performance samples in one aligned block (LoadGen's QSL memory)."""

    def __init__(self, sample_bytes: int) -> None: ...
    @staticmethod
    def for_engine(engine: Engine) -> SampleLibrary: ...
    def load(self, indices: _Indices, store: npt.NDArray[Any]) -> None: ...
    def unload(self, indices: _Indices | None = None) -> None: ...
    def read(self, index: int) -> npt.NDArray[np.uint8]: ...
    def __contains__(self, index: int) -> bool: ...
    def __len__(self) -> int: ...
    @property
    def sample_bytes(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def pinned(self) -> bool: ...

class Engine:
    @property
    def name(self) -> str: ...
    @property
    def input_dtype(self) -> str: ...
    @property
    def input_shape(self) -> tuple[int, ...]: ...
    @property
    def input_bytes(self) -> int: ...
    @property
    def output_bytes(self) -> int: ...
    @property
    def max_batch(self) -> int: ...
    @property
    def device(self) -> Literal["cpu", "cuda"]: ...
    @property
    def graph_capturable(self) -> bool: ...

class NullEngine(Engine):
    def __init__(
        self,
        input_dtype: str = "float32",
        input_shape: Sequence[int] = (3, 224, 224),
        max_batch: int = 256,
        answer: Literal["none", "constant", "index"] = "none",
        constant: int = 0,
    ) -> None: ...
    @property
    def answer(self) -> str: ...

EngineFn = Callable[
    [npt.NDArray[Any], npt.NDArray[np.int32], npt.NDArray[np.uint64]],
    npt.ArrayLike | None,
]

class CudaArray:
    """Device memory lent to a CUDA PythonEngine for one call (__cuda_array_interface__ v3)."""

    ptr: int
    shape: tuple[int, ...]
    typestr: str
    readonly: bool
    stream: int
    @property
    def __cuda_array_interface__(self) -> dict[str, Any]: ...

CudaEngineFn = Callable[[CudaArray, CudaArray, npt.NDArray[np.uint64], int], None]

class PythonEngine(Engine):
    def __init__(
        self,
        fn: EngineFn | CudaEngineFn,
        input_dtype: str,
        input_shape: Sequence[int],
        max_batch: int,
        *,
        device: Literal["cpu", "cuda"] = "cpu",
        graph_capturable: bool = False,
    ) -> None: ...

class TensorRTEngine(Engine):
    """TensorRT builds only (FASTRES_WITH_TENSORRT): a serialized plan run by the executor on CUDA,
    an execution context on its own optimization profile per stream slot."""

    def __init__(
        self,
        plan: str,
        *,
        input_name: str = "",
        output_name: str = "",
        label_offset: int = 0,
        device: int = 0,
        graph_capturable: bool = True,
        name: str = "",
    ) -> None: ...
    @property
    def tensors(self) -> list[dict[str, Any]]: ...
    @property
    def input_name(self) -> str: ...
    @property
    def output_name(self) -> str: ...
    @property
    def answer(self) -> Literal["labels", "narrowed labels", "logits"]: ...
    @property
    def label_offset(self) -> int: ...
    @property
    def profiles(self) -> int: ...
    @property
    def devices(self) -> list[int]: ...
    def profile_batch(self, profile: int) -> tuple[int, int]: ...

class TimedEngine(Engine):
    """CUDA builds only: a kernel of known cost per batch answering each sample's first int32."""

    def __init__(
        self,
        input_dtype: str = "int8",
        input_shape: Sequence[int] = (3, 224, 224),
        max_batch: int = 256,
        batch_ns: int = 100000,
        sample_ns: int = 0,
    ) -> None: ...
    @property
    def batch_ns(self) -> int: ...
    @property
    def sample_ns(self) -> int: ...
    def batch_time_ns(self, n: int) -> int: ...

class CompletionSink:
    """A completion sink implemented in C++ (e.g. the LoadGen sink)."""

class ExecutorConfig:
    batch_size: int
    copy_streams: int
    infer_streams: int
    complete_threads: int
    batch_timeout_us: int
    deque_limit: int
    watchdog_ms: int
    use_graphs: bool
    start_from_device: bool
    run_infer_on_copy_streams: bool
    use_spin_wait: bool
    devices: list[int]
    def __init__(
        self,
        *,
        batch_size: int = 1,
        copy_streams: int = 4,
        infer_streams: int = 1,
        complete_threads: int = 1,
        batch_timeout_us: int = 10000,
        deque_limit: int = 0,
        watchdog_ms: int = 0,
        use_graphs: bool = False,
        start_from_device: bool = False,
        run_infer_on_copy_streams: bool = False,
        use_spin_wait: bool = False,
        devices: Sequence[int] = (),
    ) -> None: ...
    def validate(self, engine: Engine) -> None: ...

class ExecutorStats:
    submitted: int
    completed: int
    batches: int
    failed_batches: int
    sink_errors: int
    bound_batches: int
    queue_depth: int
    max_queue_depth: int
    mean_batch_size: float
    watchdog_batches: int
    retired_slots: int
    h2d_copies: int
    device_gathers: int
    graph_captures: int
    graph_launches: int
    library_uploads: int
    gather_ns: int
    engine_ns: int
    device_wait_ns: int
    complete_ns: int
    def as_dict(self) -> dict[str, int | float]: ...

OnComplete = Callable[[npt.NDArray[np.uint64], npt.NDArray[np.int32], str | None], object]

class Executor:
    def __init__(
        self,
        engine: Engine,
        samples: SampleLibrary,
        config: ExecutorConfig,
        on_complete: OnComplete | CompletionSink,
    ) -> None: ...
    def submit(self, ids: _Indices, indices: _Indices) -> None: ...
    def flush(self) -> None: ...
    def stop(self) -> None: ...
    def hold_until(self, n: int) -> None: ...
    def sync_library(self) -> None: ...
    @property
    def pinned(self) -> bool: ...
    def stats(self) -> ExecutorStats: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def config(self) -> ExecutorConfig: ...
    def __enter__(self) -> Executor: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> Literal[False]: ...

_Device = int | str | None

class _KernelsModule(types.ModuleType):
    """fastres._core.kernels: the CUDA kernels and their host twins (kernels/). Host twin by
    default; device='cuda' / 'cuda:N' / N runs the kernel (Unavailable without CUDA or a device)."""

    def gather(
        self, library: npt.NDArray[Any], slots: _Indices, *, device: _Device = None, out: npt.NDArray[Any] | None = None
    ) -> npt.NDArray[Any]: ...
    def quantize_int8_linear(
        self, x: npt.NDArray[np.float32], *, device: _Device = None, out: npt.NDArray[np.int8] | None = None
    ) -> npt.NDArray[np.int8]: ...
    def quantize_int8_chw4(
        self,
        x: npt.NDArray[np.float32] | npt.NDArray[np.int8],
        *,
        device: _Device = None,
        out: npt.NDArray[np.int8] | None = None,
    ) -> npt.NDArray[np.int8]: ...
    def top1(
        self,
        logits: npt.NDArray[np.float32],
        offset: int = 0,
        *,
        device: _Device = None,
        out: npt.NDArray[np.int32] | None = None,
    ) -> npt.NDArray[np.int32]: ...
    def hwc_to_nchw(
        self,
        images: npt.NDArray[np.uint8],
        dtype: Literal["float32", "int8"] = "float32",
        means: Sequence[float] = (123.68, 116.78, 103.94),
        *,
        device: _Device = None,
        out: npt.NDArray[Any] | None = None,
    ) -> npt.NDArray[Any]: ...
    # Raw device pointers and a cudaStream_t handle; enqueue and return (benchmarks).
    def _gather_ptr(
        self, batch: int, library: int, sample_bytes: int, slots: int, count: int, stream: int = 0
    ) -> None: ...
    def _quantize_int8_linear_ptr(self, dst: int, src: int, count: int, stream: int = 0) -> None: ...
    def _quantize_int8_chw4_ptr(self, dst: int, src: int, n: int, c: int, h: int, w: int, stream: int = 0) -> None: ...
    def _top1_ptr(self, labels: int, logits: int, rows: int, classes: int, offset: int = 0, stream: int = 0) -> None: ...
    def _hwc_to_nchw_ptr(
        self, dst: int, src: int, n: int, h: int, w: int, dtype: Literal["float32", "int8"] = "float32", stream: int = 0
    ) -> None: ...
    def _pinned_host_probe(self, bytes: int = 1048576) -> dict[str, Any]: ...
    def _graph_replay_probe(
        self, x: npt.NDArray[np.float32], replays: int = 3, *, device: _Device = None
    ) -> tuple[npt.NDArray[np.int8], float]: ...

kernels: _KernelsModule

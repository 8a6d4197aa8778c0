"""DALI preprocessing: the reference preprocessing as an NVIDIA DALI pipeline, batched, on the
CPU (``device="cpu"``) or on a GPU (``device="gpu"``: nvJPEG/nvImageCodec "mixed" decoding,
then GPU operators).

Steps, matched to :mod:`fastres.data.preprocess` one by one:

- decode to RGB (``fn.decoders.image``; grayscale replicated, EXIF orientation applied, as
  ``cv2.imread`` does). On the CPU the decoded pixels are bit-identical to OpenCV's: both use
  libjpeg-turbo.
- resize to the reference's exact size: short side 256, long side ``int(256 * long / short)``
  (``(256 * long) // short`` in integers). DALI's own ``resize_shorter`` rounds the long side
  instead, so the sizes are computed in the graph from the decoded shape and passed as
  ``resize_x``/``resize_y``.
- the filter: DALI has no ``INTER_AREA``. OpenCV's ``INTER_AREA`` averages the
  piecewise-constant source over each output pixel's footprint (a box of the scale's width,
  convolved with the unit pixel); of DALI's filters the Gaussian comes closest when shrinking
  (its width follows the scale as the box does) and also when enlarging, where ``INTER_AREA``
  mostly repeats pixels. See :data:`MIN_FILTER` for the measured figures.
- center crop 224 with the reference's truncating offset (``rounding="truncate"``) and CHW,
  in one ``fn.crop_mirror_normalize`` that keeps the resized uint8 pixels (the resize rounds
  to uint8 as ``cv2.resize`` does).
- mean subtraction and the format's cast as one lookup table per channel (``fn.lookup_table``),
  filled by the reference's own arithmetic for each of the 256 pixel values: float32 ``x -
  mean`` for ``fp32``; clip to [-128, 127] and truncate toward zero like NumPy's ``astype``
  for ``int8_linear`` (DALI's casts round, so they never touch the values). Given the same
  resized pixels, every output value is bit-identical to the reference's.
- ``int8_chw4``: the channels padded with zeros to 4 and moved innermost, in the graph.

DALI reports decode failures per batch and its pipeline object is unusable afterwards, so a
failed batch is rebuilt and run image by image to find the bad files; every other image of
that batch is still preprocessed. :meth:`DaliPreprocessor.preprocess_into` either raises a
:class:`~fastres.errors.DataError` naming the file or, with ``skip_bad=True``, returns the bad
images and zero-fills their rows.

For the online mode (:mod:`fastres.sut.online`) one batch at a time, without a copy:
:meth:`DaliPreprocessor.run_batch` (CPU) returns DALI's output buffer as a NumPy array;
:meth:`DaliPreprocessor.run_batch_on_stream` (GPU; written, never run) returns a
:class:`DeviceBatch` in device memory, bound to the caller's CUDA stream.

DALI is optional: without it every entry point raises :class:`~fastres.errors.Unavailable`
naming ``pip install 'fastres[dali]'``. The module itself imports without DALI.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import sys
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, FastresError, InvalidArgument, Unavailable
from .preprocess import IMAGE_SIZE, MEANS_RGB, RESIZE_SHORT_SIDE, convert, format_spec

if TYPE_CHECKING:
    from .imagenet import ImagenetDataset
    from .store import PreprocessedStore

DEVICES = ("cpu", "gpu")
INSTALL_HINT = "pip install 'fastres[dali]'"

#: Bumped whenever this pipeline's output changes (a filter, a step); it is part of every
#: DALI-made store's cache key, together with the DALI version.
DALI_PIPELINE_VERSION = 1

#: The DALI filters used when shrinking and when enlarging (both with antialiasing). Against
#: OpenCV's INTER_AREA, Gaussian for both gave the lowest mean absolute difference of DALI's
#: filters (linear = triangular, cubic, Lanczos-3, nearest), on the embedded synthetic images
#: and on real photographs alike (DALI 2.4 CPU; ``bench/dali_parity.py --filters``, figures in
#: bench/RESULTS.md).
MIN_FILTER = "INTERP_GAUSSIAN"
MAG_FILTER = "INTERP_GAUSSIAN"

DEFAULT_BATCH_SIZE = 32
_INPUT = "encoded"


def _dali() -> SimpleNamespace:
    """The DALI modules, or :class:`Unavailable` saying how to install them."""
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.math as dmath
        import nvidia.dali.types as types
    except ImportError as exc:
        raise Unavailable(f"DALI preprocessing needs NVIDIA DALI, which is not importable "
                          f"({exc}); install it with {INSTALL_HINT}") from None
    global _hooks_installed
    if not _hooks_installed:
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forget_pipelines)
        atexit.register(_close_cached)
        _hooks_installed = True
    return SimpleNamespace(dali=dali, fn=fn, dmath=dmath, types=types)


_hooks_installed = False


def _close_cached() -> None:
    """At exit, before modules are torn down: a DALI pipeline finalised later prints
    'Exception ignored in Pipeline.__del__'."""
    for pre in list(_cached_preprocessors):
        pre.close()


def _forget_pipelines() -> None:
    """In a forked child: DALI's pipelines belong to the parent (their threads did not come
    along), and one finalised here by the garbage collector would shut down a copy of the
    parent's executor and crash the child (seen with multiprocessing's fork start method). Let
    the child drop them without shutting them down."""
    pipeline_cls = getattr(sys.modules.get("nvidia.dali.pipeline"), "Pipeline", None)
    for ref in list(getattr(pipeline_cls, "_pipes", ())):
        pipe = ref()
        if pipe is not None and getattr(pipe, "_pipe", None) is not None:
            _parents_pipelines.append(pipe._pipe)  # never destroyed here: that would hang
            pipe._pipe = None


_parents_pipelines: list[Any] = []


def dali_version() -> str:
    """The installed DALI version; :class:`Unavailable` without DALI."""
    return str(_dali().dali.__version__)


def dali_available() -> bool:
    """Whether DALI can be imported (never raises)."""
    try:
        _dali()
    except Unavailable:
        return False
    return True


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BadImage:
    """An image the pipeline could not preprocess: its position in the batch, its name (the
    path, or ``sample <i>`` when the caller gave no names) and why."""

    index: int
    name: str
    reason: str

    def message(self) -> str:
        return (f"{self.name}: {self.reason}; replace the file or remove it from val_map.txt, "
                f"or pass --skip-bad (skip_bad=True) to skip bad images")


def _dali_reason(exc: BaseException) -> str:
    """What a DALI pipeline error says happened, without its traceback: the operator and the
    text after 'encountered:'."""
    text = str(exc)
    op = re.search(r"Error in \w+ operator `(?:nvidia\.dali\.fn\.)?([\w.]+)`", text)
    _, found, tail = text.partition("encountered:")
    lines = [ln.strip().rstrip(" :") for ln in (tail if found else text).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(
        ("Current pipeline object is no longer valid", "Critical error in pipeline",
         "C++ context"))]
    what = re.sub(r" sample #\d+", "", "; ".join(lines[:2])) or type(exc).__name__
    return f"DALI {op.group(1)}: {what}" if op else f"DALI: {what}"


def _shutdown(pipe: Any) -> None:
    """Stop a DALI pipeline deterministically (DALI does it in ``__del__`` otherwise)."""
    if pipe is not None:
        with contextlib.suppress(Exception):
            pipe._shutdown()


def _check_device(device: Any) -> str:
    if device not in DEVICES:
        raise InvalidArgument(f"DALI device {device!r} is not one of {', '.join(DEVICES)}")
    return str(device)


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgument(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _as_uint8(encoded: Sequence[Any]) -> list[np.ndarray]:
    """Encoded images as 1-D uint8 arrays, viewing (not copying) the caller's bytes."""
    return [np.frombuffer(e, dtype=np.uint8) if not isinstance(e, np.ndarray)
            else e.reshape(-1).view(np.uint8) for e in encoded]


def _labeller(names: Sequence[str] | None) -> Any:
    return (lambda j: str(names[j])) if names is not None else (lambda j: f"sample {j}")


_placeholder: np.ndarray | None = None


def _placeholder_jpeg() -> np.ndarray:
    """A small valid JPEG (mid-grey) that stands in for a skipped bad image in a GPU batch, so
    the batch still runs whole on its stream; the caller answers that row as skipped."""
    global _placeholder
    if _placeholder is None:
        import cv2

        ok, buf = cv2.imencode(".jpg", np.full((256, 256, 3), 128, np.uint8))
        if not ok:  # pragma: no cover - OpenCV always encodes this
            raise FastresError("OpenCV could not encode the placeholder JPEG")
        _placeholder = buf.reshape(-1)
    return _placeholder


class HostBatch:
    """One batch preprocessed on the CPU (:meth:`DaliPreprocessor.run_batch`).

    ``array``: ``[n, *sample_shape]``, read-only; normally a view of DALI's own output buffer
    (no copy), kept valid for as long as this object lives (DALI's default execution model
    frees an output only when nothing refers to it). ``bad``: the images skipped with
    ``skip_bad`` (their rows are zero).
    """

    __slots__ = ("array", "bad", "_owner")

    def __init__(self, array: np.ndarray, bad: list[BadImage], owner: Any) -> None:
        self.array = array
        self.bad = bad
        self._owner = owner

    @property
    def zero_copy(self) -> bool:
        """Whether ``array`` is DALI's output buffer itself (False on the bad-image path)."""
        return self._owner is not None


class DeviceBatch:
    """One batch preprocessed on the GPU (:meth:`DaliPreprocessor.run_batch_on_stream`): DALI's
    device output ``[n, *sample_shape]``, bound to ``stream``, handed on without a copy.

    - ``__cuda_array_interface__``: version 3 with ``"stream"`` set to ``stream`` (1, CUDA's
      legacy default stream, when ``stream`` is 0, which version 3 forbids): a consumer on
      another stream must make it wait on ``stream`` first.
    - ``__dlpack__(stream=...)`` / ``__dlpack_device__()``: DALI's own DLPack export, which
      makes the consumer's stream wait on the data when needed.
    - :meth:`copy_to`: for an engine with fixed input addresses (TensorRT bindings), an
      asynchronous device-to-device copy on ``stream``.

    Lifetime: the memory returns to DALI when the last reference to this object goes, so keep
    it until the work that reads it has *completed* on the stream, not merely been enqueued
    (the online engine keeps each slot's batch until that slot's next one).

    WRITTEN, NOT RUN: no machine this was developed on had both a GPU and DALI.
    """

    __slots__ = ("stream", "bad", "shape", "dtype", "_list", "_tensor")

    def __init__(self, tensor_list: Any, stream: int, bad: list[BadImage]) -> None:
        self.stream = int(stream)
        self.bad = bad
        self._list = tensor_list
        self._tensor = tensor_list.as_tensor()
        cai = self._tensor.__cuda_array_interface__
        self.shape = tuple(int(d) for d in cai["shape"])
        self.dtype = np.dtype(cai["typestr"])

    @property
    def data_ptr(self) -> int:
        """The device address of the first sample."""
        return int(self._tensor.__cuda_array_interface__["data"][0])

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        cai = dict(self._tensor.__cuda_array_interface__)
        cai["version"] = 3
        cai["stream"] = self.stream if self.stream != 0 else 1
        return cai

    def __dlpack__(self, stream: int | None = None, **kwargs: Any) -> Any:
        return self._tensor.__dlpack__(stream=stream, **kwargs)

    def __dlpack_device__(self) -> Any:
        return self._tensor.__dlpack_device__()

    def copy_to(self, ptr: int, stream: int | None = None) -> None:
        """Enqueue a copy of the batch to device address ``ptr`` on ``stream`` (default: the
        batch's own), without waiting for it."""
        self._list.copy_to_external(ctypes.c_void_p(ptr),
                                    cuda_stream=ctypes.c_void_p(self.stream if stream is None
                                                                else stream),
                                    non_blocking=True)


def cuda_device_count() -> int:
    """CUDA devices the driver reports, 0 without a driver or device (never raises). DALI's GPU
    pipeline needs one; asking the driver directly avoids DALI's own warnings."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (OSError, AttributeError):
        return 0


def _tables(fmt: str) -> list[list[float]]:
    """Per channel, the output value of every possible uint8 pixel value, computed by the
    reference's own arithmetic (float32 subtraction, then clip and truncating cast)."""
    pixels = np.arange(256, dtype=np.float32)
    q = "int8_linear" if fmt == "int8_chw4" else fmt
    return [[float(v) for v in convert(pixels - mean, q)] for mean in MEANS_RGB]


def _graph(d: SimpleNamespace, fmt: str, device: str) -> Any:
    """The preprocessing graph; called inside a pipeline definition."""
    fn, types, dmath = d.fn, d.types, d.dmath
    encoded = fn.external_source(name=_INPUT, dtype=types.UINT8, ndim=1)
    images = fn.decoders.image(encoded, device="mixed" if device == "gpu" else "cpu",
                               output_type=types.RGB)
    # The reference's output size, in integers: short side 256, long side truncated.
    hw = images.shape(dtype=types.INT64)
    h, w = hw[0], hw[1]
    short = dmath.min(h, w)
    out_h = fn.cast((h * RESIZE_SHORT_SIDE) // short, dtype=types.FLOAT)
    out_w = fn.cast((w * RESIZE_SHORT_SIDE) // short, dtype=types.FLOAT)
    images = fn.resize(images, resize_x=out_w, resize_y=out_h, antialias=True,
                       min_filter=getattr(types, MIN_FILTER),
                       mag_filter=getattr(types, MAG_FILTER))
    pixels = fn.crop_mirror_normalize(images, crop=(IMAGE_SIZE, IMAGE_SIZE), crop_pos_x=0.5,
                                      crop_pos_y=0.5, rounding="truncate", dtype=types.UINT8,
                                      output_layout="CHW")
    # Mean subtraction and the int8 cast as one lookup per channel: every pixel is exactly
    # what the reference computes from the same uint8 value, and DALI's own casts (which
    # round instead of truncating) never touch the values.
    dtype = types.FLOAT if fmt == "fp32" else types.INT8
    channels = [fn.lookup_table(pixels[c:c + 1], keys=list(range(256)), values=table,
                                dtype=dtype, default_value=0.0)
                for c, table in enumerate(_tables(fmt))]
    tensors = fn.cat(*channels, axis=0)
    if fmt == "int8_chw4":
        # NC/HW4 for 3 channels is HWC with a zero fourth channel.
        tensors = fn.pad(tensors, axes=[0], shape=[4], fill_value=0.0)
        tensors = fn.reshape(fn.transpose(tensors, perm=[1, 2, 0]),
                             shape=[1, IMAGE_SIZE, IMAGE_SIZE, 4])
    return tensors


class DaliPreprocessor:
    """A built DALI pipeline that preprocesses batches of encoded images (JPEG bytes) into one
    of the formats of :func:`~fastres.data.preprocess.format_spec`, as the reference does.

    ``device="cpu"`` runs on ``num_threads`` CPU threads (default: the usable cores);
    ``device="gpu"`` decodes with DALI's mixed decoder and resizes/normalizes on GPU
    ``device_id``, and copies the result to the host buffer it is given. One batch holds at most
    ``batch_size`` images; longer inputs are split.

    The pipeline is built here, so a missing GPU fails at once (:class:`Unavailable`), unless
    ``lazy=True`` defers that to the first batch.

    Thread-safety: calls are serialised by a lock (one DALI pipeline runs one batch at a time);
    use one instance per thread for parallel pipelines.
    """

    def __init__(self, fmt: str = "fp32", *, device: str = "cpu",
                 batch_size: int = DEFAULT_BATCH_SIZE, num_threads: int | None = None,
                 device_id: int = 0, lazy: bool = False) -> None:
        self._d = _dali()
        format_spec(fmt)
        self.fmt = fmt
        self.device = _check_device(device)
        self.batch_size = _check_positive(batch_size, "batch_size")
        self.num_threads = _check_positive(num_threads if num_threads is not None
                                           else _usable_cores(), "num_threads")
        self.device_id = int(device_id)
        self.dtype, self.sample_shape = format_spec(fmt)
        self._lock = threading.Lock()
        self._pipe: Any = None if lazy else self._build()

    @property
    def producer(self) -> str:
        """The store producer name of this pipeline: ``dali-cpu`` or ``dali-gpu``."""
        return f"dali-{self.device}"

    def _build(self) -> Any:
        d = self._d

        @d.dali.pipeline_def(batch_size=self.batch_size, num_threads=self.num_threads,
                             device_id=self.device_id if self.device == "gpu" else None,
                             prefetch_queue_depth=1)
        def pipeline() -> Any:
            return _graph(d, self.fmt, self.device)

        pipe = pipeline()
        try:
            pipe.build()
        except RuntimeError as exc:
            if self.device == "gpu":
                raise Unavailable(f"DALI GPU preprocessing could not start on CUDA device "
                                  f"{self.device_id} ({_dali_reason(exc)}); use "
                                  f"device='cpu' on a machine without a GPU") from None
            raise
        return pipe

    def _run_raw(self, encoded: list[np.ndarray], cuda_stream: int | None = None) -> Any:
        """One DALI run of ``encoded`` (at most batch_size): DALI's output TensorList, host
        memory for the CPU pipeline, device memory for the GPU one. With ``cuda_stream`` (GPU
        only) the outputs are bound to that stream (``Pipeline.run(cuda_stream)``, the default
        execution model): valid for work enqueued on it, with no host synchronisation."""
        if self._pipe is None:
            self._pipe = self._build()
        try:
            self._pipe.feed_input(_INPUT, encoded)
            (batch,) = self._pipe.run() if cuda_stream is None else self._pipe.run(cuda_stream)
        except BaseException:
            # DALI: "Current pipeline object is no longer valid." Shut it down now: the
            # traceback keeps it alive, and a pipeline finalised later by the garbage collector
            # in a forked child process (multiprocessing) crashes that child.
            broken, self._pipe = self._pipe, None
            _shutdown(broken)
            raise
        shapes = {tuple(sh) for sh in batch.shape()}
        if shapes != {self.sample_shape}:
            raise AssertionError(f"DALI produced samples of shapes {sorted(shapes)}, expected "
                                 f"{self.sample_shape}; this is a bug in fastres.data.dali")
        return batch

    def _run(self, encoded: list[np.ndarray], out: np.ndarray) -> None:
        """One DALI run of ``encoded`` (at most batch_size) into ``out[:len(encoded)]``."""
        batch = self._run_raw(encoded)
        if self.device == "gpu":
            batch = batch.as_cpu()
        dst = out[:len(encoded)]
        if dst.flags.c_contiguous:
            batch.copy_to_external(ctypes.c_void_p(dst.ctypes.data))
        else:
            dst[...] = batch.as_array()

    def preprocess_into(self, encoded: Sequence[bytes | bytearray | memoryview | np.ndarray],
                        out: np.ndarray, *, names: Sequence[str] | None = None,
                        skip_bad: bool = False) -> list[BadImage]:
        """Decode and preprocess ``encoded[j]`` into ``out[j]`` for every ``j``.

        ``out`` must be a writable ``[len(encoded), *sample_shape]`` array of this format's
        dtype (it may be a memory map or a view into the executor's buffers). An image that is
        empty or that DALI cannot decode is a :class:`DataError` naming ``names[j]``; with
        ``skip_bad=True`` its row is zero-filled instead and it is returned. May block for the
        duration of the batch; thread-safe (serialised).
        """
        n = len(encoded)
        if names is not None and len(names) != n:
            raise InvalidArgument(f"{len(names)} names for {n} encoded images")
        want = (n, *self.sample_shape)
        if (not isinstance(out, np.ndarray) or out.dtype != self.dtype
                or tuple(out.shape) != want or not out.flags.writeable):
            got = (f"{out.dtype}{list(out.shape)}" if isinstance(out, np.ndarray)
                   else type(out).__name__)
            raise InvalidArgument(f"out must be a writable {self.dtype}{list(want)} array for "
                                  f"{n} {self.fmt} samples, got {got}")
        arrays = _as_uint8(encoded)
        label = _labeller(names)
        bad: list[BadImage] = []
        with self._lock:
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                bad += self._batch(arrays, out, start, stop, label)
                if bad and not skip_bad:
                    break
        if bad and not skip_bad:
            raise DataError(bad[0].message())
        for b in bad:
            out[b.index] = 0
        return bad

    def _batch(self, arrays: list[np.ndarray], out: np.ndarray, start: int, stop: int,
               label: Any) -> list[BadImage]:
        bad = [BadImage(j, label(j), "image file is empty (0 bytes)")
               for j in range(start, stop) if arrays[j].size == 0]
        todo = [j for j in range(start, stop) if arrays[j].size]
        if not todo:
            return bad
        try:
            if len(todo) == stop - start:
                self._run(arrays[start:stop], out[start:stop])
            else:
                part = np.empty((len(todo), *self.sample_shape), dtype=self.dtype)
                self._run([arrays[j] for j in todo], part)
                out[todo] = part
            return bad
        except RuntimeError:
            pass
        bad += self._one_by_one(arrays, todo, label, out)
        bad.sort(key=lambda b: b.index)
        return bad

    def _one_by_one(self, arrays: list[np.ndarray], todo: list[int], label: Any,
                    out: np.ndarray | None = None) -> list[BadImage]:
        """The images of ``todo`` that DALI cannot preprocess, found by running them one by one
        (DALI fails the whole batch and its message does not say which sample in a form worth
        parsing); the good ones are written into ``out[j]`` when ``out`` is given."""
        one = np.empty((1, *self.sample_shape), dtype=self.dtype)
        bad: list[BadImage] = []
        for j in todo:
            try:
                if out is None:
                    self._run_raw([arrays[j]])
                else:
                    self._run([arrays[j]], one)
            except RuntimeError as exc:
                bad.append(BadImage(j, label(j), f"not a decodable image, corrupt or "
                                                 f"truncated? ({_dali_reason(exc)})"))
                continue
            if out is not None:
                out[j] = one[0]
        if len(todo) >= 4 and len(bad) == len(todo):
            raise FastresError(f"DALI failed on every one of the {len(todo)} images of a batch "
                               f"(first {bad[0].name}: {bad[0].reason}); that points to "
                               f"DALI or the device rather than to the images")
        return bad

    # ---- one batch, no copy: the online mode's entry points

    def _check_batch(self, encoded: Sequence[Any], device: str) -> list[np.ndarray]:
        if self.device != device:
            other = "run_batch" if self.device == "cpu" else "run_batch_on_stream"
            raise InvalidArgument(f"this is a device={self.device!r} pipeline: use {other}()")
        if not 1 <= len(encoded) <= self.batch_size:
            raise InvalidArgument(f"a batch holds 1 to batch_size={self.batch_size} images, got "
                                  f"{len(encoded)}")
        return _as_uint8(encoded)

    def run_batch(self, encoded: Sequence[bytes | bytearray | memoryview | np.ndarray], *,
                  names: Sequence[str] | None = None, skip_bad: bool = False) -> HostBatch:
        """Preprocess one batch (at most ``batch_size`` images) on the CPU and return DALI's own
        output buffer as a NumPy array, without copying it (:class:`HostBatch`).

        Bad images as in :meth:`preprocess_into` (a :class:`DataError` naming the file, or with
        ``skip_bad`` zero rows listed in ``HostBatch.bad``); a batch with a bad image is
        assembled in a new array instead, which costs one copy on that rare path only.
        May block for the duration of the batch; thread-safe (serialised).
        """
        arrays = self._check_batch(encoded, "cpu")
        if all(a.size for a in arrays):
            with self._lock:
                try:
                    batch = self._run_raw(arrays)
                except RuntimeError:
                    batch = None
            if batch is not None:
                tensor = batch.as_tensor()  # a view of the TensorList: dense, uniform shapes
                view = np.asarray(tensor)  # through __array_interface__: no copy
                view.flags.writeable = False
                return HostBatch(view, [], (batch, tensor))
        out = np.empty((len(arrays), *self.sample_shape), dtype=self.dtype)
        bad = self.preprocess_into(arrays, out, names=names, skip_bad=skip_bad)
        return HostBatch(out, bad, None)

    def run_batch_on_stream(self, encoded: Sequence[bytes | bytearray | memoryview | np.ndarray],
                            cuda_stream: int, *, names: Sequence[str] | None = None,
                            skip_bad: bool = False) -> DeviceBatch:
        """GPU hand-off: preprocess one batch with the ``device="gpu"`` pipeline (mixed nvJPEG
        decoding, GPU resize and normalisation) and return DALI's device output bound to
        ``cuda_stream`` (a ``cudaStream_t`` as an int, e.g. the executor slot's): a
        :class:`DeviceBatch` exposing ``__cuda_array_interface__`` (v3, with that stream) and
        DLPack. No host round trip and no copy: work that the caller enqueues on
        ``cuda_stream`` after this call sees the finished tensors.

        A bad image: :class:`DataError` naming it, or with ``skip_bad`` its row holds a
        placeholder image and it is listed in ``DeviceBatch.bad`` (the caller answers it as
        skipped). Finding which image is bad runs the batch's images one by one, host
        synchronously; that happens only on a batch that failed.

        WRITTEN, NOT RUN: no machine this was developed on had both a GPU and DALI; the CPU
        twin (:meth:`run_batch`) and the GPU graph's definition are tested.
        """
        arrays = self._check_batch(encoded, "gpu")
        label = _labeller(names)
        bad = [BadImage(j, label(j), "image file is empty (0 bytes)")
               for j, a in enumerate(arrays) if a.size == 0]
        batch = None
        with self._lock:
            if not bad:
                try:
                    batch = self._run_raw(arrays, cuda_stream)
                except RuntimeError:
                    pass
            if batch is None:
                bad += self._one_by_one(arrays, [j for j, a in enumerate(arrays) if a.size],
                                        label)
                bad.sort(key=lambda b: b.index)
                if bad and not skip_bad:
                    raise DataError(bad[0].message())
                stand_in = _placeholder_jpeg()
                for b in bad:
                    arrays[b.index] = stand_in
                batch = self._run_raw(arrays, cuda_stream)
        return DeviceBatch(batch, cuda_stream, bad)


    def preprocess(self, encoded: Sequence[bytes | bytearray | memoryview | np.ndarray], *,
                   names: Sequence[str] | None = None) -> np.ndarray:
        """The preprocessed ``[len(encoded), *sample_shape]`` batch (a new array)."""
        out = np.empty((len(encoded), *self.sample_shape), dtype=self.dtype)
        self.preprocess_into(encoded, out, names=names)
        return out

    def preprocess_files(self, paths: Sequence[str | os.PathLike[str]], out: np.ndarray, *,
                         skip_bad: bool = False) -> list[BadImage]:
        """Read and preprocess image files into ``out``; errors name the file."""
        encoded: list[np.ndarray] = []
        missing: list[BadImage] = []
        for j, path in enumerate(paths):
            try:
                encoded.append(np.fromfile(path, dtype=np.uint8))
            except OSError as exc:
                if not skip_bad:
                    raise DataError(f"{path}: cannot read image ({exc.strerror or exc}); check "
                                    f"--dataset-path and val_map.txt") from None
                missing.append(BadImage(j, str(path),
                                        f"cannot read image: {exc.strerror or exc}"))
                encoded.append(np.empty(0, np.uint8))
        bad = self.preprocess_into(encoded, out, names=[str(p) for p in paths],
                                   skip_bad=skip_bad)
        by_index = {b.index: b for b in missing}
        return [by_index.get(b.index, b) for b in bad]

    # The store's batched-producer hook (fastres.data.store.PreprocessBatchFn): bad images are
    # reported, and the store applies skip_bad.
    def __call__(self, paths: list[str], fmt: str, out: np.ndarray) -> list[tuple[int, str]]:
        if fmt != self.fmt:
            raise InvalidArgument(f"this DALI pipeline makes {self.fmt!r}, asked for {fmt!r}")
        bad = self.preprocess_files(paths, out, skip_bad=True)
        return [(b.index, f"{b.name}: {b.reason}") for b in bad]

    def close(self) -> None:
        """Stop the DALI pipeline and free its threads and buffers now; the next call builds a
        new one."""
        with self._lock:
            pipe, self._pipe = self._pipe, None
            _shutdown(pipe)

    def __repr__(self) -> str:
        return (f"DaliPreprocessor({self.fmt!r}, device={self.device!r}, "
                f"batch_size={self.batch_size}, num_threads={self.num_threads})")


def preprocess_batch(encoded: Sequence[bytes | bytearray | memoryview | np.ndarray],
                     out: np.ndarray, fmt: str = "fp32", *, names: Sequence[str] | None = None,
                     skip_bad: bool = False, device: str = "cpu",
                     batch_size: int = DEFAULT_BATCH_SIZE) -> list[BadImage]:
    """Decode and preprocess a batch of encoded images into ``out`` (``[n, *sample_shape]`` of
    ``fmt``'s dtype), the entry point for an online mode that hands raw JPEG bytes to the
    harness: it writes straight into the caller's buffer (e.g. an executor's host input).

    Each calling thread keeps its own pipeline per (format, device, batch_size), built on first
    use; see :meth:`DaliPreprocessor.preprocess_into` for errors and ``skip_bad``.
    """
    _dali()  # Unavailable without DALI, even where a pipeline was cached before
    # Keyed by the OS thread id, not threading.local: the executor's slot threads are C++
    # threads that hold a Python thread state only during each call, so thread-local data
    # would vanish after every batch and a pipeline would be built per batch.
    key = (threading.get_ident(), fmt, device, batch_size)
    with _cache_lock:
        pre = _by_thread.get(key)
        if pre is None:
            pre = _by_thread[key] = DaliPreprocessor(fmt, device=device, batch_size=batch_size)
            _cached_preprocessors.add(pre)
    return pre.preprocess_into(encoded, out, names=names, skip_bad=skip_bad)


_cache_lock = threading.Lock()
_by_thread: dict[tuple[int, str, str, int], DaliPreprocessor] = {}
#: Every thread's cached preprocessors, weakly: closed at exit if still alive.
_cached_preprocessors: weakref.WeakSet[DaliPreprocessor] = weakref.WeakSet()


def preprocess_image_dali(path: str | os.PathLike[str], fmt: str = "fp32", *,
                          device: str = "cpu") -> np.ndarray:
    """One image file through the DALI pipeline (convenience; batches are far faster)."""
    _dali()
    out = np.empty((1, *format_spec(fmt)[1]), dtype=format_spec(fmt)[0])
    preprocess_batch([_read(path)], out, fmt, names=[str(path)], device=device)
    return out[0]


def _read(path: str | os.PathLike[str]) -> np.ndarray:
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: image not found; check --dataset-path and val_map.txt") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read image: {exc.strerror or exc}") from None


def producer_info(device: str) -> dict[str, Any]:
    """What a DALI-made store's cache key records besides the producer name."""
    return {"dali": dali_version(), "pipeline_version": DALI_PIPELINE_VERSION,
            "min_filter": MIN_FILTER, "mag_filter": MAG_FILTER, "device": device}


def build_dali_store(dataset: ImagenetDataset, fmt: str, cache_dir: str | os.PathLike[str], *,
                     device: str = "cpu", batch_size: int = DEFAULT_BATCH_SIZE,
                     num_threads: int | None = None, quiet: bool = False,
                     skip_bad: bool = False) -> PreprocessedStore:
    """The preprocessed store of ``dataset`` in ``fmt`` made by DALI on ``device``: the same
    kind of store :func:`~fastres.data.store.build_store` makes with the reference
    preprocessing, marked ``producer="dali-cpu"`` or ``"dali-gpu"`` and cached separately.

    A bad image is a :class:`DataError` naming the file; with ``skip_bad=True`` it is left out
    of the store and listed in ``store.skipped_bad``.
    """
    from .store import build_store  # noqa: PLC0415 (store imports cv2 and more)

    device = _check_device(device)
    # lazy: a cached store is reused without starting DALI (or needing the GPU).
    pre = DaliPreprocessor(fmt, device=device, batch_size=batch_size, num_threads=num_threads,
                           lazy=True)
    return build_store(dataset, fmt, Path(cache_dir), quiet=quiet, producer=pre.producer,
                       preprocess_batch_fn=pre, producer_info=producer_info(device),
                       skip_bad=skip_bad)


__all__ = [
    "DEVICES",
    "DALI_PIPELINE_VERSION",
    "MIN_FILTER",
    "MAG_FILTER",
    "BadImage",
    "DaliPreprocessor",
    "DeviceBatch",
    "HostBatch",
    "cuda_device_count",
    "build_dali_store",
    "dali_available",
    "dali_version",
    "preprocess_batch",
    "preprocess_image_dali",
    "producer_info",
]

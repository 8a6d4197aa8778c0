"""The kernels (kernels/, issue 5) through fastres._core.kernels.

CPU tests hold each host twin to an independent NumPy computation and, where fastres.data.preprocess
defines the format, to that bit for bit. ``gpu`` tests hold each CUDA kernel to its host twin (they
skip without a device; bench/device_check.sh runs them on one).

NaN: ``quantize_int8_linear`` maps NaN to 0 (C++ leaves that float->int cast undefined; NumPy's
``astype(np.int8)`` gives 0 on x86-64, which is what the store's int8 files hold); ``top1`` follows
``np.argmax``: the first NaN wins.
"""

from __future__ import annotations

import platform
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastres
from fastres import errors
from fastres._core import kernels as K
from fastres.data.preprocess import MEANS_RGB, to_int8_chw4, to_int8_linear

WITH_CUDA = fastres.build_info()["with_cuda"]
X86_64 = platform.machine() in ("x86_64", "AMD64")

# Values where clip-then-truncate is easy to get wrong.
EDGES = np.array(
    [-np.inf, -1e30, -129.0, -128.99, -128.5, -128.0, -127.99, -127.5, -127.0, -1.5, -1.0, -0.99, -0.5, -1e-45,
     -0.0, 0.0, 1e-45, 0.5, 0.99, 1.0, 1.5, 126.5, 126.99, 127.0, 127.49, 127.5, 127.99, 128.0, 1e30, np.inf,
     np.nextafter(np.float32(127), np.float32(0)), np.nextafter(np.float32(-128), np.float32(0)),
     np.nextafter(np.float32(0.5), np.float32(0)), np.nextafter(np.float32(-0.5), np.float32(0))],
    dtype=np.float32)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def tensor_with_edges(shape: tuple[int, ...], seed: int = 0, scale: float = 90.0) -> np.ndarray:
    """Random float32 around the int8 range (many values outside it), with every edge value and
    +-0.5 fractions planted."""
    r = rng(seed)
    x = (r.standard_normal(shape) * scale).astype(np.float32)
    flat = x.reshape(-1)
    halves = (r.integers(-130, 130, size=max(1, flat.size // 8)) + 0.5).astype(np.float32)
    flat[: min(flat.size, halves.size)] = halves[: flat.size]
    pos = r.choice(flat.size, size=min(flat.size, EDGES.size), replace=False)
    flat[pos] = EDGES[: pos.size]
    return x


def numpy_int8_linear(x: np.ndarray) -> np.ndarray:
    """Independent of preprocess.to_int8_linear: clip, truncate toward zero, NaN -> 0; the final
    cast only ever sees integral values in range."""
    y = np.trunc(np.clip(x.astype(np.float64), -128.0, 127.0))
    return np.where(np.isnan(y), 0.0, y).astype(np.int8)


def numpy_chw4(q: np.ndarray) -> np.ndarray:
    """int8 [N, C, H, W] -> [N, ceil(C/4), H, W, 4] by explicit indexing."""
    n, c, h, w = q.shape
    g = (c + 3) // 4
    out = np.zeros((n, g, h, w, 4), dtype=np.int8)
    for ch in range(c):
        out[:, ch // 4, :, :, ch % 4] = q[:, ch]
    return out


# ---------------------------------------------------------------- int8_linear
def test_int8_linear_edges_match_clip_then_truncate():
    got = K.quantize_int8_linear(EDGES)
    np.testing.assert_array_equal(got, numpy_int8_linear(EDGES))
    # Spelled out, the cases that matter most:
    table = {-129.0: -128, -128.5: -128, -127.5: -127, -0.5: 0, 0.5: 0, 0.99: 0, 126.99: 126, 127.49: 127,
             127.5: 127, 128.0: 127, np.inf: 127, -np.inf: -128}
    q = K.quantize_int8_linear(np.array(list(table), dtype=np.float32))
    assert q.tolist() == list(table.values())
    assert q.dtype == np.int8


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5, 7), (2, 3, 17, 9), (1, 3, 224, 224)])
def test_int8_linear_matches_numpy_on_random_tensors(shape):
    x = tensor_with_edges(shape, seed=sum(shape))
    got = K.quantize_int8_linear(x)
    assert got.shape == x.shape
    np.testing.assert_array_equal(got, numpy_int8_linear(x))


@pytest.mark.parametrize("shape", [(3, 224, 224), (3, 31, 17), (5, 1, 1)])
def test_int8_linear_is_bit_identical_to_preprocess(shape):
    x = tensor_with_edges(shape, seed=len(shape))
    np.testing.assert_array_equal(K.quantize_int8_linear(x), to_int8_linear(x))


def test_int8_linear_maps_nan_to_zero_as_numpy_does_on_x86_64():
    x = np.array([np.nan, -np.nan, 1.5, np.nan], dtype=np.float32)
    assert K.quantize_int8_linear(x).tolist() == [0, 0, 1, 0]
    if X86_64:  # elsewhere NumPy's NaN cast is platform-defined; fastres keeps 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.testing.assert_array_equal(K.quantize_int8_linear(x), to_int8_linear(x))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=9),
                  elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_int8_linear_property_against_numpy(x):
    np.testing.assert_array_equal(K.quantize_int8_linear(x), numpy_int8_linear(x))


def test_int8_linear_rejects_other_dtypes_and_writes_out_in_place():
    with pytest.raises(errors.InvalidArgument, match="expected dtype float32, got float64"):
        K.quantize_int8_linear(np.zeros(4))
    x = tensor_with_edges((2, 3, 4))
    out = np.full(x.shape, 99, dtype=np.int8)
    assert K.quantize_int8_linear(x, out=out) is out
    np.testing.assert_array_equal(out, numpy_int8_linear(x))
    with pytest.raises(errors.InvalidArgument, match=r"out: expected a writeable C-contiguous int8 array of shape \(2, 3, 4\)"):
        K.quantize_int8_linear(x, out=np.zeros((2, 3, 5), dtype=np.int8))
    # Non-contiguous input is accepted (copied), empty input gives empty output.
    np.testing.assert_array_equal(K.quantize_int8_linear(x[:, ::2]), numpy_int8_linear(x[:, ::2]))
    assert K.quantize_int8_linear(np.zeros((0, 3), np.float32)).shape == (0, 3)


# ---------------------------------------------------------------- int8_chw4
@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 7, 8, 9])
def test_chw4_matches_explicit_layout_for_any_channel_count(channels):
    x = tensor_with_edges((2, channels, 5, 3), seed=channels)
    got = K.quantize_int8_chw4(x)
    assert got.shape == (2, (channels + 3) // 4, 5, 3, 4) and got.dtype == np.int8
    np.testing.assert_array_equal(got, numpy_chw4(numpy_int8_linear(x)))
    # Padding channels are zero; element (c, h, w) sits at [c // 4][h][w][c % 4].
    c, h, w = channels - 1, 4, 2
    assert got[1, c // 4, h, w, c % 4] == numpy_int8_linear(x[1, c, h, w])
    if channels % 4:
        assert not got[:, -1, :, :, channels % 4:].any()


@pytest.mark.parametrize("shape", [(3, 224, 224), (3, 7, 11), (1, 2, 2), (6, 3, 5)])
def test_chw4_is_bit_identical_to_preprocess_from_fp32_and_int8(shape):
    x = tensor_with_edges(shape, seed=shape[1])
    np.testing.assert_array_equal(K.quantize_int8_chw4(x), to_int8_chw4(x))
    q = to_int8_linear(x)
    np.testing.assert_array_equal(K.quantize_int8_chw4(q), to_int8_chw4(q))


def test_chw4_rejects_bad_shapes_and_dtypes():
    with pytest.raises(errors.InvalidArgument, match=r"expected \[C, H, W\] or \[N, C, H, W\], got shape \(3, 4\)"):
        K.quantize_int8_chw4(np.zeros((3, 4), np.float32))
    with pytest.raises(errors.InvalidArgument, match="got uint8"):
        K.quantize_int8_chw4(np.zeros((3, 4, 4), np.uint8))
    assert K.quantize_int8_chw4(np.zeros((0, 3, 4, 4), np.float32)).shape == (0, 1, 4, 4, 4)


# ---------------------------------------------------------------- top-1
def test_top1_is_numpy_argmax_minus_offset_with_ties_nan_and_signed_zero():
    rows = [
        [1.0, 3.0, 3.0, 2.0],            # tie -> lowest index
        [5.0, 5.0, 5.0, 5.0],            # all equal -> 0
        [1.0, np.nan, 9.0, np.nan],      # first NaN wins (np.argmax)
        [-0.0, 0.0, -1.0, -0.0],         # -0.0 == 0.0: a tie
        [-np.inf, -np.inf, -np.inf, -1e38],
        [-np.inf, -np.inf, -np.inf, -np.inf],
        [np.inf, 1.0, np.inf, np.nan],
        [0.0, 0.0, 0.0, np.inf],
    ]
    logits = np.array(rows, dtype=np.float32)
    for offset in (0, 1, -3):
        got = K.top1(logits, offset)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, np.argmax(logits, axis=1).astype(np.int32) - offset)
    assert K.top1(logits).tolist() == [1, 0, 1, 0, 3, 0, 3, 3]


@pytest.mark.parametrize(("n", "classes"), [(1, 1), (7, 1001), (64, 1000), (3, 33), (5, 31)])
def test_top1_matches_numpy_on_random_logits_with_planted_ties(n, classes):
    r = rng(n * classes)
    logits = r.integers(-4, 5, size=(n, classes)).astype(np.float32)  # few distinct values: many ties
    logits[0, r.integers(classes)] = 100.0
    np.testing.assert_array_equal(K.top1(logits, 1), np.argmax(logits, axis=1) - 1)
    logits = r.standard_normal((n, classes)).astype(np.float32)
    np.testing.assert_array_equal(K.top1(logits), np.argmax(logits, axis=1))


def test_top1_rejects_bad_input():
    with pytest.raises(errors.InvalidArgument, match=r"expected \[N, classes\]"):
        K.top1(np.zeros(5, np.float32))
    with pytest.raises(errors.InvalidArgument, match="0 classes"):
        K.top1(np.zeros((2, 0), np.float32))
    with pytest.raises(errors.InvalidArgument, match="got float16"):
        K.top1(np.zeros((2, 3), np.float16))
    assert K.top1(np.zeros((0, 5), np.float32)).shape == (0,)


# ---------------------------------------------------------------- uint8 HWC -> NCHW
@pytest.mark.parametrize("shape", [(1, 224, 224, 3), (3, 7, 5, 3), (11, 13, 3)])
def test_hwc_to_nchw_fp32_and_int8_match_the_reference_arithmetic(shape):
    images = rng(shape[0]).integers(0, 256, size=shape, dtype=np.uint8)
    images.reshape(-1)[:2] = (0, 255)
    batched = images if images.ndim == 4 else images[None]
    # preprocess_bgr's arithmetic: rgb.astype(float32) - MEANS_RGB, then HWC -> CHW.
    ref = (batched.astype(np.float32) - MEANS_RGB).transpose(0, 3, 1, 2)
    ref = ref if images.ndim == 4 else ref[0]
    f32 = K.hwc_to_nchw(images)
    assert f32.dtype == np.float32 and f32.shape == ref.shape
    np.testing.assert_array_equal(f32.view(np.uint32), np.ascontiguousarray(ref).view(np.uint32))  # bit for bit
    q = K.hwc_to_nchw(images, "int8")
    np.testing.assert_array_equal(q, to_int8_linear(np.ascontiguousarray(ref)))


def test_hwc_to_nchw_takes_other_means_and_rejects_bad_input():
    images = rng(5).integers(0, 256, size=(2, 4, 6, 3), dtype=np.uint8)
    means = (10.5, 0.0, 255.0)
    got = K.hwc_to_nchw(images, "float32", means)
    np.testing.assert_array_equal(got, (images.astype(np.float32) - np.float32(means)).transpose(0, 3, 1, 2))
    with pytest.raises(errors.InvalidArgument, match=r"expected \[H, W, 3\] or \[N, H, W, 3\]"):
        K.hwc_to_nchw(np.zeros((2, 4, 4, 4), np.uint8))
    with pytest.raises(errors.InvalidArgument, match="dtype='float16'"):
        K.hwc_to_nchw(images, "float16")
    with pytest.raises(errors.InvalidArgument, match="means: expected 3 values"):
        K.hwc_to_nchw(images, "float32", (1.0, 2.0))
    with pytest.raises(errors.InvalidArgument, match="expected dtype uint8"):
        K.hwc_to_nchw(images.astype(np.float32))


# ---------------------------------------------------------------- gather
@pytest.mark.parametrize(
    ("row_shape", "dtype"),
    [((3, 5, 7), np.float32), ((3, 8, 8), np.int8), ((4,), np.uint8), ((2,), np.uint8), ((3,), np.uint8),
     ((1,), np.uint8), ((2,), np.int32), ((1,), np.float64)])
def test_gather_takes_rows_in_slot_order_with_repeats(row_shape, dtype):
    r = rng(len(row_shape))
    library = r.integers(-100, 100, size=(9, *row_shape)).astype(dtype)
    slots = np.array([8, 0, 3, 3, 8, 1, 0, 7], dtype=np.int64)  # repeated and out of order
    got = K.gather(library, slots)
    assert got.dtype == library.dtype and got.shape == (slots.size, *row_shape)
    np.testing.assert_array_equal(got, library[slots])
    np.testing.assert_array_equal(K.gather(library, slots.astype(np.uint32)), library[slots])
    np.testing.assert_array_equal(K.gather(library, list(slots)), library[slots])


def test_gather_of_a_full_batch_of_int8_samples():
    library = rng(3).integers(-128, 128, size=(40, 3, 224, 224), dtype=np.int8)
    slots = rng(4).permutation(40)[:32]
    np.testing.assert_array_equal(K.gather(library, slots), library[slots])


def test_gather_rejects_out_of_range_slots_and_writes_out():
    library = np.arange(12, dtype=np.float32).reshape(4, 3)
    with pytest.raises(errors.InvalidArgument, match=r"slots\[1\]=4: out of range for a library of 4 samples"):
        K.gather(library, [0, 4])
    with pytest.raises(errors.InvalidArgument, match=r"slots\[0\]=-1"):
        K.gather(library, [-1])
    with pytest.raises(errors.InvalidArgument, match="integers"):
        K.gather(library, [0.5])
    out = np.empty((2, 3), np.float32)
    assert K.gather(library, [3, 0], out=out) is out
    np.testing.assert_array_equal(out, library[[3, 0]])
    assert K.gather(library, np.zeros(0, np.int64)).shape == (0, 3)


# ---------------------------------------------------------------- devices and the CUDA wrappers
def test_device_argument_is_validated_and_cuda_is_unavailable_without_a_device():
    x = np.zeros(4, np.float32)
    np.testing.assert_array_equal(K.quantize_int8_linear(x, device="cpu"), np.zeros(4, np.int8))
    with pytest.raises(errors.InvalidArgument, match="device='gpu'"):
        K.quantize_int8_linear(x, device="gpu")
    with pytest.raises(errors.InvalidArgument, match="device='cuda:x'"):
        K.quantize_int8_linear(x, device="cuda:x")
    if fastres.build_info()["cuda"]["devices"]:
        return
    match = "requested, but" if WITH_CUDA else "built without CUDA"
    calls = [lambda: K.quantize_int8_linear(x, device="cuda"), lambda: K.top1(x[None], device=0),
             lambda: K.gather(x[None], [0], device="cuda:0"), lambda: K.hwc_to_nchw(np.zeros((1, 1, 3), np.uint8), device=1),
             lambda: K.quantize_int8_chw4(x.reshape(1, 2, 2), device="cuda"), lambda: K._graph_replay_probe(x)]
    for call in calls:
        with pytest.raises(errors.Unavailable, match=match):
            call()
    if not WITH_CUDA:
        with pytest.raises(errors.Unavailable, match="_gather_ptr: fastres was built without CUDA"):
            K._gather_ptr(0, 0, 1, 0, 0)


@pytest.mark.skipif(not WITH_CUDA, reason="built without CUDA: the pinned allocator is not compiled in")
def test_pinned_allocator_falls_back_to_pageable_memory_with_one_warning_without_a_device():
    if fastres.build_info()["cuda"]["devices"]:
        pytest.skip("a CUDA device exists: the pinned path is tested by the gpu test")
    probe = K._pinned_host_probe(1 << 16)
    assert probe["pinned"] is False and probe["allocator_pinned"] is False
    assert probe["fallbacks"] == 1 and probe["intact"]
    assert len(probe["warnings"]) == 1
    assert "cudaHostAlloc(65536 bytes) failed" in probe["warnings"][0]
    assert "using pageable host memory instead" in probe["warnings"][0]


@pytest.mark.skipif(WITH_CUDA, reason="built with CUDA")
def test_cuda_only_probes_say_cuda_is_not_compiled_in():
    with pytest.raises(errors.Unavailable, match="built without CUDA"):
        K._pinned_host_probe()


# ---------------------------------------------------------------- GPU: each kernel against its host twin
@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1,), (3,), (4,), (5, 3, 7), (8, 3, 224, 224), (1000003,)])
def test_gpu_int8_linear_matches_host_twin(shape):
    x = tensor_with_edges(shape, seed=len(shape))
    x.reshape(-1)[-1] = np.nan
    np.testing.assert_array_equal(K.quantize_int8_linear(x, device="cuda"), K.quantize_int8_linear(x))


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(8, 3, 224, 224), (2, 5, 7, 3), (1, 1, 1, 1), (3, 8, 9, 9), (3, 4, 1)])
def test_gpu_chw4_matches_host_twin_from_fp32_and_int8(shape):
    x = tensor_with_edges(shape, seed=shape[1])
    np.testing.assert_array_equal(K.quantize_int8_chw4(x, device="cuda"), K.quantize_int8_chw4(x))
    q = K.quantize_int8_linear(x)
    np.testing.assert_array_equal(K.quantize_int8_chw4(q, device="cuda"), K.quantize_int8_chw4(q))


@pytest.mark.gpu
@pytest.mark.parametrize(("n", "classes"), [(1, 1), (256, 1001), (3, 33), (1000, 31), (70000, 5)])
def test_gpu_top1_matches_host_twin(n, classes):
    r = rng(classes)
    logits = r.integers(-3, 4, size=(n, classes)).astype(np.float32)  # many ties
    logits.reshape(-1)[r.choice(logits.size, size=min(logits.size, 7), replace=False)] = np.nan
    for offset in (0, 1):
        np.testing.assert_array_equal(K.top1(logits, offset, device="cuda"), K.top1(logits, offset))


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(8, 224, 224, 3), (3, 7, 5, 3), (13, 11, 3)])
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_gpu_hwc_to_nchw_matches_host_twin(shape, dtype):
    images = rng(len(shape)).integers(0, 256, size=shape, dtype=np.uint8)
    got = K.hwc_to_nchw(images, dtype, device="cuda")
    np.testing.assert_array_equal(got.view(np.uint8), K.hwc_to_nchw(images, dtype).view(np.uint8))


@pytest.mark.gpu
@pytest.mark.parametrize(("row_shape", "dtype"), [((3, 224, 224), np.float32), ((3, 224, 224), np.int8),
                                                  ((3,), np.uint8), ((2,), np.uint8), ((2,), np.int32),
                                                  ((1,), np.int32)])  # 16-, 1-, 8- and 4-byte units
def test_gpu_gather_matches_host_twin(row_shape, dtype):
    r = rng(len(row_shape))
    library = r.integers(-100, 100, size=(40, *row_shape)).astype(dtype)
    slots = np.concatenate([r.permutation(40), [5, 5, 0, 39]])
    np.testing.assert_array_equal(K.gather(library, slots, device="cuda"), K.gather(library, slots))


@pytest.mark.gpu
def test_gpu_kernels_on_unaligned_device_pointers_match_host_twins():
    """The scalar paths: int8_linear without float4 alignment, gather in 1-byte units."""
    torch = pytest.importorskip("torch", reason="device buffers at odd offsets come from PyTorch")
    stream = torch.cuda.current_stream()
    x = tensor_with_edges((4099,))
    x_dev = torch.from_numpy(x).cuda()
    q_dev = torch.zeros(x.size + 1, dtype=torch.int8, device="cuda")
    # src 4 bytes past a 16-byte boundary, dst 1 byte past: no vector path applies.
    K._quantize_int8_linear_ptr(q_dev.data_ptr() + 1, x_dev.data_ptr() + 4, x.size - 1, stream.cuda_stream)
    stream.synchronize()
    np.testing.assert_array_equal(q_dev.cpu().numpy()[1:], K.quantize_int8_linear(x[1:]))

    flat = rng(1).integers(0, 256, size=1 + 10 * 47, dtype=np.uint8)
    library = flat[1:].reshape(10, 47)  # rows of 47 bytes starting at byte 1
    slots = np.array([3, 9, 0, 3, 7], dtype=np.int32)
    flat_dev, slots_dev = torch.from_numpy(flat).cuda(), torch.from_numpy(slots).cuda()
    batch_dev = torch.zeros(1 + slots.size * 47, dtype=torch.uint8, device="cuda")
    K._gather_ptr(batch_dev.data_ptr() + 1, flat_dev.data_ptr() + 1, 47, slots_dev.data_ptr(), slots.size,
                  stream.cuda_stream)
    stream.synchronize()
    np.testing.assert_array_equal(batch_dev.cpu().numpy()[1:].reshape(slots.size, 47), library[slots])


@pytest.mark.gpu
def test_gpu_pinned_allocator_pins_and_graph_replays_match():
    probe = K._pinned_host_probe(1 << 20)
    assert probe["pinned"] and probe["allocator_pinned"] and probe["fallbacks"] == 0 and not probe["warnings"]
    x = tensor_with_edges((4, 3, 64, 64))
    result, ms = K._graph_replay_probe(x, 5, device="cuda")
    np.testing.assert_array_equal(result, K.quantize_int8_linear(x))
    assert ms > 0.0


@pytest.mark.gpu
def test_gpu_bad_device_index_is_unavailable():
    count = len(fastres.build_info()["cuda"]["devices"])
    with pytest.raises(errors.Unavailable, match=f"this machine has {count}"):
        K.quantize_int8_linear(np.zeros(4, np.float32), device=count)

"""Kernel micro-benchmark (issue 5): effective bandwidth of fastres's CUDA kernels against the
device's own device-to-device copy, measured in the same run, and against their host twins.

    python bench/kernels_bench.py [--json results.json] [--batch 256] [--iters 20]

Needs fastres built with CUDA, a CUDA device and PyTorch (device buffers, the stream and the timing
events come from it; the kernels run through fastres._core.kernels._*_ptr on torch's current
stream). Bytes counted per launch are the bytes the kernel must read plus those it writes. Each
kernel's output is checked against its host twin before it is timed.

The issue's target: gather and quantize kernels at >= 70% of the copy's bandwidth. The JSON says,
per kernel, the GB/s, the fraction of the copy, the host twin's GB/s, and whether it met the target.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, NoReturn

import numpy as np

TARGET_FRACTION = 0.70
# Kernels the target applies to (the issue: "gather and quantize kernels").
TARGETED = ("gather_fp32", "gather_int8", "quantize_int8_linear", "quantize_int8_chw4")


def fail(message: str) -> NoReturn:
    print(f"kernels_bench: {message}", file=sys.stderr)
    raise SystemExit(2)


def setup() -> tuple[Any, Any, dict[str, Any]]:
    try:
        import fastres
        from fastres._core import kernels as K
    except ImportError as exc:
        fail(f"cannot import fastres ({exc}); build it first: FASTRES_WITH_CUDA=ON pip install .")
    info = fastres.build_info()
    if not info["with_cuda"]:
        fail("fastres was built without CUDA; rebuild with FASTRES_WITH_CUDA=ON pip install .")
    if not info["cuda"]["devices"]:
        fail(f"fastres sees no CUDA device: {info['cuda']['status']}")
    try:
        import torch
    except ImportError:
        fail("PyTorch is needed for device buffers and timing events (python3 -c 'import torch' failed)")
    if not torch.cuda.is_available():
        fail("torch.cuda.is_available() is False")
    return K, torch, info


def time_gpu(torch: Any, launch: Callable[[int], None], iters: int, warmup: int = 3) -> float:
    """Mean seconds per launch over `iters` launches on torch's current stream, after warm-ups."""
    stream = torch.cuda.current_stream()
    handle = stream.cuda_stream
    for _ in range(warmup):
        launch(handle)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record(stream)
    for _ in range(iters):
        launch(handle)
    end.record(stream)
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / iters


def time_host(fn: Callable[[], object], reps: int) -> float:
    """Best of `reps` wall-clock runs (the host twins are single-threaded loops)."""
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--batch", type=int, default=256, help="samples per batch (default 256)")
    ap.add_argument("--library", type=int, default=1024, help="samples in the device-resident library (default 1024)")
    ap.add_argument("--iters", type=int, default=20, help="timed launches per kernel (default 20)")
    ap.add_argument("--host-reps", type=int, default=2, help="timed host-twin runs per kernel (default 2)")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.library < args.batch or args.iters < 1 or args.host_reps < 1:
        fail("--batch >= 1, --library >= --batch, --iters >= 1 and --host-reps >= 1 are required")

    K, torch, info = setup()
    dev = torch.device("cuda", 0)
    g = np.random.default_rng(0)
    b, c, h, w = args.batch, 3, 224, 224
    results: list[dict[str, Any]] = []

    # ---- the baseline: a device-to-device copy of 1 GiB (read + write counted)
    src = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    copy_s = time_gpu(torch, lambda _h: dst.copy_(src), args.iters)
    copy_gbps = 2 * src.numel() / copy_s / 1e9
    del src, dst

    def record(name: str, nbytes: int, gpu_s: float, host_s: float, check: bool) -> None:
        gbps = nbytes / gpu_s / 1e9
        row = {
            "kernel": name,
            "bytes_per_launch": nbytes,
            "gpu_us": round(gpu_s * 1e6, 2),
            "gpu_gbps": round(gbps, 1),
            "fraction_of_copy": round(gbps / copy_gbps, 3),
            "host_twin_gbps": round(nbytes / host_s / 1e9, 2),
            "speedup_vs_host_twin": round(host_s / gpu_s, 1),
            "matches_host_twin": check,
        }
        if name in TARGETED:
            row["meets_target"] = bool(check and gbps / copy_gbps >= TARGET_FRACTION)
        results.append(row)
        print(f"{name:24s} {row['gpu_us']:10.1f} us {row['gpu_gbps']:8.1f} GB/s "
              f"{100 * row['fraction_of_copy']:5.1f}% of copy   host twin {row['host_twin_gbps']:6.2f} GB/s "
              f"(x{row['speedup_vs_host_twin']})   {'ok' if check else 'MISMATCH'}", flush=True)

    # ---- gather: a batch of random slots from a device-resident library
    slots_np = g.choice(args.library, size=b, replace=False).astype(np.uint32)
    slots_np[-4:] = slots_np[:4]  # repeats, as a batch with duplicate QSL indices has
    slots = torch.from_numpy(slots_np.astype(np.int32)).to(dev)
    for name, dtype, np_dtype in (("gather_fp32", torch.float32, np.float32), ("gather_int8", torch.int8, np.int8)):
        lib_np = g.integers(-128, 128, size=(args.library, c, h, w)).astype(np_dtype)
        lib = torch.from_numpy(lib_np).to(dev)
        batch = torch.empty((b, c, h, w), dtype=dtype, device=dev)
        sample_bytes = lib_np[0].nbytes

        def run(hs: int, lib=lib, batch=batch, sample_bytes=sample_bytes) -> None:
            K._gather_ptr(batch.data_ptr(), lib.data_ptr(), sample_bytes, slots.data_ptr(), b, hs)

        host_out = np.empty((b, c, h, w), np_dtype)
        host_s = time_host(lambda lib_np=lib_np, host_out=host_out: K.gather(lib_np, slots_np, out=host_out),
                           args.host_reps)
        run(torch.cuda.current_stream().cuda_stream)
        check = bool(np.array_equal(batch.cpu().numpy(), host_out))
        record(name, 2 * b * sample_bytes, time_gpu(torch, run, args.iters), host_s, check)
        del lib, batch

    # ---- quantize: fp32 NCHW batch -> int8_linear, int8_chw4
    x_np = (g.standard_normal((b, c, h, w)) * 80).astype(np.float32)
    x = torch.from_numpy(x_np).to(dev)
    q = torch.empty((b, c, h, w), dtype=torch.int8, device=dev)
    count = x_np.size
    host_q = np.empty(x_np.shape, np.int8)
    host_s = time_host(lambda: K.quantize_int8_linear(x_np, out=host_q), args.host_reps)

    def run_linear(hs: int) -> None:
        K._quantize_int8_linear_ptr(q.data_ptr(), x.data_ptr(), count, hs)

    run_linear(torch.cuda.current_stream().cuda_stream)
    check = bool(np.array_equal(q.cpu().numpy(), host_q))
    record("quantize_int8_linear", count * 5, time_gpu(torch, run_linear, args.iters), host_s, check)

    q4 = torch.empty((b, 1, h, w, 4), dtype=torch.int8, device=dev)
    host_q4 = np.empty((b, 1, h, w, 4), np.int8)
    host_s = time_host(lambda: K.quantize_int8_chw4(x_np, out=host_q4), args.host_reps)

    def run_chw4(hs: int) -> None:
        K._quantize_int8_chw4_ptr(q4.data_ptr(), x.data_ptr(), b, c, h, w, hs)

    run_chw4(torch.cuda.current_stream().cuda_stream)
    check = bool(np.array_equal(q4.cpu().numpy(), host_q4))
    record("quantize_int8_chw4", count * 4 + q4.numel(), time_gpu(torch, run_chw4, args.iters), host_s, check)
    del x, q, q4

    # ---- decoded images: uint8 HWC -> fp32 NCHW (DALI's output into the engine's input)
    img_np = g.integers(0, 256, size=(b, h, w, c), dtype=np.uint8)
    img = torch.from_numpy(img_np).to(dev)
    out = torch.empty((b, c, h, w), dtype=torch.float32, device=dev)
    host_out = np.empty((b, c, h, w), np.float32)
    host_s = time_host(lambda: K.hwc_to_nchw(img_np, out=host_out), args.host_reps)

    def run_hwc(hs: int) -> None:
        K._hwc_to_nchw_ptr(out.data_ptr(), img.data_ptr(), b, h, w, "float32", hs)

    run_hwc(torch.cuda.current_stream().cuda_stream)
    check = bool(np.array_equal(out.cpu().numpy(), host_out))
    record("hwc_to_nchw_fp32", img_np.size * 5, time_gpu(torch, run_hwc, args.iters), host_s, check)
    del img, out

    # ---- top-1 over a large set of 1001-class logits (a batch of 256 alone is launch-bound)
    rows, classes = 64 * b, 1001
    logits_np = g.standard_normal((rows, classes)).astype(np.float32)
    logits = torch.from_numpy(logits_np).to(dev)
    labels = torch.empty(rows, dtype=torch.int32, device=dev)
    host_labels = np.empty(rows, np.int32)
    host_s = time_host(lambda: K.top1(logits_np, 1, out=host_labels), args.host_reps)

    def run_top1(hs: int) -> None:
        K._top1_ptr(labels.data_ptr(), logits.data_ptr(), rows, classes, 1, hs)

    run_top1(torch.cuda.current_stream().cuda_stream)
    check = bool(np.array_equal(labels.cpu().numpy(), host_labels))
    record("top1_1001", logits_np.nbytes + rows * 4, time_gpu(torch, run_top1, args.iters), host_s, check)

    targeted = [r for r in results if "meets_target" in r]
    summary = {
        "device": info["cuda"]["devices"][0]["name"],
        "torch": torch.__version__,
        "batch": b,
        "copy_gbps": round(copy_gbps, 1),
        "target_fraction_of_copy": TARGET_FRACTION,
        "kernels": results,
        "all_match_host_twins": all(r["matches_host_twin"] for r in results),
        "targets_met": all(r["meets_target"] for r in targeted),
    }
    print(f"device-to-device copy: {copy_gbps:.1f} GB/s; targets (>= {TARGET_FRACTION:.0%} of it for "
          f"{', '.join(TARGETED)}): {'met' if summary['targets_met'] else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0 if summary["all_match_host_twins"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Preprocessing throughput: the reference (OpenCV, one image per call, on a pool of threads),
DALI on the CPU with the same number of threads and, where a GPU and DALI exist, DALI on the
GPU; images/s and the ratios against the reference, measured in one run.

The JPEGs are read into memory first, so this measures decoding and preprocessing, not the
disk. Each contender writes into a preallocated ``[N, ...]`` array, as a store build does.
Runs alternate (reference, DALI CPU, DALI GPU, reference, ...) and the median of ``--repeat``
runs is reported, so that load from other processes hits every contender alike.

    python bench/preprocess.py                      # 512 embedded images, fp32, usable cores
    python bench/preprocess.py --format int8_linear --threads 1 --count 256
    python bench/preprocess.py --dataset-path /data/imagenet --count 2000
    python bench/preprocess.py --copy-cost          # what the online mode's no-copy hand-off saves
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from fastres.data import preprocess as pp
from fastres.data.imagenet import ImagenetDataset


def reference(encoded: list[np.ndarray], out: np.ndarray, fmt: str, threads: int) -> None:
    def one(i: int) -> None:
        img = cv2.imdecode(encoded[i], cv2.IMREAD_COLOR)
        out[i] = pp.convert(pp.preprocess_bgr(img), fmt)

    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, range(len(encoded))):
            pass


def no_copy(pre, encoded: list[np.ndarray]) -> None:
    """DALI's output left in DALI's buffer, as the online mode hands it to the engine: the
    difference to the row above is what copying it out costs."""
    for s in range(0, len(encoded), pre.batch_size):
        pre.run_batch(encoded[s:s + pre.batch_size])


def copy_cost(encoded: list[np.ndarray], fmt: str, threads: int, batch: int,
              repeat: int) -> int:
    """The copy the online mode avoids, against the DALI batch it follows, in one run."""
    from fastres.data import dali as fd

    pre = fd.DaliPreprocessor(fmt, device="cpu", batch_size=batch, num_threads=threads)
    chunk = encoded[:batch]
    dst = np.empty((len(chunk), *pre.sample_shape), pre.dtype)
    pre.run_batch(chunk)
    np.copyto(dst, pre.run_batch(chunk).array)  # warm: pages of dst touched once
    run_s, copy_s = [], []
    for _ in range(max(repeat, 5)):
        t = time.perf_counter()
        hb = pre.run_batch(chunk)
        run_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        np.copyto(dst, hb.array)
        copy_s.append(time.perf_counter() - t)
    r, c = statistics.median(run_s), statistics.median(copy_s)
    print(f"DALI CPU batch of {len(chunk)} {fmt} ({dst.nbytes / 2**20:.1f} MiB out), {threads} "
          f"threads, median of {len(run_s)}: DALI {r * 1e3:.1f} ms, copying its output out "
          f"{c * 1e3:.2f} ms = {c / r:.1%} of the batch ({dst.nbytes / c / 2**30:.1f} GiB/s); "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


def contenders(fmt: str, threads: int, batch: int) -> dict[str, Callable[..., None]]:
    runs: dict[str, Callable[..., None]] = {
        f"reference OpenCV ({threads} threads)":
            lambda enc, out: reference(enc, out, fmt, threads)}
    from fastres.data import dali as fd

    if not fd.dali_available():
        print("DALI is not installed (pip install 'fastres[dali]'): reference only",
              file=sys.stderr)
        return runs
    cpu = fd.DaliPreprocessor(fmt, device="cpu", batch_size=batch, num_threads=threads)
    runs[f"DALI CPU ({threads} threads, batch {batch})"] = cpu.preprocess_into
    runs[f"DALI CPU, no copy out (run_batch, {threads} thr)"] = lambda enc, out: no_copy(cpu, enc)
    if fd.cuda_device_count() == 0:  # asked first: DALI itself would warn, then fail
        print("DALI GPU: not measured (no CUDA driver or device on this machine)",
              file=sys.stderr)
        return runs
    try:
        gpu = fd.DaliPreprocessor(fmt, device="gpu", batch_size=batch, num_threads=threads)
    except Exception as exc:  # noqa: BLE001 - say why and go on
        print(f"DALI GPU: not measured ({str(exc).splitlines()[0][:160]})", file=sys.stderr)
    else:
        runs[f"DALI GPU (batch {batch}, host output)"] = gpu.preprocess_into
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset-path", help="ImageNet layout folder (default: the embedded "
                                           "synthetic dataset)")
    ap.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/fastres"))
    ap.add_argument("--count", type=int, default=512)
    ap.add_argument("--format", default="fp32", choices=pp.FORMATS)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--copy-cost", action="store_true",
                    help="instead: time one DALI CPU batch and copying its output out of DALI's "
                         "buffer, alternately, i.e. what the online mode's no-copy hand-off saves")
    args = ap.parse_args()

    if args.dataset_path:
        ds = ImagenetDataset(args.dataset_path, count=args.count)
    else:
        from fastres.data.synthetic import make_default

        d = make_default(Path(args.cache_dir) / "synthetic", "tiny")
        ds = ImagenetDataset(d.dataset_dir, d.val_map, count=args.count)
    encoded = [np.fromfile(ds.path(i), dtype=np.uint8) for i in range(len(ds))]
    mib = sum(e.size for e in encoded) / 2**20
    dtype, shape = pp.format_spec(args.format)
    out = np.empty((len(encoded), *shape), dtype)

    if args.copy_cost:
        return copy_cost(encoded, args.format, args.threads, args.batch_size, args.repeat)
    runs = contenders(args.format, args.threads, args.batch_size)
    for fn in runs.values():  # warm-up: first-call costs (pipeline build, thread pools)
        fn(encoded[:args.batch_size], out[:args.batch_size])
    times: dict[str, list[float]] = {name: [] for name in runs}
    load = os.getloadavg()[0]
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn(encoded, out)
            times[name].append(time.perf_counter() - t)

    print(f"{len(encoded)} JPEGs ({mib:.1f} MiB) -> {args.format} {list(shape)}; "
          f"{args.threads} threads; median of {args.repeat}; load average at start {load:.1f}")
    base = None
    for name, ts in times.items():
        rate = len(encoded) / statistics.median(ts)
        base = base or rate
        print(f"  {name:46s} {rate:8.1f} images/s   {rate / base:5.2f}x reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())

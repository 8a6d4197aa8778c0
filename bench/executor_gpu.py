"""The executor's CUDA path on a GPU, against its ideal and against the reference harness.

Three measurements, each printed with its target and written to ``--json``:

1. **Pipeline efficiency** (``TimedEngine``): every batch of 256 is a kernel of known length on
   one inference stream, so the ideal is exact: ``batches x batch_time``. The executor (2 copy
   streams: host-to-device copies of int8 samples overlap the kernel; completions overlap the
   next batch) must reach >= 97% of it. Measured through the executor directly (submit
   everything, flush) for each CUDA knob combination, and, when mlperf_loadgen is importable,
   through LoadGen's Offline scenario with the native SUT. Every answer is checked: the engine
   answers each sample's own index, so ordering and data movement are proven on the device.
2. **Kernel bandwidth** is bench/kernels_bench.py's (the device check runs both).
3. **PyTorch ResNet50, native vs reference** (Offline, LoadGen, one run each, same engine
   object): the native SUT with ``TorchEngine`` on the executor's device buffers and streams
   against the reference SUT with ``TorchBackend`` (host batches copied per query, one
   synchronous call per query, its Python thread pool). Target: native >= 1.2x reference.
   Random torchvision-style weights and random fp32 samples: the device machine has no ONNX
   model or dataset, and speed does not depend on them.

    python bench/executor_gpu.py --json out.json          # about 1-2 minutes on an H200
    python bench/executor_gpu.py --quick                  # shorter runs, rougher figures

Needs a CUDA build of fastres and a GPU; PyTorch for part 3 (skipped, and said, without it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import fastres

TARGET_PIPELINE = 0.97
TARGET_TORCH = 1.2


def _gpu_name() -> str:
    devices = fastres.build_info()["cuda"]["devices"]
    return devices[0]["name"] if devices else "none"


def _index_store(n: int) -> np.ndarray:
    store = np.zeros((n, 3, 224, 224), dtype=np.int8)
    flat = store.reshape(n, -1).view(np.uint8)
    flat[:, :4] = np.arange(n, dtype="<i4").view(np.uint8).reshape(n, 4)
    return store


class _Answers:
    """on_complete: counts and checks every answer against the sample it was asked for."""

    def __init__(self, expected: np.ndarray) -> None:
        self.expected = expected
        self.wrong = 0
        self.failed = 0
        self.done = 0

    def __call__(self, ids: np.ndarray, labels: np.ndarray, error: str | None) -> None:
        self.done += len(ids)
        if error is not None:
            self.failed += len(ids)
        self.wrong += int(np.count_nonzero(self.expected[ids.astype(np.int64)] != labels))


def pipeline_efficiency(batches: int, batch_us: int, knobs: dict[str, Any]) -> dict[str, Any]:
    batch = 256
    n_lib = 1024
    engine = fastres.TimedEngine(input_dtype="int8", input_shape=(3, 224, 224), max_batch=batch,
                                 batch_ns=batch_us * 1000)
    lib = fastres.SampleLibrary.for_engine(engine)
    lib.load(np.arange(n_lib), _index_store(n_lib))
    order = np.random.default_rng(0).integers(0, n_lib, size=batches * batch)
    warm = 4 * batch  # ids len(order).. : the warm-up's samples, order[:warm] again
    answers = _Answers(np.concatenate([order, order[:warm]]).astype(np.int32))
    cfg = fastres.ExecutorConfig(**{"batch_size": batch, "copy_streams": 2, "infer_streams": 1,
                                    "batch_timeout_us": 2000, **knobs})
    with fastres.Executor(engine, lib, cfg, answers) as ex:
        ex.sync_library()
        # Warm-up: graphs are captured on first use per batch size; streams and events warm.
        ex.submit(np.arange(len(order), len(order) + warm), order[:warm])
        ex.flush()
        answers_before = answers.done
        t0 = time.perf_counter()
        ex.submit(np.arange(len(order)), order)
        ex.flush()
        elapsed = time.perf_counter() - t0
        stats = ex.stats()
        pinned = ex.pinned
    ideal = batches * engine.batch_time_ns(batch) / 1e9
    return {"knobs": knobs, "batches": batches, "batch_time_us": batch_us, "seconds": elapsed,
            "ideal_seconds": ideal, "efficiency": ideal / elapsed,
            "samples_per_s": len(order) / elapsed, "ideal_samples_per_s": len(order) / ideal,
            "wrong_answers": answers.wrong, "failed": answers.failed,
            "answered": answers.done - answers_before, "pinned": pinned,
            "graph_launches": stats.graph_launches, "device_gathers": stats.device_gathers,
            "bound_batches": stats.bound_batches, "h2d_copies": stats.h2d_copies}


def pipeline_under_loadgen(seconds: float, batch_us: int) -> dict[str, Any] | None:
    try:
        from fastres import loadgen as flg
        from fastres.sut.native import NativeSUT
    except ImportError as exc:
        print(f"  (LoadGen Offline skipped: {exc})")
        return None
    batch = 256
    engine = fastres.TimedEngine(input_dtype="int8", input_shape=(3, 224, 224), max_batch=batch,
                                 batch_ns=batch_us * 1000)
    n = 1024

    class Store:
        format = "int8_linear"
        data = _index_store(n)
        labels = np.arange(n, dtype=np.int32)

        def __len__(self) -> int:
            return n

    ideal_qps = batch / (engine.batch_time_ns(batch) / 1e9)
    settings = flg.make_settings("Offline", "performance", target_qps=ideal_qps,
                                 min_duration_ms=int(seconds * 1000), min_query_count=1)
    cfg = fastres.ExecutorConfig(batch_size=batch, copy_streams=2, infer_streams=1,
                                 batch_timeout_us=2000, start_from_device=True, use_graphs=True)
    with tempfile.TemporaryDirectory() as out, NativeSUT(engine, Store(), scenario="Offline",
                                                         config=cfg) as sut:
        result = flg.run_test(sut.sut, sut.qsl, settings, out)
        errors = sut.errors
    qps = result.summary.value
    return {"samples_per_s": qps, "ideal_samples_per_s": ideal_qps, "efficiency": qps / ideal_qps,
            "valid": result.summary.valid, "sut_errors": errors}


def torch_native_vs_reference(seconds: float) -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        print("  (skipped: PyTorch is not installed)")
        return None
    if not torch.cuda.is_available():
        print("  (skipped: PyTorch sees no CUDA device)")
        return None
    from fastres import loadgen as flg
    from fastres.engines.torch import ResNet50, TorchBackend, TorchEngine
    from fastres.sut.native import NativeSUT, make_config
    from fastres.sut.reference import ReferenceSUT

    n = 1024
    rng = np.random.default_rng(0)

    class Store:
        format = "fp32"
        data = rng.standard_normal((n, 3, 224, 224), dtype=np.float32)
        labels = np.zeros(n, dtype=np.int32)

        def __len__(self) -> int:
            return n

        def sample(self, i: int) -> np.ndarray:
            return self.data[i]

    store = Store()
    fn = TorchEngine(ResNet50(), device="cuda", dtype="float16", max_batch=256)
    fn.warm_up()
    out: dict[str, Any] = {"dtype": "float16", "model": "ResNet50 v1.5, random weights"}

    def offline(sut_sut: int, sut_qsl: int, expected_qps: float, folder: str) -> Any:
        settings = flg.make_settings("Offline", "performance", target_qps=expected_qps,
                                     min_duration_ms=int(seconds * 1000), min_query_count=1)
        return flg.run_test(sut_sut, sut_qsl, settings, folder)

    with tempfile.TemporaryDirectory() as folder:
        backend = TorchBackend(fn)
        # A first short run sizes the expected QPS of the measured one.
        for sut_name in ("reference", "native"):
            qps_guess = 2000.0
            for attempt in range(2):
                if sut_name == "reference":
                    with ReferenceSUT("<torch>", store, scenario="Offline", backend=backend) as sut:
                        sut.start_run(take_accuracy=False)
                        result = offline(sut.sut, sut.qsl, qps_guess, f"{folder}/{sut_name}{attempt}")
                        sut.runner.finish()
                        errors = sut.errors
                else:
                    engine = fastres.PythonEngine(fn, "float32", (3, 224, 224), 256, device="cuda")
                    cfg = make_config("Offline", device="cuda", batch_size=256, copy_streams=2,
                                      start_from_device=False)
                    with NativeSUT(engine, store, scenario="Offline", config=cfg) as sut:
                        result = offline(sut.sut, sut.qsl, qps_guess, f"{folder}/{sut_name}{attempt}")
                        errors = sut.errors
                qps_guess = result.summary.value
            out[sut_name] = {"samples_per_s": qps_guess, "valid": result.summary.valid,
                             "sut_errors": errors}
    out["ratio"] = out["native"]["samples_per_s"] / out["reference"]["samples_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--quick", action="store_true", help="shorter runs")
    args = p.parse_args(argv)
    info = fastres.build_info()
    if not info["with_cuda"] or not info["cuda"]["devices"]:
        print(f"executor_gpu: needs a CUDA build and a GPU (with_cuda={info['with_cuda']}, "
              f"devices: {info['cuda']['status'] or 'none'})", file=sys.stderr)
        return 2
    batches = 100 if args.quick else 400
    seconds = 3.0 if args.quick else 8.0
    batch_us = 2000
    report: dict[str, Any] = {"gpu": _gpu_name(), "host": platform.node(), "cores": os.cpu_count(),
                              "fastres": fastres.__version__, "targets": {
                                  "pipeline_efficiency": TARGET_PIPELINE, "torch_ratio": TARGET_TORCH}}
    print(f"GPU: {report['gpu']}; TimedEngine batch 256, {batch_us} us a batch, 2 copy streams")
    rows = []
    for knobs in ({}, {"use_graphs": True}, {"start_from_device": True},
                  {"start_from_device": True, "use_graphs": True},
                  {"use_spin_wait": True, "start_from_device": True, "use_graphs": True}):
        r = pipeline_efficiency(batches, batch_us, knobs)
        rows.append(r)
        ok = r["efficiency"] >= TARGET_PIPELINE and r["wrong_answers"] == 0 and r["failed"] == 0
        print(f"  {json.dumps(knobs) or '{}':60s} {r['samples_per_s']:>10,.0f} samples/s "
              f"= {r['efficiency']:.3f} of ideal; wrong {r['wrong_answers']}, failed {r['failed']}"
              f"  {'PASS' if ok else 'FAIL'}")
    report["pipeline"] = rows
    lg = pipeline_under_loadgen(seconds, batch_us)
    if lg is not None:
        print(f"  LoadGen Offline (start_from_device, graphs): {lg['samples_per_s']:,.0f} samples/s "
              f"= {lg['efficiency']:.3f} of ideal, {'VALID' if lg['valid'] else 'INVALID'}")
    report["pipeline_loadgen"] = lg
    print("PyTorch ResNet50 fp16, Offline under LoadGen: native vs reference")
    torch_fig = torch_native_vs_reference(seconds)
    if torch_fig is not None:
        print(f"  reference {torch_fig['reference']['samples_per_s']:,.0f}, native "
              f"{torch_fig['native']['samples_per_s']:,.0f} samples/s: {torch_fig['ratio']:.2f}x "
              f"(target {TARGET_TORCH}x)")
    report["torch"] = torch_fig
    best = max(r["efficiency"] for r in rows)
    report["pass"] = {
        "pipeline_efficiency": best >= TARGET_PIPELINE and all(r["wrong_answers"] == 0 and r["failed"] == 0
                                                               for r in rows),
        "torch_ratio": None if torch_fig is None else torch_fig["ratio"] >= TARGET_TORCH,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if all(v is not False for v in report["pass"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

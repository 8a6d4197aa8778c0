"""CPU engines head to head: which engine × slots (sessions/streams) × threads × batch size
runs the embedded ResNet50 fastest on this machine, measured in one run.

Every candidate runs the same images through the native executor (``fastres.Executor`` with
the engine as a ``PythonEngine``, as the native SUT runs it: all images submitted at once, as
in Offline, timed to the last completion), after a warm-up pass. Its answers are checked
against the labels. A few raw loops (no executor) show the engines' own ceilings, among them
OpenVINO's asynchronous infer-request queue. Ratios are against ONNX Runtime fp32 with the
native SUT's old Offline default (the original MLPerf model, batch 8, 2 sessions × 1 thread).

Rounds: every candidate runs once per round and its best round counts, so a burst of load
from another process hurts one round, not the comparison.

    python bench/cpu_engines.py                 # ~6 minutes on 2 cores
    python bench/cpu_engines.py --quick         # fewer candidates, one round
    python bench/cpu_engines.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import fastres
from fastres.engines.onnxruntime import OnnxRuntimeEngine, _cores
from fastres.engines.quantize import TOP1_OUTPUT, Calibration, build_int8


@dataclass
class Candidate:
    label: str
    engine: str  # ort | ov
    form: str  # original | fp32 | cpu | tensorrt
    batch: int
    slots: int
    threads: int  # per slot (ort) or in all (ov)
    extra: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None  # None: through the executor; "sync" / "async": raw loops
    results: list[float] = field(default_factory=list)
    accuracy: float | None = None
    error: str | None = None


class Recorder:
    def __init__(self, n_labels: int) -> None:
        self.cond = threading.Condition()
        self.done = 0
        self.labels = np.full(n_labels, -1, np.int64)

    def __call__(self, ids: np.ndarray, labels: np.ndarray, error: str | None) -> None:
        with self.cond:
            if error is None:
                self.labels[ids.astype(np.int64) % len(self.labels)] = labels
            self.done += len(ids)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: self.done >= n, timeout):
                raise TimeoutError(f"{self.done}/{n} completed after {timeout}s")


def make_fn(c: Candidate, paths: dict[str, Path]) -> Any:
    model = paths[c.form]
    output, offset = ("ArgMax:0", -1) if c.form == "original" else (TOP1_OUTPUT, 0)
    if c.engine == "ort":
        return OnnxRuntimeEngine(model, slots=c.slots, intra_op_threads=c.threads,
                                 output_name=output, offset=offset, max_batch=c.batch)
    from fastres.engines.openvino import OpenVinoEngine

    return OpenVinoEngine(model, slots=c.slots, threads=c.threads, output_name=output,
                          offset=offset, max_batch=c.batch, **c.extra)


def through_executor(c: Candidate, paths: dict[str, Path], data: np.ndarray,
                     labels: np.ndarray, seconds: float) -> tuple[float, float]:
    """(images/s, top-1) with the engine in the native executor."""
    fn = make_fn(c, paths)
    fn.warm_up()
    engine = fastres.PythonEngine(fn, "float32", (3, 224, 224), c.batch)
    lib = fastres.SampleLibrary.for_engine(engine)
    n = len(data)
    lib.load(np.arange(n), data)
    config = fastres.ExecutorConfig(batch_size=c.batch, copy_streams=c.slots, infer_streams=1,
                                    complete_threads=1, batch_timeout_us=2000, deque_limit=0)
    rec = Recorder(n)
    with fastres.Executor(engine, lib, config, rec) as ex:
        ex.submit(np.arange(n, dtype=np.uint64), np.arange(n))  # warm-up pass, also checks answers
        rec.wait(n, 600)
        top1 = float(np.mean(rec.labels == labels))
        sent = n
        start = time.perf_counter()
        while True:
            ex.submit(np.arange(sent, sent + n, dtype=np.uint64), np.arange(n))
            sent += n
            rec.wait(sent, 600)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
    return (sent - n) / elapsed, top1


def raw_loop(c: Candidate, paths: dict[str, Path], data: np.ndarray, seconds: float) -> float:
    """images/s of the engine's own API, no executor: ``sync`` (one request/session, batch after
    batch) or ``async`` (OpenVINO's AsyncInferQueue with ``slots`` jobs over its streams)."""
    batches = [np.ascontiguousarray(data[s:s + c.batch])
               for s in range(0, len(data) - c.batch + 1, c.batch)]
    if c.engine == "ov":
        from fastres.engines.openvino import OpenVinoEngine

        fn = OpenVinoEngine(paths[c.form], slots=c.slots, threads=c.threads, output_name=TOP1_OUTPUT,
                            max_batch=c.batch, **c.extra)
        compiled = fn.compiled
        if c.raw == "async":
            import openvino as ov

            queue = ov.AsyncInferQueue(compiled, c.slots)
            run: Callable[[], None]

            def run() -> None:
                for b in batches:
                    queue.start_async({0: b})
                queue.wait_all()
        else:
            req = compiled.create_infer_request()

            def run() -> None:
                for b in batches:
                    req.infer({0: b})
    else:
        sess = OnnxRuntimeEngine(paths[c.form], slots=1, intra_op_threads=c.threads,
                                 output_name=TOP1_OUTPUT, offset=0)._new_session()

        def run() -> None:
            for b in batches:
                sess.run([TOP1_OUTPUT], {"input_tensor:0": b})
    run()  # warm-up
    count, start = 0, time.perf_counter()
    while True:
        run()
        count += len(batches) * c.batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def candidates(cores: int, quick: bool, openvino: bool) -> list[Candidate]:
    half = max(1, cores // 2)
    out = [Candidate("ORT fp32 original, b8, 2x1 (baseline)", "ort", "original", 8, 2, 1)]
    if not quick:
        out.append(Candidate("ORT fp32 original, b16, 1x2", "ort", "original", 16, 1, cores))
    ort_batches = (16, 32) if quick else (1, 8, 16, 32)
    for b in ort_batches:
        out.append(Candidate(f"ORT int8 cpu, b{b}, 1x{cores}", "ort", "cpu", b, 1, cores))
        out.append(Candidate(f"ORT int8 cpu, b{b}, {cores}x1", "ort", "cpu", b, cores, 1))
    if not quick:
        out.append(Candidate(f"ORT int8 cpu, b16, 2x{half}", "ort", "cpu", 16, 2, half)
                   if cores > 2 else Candidate("ORT int8 tensorrt form, b16, 1x2", "ort",
                                               "tensorrt", 16, 1, cores))
    if openvino:
        ov_batches = (16, 32) if quick else (1, 8, 16, 32)
        for b in ov_batches:
            out.append(Candidate(f"OV int8 cpu, b{b}, sync 1 stream x{cores} threads", "ov",
                                 "cpu", b, 1, cores, {"hint": "LATENCY"}))
            out.append(Candidate(f"OV int8 cpu, b{b}, {cores} streams x1 thread", "ov", "cpu",
                                 b, cores, cores, {"hint": "THROUGHPUT"}))
        if not quick:
            out.append(Candidate(f"OV int8 tensorrt form, b16, {cores} streams", "ov",
                                 "tensorrt", 16, cores, cores))
            out.append(Candidate(f"OV fp32 + bf16 hint, b16, {cores} streams", "ov", "fp32", 16,
                                 cores, cores, {"precision": "bf16"}))
            out.append(Candidate(f"OV int8 cpu, b16, raw sync (no executor)", "ov", "cpu", 16, 1,
                                 cores, {"hint": "LATENCY"}, raw="sync"))
            out.append(Candidate(f"OV int8 cpu, b16, raw async queue {cores} streams", "ov",
                                 "cpu", 16, cores, cores, raw="async"))
            out.append(Candidate(f"OV int8 cpu, b8, raw async queue {2 * cores} jobs/{cores} "
                                 "streams", "ov", "cpu", 8, cores, cores, raw="async"))
    if not quick:
        out.append(Candidate(f"ORT int8 cpu, b16, raw session.run x{cores}", "ort", "cpu", 16, 1,
                             cores, raw="sync"))
    return out


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("FASTRES_CACHE", Path.home() / ".cache" / "fastres")))
    p.add_argument("--variant", default="resnet50", choices=("resnet50", "tiny"))
    p.add_argument("--images", type=int, default=128, help="images per pass (default 128)")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per candidate and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", help="run only candidates whose label contains this text")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    from fastres.data.imagenet import ImagenetDataset
    from fastres.data.store import build_store
    from fastres.data.synthetic import make_default
    from fastres.engines.openvino import available

    default = make_default(args.cache_dir / "synthetic", variant=args.variant)
    store = build_store(ImagenetDataset(default.dataset_dir, default.val_map), "fp32", args.cache_dir)
    models = build_int8(default.model_path, Calibration.from_store(store, default.cal_list),
                        args.cache_dir)
    paths = {"original": default.model_path, "fp32": models.fp32, "cpu": models.cpu,
             "tensorrt": models.tensorrt}
    data = np.ascontiguousarray(store.data[:args.images])
    labels = store.labels[:args.images].astype(np.int64)
    cores = _cores()
    ov = available()
    todo = candidates(cores, args.quick, ov)
    if args.only:
        todo = [c for c in todo if args.only.lower() in c.label.lower() or c is todo[0]]
    rounds = 1 if args.quick else args.rounds
    import onnxruntime

    versions = f"onnxruntime {onnxruntime.__version__}"
    if ov:
        import openvino

        versions += f", openvino {openvino.__version__}"
    print(f"{platform.processor() or platform.machine()}, {cores} cores, {versions}; "
          f"{args.variant}, {args.images} images a pass, {args.seconds:g}s x {rounds} rounds; "
          f"load {load_avg()}", flush=True)
    if not ov:
        print("openvino not installed: OpenVINO candidates skipped (pip install "
              "'fastres[openvino]')", flush=True)
    started = time.monotonic()
    for r in range(rounds):
        for c in todo:
            try:
                if c.raw:
                    c.results.append(raw_loop(c, paths, data, args.seconds))
                else:
                    rate, top1 = through_executor(c, paths, data, labels, args.seconds)
                    c.results.append(rate)
                    c.accuracy = top1
            except Exception as exc:  # noqa: BLE001 - report and carry on
                c.error = f"{type(exc).__name__}: {exc}"
            print(f"  round {r + 1}: {c.label}: "
                  f"{c.results[-1] if c.results and not c.error else float('nan'):.1f} img/s "
                  f"(load {load_avg()})", file=sys.stderr, flush=True)
    base = max(todo[0].results) if todo[0].results else float("nan")
    print(f"\n{'candidate':<58} {'img/s':>8} {'vs ORT fp32':>11} {'top-1':>8}")
    for c in todo:
        if c.error or not c.results:
            print(f"{c.label:<58} failed: {c.error}")
            continue
        best = max(c.results)
        acc = f"{c.accuracy:.1%}" if c.accuracy is not None else "-"
        print(f"{c.label:<58} {best:8.1f} {best / base:10.2f}x {acc:>8}")
    ok = [c for c in todo if c.results and not c.error and c.raw is None]
    fastest = max(ok, key=lambda c: max(c.results))
    print(f"\nfastest through the executor: {fastest.label} ({max(fastest.results):.1f} img/s, "
          f"{max(fastest.results) / base:.2f}x ORT fp32); {time.monotonic() - started:.0f}s, "
          f"load {load_avg()}")
    if args.json:
        args.json.write_text(json.dumps([{"label": c.label, "images_per_s": c.results,
                                          "top1": c.accuracy, "error": c.error} for c in todo],
                                         indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

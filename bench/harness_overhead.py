"""Harness overhead: the reference harness and the native SUT with a null engine, through the
real LoadGen, in one run.

No model runs: the reference SUT gets a backend that answers at once (``NullBackend``), the
native SUT the C++ ``NullEngine``. Samples are 64 bytes (fp32 [1, 4, 4]) so that memory copies
do not hide the harness: what is measured is queueing, batching, threads, the GIL and
LoadGen's response calls.

For each SUT it prints the Offline samples/s and the highest Server QPS that LoadGen calls
VALID, found by search (doubling, then bisection, over short runs), and the ratios.

    python bench/harness_overhead.py                  # ~3-5 minutes on 2 cores
    python bench/harness_overhead.py --duration-ms 1000 --bisect 2   # quicker, rougher
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

import numpy as np

from fastres import loadgen as flg
from fastres.sut.native import NativeSUT, make_config, make_engine
from fastres.sut.reference import NullBackend, ReferenceSUT


class TinyStore:
    """A preprocessed-store stand-in with 64-byte samples."""

    format = "fp32"

    def __init__(self, n: int = 1024) -> None:
        self.data = np.zeros((n, 1, 4, 4), np.float32)
        self.labels = np.zeros(n, np.int32)

    def __len__(self) -> int:
        return len(self.data)

    def sample(self, i: int) -> np.ndarray:
        return self.data[i]

    def gather(self, idx) -> np.ndarray:
        return self.data[np.asarray(idx)]


def make_sut(kind: str, store: TinyStore, scenario: str, knobs: dict):
    if kind == "reference":
        return ReferenceSUT(None, store, scenario=scenario, backend=NullBackend((None, 1, 4, 4)))
    issue = "objects" if kind == "native-objects" else "fast"
    config = make_config(**knobs)
    engine = make_engine("null", store, config)
    return NativeSUT(engine, store, scenario=scenario, config=config, issue=issue)


def run(kind: str, scenario: str, target: float, args, store, knobs) -> flg.RunResult:
    settings = flg.make_settings(scenario, "performance", target_qps=target,
                                 min_duration_ms=args.duration_ms,
                                 max_duration_ms=max(4 * args.duration_ms, 10_000))
    with tempfile.TemporaryDirectory(prefix="fastres-overhead-") as out:
        with make_sut(kind, store, scenario, knobs) as sut:
            result = flg.run_test(sut.sut, sut.qsl, settings, out)
            errors = sut.errors
    if errors:
        raise SystemExit(f"{kind}: {errors} samples answered with errors; not a result")
    return result


def search_server(kind: str, args, store, knobs) -> tuple[float, list[tuple[float, bool, float]]]:
    """Highest VALID Server target QPS: double from args.start_qps until INVALID, then bisect."""
    trials: list[tuple[float, bool, float]] = []

    def trial(q: float) -> bool:
        r = run(kind, "Server", q, args, store, knobs)
        trials.append((q, r.valid, r.value or 0.0))
        print(f"  {kind:15s} Server target {q:>10,.0f}: {'VALID  ' if r.valid else 'INVALID'} "
              f"completed {r.value or 0:>10,.0f}/s  p99 {r.summary.latencies_ns.get('p99', 0) / 1e6:6.2f} ms",
              flush=True)
        return r.valid

    lo, hi = 0.0, None
    q = args.start_qps
    while q <= args.max_qps:
        if trial(q):
            lo = q
            q *= 2
        else:
            hi = q
            break
    if hi is None:
        return lo, trials
    for _ in range(args.bisect):
        mid = (lo + hi) / 2
        if trial(mid):
            lo = mid
        else:
            hi = mid
    return lo, trials


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration-ms", type=int, default=2000, help="min duration of each run")
    p.add_argument("--start-qps", type=float, default=10_000)
    p.add_argument("--max-qps", type=float, default=640_000)
    p.add_argument("--bisect", type=int, default=4, help="bisection steps after doubling")
    p.add_argument("--offline-qps", type=float, default=1_000_000,
                   help="Offline expected QPS (samples issued = this x duration)")
    p.add_argument("--suts", default="reference,native-fast,native-objects")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batch-timeout-us", type=int, default=500)
    p.add_argument("--copy-streams", type=int, default=2)
    p.add_argument("--complete-threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    knobs = {"batch_size": args.batch_size, "batch_timeout_us": args.batch_timeout_us,
             "copy_streams": args.copy_streams, "complete_threads": args.complete_threads}
    store = TinyStore()
    kinds = [k.strip() for k in args.suts.split(",") if k.strip()]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"harness overhead, null engine, 64-byte samples; {cpu}, {os.cpu_count()} cores; "
          f"native knobs {knobs}", flush=True)

    figures: dict[str, dict] = {}
    started = time.monotonic()
    for kind in kinds:
        off = run(kind, "Offline", args.offline_qps, args, store, knobs)
        print(f"  {kind:15s} Offline: {off.value:>12,.0f} samples/s "
              f"({'VALID' if off.valid else 'INVALID: ' + ', '.join(off.summary.unmet)})", flush=True)
        best, trials = search_server(kind, args, store, knobs)
        figures[kind] = {"offline_samples_per_s": off.value, "offline_valid": off.valid,
                         "server_best_valid_qps": best, "server_trials": trials}
    print(f"\nresults ({time.monotonic() - started:,.0f} s):")
    print(f"{'SUT':16s} {'Offline samples/s':>18s} {'Server max VALID QPS':>21s}")
    for kind, f in figures.items():
        print(f"{kind:16s} {f['offline_samples_per_s']:>18,.0f} {f['server_best_valid_qps']:>21,.0f}")
    if "reference" in figures:
        ref = figures["reference"]
        for kind, f in figures.items():
            if kind == "reference":
                continue
            srv = f["server_best_valid_qps"] / ref["server_best_valid_qps"] if ref["server_best_valid_qps"] else float("inf")
            off = f["offline_samples_per_s"] / ref["offline_samples_per_s"]
            print(f"{kind} / reference: Offline {off:.2f}x, Server {srv:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": {"cpu": cpu, "cores": os.cpu_count(),
                                                     "python": platform.python_version()},
                                         "knobs": knobs, "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

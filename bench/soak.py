"""Soak: the native SUT in Server for a long time with the null engine, at a fraction of its
highest VALID QPS, as consecutive LoadGen runs in one process.

Per window (one LoadGen run each) it checks and prints: LoadGen VALID, no lost or duplicate
responses (the executor's submitted == completed == LoadGen's issued samples, and the sink
reported every one exactly once), p99 latency, and the process's resident memory. At the end
it prints how much p99 and memory moved across the run. Exit status 1 if any window failed.

    python bench/soak.py --qps 120000 --minutes 10          # the issue's soak (80% of ~150k)
    python bench/soak.py --qps 50000 --minutes 1 --window-s 10   # a short one
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

import numpy as np

from fastres import loadgen as flg
from fastres.sut.native import NativeSUT, make_config, make_engine
from harness_overhead import TinyStore  # bench/ is on sys.path when run as a script


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--qps", type=float, required=True, help="Server target QPS (80%% of the highest VALID)")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--window-s", type=float, default=60.0, help="length of each LoadGen run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batch-timeout-us", type=int, default=500)
    args = p.parse_args()

    store = TinyStore()
    config = make_config("Server", batch_size=args.batch_size, batch_timeout_us=args.batch_timeout_us)
    engine = make_engine("null", store, config)
    windows = max(1, round(args.minutes * 60 / args.window_s))
    print(f"soak: native SUT, null engine, Server at {args.qps:,.0f} QPS, {windows} windows of "
          f"{args.window_s:.0f} s; knobs {config}", flush=True)
    rows, failed = [], 0
    for w in range(windows):
        settings = flg.make_settings("Server", "performance", target_qps=args.qps,
                                     min_duration_ms=int(args.window_s * 1000),
                                     max_duration_ms=int(args.window_s * 1000 * 2))
        with tempfile.TemporaryDirectory(prefix="fastres-soak-") as out:
            with NativeSUT(engine, store, scenario="Server", config=config) as sut:
                result = flg.run_test(sut.sut, sut.qsl, settings, out)
                stats = sut.stats()
                sink_done = int(sut.sink.completed_samples)
                errors = sut.errors
        lost = stats["submitted"] - stats["completed"]
        ok = result.valid and lost == 0 and sink_done == stats["submitted"] and errors == 0
        failed += not ok
        p99 = result.summary.latencies_ns.get("p99", float("nan")) / 1e6
        rows.append((p99, rss_mib()))
        print(f"  window {w + 1:2d}/{windows}: {'VALID' if result.valid else 'INVALID'} "
              f"completed {result.value:,.0f}/s, samples {stats['submitted']:,} submitted / "
              f"{stats['completed']:,} completed / {sink_done:,} reported, errors {errors}, "
              f"p99 {p99:.2f} ms, rss {rows[-1][1]:.0f} MiB{'' if ok else '  <-- FAILED'}", flush=True)
    p99s = np.array([r[0] for r in rows])
    rss = np.array([r[1] for r in rows])
    print(f"\np99 across windows: min {p99s.min():.2f} ms, median {np.median(p99s):.2f} ms, "
          f"max {p99s.max():.2f} ms; rss first {rss[0]:.0f} MiB, last {rss[-1]:.0f} MiB "
          f"(max rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    print("soak: " + ("PASS" if failed == 0 else f"{failed} window(s) FAILED"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

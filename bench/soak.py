"""Soak: the native SUT in Server with the null engine for a long time (default 10 minutes) at
80% of its highest VALID Server QPS, checking every window that no response was lost or
completed twice and that p99 latency stays where it started.

1. **Peak**: the highest Server target QPS LoadGen calls VALID for this SUT, found with the
   bench CLI's search (:func:`fastres.bench.search.find_peak`: start at the Offline
   throughput, double/halve to a VALID/INVALID bracket, bisect to ``--search-precision``) over
   short Server trials. ``--qps`` skips the search and soaks at that target instead.
2. **Soak** at ``--fraction`` (0.8) of the peak, for ``--minutes``, as consecutive LoadGen
   Server runs of ``--window-s`` each (LoadGen generates a run's whole schedule up front: at
   ~100k QPS one 10-minute run would need many GiB) on ONE executor, so that the executor's
   state carries over the whole soak.

Per window, from LoadGen's own logs and the executor's counters:

- LoadGen's verdict (VALID includes p99 under the 15 ms ResNet50 Server bound);
- **lost / duplicate responses**: the samples LoadGen issued (``result_query_count`` in
  ``mlperf_log_detail.txt``) = submitted to the executor = completed by it = reported by the
  LoadGen sink (each counter's increase over the window), and LoadGen's accuracy log, sampled
  (``accuracy_log_sampling_target`` per window, a new seed each window), holds no sequence id
  twice, none LoadGen did not issue, and every logged answer is its own sample's (the null
  engine answers each sample's index);
- p99 latency and the process's resident memory.

At the end: p99 across windows (min, median, max; the median of the last third over the
first third, which a queue that keeps growing or a leak pushes up) and memory growth from the
second window on (the first allocates LoadGen's buffers for the window size). PASS
when every window passed, the last-third/first-third p99 ratio is at most ``--p99-drift``
(2.0) and resident memory grew by at most ``--rss-growth-mib`` (64). Exit status 1 otherwise.
Speed is measured here, never asserted by a test.

    python bench/soak.py                          # the issue's soak: search, then 10 minutes
    python bench/soak.py --minutes 2 --window-s 20 --search-budget 60   # a short check
    python bench/soak.py --qps 100000 --minutes 10 --json soak.json      # at a known target
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fastres import _core
from fastres import loadgen as flg
from fastres.bench.search import Trial, find_peak, server_trial_settings
from fastres.sut.native import NativeSUT, make_config
from harness_overhead import TinyStore  # bench/ is on sys.path when run as a script

#: LoadGen's minimum query count for a Server run with early stopping at the 99th percentile
#: and no query over the bound is ~460; the bench CLI's search uses 1000.
SEARCH_MIN_QUERIES = 1000


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def index_engine(config: Any) -> Any:
    """The null engine, answering each sample's QSL index so that answers can be checked."""
    return _core.NullEngine(input_dtype="float32", input_shape=(1, 4, 4),
                            max_batch=int(config.batch_size), answer="index")


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.store = TinyStore()
        self.config = make_config("Server", batch_size=args.batch_size,
                                  batch_timeout_us=args.batch_timeout_us,
                                  copy_streams=args.copy_streams,
                                  complete_threads=args.complete_threads)
        self.engine = index_engine(self.config)
        self.tmp = Path(tempfile.mkdtemp(prefix="fastres-soak-"))

    # ---- one LoadGen run on a given SUT
    def run(self, sut: NativeSUT, scenario: str, out: Path, **kw: Any) -> flg.RunResult:
        settings = flg.make_settings(scenario, "performance", **kw)
        return flg.run_test(sut.sut, sut.qsl, settings, out)

    # ---- 1. the peak
    def offline_capacity(self) -> float:
        config = make_config("Offline", batch_size=self.args.batch_size,
                             copy_streams=self.args.copy_streams)
        with NativeSUT(index_engine(config), self.store, scenario="Offline",
                       config=config) as sut:
            r = self.run(sut, "Offline", self.tmp / "offline", target_qps=1_000_000,
                         min_duration_ms=1000, max_duration_ms=10_000)
        return float(r.value or 0.0)

    def search(self) -> tuple[float, dict[str, Any]]:
        start = self.offline_capacity()
        print(f"peak search: Offline {start:,.0f} samples/s; Server trials of "
              f"{self.args.search_time:g} s (budget {self.args.search_budget:g} s)", flush=True)
        n = [0]

        def trial(q: float) -> Trial:
            n[0] += 1
            began = time.monotonic()
            with NativeSUT(self.engine, self.store, scenario="Server",
                           config=self.config) as sut:
                r = self.run(sut, "Server", self.tmp / f"trial-{n[0]}",
                             **server_trial_settings(q, self.args.search_time,
                                                     SEARCH_MIN_QUERIES))
                failure = sut.failure
            ok = r.valid and failure is None
            p99 = r.summary.latencies_ns.get("p99")
            print(f"  trial {n[0]:2d}: target {q:>10,.0f}  {'VALID  ' if ok else 'INVALID'} "
                  f"p99 {(p99 or 0) / 1e6:6.2f} ms", flush=True)
            return Trial(load=q, ok=ok, value=r.value, p99_ns=p99,
                         wall_s=time.monotonic() - began, unmet=r.summary.unmet)

        found = find_peak(trial, start, precision=self.args.search_precision,
                          budget_s=self.args.search_budget)
        if found.peak is None:
            raise SystemExit(f"soak: no VALID Server target found ({found.stopped})")
        print(f"peak: {found.peak:,.0f} QPS VALID ({found.runs} trials, stopped by "
              f"{found.stopped}, bracket precision {found.precision_reached})", flush=True)
        return found.peak, found.as_dict()

    # ---- 2. the soak
    def window(self, sut: NativeSUT, w: int, qps: float, before: dict[str, int]) -> dict[str, Any]:
        a = self.args
        out = self.tmp / f"window-{w:03d}"
        settings = flg.make_settings("Server", "performance", target_qps=qps,
                                     min_duration_ms=int(a.window_s * 1000),
                                     max_duration_ms=int(a.window_s * 2000),
                                     min_query_count=SEARCH_MIN_QUERIES)
        settings.accuracy_log_sampling_target = int(a.sample_target)
        settings.accuracy_log_rng_seed = 1000 + w
        result = flg.run_test(sut.sut, sut.qsl, settings, out)
        stats = sut.stats()
        now = {"submitted": int(stats["submitted"]), "completed": int(stats["completed"]),
               "reported": int(sut.sink.completed_samples), "errors": int(sut.errors)}
        delta = {k: now[k] - before.get(k, 0) for k in now}
        issued = int(result.detail.values.get("result_query_count", -1)) if result.detail else -1
        log = json.loads((out / "mlperf_log_accuracy.json").read_text())
        seqs = [int(e["seq_id"]) for e in log]
        duplicates = len(seqs) - len(set(seqs))
        foreign = sum(not 0 <= s < issued for s in set(seqs))
        wrong = sum(int(np.frombuffer(bytes.fromhex(e["data"]), np.int32)[0]) != e["qsl_idx"]
                    for e in log if e["data"])
        empty = sum(not e["data"] for e in log)
        lost = issued - delta["completed"]
        counts_ok = issued == delta["submitted"] == delta["completed"] == delta["reported"]
        ok = (result.valid and counts_ok and delta["errors"] == 0 and duplicates == 0
              and foreign == 0 and wrong == 0 and empty == 0)
        p99 = result.summary.latencies_ns.get("p99", math.nan)
        row = {"window": w, "valid": result.valid, "unmet": result.summary.unmet,
               "issued": issued, **{f"{k}_delta": v for k, v in delta.items()},
               "lost": lost, "logged": len(log), "duplicates": duplicates, "foreign": foreign,
               "wrong_answers": wrong, "empty": empty,
               "completed_per_s": result.value, "p99_ms": p99 / 1e6,
               "p50_ms": result.summary.latencies_ns.get("p50", math.nan) / 1e6,
               "rss_mib": round(rss_mib(), 1), "ok": ok, "_now": now}
        for name in flg.LOG_FILES:  # keep the disk flat over a long soak
            (out / name).unlink(missing_ok=True)
        return row

    def soak(self, qps: float) -> list[dict[str, Any]]:
        a = self.args
        windows = max(1, round(a.minutes * 60 / a.window_s))
        print(f"soak: native SUT, null engine, Server at {qps:,.0f} QPS, {windows} windows of "
              f"{a.window_s:g} s on one executor ({self.config}); accuracy log sampled "
              f"~{a.sample_target:,} responses a window", flush=True)
        rows: list[dict[str, Any]] = []
        before: dict[str, int] = {}
        with NativeSUT(self.engine, self.store, scenario="Server", config=self.config) as sut:
            for w in range(1, windows + 1):
                row = self.window(sut, w, qps, before)
                before = row.pop("_now")
                rows.append(row)
                print(f"  window {w:3d}/{windows}: {'VALID  ' if row['valid'] else 'INVALID'} "
                      f"{row['completed_per_s'] or 0:>9,.0f}/s  issued {row['issued']:>9,} "
                      f"completed {row['completed_delta']:>9,} lost {row['lost']} "
                      f"dup {row['duplicates']} (of {row['logged']:,} logged) wrong "
                      f"{row['wrong_answers']}  p50 {row['p50_ms']:.3f} ms  p99 "
                      f"{row['p99_ms']:.3f} ms  rss {row['rss_mib']:.0f} MiB"
                      + ("" if row["ok"] else "   <-- FAILED"), flush=True)
        return rows


def summarise(rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    p99 = np.array([r["p99_ms"] for r in rows])
    third = max(1, len(rows) // 3)
    first, last = float(np.median(p99[:third])), float(np.median(p99[-third:]))
    drift = last / first if first > 0 else math.inf
    rss = [r["rss_mib"] for r in rows]
    # the first window's run allocates LoadGen's schedule and log buffers for the window's
    # size: growth counts from the second window on, once that has happened
    base = 1 if len(rows) >= 3 else 0
    growth = rss[-1] - rss[base]
    failed = [r["window"] for r in rows if not r["ok"]]
    verdict = {
        "windows": len(rows), "failed_windows": failed,
        "issued": sum(r["issued"] for r in rows),
        "lost": sum(r["lost"] for r in rows), "duplicates": sum(r["duplicates"] for r in rows),
        "wrong_answers": sum(r["wrong_answers"] for r in rows),
        "logged": sum(r["logged"] for r in rows),
        "p99_ms": {"min": float(p99.min()), "median": float(np.median(p99)),
                   "max": float(p99.max()), "first_third_median": first,
                   "last_third_median": last, "drift": drift},
        "rss_mib": {"first": rss[0], "baseline_window": base + 1, "baseline": rss[base],
                    "last": rss[-1], "growth": growth,
                    "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
    }
    verdict["pass"] = (not failed and drift <= args.p99_drift
                       and growth <= args.rss_growth_mib)
    return verdict


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    p.add_argument("--window-s", type=float, default=30.0,
                   help="length of each LoadGen run of the soak (default 30)")
    p.add_argument("--fraction", type=float, default=0.8,
                   help="soak target as a fraction of the highest VALID QPS (default 0.8)")
    p.add_argument("--qps", type=float, help="soak at this target; skips the peak search")
    p.add_argument("--search-budget", type=float, default=120.0,
                   help="seconds the peak search may take (default 120)")
    p.add_argument("--search-time", type=float, default=2.0,
                   help="minimum duration of each search trial (default 2 s)")
    p.add_argument("--search-precision", type=float, default=0.05)
    p.add_argument("--sample-target", type=int, default=20_000,
                   help="responses LoadGen logs per window to check them (default 20,000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batch-timeout-us", type=int, default=500)
    p.add_argument("--copy-streams", type=int, default=2)
    p.add_argument("--complete-threads", type=int, default=1)
    p.add_argument("--p99-drift", type=float, default=2.0,
                   help="most the last third's median p99 may exceed the first third's (x)")
    p.add_argument("--rss-growth-mib", type=float, default=64.0)
    p.add_argument("--json", type=Path, help="also write every figure here")
    args = p.parse_args()
    if not 0 < args.fraction <= 1:
        p.error("--fraction must be in (0, 1]")

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"soak on {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}",
          flush=True)
    started = time.monotonic()
    s = Soak(args)
    search: dict[str, Any] | None = None
    try:
        if args.qps:
            peak, qps = None, args.qps
        else:
            peak, search = s.search()
            qps = round(args.fraction * peak)
        rows = s.soak(qps)
    finally:
        shutil.rmtree(s.tmp, ignore_errors=True)
    verdict = summarise(rows, args)
    p99, rss = verdict["p99_ms"], verdict["rss_mib"]
    print(f"\nsoak at {qps:,.0f} QPS"
          + (f" ({100 * args.fraction:g}% of the highest VALID {peak:,.0f})" if peak else "")
          + f", {len(rows)} windows, {time.monotonic() - started:,.0f} s in all")
    print(f"responses: {verdict['issued']:,} issued, {verdict['lost']} lost, "
          f"{verdict['duplicates']} duplicate and {verdict['wrong_answers']} wrong among "
          f"{verdict['logged']:,} logged")
    print(f"p99 per window: min {p99['min']:.3f} ms, median {p99['median']:.3f} ms, max "
          f"{p99['max']:.3f} ms; last third / first third {p99['drift']:.2f}x "
          f"(at most {args.p99_drift:g}x)")
    print(f"rss: {rss['first']:.0f} MiB after the first window, {rss['baseline']:.0f} MiB "
          f"after window {rss['baseline_window']}, {rss['last']:.0f} MiB after the last "
          f"({rss['growth']:+.1f} MiB since window {rss['baseline_window']}; at most "
          f"+{args.rss_growth_mib:g}); max rss {rss['max_rss']:.0f} MiB")
    print("soak: " + ("PASS" if verdict["pass"] else
                      f"FAIL (windows failed: {verdict['failed_windows'] or 'none'})"))
    if args.json:
        args.json.write_text(json.dumps({"qps": qps, "peak": peak, "search": search,
                                         "knobs": str(s.config), "windows": rows,
                                         "verdict": verdict}, indent=2, default=str))
    return 0 if verdict["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())

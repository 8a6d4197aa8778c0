"""Per-query latencies from LoadGen's trace, reduced to a histogram for the report.

What LoadGen 6.0.17 writes (checked against its summaries): ``mlperf_log_detail.txt`` holds only
the percentiles (``result_*_percentile_latency_ns``), no per-query figures. With
``LogSettings.enable_trace`` it also writes ``mlperf_log_trace.json``, a Chrome trace with one
``"name":"Sample"`` begin event (``"ph":"b"``) per sample whose ``args`` carry ``query_seq`` and
``complete_ns``: the time from the query's scheduled start to the sample's completion, which is
exactly the latency LoadGen's percentiles are computed from. A query's latency is its slowest
sample's (MultiStream: 8 samples a query); recomputing the summary's percentiles from these
events reproduces them (nearest rank). The file is not strict JSON (some ``LogDetail`` args are
double-quoted twice), so it is read line by line.

The trace costs LoadGen about 300 bytes and a few hundred ns per sample: nothing beside a model
that takes a millisecond, but 15-45% of a null engine's throughput (measured here at ~1M
samples/s), so the bench enables it only where that cost is negligible (``--latency-trace``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_trace_latencies", "distribution", "nearest_rank"]

_SAMPLE = re.compile(r'"query_seq":(\d+).*?"complete_ns":(-?\d+)')
#: Percentiles LoadGen reports, as keyed in ``Summary.latencies_ns``.
PERCENTILES = (50.0, 90.0, 95.0, 97.0, 99.0, 99.9)


def read_trace_latencies(path: str | Path, per_query: bool) -> np.ndarray | None:
    """Latencies in ns from ``mlperf_log_trace.json``: one per sample, or one per query (its
    slowest sample) when ``per_query``. None when the file is missing or holds no samples."""
    p = Path(path)
    if not p.is_file():
        return None
    queries: list[int] = []
    complete: list[int] = []
    with p.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"name":"Sample"' not in line or '"ph":"b"' not in line:
                continue
            m = _SAMPLE.search(line)
            if m:
                queries.append(int(m.group(1)))
                complete.append(int(m.group(2)))
    if not complete:
        return None
    lat = np.asarray(complete, dtype=np.int64)
    if per_query:
        q = np.asarray(queries, dtype=np.int64)
        per = np.zeros(int(q.max()) + 1, dtype=np.int64)
        np.maximum.at(per, q, lat)
        seen = np.zeros(per.shape, dtype=bool)
        seen[q] = True
        lat = per[seen]
    return lat


def nearest_rank(values: np.ndarray, percentile: float) -> float:
    """LoadGen's percentile: the sorted values' element at 0-based index floor(p/100 * n)."""
    v = np.sort(values)
    k = int(math.floor(percentile / 100.0 * len(v)))
    return float(v[min(k, len(v) - 1)])


def distribution(latencies: np.ndarray, bins: int = 48) -> dict[str, Any]:
    """A JSON-ready summary: log-spaced histogram (``edges_ns``, ``counts``), count, min, mean,
    max and LoadGen's percentiles."""
    lat = np.asarray(latencies, dtype=np.float64)
    lo, hi = float(lat.min()), float(lat.max())
    lo = max(lo, 1.0)
    if hi <= lo * 1.01:
        edges = np.linspace(lo * 0.99, hi * 1.01 + 1, bins + 1)
    else:
        edges = np.geomspace(lo, hi * 1.0001, bins + 1)
    counts, edges = np.histogram(np.clip(lat, lo, None), bins=edges)
    return {
        "count": int(lat.size),
        "min_ns": lo, "mean_ns": float(lat.mean()), "max_ns": hi,
        "percentiles_ns": {f"p{p:g}": nearest_rank(lat, p) for p in PERCENTILES},
        "edges_ns": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
    }

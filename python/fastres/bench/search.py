"""Finding a SUT's peak: the highest load at which a run still passes, over short runs.

Used for the Server scenario, where the load is LoadGen's target QPS and "passes" is LoadGen's
VALID verdict (which includes the p99 latency bound). The search knows nothing about LoadGen:
it calls ``trial(load)`` and reads ``Trial.ok``, so it can be driven by a test double.

1. **Bracket**: start at ``start`` (the SUT's Offline throughput: no Server target above it can
   hold for long). While every trial passed, double; while every trial failed, halve; stop at
   the first pair (highest pass, lowest fail) or at ``floor`` / ``ceiling``.
2. **Bisect** geometrically (``sqrt(lo * hi)``) until ``hi / lo - 1 <= precision``.
3. The caller confirms the result with one full run at :attr:`SearchResult.peak`.

Before each trial the search checks its budget (``budget_s`` of wall time, ``max_runs``
trials) against that trial's expected duration, and stops early rather than overrun; the result
then says so (``stopped``) and how precise it got (``precision_reached``). Not thread-safe;
runs the trials one after another in the calling thread.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

from ..errors import InvalidArgument

__all__ = ["Trial", "SearchResult", "find_peak", "nice", "server_trial_settings"]


@dataclasses.dataclass
class Trial:
    """One short run at ``load``: whether it passed, and what it measured."""

    load: float
    ok: bool
    value: float | None = None  # e.g. completed samples/s
    p99_ns: float | None = None
    wall_s: float = 0.0
    unmet: list[str] = dataclasses.field(default_factory=list)
    log_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SearchResult:
    """What a search found. ``peak`` is the highest load that passed (None if none did);
    ``failed_above`` the lowest load that failed above it (None if none did)."""

    peak: float | None
    failed_above: float | None
    start: float
    precision: float
    precision_reached: float | None
    trials: list[Trial]
    stopped: str  # "precision", "budget", "runs", "floor", "ceiling", "no progress"
    elapsed_s: float
    budget_s: float
    max_runs: int

    @property
    def runs(self) -> int:
        return len(self.trials)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["runs"] = self.runs
        return d


def server_trial_settings(target_qps: float, trial_s: float, min_queries: int) -> dict[str, Any]:
    """``fastres.loadgen.make_settings`` keywords of one Server search trial: quick settings at
    ``target_qps``, at least ``trial_s`` seconds and ``min_queries`` queries (LoadGen's early
    stopping needs about 500 at the 99th percentile even with no query over the bound), and
    room to reach them before the maximum duration."""
    max_s = max(2 * trial_s, 1.5 * min_queries / target_qps)
    return {"official": False, "target_qps": target_qps, "min_duration_ms": int(1000 * trial_s),
            "max_duration_ms": int(1000 * max_s), "min_query_count": int(min_queries)}


def nice(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (targets read better as 412 than
    411.83; the search never needs more precision than that)."""
    if x <= 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(x))))


def find_peak(trial: Callable[[float], Trial], start: float, *, precision: float = 0.05,
              budget_s: float = 60.0, max_runs: int = 16, floor: float | None = None,
              ceiling: float | None = None,
              expected_s: Callable[[float], float] | None = None,
              on_trial: Callable[[Trial, int], None] | None = None,
              clock: Callable[[], float] = time.monotonic) -> SearchResult:
    """Search the highest ``load`` for which ``trial(load).ok``; see the module docstring.

    ``expected_s(load)`` estimates one trial's duration for the budget check (default: the
    mean of the trials so far; the first trial always runs). ``on_trial(trial, n)`` is called
    after each trial (progress display). ``floor``/``ceiling`` bound the bracketing (default
    ``start / 1024`` and ``start * 64``). Raises InvalidArgument for a bad argument.
    """
    if not (start > 0 and math.isfinite(start)):
        raise InvalidArgument(f"search start must be a positive number, got {start!r}")
    if not 0 < precision < 1:
        raise InvalidArgument(f"search precision must be between 0 and 1 (e.g. 0.05 for 5%), "
                              f"got {precision!r}")
    if not budget_s > 0:
        raise InvalidArgument(f"search budget must be positive seconds, got {budget_s!r}")
    if int(max_runs) < 1:
        raise InvalidArgument(f"search max_runs must be at least 1, got {max_runs!r}")
    floor = start / 1024 if floor is None else floor
    ceiling = start * 64 if ceiling is None else ceiling
    digits = 2 + math.ceil(-math.log10(precision))  # rounding never stalls the bisection
    began = clock()
    trials: list[Trial] = []
    lo: float | None = None  # highest load that passed
    hi: float | None = None  # lowest load that failed, above lo

    def affordable(load: float) -> str | None:
        if not trials:
            return None
        if len(trials) >= max_runs:
            return "runs"
        if expected_s is not None:
            need = expected_s(load)
        else:
            need = sum(t.wall_s for t in trials) / len(trials)
        if clock() - began + need > budget_s:
            return "budget"
        return None

    def run(load: float) -> Trial:
        t = trial(load)
        trials.append(t)
        if on_trial is not None:
            on_trial(t, len(trials))
        return t

    def result(stopped: str) -> SearchResult:
        reached = (hi / lo - 1) if (lo and hi) else None
        return SearchResult(peak=lo, failed_above=hi, start=start, precision=precision,
                            precision_reached=reached, trials=trials, stopped=stopped,
                            elapsed_s=clock() - began, budget_s=budget_s, max_runs=int(max_runs))

    load = nice(start, digits)
    while lo is None or hi is None:  # bracket
        why = affordable(load)
        if why:
            return result(why)
        if run(load).ok:
            lo = load
            if hi is None:
                load = nice(load * 2, digits)
                if load > ceiling:
                    return result("ceiling")
        else:
            hi = load
            if lo is None:
                load = nice(load / 2, digits)
                if load < floor:
                    return result("floor")
    while hi / lo - 1 > precision:  # bisect
        load = nice(math.sqrt(lo * hi), digits)
        if not lo < load < hi:
            return result("no progress")
        why = affordable(load)
        if why:
            return result(why)
        if run(load).ok:
            lo = load
        else:
            hi = load
    return result("precision")

"""The Server peak search (``fastres.bench.search``): on test doubles with a known ceiling, and
through LoadGen on a native SUT whose capacity is fixed."""

from __future__ import annotations

import math
import random
import threading
import time

import numpy as np
import pytest

import fastres
from fastres import loadgen as flg
from fastres.bench.search import Trial, find_peak, nice, server_trial_settings
from fastres.errors import InvalidArgument
from fastres.sut.native import NativeSUT, make_config


class FakeClock:
    """A clock the trials advance, so budgets are tested without waiting."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def ceiling_double(ceiling: float, clock: FakeClock | None = None, cost_s: float = 1.0,
                   noise: float = 0.0, seed: int = 0):
    """A SUT that passes exactly up to ``ceiling`` (± ``noise``, a fraction, per trial)."""
    rng = random.Random(seed)
    loads: list[float] = []

    def trial(load: float) -> Trial:
        loads.append(load)
        if clock is not None:
            clock.t += cost_s
        limit = ceiling * (1 + rng.uniform(-noise, noise))
        return Trial(load=load, ok=load <= limit, wall_s=cost_s)

    return trial, loads


@pytest.mark.parametrize("start", [37.0, 437.0, 1000.0, 25_000.0])
@pytest.mark.parametrize("precision", [0.05, 0.01])
def test_exact_ceiling_is_found_within_the_precision(start, precision):
    ceiling = 437.0
    trial, loads = ceiling_double(ceiling)
    result = find_peak(trial, start, precision=precision, budget_s=1e9, max_runs=100)
    assert result.stopped == "precision"
    assert result.peak <= ceiling < result.failed_above
    assert result.failed_above / result.peak - 1 <= precision
    assert ceiling / result.peak - 1 <= precision
    assert result.runs == len(loads) and result.precision_reached <= precision
    # Doubling/halving from the start, then bisection: log2 of the distance plus log2 of the
    # bisection steps to the precision, not a scan.
    bracket = math.ceil(abs(math.log2(start / ceiling))) + 1
    bisect = math.ceil(math.log2(math.log(2) / math.log1p(precision)))
    assert result.runs <= bracket + bisect + 1


def test_noisy_ceiling_is_found_within_ten_percent():
    for seed in range(20):
        trial, _ = ceiling_double(500.0, noise=0.04, seed=seed)
        result = find_peak(trial, 800.0, precision=0.05, budget_s=1e9)
        assert abs(result.peak / 500.0 - 1) <= 0.10, (seed, result)


def test_budget_is_respected_and_reported():
    clock = FakeClock()
    trial, loads = ceiling_double(437.0, clock=clock, cost_s=10.0)
    result = find_peak(trial, 1000.0, precision=0.001, budget_s=35.0, clock=clock)
    assert result.stopped == "budget"
    assert len(loads) == 3  # a fourth 10 s trial would end past 35 s
    assert result.elapsed_s <= 35.0
    # What it found so far is still right, only less precise.
    assert result.peak <= 437.0 < result.failed_above


def test_expected_duration_drives_the_budget():
    clock = FakeClock()
    loads: list[float] = []

    def trial(load: float) -> Trial:  # low targets take long: a fixed query count, low rate
        loads.append(load)
        clock.t += 2000.0 / load
        return Trial(load=load, ok=load <= 437.0, wall_s=2000.0 / load)

    result = find_peak(trial, 1000.0, precision=0.001, budget_s=30.0, clock=clock,
                       expected_s=lambda load: 2000.0 / load)
    assert result.stopped == "budget" and result.elapsed_s <= 30.0
    assert loads[:3] == [1000.0, 500.0, 250.0] and result.peak <= 437.0 < result.failed_above


def test_max_runs_and_first_trial_always_runs():
    trial, loads = ceiling_double(437.0)
    assert find_peak(trial, 1000.0, max_runs=2, budget_s=1e9).stopped == "runs"
    assert len(loads) == 2
    clock = FakeClock()
    trial, loads = ceiling_double(437.0, clock=clock, cost_s=100.0)
    result = find_peak(trial, 1000.0, budget_s=1.0, clock=clock)
    assert len(loads) == 1 and result.stopped == "budget" and result.peak is None


def test_nothing_passes_and_everything_passes():
    result = find_peak(lambda q: Trial(load=q, ok=False), 100.0, budget_s=1e9, max_runs=100)
    assert result.peak is None and result.stopped == "floor" and result.failed_above
    result = find_peak(lambda q: Trial(load=q, ok=True), 100.0, budget_s=1e9, max_runs=100)
    assert result.failed_above is None and result.stopped == "ceiling" and result.peak >= 3200


@pytest.mark.parametrize("kwargs, message", [
    ({"start": 0.0}, "start"),
    ({"start": float("nan")}, "start"),
    ({"precision": 0.0}, "precision"),
    ({"precision": 1.5}, "precision"),
    ({"budget_s": 0.0}, "budget"),
    ({"max_runs": 0}, "max_runs"),
])
def test_bad_arguments_are_refused(kwargs, message):
    args = {"start": 100.0, **kwargs}
    start = args.pop("start")
    with pytest.raises(InvalidArgument, match=message):
        find_peak(lambda q: Trial(load=q, ok=True), start, **args)


def test_nice_and_trial_settings():
    assert nice(411.83) == 412 and nice(0.0012345) == 0.00123 and nice(98765.4, 4) == 98770
    kw = server_trial_settings(250.0, 1.0, 1000)
    assert kw["max_duration_ms"] >= 1500 * 1000 / 250.0  # room for the minimum query count
    settings = flg.make_settings("Server", "performance", **kw)
    assert settings.server_target_qps == 250.0 and settings.min_query_count == 1000


# ------------------------------------------------------------------------------------------
# through LoadGen, on a native SUT of fixed capacity


class _Store:
    format = "fp32"

    def __init__(self, n: int = 256) -> None:
        self.data = np.zeros((n, 1, 4, 4), np.float32)
        self.labels = np.zeros(n, np.int32)

    def __len__(self) -> int:
        return len(self.data)


class PacedBatches:
    """An engine that takes exactly ``batch_s`` per batch whatever its size, like an
    accelerator: back-to-back batches end ``batch_s`` apart (scheduling delays of this thread
    are absorbed, not accumulated), so the SUT's capacity is max_batch / batch_s."""

    def __init__(self, batch_s: float) -> None:
        self.batch_s = batch_s
        self._end = 0.0
        self._lock = threading.Lock()

    def __call__(self, inputs, labels, indices) -> None:
        with self._lock:
            now = time.perf_counter()
            start = self._end if now - self._end < 0.2 * self.batch_s else now
            self._end = start + self.batch_s
            end = self._end
        delay = end - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        labels[:] = 0


@pytest.mark.slow
def test_search_finds_the_ceiling_of_a_fixed_capacity_sut_through_loadgen(tmp_path):
    """Capacity 800 samples/s: batches of up to 32 every 40 ms (the batcher waits up to 40 ms to
    fill one and takes at most 32, so every batch is full under load). Below capacity a query
    waits at most about two batches (~80-160 ms); above it, the queue grows for the whole
    trial, past the 200 ms bound within 2 s at 5% over capacity. So LoadGen's Server verdict
    flips within a few percent of 800 QPS, and the search must land within 10% of it, starting
    from an over-estimate as the bench does from the Offline throughput."""
    batch, batch_s = 32, 0.040
    capacity = batch / batch_s
    store = _Store()
    config = make_config("Server", batch_size=batch, copy_streams=1,
                         batch_timeout_us=int(batch_s * 1e6), deque_limit=batch)
    engine = fastres.PythonEngine(PacedBatches(batch_s), "float32", (1, 4, 4), batch)
    seen: list[tuple[float, bool, float]] = []

    def trial(load: float) -> Trial:
        settings = flg.make_settings("Server", "performance", server_target_latency_ns=200_000_000,
                                     **server_trial_settings(load, 2.0, 1000))
        with NativeSUT(engine, store, scenario="Server", config=config) as sut:
            r = flg.run_test(sut.sut, sut.qsl, settings, tmp_path / f"trial-{len(seen)}")
            assert sut.errors == 0
        p99 = r.summary.latencies_ns.get("p99", 0.0)
        seen.append((load, r.valid, p99 / 1e6))
        return Trial(load=load, ok=r.valid, value=r.value, p99_ns=p99, wall_s=r.wall_s)

    result = find_peak(trial, 1.5 * capacity, precision=0.05, budget_s=90.0)
    assert result.peak is not None, seen
    assert abs(result.peak / capacity - 1) <= 0.10, (result.peak, seen)

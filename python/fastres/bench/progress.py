"""Progress of a long bench invocation: which run (SUT, scenario, mode), elapsed and expected
time. Three outputs:

- ``human`` (default): one line per run on stderr, and for runs expected to take more than
  ``tick_s`` a "still running" line every ``tick_s`` seconds;
- ``quiet`` (``--quiet``): nothing;
- ``json`` (``--json``): JSON lines on **stdout**, one object per event, each with ``"event"``
  and ``"elapsed_s"``; stdout then carries nothing else. Events: ``start`` (plan: runs,
  expected_s, output), ``run_start`` / ``run_end`` (one LoadGen run: index, total, kind, sut,
  scenario, mode, expected_s, remaining_s; run_end adds metric, value, valid, accuracy,
  wall_s), ``tick``, ``search`` (a finished peak search), ``message`` (text), ``done``
  (results, report_md, report_html, rc) and ``error`` (message).

Expected times are estimates from the settings (durations, query counts, the throughput
measured so far), scaled by how the finished runs compared with their estimates.
Thread-safe: the ticker thread and the caller share one lock.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Union

#: An expected duration in seconds, or a function that estimates it when asked (estimates of
#: later runs improve as the first runs measure the SUTs).
Estimate = Union[float, Callable[[], float]]

__all__ = ["Progress", "fmt_duration"]

MODES = ("human", "quiet", "json")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    def __init__(self, mode: str = "human", *, human: IO[str] | None = None,
                 machine: IO[str] | None = None, tick_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in MODES:
            raise ValueError(f"progress mode {mode!r}: choose one of {', '.join(MODES)}")
        self.mode = mode
        self._human = human
        self._machine = machine
        self.tick_s = tick_s
        self._clock = clock
        self._began = clock()
        self._lock = threading.Lock()
        self.total = 0
        self.index = 0
        self._expected_left: list[Estimate] = []  # runs not started yet
        self._current: float | None = None  # the running run's estimate
        self._done_expected = 0.0
        self._done_actual = 0.0
        self._tick_stop: threading.Event | None = None
        self._tick_thread: threading.Thread | None = None

    # ---- output
    def elapsed(self) -> float:
        return self._clock() - self._began

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event: a JSON line in json mode; nothing otherwise (see :meth:`say`)."""
        if self.mode != "json":
            return
        record = {"event": event, "elapsed_s": round(self.elapsed(), 3), **fields}
        with self._lock:
            out = self._machine or sys.stdout
            out.write(json.dumps(record, default=str) + "\n")
            out.flush()

    def say(self, text: str, **fields: Any) -> None:
        """A message: a line on stderr (human), a ``message`` event (json), nothing (quiet)."""
        if self.mode == "human":
            with self._lock:
                out = self._human or sys.stderr
                out.write(text + "\n")
                out.flush()
        elif self.mode == "json":
            self.emit("message", text=text.strip(), **fields)

    # ---- the plan
    def plan(self, expected: list[Estimate], **fields: Any) -> None:
        """Declare the runs still to come (their expected seconds, in order)."""
        self._expected_left = list(expected)
        self.total = self.index + len(expected)
        self.emit("start", runs=self.total, expected_s=round(self.remaining(), 1), **fields)

    def add(self, expected: list[Estimate]) -> None:
        """Runs that turned out to be needed before the planned ones (a probe, a rerun)."""
        self._expected_left[0:0] = list(expected)
        self.total += len(expected)

    def remaining(self) -> float:
        """Expected seconds left: the runs not started, the rest of the current one."""
        scale = self._done_actual / self._done_expected if self._done_expected > 0 else 1.0
        scale = min(max(scale, 0.5), 4.0)
        left = sum(e() if callable(e) else e for e in self._expected_left)
        return scale * (left + (self._current or 0.0))

    # ---- runs
    def run_start(self, *, kind: str, sut: str, scenario: str, mode: str,
                  expected_s: float, note: str = "") -> None:
        self.index += 1
        if self._expected_left:
            self._expected_left.pop(0)  # the plan's estimate, replaced by the caller's
        self.total = max(self.total, self.index)
        self._current = expected_s
        remaining = self.remaining()
        if self.mode == "human":
            label = f"{sut} {scenario} {mode}" + (f" ({kind})" if kind != "run" else "")
            self.say(f"[{self.index}/{self.total}] {label}{(' ' + note) if note else ''} · "
                     f"elapsed {fmt_duration(self.elapsed())} · this run ~{fmt_duration(expected_s)}"
                     f" · left ~{fmt_duration(remaining)}")
        self.emit("run_start", index=self.index, total=self.total, kind=kind, sut=sut,
                  scenario=scenario, mode=mode, expected_s=round(expected_s, 1),
                  remaining_s=round(remaining, 1), note=note or None)
        self._start_ticker(expected_s, f"{sut} {scenario} {mode}")

    def run_end(self, result: dict[str, Any], *, kind: str = "run",
                took_s: float | None = None) -> None:
        """``took_s``: the run's whole time (SUT set-up included; default LoadGen's wall_s)."""
        self._stop_ticker()
        expected, self._current = self._current or 0.0, None
        wall = float(took_s if took_s is not None else (result.get("wall_s") or 0.0))
        self._done_expected += expected
        self._done_actual += wall
        if self.mode == "human":
            if result.get("failed"):
                self.say(f"    FAILED, not a result: {result['failed']}")
            elif result.get("mode") == "performance":
                v = result.get("value")
                verdict = "VALID" if result.get("valid") else (
                    "INVALID (not satisfied: " + ", ".join(result.get("unmet") or []) + ")")
                self.say(f"    {result.get('metric')}: {v:,.4g} {verdict}" if v is not None
                         else f"    no figure ({verdict})")
            elif result.get("accuracy") is not None:
                self.say(f"    top-1 {result['accuracy']:.3f}% "
                         f"({result['accuracy_good']}/{result['accuracy_total']})")
        self.emit("run_end", index=self.index, total=self.total, kind=kind,
                  sut=result.get("sut"), scenario=result.get("scenario"), mode=result.get("mode"),
                  metric=result.get("metric"), value=result.get("value"),
                  valid=result.get("valid"), accuracy=result.get("accuracy"),
                  sut_errors=result.get("sut_errors"), failed=result.get("failed"),
                  audit=result.get("audit"), wall_s=wall,
                  log_dir=result.get("log_dir"), remaining_s=round(self.remaining(), 1))

    # ---- "still running" lines for long runs
    def _start_ticker(self, expected_s: float, label: str) -> None:
        if self.mode == "quiet" or expected_s < self.tick_s:
            return
        stop = threading.Event()
        started = self._clock()

        def tick() -> None:
            while not stop.wait(self.tick_s):
                ran = self._clock() - started
                if self.mode == "human":
                    self.say(f"    ... {label}: {fmt_duration(ran)} of ~{fmt_duration(expected_s)}")
                self.emit("tick", run=label, run_elapsed_s=round(ran, 1),
                          expected_s=round(expected_s, 1))

        self._tick_stop = stop
        self._tick_thread = threading.Thread(target=tick, name="fastres-progress", daemon=True)
        self._tick_thread.start()

    def _stop_ticker(self) -> None:
        if self._tick_stop is not None:
            self._tick_stop.set()
            if self._tick_thread is not None:
                self._tick_thread.join()
        self._tick_stop = self._tick_thread = None

    def close(self) -> None:
        self._stop_ticker()

"""A small progress display for long work (preprocessing, model building, runs).

Writes one updating line to stderr when it is a terminal, and a line every ~10% otherwise, so
logs of CI runs stay short. ``quiet=True`` silences it.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, desc: str, *, quiet: bool = False, stream: TextIO | None = None,
                 unit: str = "it") -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.quiet = quiet
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = time.monotonic()
        self._last_print = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.quiet:
            return
        now = time.monotonic()
        if self._tty:
            if now - self._last_print >= 0.1 or self.done >= self.total:
                self._last_print = now
                self.stream.write("\r" + self._line(now))
                self.stream.flush()
        else:
            decile = (10 * self.done) // self.total if self.total else 10
            if decile != self._last_decile and decile % 2 == 0 or self.done == self.total:
                if decile != self._last_decile:
                    self._last_decile = decile
                    self.stream.write(self._line(now) + "\n")
                    self.stream.flush()

    def _line(self, now: float) -> str:
        elapsed = now - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            pct = 100.0 * self.done / self.total
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            return (f"{self.desc}: {self.done}/{self.total} ({pct:3.0f}%) "
                    f"{rate:,.1f} {self.unit}/s, elapsed {elapsed:,.1f}s, eta {eta:,.0f}s")
        return f"{self.desc}: {self.done} {self.unit}, {elapsed:,.1f}s"

    def close(self) -> None:
        if self.quiet:
            return
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

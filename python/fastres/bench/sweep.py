"""``--sweep``: a grid of native executor settings, and which one did best.

``--sweep batch_size=1,8,32 copy_streams=1,2`` names any knob of the native SUT
(``fastres.sut.native.DEFAULT_KNOBS``, NVIDIA's names) with the values to try; the grid is the
cross product, run in the order written (the last knob varies fastest).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgument

__all__ = ["parse_sweep", "grid", "setting_label", "setting_dirname", "pick_best", "MAX_SETTINGS"]

#: A larger grid is refused: at a few seconds a setting per scenario it would run for hours.
MAX_SETTINGS = 256
#: Knobs that may be 0 (0 means "no wait" / "no limit"); every other knob must be >= 1.
_ZERO_OK = ("batch_timeout_us", "deque_limit")


def parse_sweep(items: Sequence[str], known: Sequence[str]) -> dict[str, list[int]]:
    """``["batch_size=1,8,32", "copy_streams=1,2"]`` → ``{"batch_size": [1, 8, 32], ...}``.
    Knob names may use ``-`` for ``_``. Raises InvalidArgument naming the item and the fix."""
    spec: dict[str, list[int]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not values.strip():
            raise InvalidArgument(f"--sweep {item!r}: expected KNOB=V1,V2,... "
                                  "e.g. batch_size=1,8,32")
        if name not in known:
            raise InvalidArgument(f"--sweep {item!r}: unknown executor knob {name!r}; known: "
                                  f"{', '.join(known)}")
        if name in spec:
            raise InvalidArgument(f"--sweep: knob {name!r} given twice; list all its values "
                                  f"once, e.g. {name}=1,2,4")
        out: list[int] = []
        for text in values.split(","):
            text = text.strip()
            try:
                value = int(text)
            except ValueError:
                raise InvalidArgument(f"--sweep {item!r}: {text!r} is not an integer") from None
            lowest = 0 if name in _ZERO_OK else 1
            if value < lowest:
                raise InvalidArgument(f"--sweep {item!r}: {name} must be >= {lowest}, got {value}")
            if value not in out:
                out.append(value)
        spec[name] = out
    n = 1
    for values in spec.values():
        n *= len(values)
    if n > MAX_SETTINGS:
        raise InvalidArgument(f"--sweep: {n} settings is more than {MAX_SETTINGS}; sweep fewer "
                              "knobs or values at a time")
    return spec


def grid(spec: dict[str, list[int]]) -> list[dict[str, int]]:
    """Every combination of ``spec``'s values, as knob dicts."""
    if not spec:
        return []
    names = list(spec)
    return [dict(zip(names, combo)) for combo in itertools.product(*(spec[n] for n in names))]


def setting_label(setting: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items())


def setting_dirname(setting: dict[str, int]) -> str:
    return "_".join(f"{k}-{v}" for k, v in setting.items())


def pick_best(results: list[dict[str, Any]], scenario: str) -> int | None:
    """Index of the best sweep result in ``scenario``, or None when none has a figure.

    Offline: the most samples/s. SingleStream/MultiStream: the lowest latency percentile
    (LoadGen's metric). Server (all settings at the same target QPS): a VALID run with the
    lowest p99 latency. VALID runs win over INVALID ones; among INVALID ones the same rule.
    """
    candidates = [(i, r) for i, r in enumerate(results) if r.get("value") is not None
                  and not r.get("sut_errors") and not r.get("failed")]
    if not candidates:
        return None

    def key(item: tuple[int, dict[str, Any]]) -> tuple:
        _, r = item
        valid = 0 if r.get("valid") else 1
        if scenario == "Offline":
            return (valid, -r["value"])
        if scenario == "Server":
            return (valid, r.get("latencies_ns", {}).get("p99", float("inf")))
        return (valid, r["value"])

    return min(candidates, key=key)[0]

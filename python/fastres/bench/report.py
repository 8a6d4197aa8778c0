"""Tables, ``results.json`` and ``report.md`` of a head-to-head run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

QUICK_LABEL = "quick — not a valid MLPerf result"

#: Headline metrics where lower is better (latency); the others are throughputs.
_LATENCY_SCENARIOS = ("SingleStream", "MultiStream")


def _fmt_metric(value: float | None, scenario: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if scenario in _LATENCY_SCENARIOS:
        return f"{value / 1e6:,.2f} ms"
    return f"{value:,.1f}"


def speedup(ref: float | None, other: float | None, scenario: str) -> float | None:
    """How many times better ``other`` is than the reference: throughput ratio, or the inverse
    latency ratio for the latency-bound scenarios (so > 1 always means faster)."""
    if not ref or not other:
        return None
    return ref / other if scenario in _LATENCY_SCENARIOS else other / ref


def build_rows(runs: list[dict[str, Any]], baseline: str = "reference") -> list[dict[str, Any]]:
    """One row per (SUT, scenario): the performance figures next to that pair's accuracy."""
    perf = {(r["sut"], r["scenario"]): r for r in runs if r["mode"] == "performance"}
    acc = {(r["sut"], r["scenario"]): r for r in runs if r["mode"] == "accuracy"}
    keys = list(dict.fromkeys([(r["sut"], r["scenario"]) for r in runs]))
    rows = []
    for sut, scenario in keys:
        p, a = perf.get((sut, scenario)), acc.get((sut, scenario))
        base = perf.get((baseline, scenario))
        rows.append({
            "sut": sut,
            "scenario": scenario,
            "metric": p["metric"] if p else None,
            "value": p["value"] if p else None,
            "valid": p["valid"] if p else None,
            "unmet": p["unmet"] if p else [],
            "accuracy": a["accuracy"] if a else None,
            "speedup": speedup(base["value"] if base else None, p["value"] if p else None, scenario),
        })
    return rows


def format_table(rows: list[dict[str, Any]], quick: bool) -> str:
    header = ["SUT", "scenario", "metric", "value", "VALID", "top-1", "vs reference"]
    lines = [header]
    for r in rows:
        valid = "-" if r["valid"] is None else ("VALID" if r["valid"] else "INVALID")
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}%"
        sp = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append([r["sut"], r["scenario"], r["metric"] or "-",
                      _fmt_metric(r["value"], r["scenario"]), valid, acc, sp])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    if quick:
        out.append(f"({QUICK_LABEL})")
    return "\n".join(out)


def write_results(out_dir: Path, payload: dict[str, Any]) -> Path:
    path = out_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def write_report(out_dir: Path, payload: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    quick = payload["settings"]["quick"]
    lines = ["# fastres head-to-head", ""]
    if quick:
        lines += [f"**{QUICK_LABEL}.** Short runs with reduced durations and query counts.", ""]
    lines += ["## Results", "", "```", format_table(rows, quick=False), "```", ""]
    for r in rows:
        if r["valid"] is False and r["unmet"]:
            lines.append(f"- {r['sut']} {r['scenario']} INVALID; LoadGen reports as not satisfied: " + "; ".join(r["unmet"]))
    lines += ["", "## Setup", ""]
    for key, value in payload["settings"].items():
        lines.append(f"- {key}: `{value}`")
    lines += ["", "## Environment", ""]
    for key, value in payload["environment"].items():
        lines.append(f"- {key}: `{value}`")
    lines += ["", "LoadGen logs for each run are in the folders listed in `results.json` "
              "(`runs[].log_dir`).", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path

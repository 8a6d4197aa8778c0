"""The report's figures, drawn with matplotlib (the ``plot`` extra) from ``results.json``'s
content alone, as PNG bytes.

matplotlib is imported lazily, in :func:`load_pyplot`, with the non-interactive Agg backend;
without it :func:`render` returns no figures and the reason, and the report is tables only.
"""

from __future__ import annotations

import io
import math
from typing import Any

from ..loadgen import SCENARIOS
from . import published as pub

__all__ = ["load_pyplot", "render", "PLOT_HINT"]

PLOT_HINT = "matplotlib is not installed; pip install 'fastres[plot]' (or matplotlib) for plots"
COLORS = {"reference": "#4C72B0", "native": "#DD8452"}
_OTHER = ["#55A868", "#C44E52", "#8172B3", "#937860"]
_PUBLISHED_COLORS = {"Offline": "#2E7D32", "Server": "#81C784"}
_LATENCY_SCENARIOS = ("SingleStream", "MultiStream")
_PCTS = ("p50", "p90", "p95", "p97", "p99", "p99.9")
#: The percentile LoadGen's metric reads in each scenario (resnet50, mlperf.conf).
_METRIC_PCT = {"SingleStream": "p90", "MultiStream": "p99", "Server": "p99", "Offline": None}


def load_pyplot() -> tuple[Any | None, str | None]:
    """``(pyplot, None)``, or ``(None, why)`` when matplotlib cannot be imported."""
    try:
        import matplotlib
    except ImportError:
        return None, PLOT_HINT
    try:
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001 - a broken install: say so, keep the tables
        return None, f"matplotlib could not be loaded ({exc}); the report has tables only"
    return plt, None


def _color(sut: str, suts: list[str]) -> str:
    return COLORS.get(sut) or _OTHER[suts.index(sut) % len(_OTHER)]


def _png(plt: Any, fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _perf_runs(payload: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    # a failed run is not a result: no figure of it is plotted
    return {(r["sut"], r["scenario"]): r for r in payload.get("runs", [])
            if r["mode"] == "performance" and r.get("kind", "run") == "run"
            and not r.get("failed")}


def _panels(plt: Any, n: int, width: float = 4.2, height: float = 3.4) -> tuple[Any, list[Any]]:
    fig, axes = plt.subplots(1, n, figsize=(max(width * n, 5.5), height), squeeze=False)
    return fig, list(axes[0])


def _log_axis(ax: Any, axis: str = "y") -> None:
    """Log scale with plain labels at 1-2-5 steps (10, 20, 50 ms rather than 10^1)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _throughput(plt: Any, payload: dict[str, Any]) -> dict[str, Any] | None:
    perf = _perf_runs(payload)
    suts = payload["settings"]["suts"]
    scenarios = [s for s in SCENARIOS if any((u, s) in perf for u in suts)]
    scenarios = [s for s in scenarios
                 if any((perf.get((u, s)) or {}).get("throughput") for u in suts)]
    if not scenarios:
        return None
    fig, axes = _panels(plt, len(scenarios), width=3.4)
    for ax, scenario in zip(axes, scenarios):
        values = [(perf.get((u, scenario)) or {}).get("throughput") or 0.0 for u in suts]
        bars = ax.bar(suts, values, color=[_color(u, suts) for u in suts])
        for bar, u, v in zip(bars, suts, values):
            r = perf.get((u, scenario)) or {}
            tag = "" if r.get("valid") else "\nINVALID"
            ax.annotate(_fmt(v) + tag, (bar.get_x() + bar.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=8)
        first = perf.get((suts[0], scenario), {}).get("throughput")
        title = scenario
        if len(suts) > 1 and first and values[-1]:
            title += f"\n{suts[-1]} / {suts[0]}: {values[-1] / first:.2f}×"
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(values) * 1.25 or 1)
        basis = (perf.get((suts[0], scenario)) or {}).get("throughput_basis", "")
        ax.set_xlabel(basis, fontsize=7)
        ax.tick_params(labelsize=8)
    axes[0].set_ylabel("samples / s")
    fig.suptitle("Throughput per scenario and SUT", fontsize=11)
    fig.tight_layout()
    return {"name": "throughput", "title": "Throughput per scenario and SUT", "png": _png(plt, fig),
            "caption": "Samples per second of each performance run. Offline: LoadGen's metric. "
                       "Server: completed samples/s at the run's target QPS. SingleStream and "
                       "MultiStream are latency-bound (one query in flight): their throughput is "
                       "what that latency allows (LoadGen's 'QPS w/ loadgen overhead', or "
                       "samples per query / mean query latency)."}


def _latency_percentiles(plt: Any, payload: dict[str, Any]) -> dict[str, Any] | None:
    perf = _perf_runs(payload)
    suts = payload["settings"]["suts"]
    scenarios = [s for s in SCENARIOS if any((perf.get((u, s)) or {}).get("latencies_ns")
                                             for u in suts)]
    if not scenarios:
        return None
    fig, axes = _panels(plt, len(scenarios), width=3.6)
    for ax, scenario in zip(axes, scenarios):
        for u in suts:
            lat = (perf.get((u, scenario)) or {}).get("latencies_ns") or {}
            keys = [k for k in _PCTS if k in lat]
            if not keys:
                continue
            ax.plot(keys, [lat[k] / 1e6 for k in keys], marker="o", ms=4, label=u,
                    color=_color(u, suts))
            mk = _METRIC_PCT[scenario]
            if mk in lat:
                ax.plot([mk], [lat[mk] / 1e6], marker="*", ms=12, color=_color(u, suts),
                        markeredgecolor="black", linestyle="none")
        bound = next(((perf.get((u, scenario)) or {}).get("target_latency_ns") for u in suts
                      if (perf.get((u, scenario)) or {}).get("target_latency_ns")), None)
        if scenario == "Server" and bound:
            ax.axhline(bound / 1e6, color="red", lw=1, ls="--")
            ax.annotate(f"bound {bound / 1e6:g} ms", (0, bound / 1e6), color="red", fontsize=7,
                        va="bottom")
        _log_axis(ax, "y")
        ax.set_title(scenario + {"MultiStream": " (per query)",
                                 "Offline": " (time to completion)"}.get(scenario, ""),
                     fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms, log)")
    axes[0].legend(fontsize=8)
    fig.suptitle("Latency percentiles (★: the percentile LoadGen's metric reads)", fontsize=11)
    fig.tight_layout()
    return {"name": "latency_percentiles", "title": "Latency percentiles per scenario",
            "png": _png(plt, fig),
            "caption": "LoadGen's summary percentiles of each performance run. The star marks "
                       "the scenario's metric (SingleStream p90, MultiStream p99 per 8-sample "
                       "query, Server p99 against its bound). Offline latencies are the times "
                       "at which samples of its single query finished."}


def _latency_distribution(plt: Any, payload: dict[str, Any]) -> dict[str, Any] | None:
    perf = _perf_runs(payload)
    suts = payload["settings"]["suts"]
    # Offline's one query makes its "latencies" the completion times of its samples: no
    # distribution of service latency to show.
    scenarios = [s for s in SCENARIOS if s != "Offline" and any(
        (perf.get((u, s)) or {}).get("latencies_ns") for u in suts)]
    if not scenarios:
        return None
    fig, axes = _panels(plt, len(scenarios), width=4.2)
    sources = set()
    for ax, scenario in zip(axes, scenarios):
        for u in suts:
            r = perf.get((u, scenario)) or {}
            dist = r.get("latency_distribution")
            color = _color(u, suts)
            if dist and dist.get("counts"):
                sources.add("trace")
                edges = [e / 1e6 for e in dist["edges_ns"]]
                total = max(1, dist["count"])
                frac = [c / total for c in dist["counts"]]
                ax.stairs(frac, edges, label=f"{u} (n={dist['count']:,})", color=color, lw=1.5)
                mk = _METRIC_PCT[scenario]
                if mk:
                    ax.axvline(dist["percentiles_ns"][mk] / 1e6, color=color, ls="--", lw=1)
            elif r.get("latencies_ns"):
                sources.add("percentiles")
                lat = r["latencies_ns"]
                keys = [k for k in _PCTS if k in lat]
                xs = [lat[k] / 1e6 for k in keys]
                ys = [float(k[1:]) for k in keys]
                if "min" in lat:
                    xs, ys = [lat["min"] / 1e6] + xs, [0.0] + ys
                if "max" in lat:
                    xs, ys = xs + [lat["max"] / 1e6], ys + [100.0]
                ax.plot(xs, ys, marker="o", ms=3, drawstyle="steps-post", color=color,
                        label=f"{u} (percentiles only)")
                ax.set_ylabel("percentile")
        ax.set_title(scenario + (" (per query)" if scenario == "MultiStream" else ""), fontsize=10)
        _log_axis(ax, "x")
        ax.set_xlabel("latency (ms, log)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if "trace" in sources:
        axes[0].set_ylabel("fraction of queries")
    how = ("per-query latencies from LoadGen's trace (mlperf_log_trace.json)"
           if sources == {"trace"} else
           "LoadGen's summary percentiles only (no trace for these runs)"
           if sources == {"percentiles"} else
           "per-query latencies from LoadGen's trace where it was enabled, percentiles elsewhere")
    fig.suptitle(f"Latency distribution: {how}", fontsize=10)
    fig.tight_layout()
    return {"name": "latency_distribution", "title": "Latency distribution", "png": _png(plt, fig),
            "caption": f"Histogram of {how}; dashed lines: the metric's percentile. A query's "
                       "latency runs from its scheduled start to its last sample's completion "
                       "(MultiStream: 8 samples a query). Offline is left out: its single "
                       "query's latencies are only the times at which its samples finished."
                       + (" The trace was not enabled (see --latency-trace), so these curves "
                          "join LoadGen's reported percentiles." if "percentiles" in sources
                          else "")}


def _server_search(plt: Any, payload: dict[str, Any]) -> dict[str, Any] | None:
    peaks = payload.get("server_peak") or {}
    suts = [u for u in payload["settings"]["suts"] if peaks.get(u, {}).get("search")]
    if not suts:
        return None
    fig, axes = _panels(plt, len(suts), width=4.4)
    for ax, u in zip(axes, suts):
        info = peaks[u]
        trials = info["search"]["trials"]
        for t in trials:
            y = (t.get("p99_ns") or 0) / 1e6
            ax.scatter([t["load"]], [y if y > 0 else float("nan")],
                       color="#2E7D32" if t["ok"] else "#C62828", s=28, zorder=3)
        for i, t in enumerate(trials, 1):
            if t.get("p99_ns"):
                ax.annotate(str(i), (t["load"], t["p99_ns"] / 1e6), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        for i, c in enumerate(info.get("confirm", []), 1):
            if c.get("p99_ns"):
                ax.scatter([c["load"]], [c["p99_ns"] / 1e6], marker="D", s=50,
                           facecolor="none", edgecolor="black", zorder=4)
                ax.annotate(f"C{i}", (c["load"], c["p99_ns"] / 1e6), fontsize=7,
                            xytext=(3, -9), textcoords="offset points")
        if info.get("peak"):
            ax.axvline(info["peak"], color=_color(u, payload["settings"]["suts"]), lw=1.5)
        bound = info.get("target_latency_ns")
        if bound:
            ax.axhline(bound / 1e6, color="red", ls="--", lw=1)
        _log_axis(ax, "y")
        _log_axis(ax, "x")
        ax.set_xlabel("Server target QPS (log)", fontsize=8)
        peak = info.get("peak")
        ax.set_title(f"{u}: peak {_fmt(peak) if peak else 'not found'}", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("p99 latency (ms, log)")
    fig.suptitle("Server peak search (green VALID, red INVALID, numbered in order; "
                 "◇ C1, C2: confirming runs; dashed: latency bound)", fontsize=9)
    fig.tight_layout()
    return {"name": "server_search", "title": "Server peak search", "png": _png(plt, fig),
            "caption": "Each short trial run of the search, at its target QPS, with its p99 "
                       "latency; the vertical line is the highest VALID target found."}


def _sweep(plt: Any, payload: dict[str, Any]) -> dict[str, Any] | None:
    sweep = payload.get("sweep") or {}
    per = sweep.get("scenarios") or {}
    scenarios = [s for s in SCENARIOS if per.get(s, {}).get("results")]
    if not scenarios:
        return None
    n = max(len(per[s]["results"]) for s in scenarios)
    cols = min(2, len(scenarios))
    rows = math.ceil(len(scenarios) / cols)
    height = max(2.4, 0.3 * n + 1.2)
    fig, grid = plt.subplots(rows, cols, figsize=(6.2 * cols, height * rows), squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(scenarios):]:
        ax.set_visible(False)
    for ax, scenario in zip(axes, scenarios):
        results = per[scenario]["results"]
        best = per[scenario].get("best")
        labels = [r["setting_label"] + (" (FAILED)" if r.get("failed") else "")
                  for r in results]
        results = [{} if r.get("failed") else r for r in results]  # no bar for a failed run
        if scenario == "Server":
            values = [(r.get("latencies_ns") or {}).get("p99", 0) / 1e6 for r in results]
            xlabel = "p99 latency (ms) at the same target QPS — lower is better"
        elif scenario in _LATENCY_SCENARIOS:
            values = [(r.get("value") or 0) / 1e6 for r in results]
            xlabel = f"{_METRIC_PCT[scenario]} latency (ms) — lower is better"
        else:
            values = [r.get("value") or 0 for r in results]
            xlabel = "samples / s — higher is better"
        colors = ["#F2B01E" if i == best else ("#9E9E9E" if not r.get("valid") else "#DD8452")
                  for i, r in enumerate(results)]
        ys = list(range(len(results)))[::-1]
        bars = ax.barh(ys, values, color=colors)
        for bar, r in zip(bars, results):
            if not r.get("valid"):
                bar.set_hatch("//")
        ax.set_yticks(ys, labels, fontsize=7)
        for bar, i, v in zip(bars, range(len(results)), values):
            tag = "  ★ best" if i == best else ("  INVALID" if not results[i].get("valid") else "")
            ax.annotate(f" {_fmt(v)}{tag}", (v, bar.get_y() + bar.get_height() / 2),
                        va="center", fontsize=7)
        ax.set_xlim(0, max(values or [1]) * 1.45 or 1)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_title(f"{scenario}", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("Native SUT knob sweep (★ best setting; hatched grey: INVALID)", fontsize=10)
    fig.tight_layout()
    return {"name": "sweep", "title": "Knob sweep", "png": _png(plt, fig),
            "caption": "Every setting of the --sweep grid, per scenario, native SUT."}


def _published(plt: Any, payload: dict[str, Any]) -> dict[str, Any] | None:
    perf = _perf_runs(payload)
    suts = payload["settings"]["suts"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8),
                                      gridspec_kw={"width_ratios": [3, 2]})
    names = [f"{e['system']}\n{e['accelerators']}× {e['accelerator'].replace('NVIDIA ', '')}\n"
             f"{e['round']}" for e in pub.PUBLISHED]
    x = list(range(len(pub.PUBLISHED)))
    w = 0.38
    for k, scenario in enumerate(("Offline", "Server")):
        vals = [pub.per_accelerator(e, scenario) for e in pub.PUBLISHED]
        bars = left.bar([i + (k - 0.5) * w for i in x], vals, w, label=scenario,
                        color=_PUBLISHED_COLORS[scenario])
        for b, v in zip(bars, vals):
            left.annotate(f"{v:,.0f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                          va="bottom", fontsize=7)
    from matplotlib.ticker import StrMethodFormatter

    left.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    left.set_xticks(x, names, fontsize=7)
    left.set_ylabel("samples/s per accelerator")
    left.set_title("MLPerf published (closed, datacenter; official runs)", fontsize=10)
    left.legend(fontsize=8)
    left.set_ylim(0, max(pub.per_accelerator(e, "Offline") for e in pub.PUBLISHED) * 1.2)
    env = payload.get("environment") or {}
    device = _this_device(env)
    any_value = False
    labelled: set[str] = set()
    for k, scenario in enumerate(("Offline", "Server")):
        for j, u in enumerate(suts):
            r = perf.get((u, scenario))
            if not r or not r.get("throughput"):
                continue
            any_value = True
            v = r["throughput"] / device["count"]
            pos = k + (j - (len(suts) - 1) / 2) * 0.35
            right.bar([pos], [v], 0.33, color=_color(u, suts),
                      label=None if u in labelled else u)
            labelled.add(u)
            right.annotate(_fmt(v) + ("" if r.get("valid") else "\nINVALID"),
                           (pos, v), ha="center", va="bottom", fontsize=7)
    right.set_xticks([0, 1], ["Offline", "Server"])
    right.set_ylabel(f"samples/s per {device['unit']}")
    label = payload.get("label", "")
    right.set_title(f"This run ({label})\n{device['name']}", fontsize=9)
    if any_value:
        right.legend(fontsize=8)
        ymax = right.get_ylim()[1]
        right.set_ylim(0, ymax * 1.15)
    else:
        right.text(0.5, 0.5, "no Offline or Server run", ha="center", transform=right.transAxes)
    for ax in (left, right):
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("Published MLPerf ResNet50 results per accelerator (left) — this run, "
                 "separately (right); the axes are not shared", fontsize=10)
    fig.tight_layout()
    return {"name": "published", "title": "Published MLPerf results, and this run beside them",
            "png": _png(plt, fig),
            "caption": "Left: official MLPerf results divided by their accelerator count. Right: "
                       "this run's figures, divided by this machine's accelerators (or per "
                       "machine without one). Different hardware, software, model precision and "
                       "run rules: a frame of reference, not a comparison."}


def _this_device(env: dict[str, Any]) -> dict[str, Any]:
    gpus = env.get("gpus") or []
    if gpus:
        return {"count": len(gpus), "unit": "GPU", "name": f"{len(gpus)}× {gpus[0]}"}
    cores = env.get("cores_usable") or env.get("cores") or "?"
    return {"count": 1, "unit": "machine (no accelerator)",
            "name": f"{env.get('cpu') or 'CPU'}, {cores} cores, no accelerator"}


def this_device(env: dict[str, Any]) -> dict[str, Any]:
    """How this run's figures are normalised beside the published ones."""
    return _this_device(env)


def render(payload: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """All figures that apply to ``payload`` (``results.json``'s content), as dicts with
    name, title, png (bytes) and caption; or ``([], why)`` without matplotlib."""
    plt, why = load_pyplot()
    if plt is None:
        return [], why
    figures = []
    for make in (_throughput, _latency_percentiles, _latency_distribution, _server_search,
                 _sweep, _published):
        fig = make(plt, payload)
        if fig is not None:
            figures.append(fig)
    return figures, None

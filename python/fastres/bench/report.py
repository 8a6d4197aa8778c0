"""Tables, ``results.json``, ``report.md`` and ``report.html`` of a head-to-head run.

Everything here reads only the payload that goes into ``results.json``, so a report can be
rebuilt from that file alone (``python -m fastres.bench --report-from results.json``). Both
reports are rendered from one list of blocks (:class:`Doc`), so they say the same things;
``report.html`` is one self-contained file with its plots embedded as base64 PNG, ``report.md``
refers to the same PNGs under ``plots/``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import Any

from ..loadgen import SCENARIOS
from . import published as pub

QUICK_LABEL = "quick — not a valid MLPerf result"

#: Headline metrics where lower is better (latency); the others are throughputs.
_LATENCY_SCENARIOS = ("SingleStream", "MultiStream")


# ------------------------------------------------------------------------------------------
# figures and rows


def _fmt_metric(value: float | None, scenario: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if scenario in _LATENCY_SCENARIOS:
        return f"{value / 1e6:,.2f} ms"
    return f"{value:,.1f}"


def metric_name(metric: str | None) -> str:
    """LoadGen's metric names, shortened for tables whose values carry their own unit."""
    if not metric:
        return "-"
    m = re.match(r"^(\d+(?:\.\d+)?)th percentile latency \(ns\)$", metric)
    if m:
        return f"p{float(m.group(1)):g} latency"
    return {"Samples per second": "samples/s",
            "Completed samples per second": "completed samples/s"}.get(metric, metric)


def _fmt_num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def speedup(ref: float | None, other: float | None, scenario: str) -> float | None:
    """How many times better ``other`` is than the reference: throughput ratio, or the inverse
    latency ratio for the latency-bound scenarios (so > 1 always means faster)."""
    if not ref or not other:
        return None
    return ref / other if scenario in _LATENCY_SCENARIOS else other / ref


def _result(r: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run that can be shown as a result: None for a missing or a failed run."""
    return None if r is None or r.get("failed") else r


def failed_runs(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The main runs and sweep settings of ``payload`` that failed (not results)."""
    sweep = (payload.get("sweep") or {}).get("scenarios") or {}
    return [r for r in payload.get("runs", []) + [x for info in sweep.values()
                                                   for x in info["results"]]
            if r.get("failed")]


def build_rows(runs: list[dict[str, Any]], baseline: str = "reference") -> list[dict[str, Any]]:
    """One row per (SUT, scenario): the performance figures next to that pair's accuracy.
    Only the main runs count (not search trials or sweep settings). A failed run gives no
    figure: its row says ``failed`` (why) instead."""
    runs = [r for r in runs if r.get("kind", "run") == "run"]
    perf = {(r["sut"], r["scenario"]): r for r in runs if r["mode"] == "performance"}
    acc = {(r["sut"], r["scenario"]): r for r in runs if r["mode"] == "accuracy"}
    keys = list(dict.fromkeys([(r["sut"], r["scenario"]) for r in runs]))
    rows = []
    for sut, scenario in keys:
        p_run, a_run = perf.get((sut, scenario)), acc.get((sut, scenario))
        p, a = _result(p_run), _result(a_run)
        base = _result(perf.get((baseline, scenario)))
        failed = [f"{r['mode']}: {r['failed']}" for r in (p_run, a_run) if r and r.get("failed")]
        rows.append({
            "sut": sut,
            "scenario": scenario,
            "metric": p_run["metric"] if p_run else None,
            "value": p["value"] if p else None,
            "valid": p["valid"] if p else None,
            "unmet": p["unmet"] if p else [],
            "accuracy": a["accuracy"] if a else None,
            "speedup": speedup(base["value"] if base else None, p["value"] if p else None, scenario),
            "failed": "; ".join(failed) or None,
        })
    return rows


def format_table(rows: list[dict[str, Any]], quick: bool, online: bool = False) -> str:
    header = ["SUT", "scenario", "metric", "value", "VALID", "top-1", "vs reference"]
    lines = [header]
    for r in rows:
        if r.get("failed"):
            lines.append([r["sut"], r["scenario"], r["metric"] or "-", "FAILED", "-", "-", "-"])
            continue
        valid = "-" if r["valid"] is None else ("VALID" if r["valid"] else "INVALID")
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}%"
        sp = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        lines.append([sut_title(r["sut"], online), r["scenario"], r["metric"] or "-",
                      _fmt_metric(r["value"], r["scenario"]), valid, acc, sp])
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("failed"):
            out.append(f"FAILED {r['sut']} {r['scenario']}, not a result: {r['failed']}")
    if quick:
        out.append(f"({QUICK_LABEL})")
    return "\n".join(out)


#: How the report names a store's producer (``PreprocessedStore.producer``).
PRODUCERS = {
    "reference": "the reference preprocessing (OpenCV, as MLPerf's reference harness)",
    "dali-cpu": "DALI on the CPU (fastres.data.dali)",
    "dali-gpu": "DALI on the GPU (fastres.data.dali)",
}


def sut_title(sut: str, online: bool) -> str:
    """A SUT's name in tables: the online native SUT says what it is wherever it appears."""
    return f"{sut} (online, beyond MLPerf)" if online and sut == "native" else sut


def preprocessing_line(info: dict[str, Any] | None) -> str:
    """One sentence on the data: which preprocessing made the store, what it left out, and the
    online mode's label (results.json's ``preprocessing``)."""
    if not info:
        return "Preprocessed store: not recorded (results.json from an older fastres)."
    producer = info.get("producer", "?")
    text = f"Preprocessed store made by {PRODUCERS.get(producer, producer)} [{producer}]"
    n = info.get("skipped_bad") or 0
    if n:
        files = info.get("skipped_bad_files") or []
        text += (f"; {n} bad image(s) skipped (--skip-bad)"
                 + (f", first {files[0]}" if files else ""))
    elif info.get("skip_bad"):
        text += "; --skip-bad: no bad images"
    text += "."
    online = info.get("online")
    if online:
        text += (f" Native SUT: {online['label']} (DALI {online.get('dali_device', 'cpu')} "
                 f"preprocessing of each batch's JPEGs inside the timed run).")
    return text


def write_results(out_dir: Path, payload: dict[str, Any]) -> Path:
    """Write ``results.json`` atomically (a temporary file renamed over it). Raises
    FastresError naming the folder when it cannot be written (the LoadGen logs of the runs
    finished so far stay in their folders)."""
    from ..errors import FastresError

    path = out_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise FastresError(f"cannot write {path} ({exc.strerror or exc}); the LoadGen logs of "
                           f"the runs finished so far are under {out_dir}") from None
    return path


# ------------------------------------------------------------------------------------------
# one document, two renderings


class Doc:
    """Blocks of a report: headings, paragraphs (``**bold**`` and ```code``` inline), bullet
    lists, tables, preformatted text and figures."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def note(self, text: str) -> None:
        self.blocks.append(("note", text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def table(self, header: list[str], rows: list[list[str]], right: tuple[int, ...] = ()) -> None:
        self.blocks.append(("table", (header, rows, right)))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def figure(self, fig: dict[str, Any]) -> None:
        self.blocks.append(("fig", fig))

    def begin(self, css_class: str) -> None:
        """Open a visually separate section (a framed box in HTML, rules in markdown)."""
        self.blocks.append(("begin", css_class))

    def end(self) -> None:
        self.blocks.append(("end", None))

    # ---- markdown
    def markdown(self, image_dir: str) -> str:
        out: list[str] = []
        for kind, data in self.blocks:
            if kind == "h":
                out += ["#" * data[0] + " " + data[1], ""]
            elif kind == "p":
                out += [data, ""]
            elif kind == "note":
                out += ["> " + data, ""]
            elif kind == "ul":
                out += [f"- {item}" for item in data] + [""]
            elif kind == "table":
                header, rows, right = data
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "|".join("---:" if i in right else "---"
                                          for i in range(len(header))) + "|")
                out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                        for row in rows]
                out.append("")
            elif kind == "pre":
                out += ["```", data, "```", ""]
            elif kind == "fig":
                out += [f"![{data['title']}]({image_dir}/{data['name']}.png)", "",
                        f"*{data['caption']}*", ""]
            elif kind in ("begin", "end"):
                out += ["---", ""]
        return "\n".join(out)

    # ---- html
    @staticmethod
    def _inline(text: str) -> str:
        t = html.escape(text)
        t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
        t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
        return t

    def html(self, title: str) -> str:
        body: list[str] = []
        for kind, data in self.blocks:
            if kind == "h":
                body.append(f"<h{data[0]}>{self._inline(data[1])}</h{data[0]}>")
            elif kind == "p":
                body.append(f"<p>{self._inline(data)}</p>")
            elif kind == "note":
                body.append(f'<p class="note">{self._inline(data)}</p>')
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{self._inline(i)}</li>" for i in data) + "</ul>")
            elif kind == "table":
                header, rows, right = data
                cls = lambda i: ' class="num"' if i in right else ""  # noqa: E731
                head = "".join(f"<th{cls(i)}>{self._inline(h)}</th>" for i, h in enumerate(header))
                trs = "".join("<tr>" + "".join(f"<td{cls(i)}>{self._inline(c)}</td>"
                                               for i, c in enumerate(row)) + "</tr>"
                              for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            elif kind == "pre":
                body.append(f"<pre>{html.escape(data)}</pre>")
            elif kind == "fig":
                b64 = base64.b64encode(data["png"]).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(data["title"])}" '
                            f'src="data:image/png;base64,{b64}">'
                            f"<figcaption>{self._inline(data['caption'])}</figcaption></figure>")
            elif kind == "begin":
                body.append(f'<section class="{html.escape(data)}">')
            elif kind == "end":
                body.append("</section>")
        return _HTML.format(title=html.escape(title), body="\n".join(body))


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }}
h1 {{ border-bottom: 2px solid #ddd; padding-bottom: .2em; }}
h2 {{ margin-top: 2em; border-bottom: 1px solid #eee; }}
table {{ border-collapse: collapse; margin: .8em 0; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
th {{ background: #f3f3f3; }} td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tbody tr:nth-child(even) {{ background: #fafafa; }}
code {{ background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: .92em; }}
pre {{ background: #f6f6f6; padding: .6em; overflow-x: auto; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ font-size: .88em; color: #555; }}
p.note {{ background: #fff4e5; border-left: 4px solid #f0a020; padding: .5em .8em; }}
section.published {{ background: #f1f8f1; border: 1px solid #cfe3cf; padding: 0 1em 1em; }}
</style></head><body>
{body}
</body></html>
"""


# ------------------------------------------------------------------------------------------
# the report's content


def _perf(payload: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["sut"], r["scenario"]): r for r in payload.get("runs", [])
            if r["mode"] == "performance" and r.get("kind", "run") == "run"}


def _verdict(r: dict[str, Any] | None) -> str:
    if r is None or r.get("valid") is None:
        return ""
    return " (VALID)" if r["valid"] else " (INVALID)"


def _headline(doc: Doc, payload: dict[str, Any]) -> None:
    suts = payload["settings"]["suts"]
    perf = _perf(payload)
    acc = {(r["sut"], r["scenario"]): r for r in payload.get("runs", [])
           if r["mode"] == "accuracy" and r.get("kind", "run") == "run"}
    scenarios = [s for s in SCENARIOS if s in payload["settings"]["scenarios"]]
    online = bool((payload.get("preprocessing") or {}).get("online"))
    header = ["scenario", "metric"] + [sut_title(u, online) for u in suts]
    two = len(suts) == 2
    if two:
        header.append(f"{suts[1]} / {suts[0]}")
    rows = []
    for scenario in scenarios:
        cells = [scenario]
        metric = next((perf[(u, scenario)]["metric"] for u in suts if (u, scenario) in perf), None)
        cells.append(metric_name(metric) if metric else "top-1 accuracy")
        for u in suts:
            r = perf.get((u, scenario))
            a = acc.get((u, scenario))
            if (r and r.get("failed")) or (a and a.get("failed")):
                cells.append("**FAILED** (not a result; see below)")
                continue
            text = (_fmt_metric(r["value"], scenario) + _verdict(r)) if r else "-"
            if a and a.get("accuracy") is not None:
                # accuracy-only: the percentage replaces the "-" (it read "-100.000%")
                text = (text + f"; top-1 {a['accuracy']:.3f}%") if r else f"{a['accuracy']:.3f}%"
            cells.append(text)
        if two:
            a, b = _result(perf.get((suts[0], scenario))), _result(perf.get((suts[1], scenario)))
            cells.append(_fmt_ratio(speedup(a and a["value"], b and b["value"], scenario)))
        rows.append(cells)
    doc.table(header, rows, right=tuple(range(2, len(header))))
    if two:
        doc.p(f"Ratios are {suts[1]} over {suts[0]} for throughputs and {suts[0]} over "
              f"{suts[1]} for latencies, so above 1× means {suts[1]} is faster.")
    if "Server" in scenarios:
        peaks = payload.get("server_peak") or {}
        settings = payload["settings"]
        parts = []
        for u in suts:
            r = perf.get((u, "Server"))
            if not r or not r.get("target_qps"):
                continue
            if peaks.get(u, {}).get("peak"):
                how = "the search's highest VALID target"
            elif settings.get("target_qps"):
                how = "--target-qps"
            elif settings.get("quick"):
                how = "half its Offline throughput" + (
                    ", no VALID target found by the search" if u in peaks else "")
            else:
                how = "the user.conf's target"
            parts.append(f"{u} at {_fmt_num(r['target_qps'])} QPS ({how})")
        if parts:
            doc.p("Server rows: completed samples/s, each SUT at its own target: "
                  + "; ".join(parts) + ".")
    invalid = [r for r in perf.values() if r.get("valid") is False and r.get("unmet")
               and not r.get("failed")]
    doc.bullets([f"{r['sut']} {r['scenario']} INVALID; LoadGen reports as not satisfied: "
                 + "; ".join(r["unmet"]) for r in invalid])
    failed = failed_runs(payload)
    if failed:
        doc.note("**FAILED runs are not results** (their figures are not shown anywhere in "
                 "this report): " + "; ".join(
                     f"{r['sut']} {r['scenario']} {r['mode']}"
                     + (f" ({r['setting_label']})" if r.get("setting_label") else "")
                     + f": {r['failed']}" for r in failed))


def _audits(doc: Doc, payload: dict[str, Any]) -> None:
    audits = payload.get("audits") or []
    if not audits:
        return
    doc.h(2, "MLPerf compliance audits")
    rows = []
    for a in audits:
        checks = "; ".join(f"{c['name']}: {'pass' if c['passed'] else '**FAIL**'} "
                           f"({c['message']})" for c in a["checks"])
        rows.append([a["sut"], a["scenario"], a["test"],
                     "PASS" if a["passed"] else "**FAIL**", checks,
                     f"`{a.get('audit_dir_rel', a.get('audit_dir'))}`"])
    doc.table(["SUT", "scenario", "audit", "verdict", "checks", "logs"], rows)
    doc.p("As mlcommons/inference `compliance/TEST01` and `compliance/TEST04` define and verify "
          "them for ResNet50 (fastres.bench.audit has the rules): TEST01 runs the performance "
          "settings with LoadGen's accuracy log sampling (seed 720381539243781796, sampling "
          "target 4096); its logged responses must equal the accuracy run's and its score be "
          "within ±10% of the performance run's (±20% for short SingleStream/MultiStream "
          "latencies). TEST04 issues one sample for every query; it must not be more than 10% "
          "faster than the performance run (the published script allows 20% in SingleStream "
          "and MultiStream). Each audit's audit.config was written into its log folder for "
          "the run and deleted after it.")
    if payload["settings"].get("quick"):
        doc.note("Quick runs: the audits compare short runs, whose scores vary more than the "
                 "600-second runs the 10% bound was set for.")


def _server_peak(doc: Doc, payload: dict[str, Any]) -> None:
    peaks = payload.get("server_peak") or {}
    search = payload["settings"].get("search") or {}
    doc.h(2, "Server: highest VALID target QPS")
    if not peaks:
        why = search.get("why_off") or "the search was not run"
        doc.p(f"Not searched ({why}). The Server rows above ran at one target each "
              "(see Setup).")
        return
    suts = [u for u in payload["settings"]["suts"] if u in peaks]
    header = ["SUT", "Offline samples/s (start)", "highest VALID target QPS",
              "lowest INVALID target", "trials", "search time", "stopped by",
              "confirming run"]
    rows = []
    for u in suts:
        info = peaks[u]
        s = info["search"]
        conf = info.get("confirm") or []
        last = conf[-1] if conf else None
        conf_text = "-"
        if last:
            conf_text = (f"{'VALID' if last['ok'] else 'INVALID'} at {_fmt_num(last['load'])}: "
                         f"{_fmt_num(last.get('value'))} samples/s, p99 "
                         f"{_fmt_num((last.get('p99_ns') or 0) / 1e6, 2)} ms")
            if len(conf) > 1:
                conf_text += f" (after {len(conf) - 1} lower retr{'y' if len(conf) == 2 else 'ies'})"
        rows.append([u, _fmt_num(s["start"]), _fmt_num(info.get("peak")) if info.get("peak")
                     else "none found", _fmt_num(s.get("failed_above")), str(s["runs"]),
                     f"{s['elapsed_s']:.0f} s of {s['budget_s']:.0f} s", s["stopped"], conf_text])
    doc.table(header, rows, right=(1, 2, 3, 4))
    if len(suts) == 2 and all(peaks[u].get("peak") for u in suts):
        a, b = (peaks[u]["peak"] for u in suts)
        doc.p(f"**{suts[1]} / {suts[0]}: {b / a:.2f}×** at the highest VALID Server target "
              f"({_fmt_num(b)} vs {_fmt_num(a)} QPS).")
    elif len(suts) == 2:
        missing = [u for u in suts if not peaks[u].get("peak")]
        doc.p(f"No ratio: no VALID Server target was found for {' and '.join(missing)} within "
              "the search's budget (see 'stopped by'; a larger `--search-budget` reaches lower "
              "targets, which need longer runs).")
    doc.p("How: each SUT's search starts at its own Offline throughput, doubles while runs are "
          "VALID or halves while they are INVALID until one target of each brackets the peak, "
          "then bisects (geometric midpoint) until the bracket is within "
          f"{100 * search.get('precision', 0.05):g}% or the budget "
          f"({search.get('budget_s', 0):g} s per SUT) runs out. Trials are short LoadGen Server "
          f"runs ({search.get('trial_s', 0):g} s minimum, {search.get('min_queries', '?')} "
          "queries minimum, LoadGen's own VALID verdict including the p99 latency bound); "
          "the result is then confirmed by the Server performance run reported above, "
          "stepping down by the precision if it is INVALID. Trial logs are under "
          "`<sut>/Server/search/`.")


def _latency_scenarios_note(doc: Doc, payload: dict[str, Any]) -> None:
    if not {"SingleStream", "MultiStream"} & set(payload["settings"]["scenarios"]):
        return
    doc.h(2, "SingleStream and MultiStream: no target to search")
    doc.p("LoadGen runs these two closed-loop: it issues the next query when the previous one "
          "completes, so there is no load level to raise and no latency bound to stay under; "
          "the metric (SingleStream p90, MultiStream p99 of 8-sample queries) is measured, not "
          "searched. Their `*_expected_latency_ns` only sizes how many queries LoadGen "
          "generates. So the peak search applies to Server only; a better latency here comes "
          "from a better setting, which `--sweep` searches for the native SUT.")


def _sweep(doc: Doc, payload: dict[str, Any], figures: dict[str, dict[str, Any]]) -> None:
    sweep = payload.get("sweep") or {}
    per = sweep.get("scenarios") or {}
    if not per:
        return
    doc.h(2, "Native SUT knob sweep")
    spec = sweep.get("spec") or {}
    doc.p("Grid: " + ", ".join(f"`{k}` = {', '.join(map(str, v))}" for k, v in spec.items())
          + ". Knobs not swept keep the run's setting (command line or per-scenario default). "
          "Best: Offline the most samples/s; SingleStream/MultiStream the lowest metric "
          "latency; Server (every setting at the same target QPS, "
          "shown per scenario) a VALID run with the lowest p99.")
    for scenario in SCENARIOS:
        info = per.get(scenario)
        if not info:
            continue
        results = info["results"]
        best = info.get("best")
        target = info.get("target_qps")
        doc.h(3, scenario + (f" (target {_fmt_num(target)} QPS)" if target else ""))
        header = ["setting", "metric", "value", "VALID", "p99 latency", ""]
        rows = []
        for i, r in enumerate(results):
            if r.get("failed"):
                rows.append([r["setting_label"], metric_name(r.get("metric")), "FAILED",
                             "-", "-", r["failed"]])
                continue
            rows.append([r["setting_label"], metric_name(r.get("metric")),
                         _fmt_metric(r.get("value"), scenario),
                         "-" if r.get("valid") is None else ("VALID" if r["valid"] else "INVALID"),
                         _fmt_num((r.get("latencies_ns") or {}).get("p99", 0) / 1e6, 2) + " ms",
                         "**best**" if i == best else ""])
        doc.table(header, rows, right=(2, 4))
    if "sweep" in figures:
        doc.figure(figures["sweep"])


def _published(doc: Doc, payload: dict[str, Any], figures: dict[str, dict[str, Any]]) -> None:
    from .plots import this_device

    doc.begin("published")
    doc.h(2, "Published MLPerf results (for reference, not this run)")
    doc.note("The figures in this section are MLPerf Inference ResNet50 results published by "
             "their submitters: official 600-second runs, closed division, datacenter "
             "category, on GPUs with TensorRT and INT8. They are not measured by this run and "
             "are never part of its tables above.")
    rows = []
    for e in pub.PUBLISHED:
        rows.append([e["round"], f"{e['submitter']} {e['system']}",
                     f"{e['accelerators']}× {e['accelerator']}",
                     f"{e['Offline']:,.0f}", f"{pub.per_accelerator(e, 'Offline'):,.0f}",
                     f"{e['Server']:,.0f}", f"{pub.per_accelerator(e, 'Server'):,.0f}"])
    doc.table(["round", "system", "accelerators", "Offline samples/s",
               "per accelerator", "Server QPS", "per accelerator"], rows, right=(3, 4, 5, 6))
    doc.p("Sources: " + "; ".join(f"`{e['source']}`" for e in pub.PUBLISHED) + ".")
    doc.end()
    device = this_device(payload.get("environment") or {})
    perf = _perf(payload)
    doc.h(3, f"This run, normalised the same way: {device['name']}")
    rows = []
    for u in payload["settings"]["suts"]:
        for scenario, unit in (("Offline", "samples/s"), ("Server", "completed samples/s")):
            r = perf.get((u, scenario))
            if r and r.get("throughput"):
                rows.append([u, scenario, f"{r['throughput']:,.1f} {unit}" + _verdict(r),
                             f"{r['throughput'] / device['count']:,.1f}",
                             payload.get("label", "")])
    if rows:
        doc.table(["SUT", "scenario", "this run", f"per {device['unit']}", "settings"], rows,
                  right=(2, 3))
    else:
        doc.p("This run has no Offline or Server performance figure to set beside them.")
    if "published" in figures:
        doc.figure(figures["published"])


def _setup(doc: Doc, payload: dict[str, Any]) -> None:
    doc.h(2, "Setup")
    settings = payload["settings"]
    doc.p(f"**{payload.get('label', '')}**" + (
        ": short runs with reduced durations and query counts (LoadGen's mlperf.conf otherwise)."
        if settings.get("quick") else ": LoadGen's embedded mlperf.conf"
        + (" and the user.conf given." if settings.get("user_conf") else ".")))
    items = []
    for key, value in settings.items():
        if key in ("command_line",):
            continue
        items.append(f"{key}: `{json.dumps(value, default=str)}`")
    doc.bullets(items)
    if settings.get("command_line"):
        doc.pre(settings["command_line"])


def _environment(doc: Doc, payload: dict[str, Any]) -> None:
    doc.h(2, "Environment")
    env = payload.get("environment") or {}
    doc.table(["item", "value"], [[k, "None" if v is None else str(v)] for k, v in env.items()])


def _runs_table(doc: Doc, payload: dict[str, Any]) -> None:
    doc.h(2, "Every run")
    rows = []
    for r in payload.get("runs", []):
        if r.get("kind", "run") != "run":
            continue
        lat = r.get("latencies_ns") or {}
        rows.append([sut_title(r["sut"], bool(r.get("online"))), r["scenario"], r["mode"],
                     f"**FAILED**: {r['failed']}" if r.get("failed") else
                     (_fmt_metric(r["value"], r["scenario"]) + _verdict(r))
                     if r["mode"] == "performance" else
                     (f"top-1 {r['accuracy']:.3f}% ({r['accuracy_good']}/{r['accuracy_total']})"
                      if r.get("accuracy") is not None else "-"),
                     _fmt_num(r.get("target_qps")) if r["scenario"] in ("Server", "Offline")
                     and r["mode"] == "performance" else "",
                     " / ".join(_fmt_num(lat.get(k, 0) / 1e6, 2) for k in ("p50", "p90", "p99"))
                     if lat else "", f"{r.get('wall_s', 0):.1f} s",
                     str(r.get("sut_errors") or 0), f"`{r.get('log_dir_rel', r.get('log_dir'))}`"])
    doc.table(["SUT", "scenario", "mode", "result", "target QPS", "p50 / p90 / p99 ms",
               "LoadGen time", "SUT errors", "logs"], rows, right=(4, 5, 6, 7))


def build_doc(payload: dict[str, Any], figures: list[dict[str, Any]],
              plots_missing: str | None) -> Doc:
    quick = payload["settings"].get("quick", True)
    figs = {f["name"]: f for f in figures}
    suts = payload["settings"]["suts"]
    doc = Doc()
    doc.h(1, "fastres head-to-head: " + " vs ".join(suts))
    if quick:
        doc.note(f"**{QUICK_LABEL}.** Short runs with reduced durations and query counts; "
                 "LoadGen's VALID below means its checks passed for these shortened settings.")
    env = payload.get("environment") or {}
    doc.p(f"MLPerf Inference ResNet50 under LoadGen {env.get('mlcommons-loadgen', '?')}, "
          f"{payload.get('created', '')}, on {env.get('cpu', '?')} ({env.get('cores', '?')} "
          f"cores), GPUs: {', '.join(env.get('gpus') or []) or 'none'}. "
          f"Model: `{payload['settings'].get('model')}`"
          + (" (the embedded synthetic default: accuracy shows the harness answers each sample "
             "with its own answer, not how good a ResNet50 is)"
             if payload['settings'].get('synthetic_default') else "") + ".")
    info = payload.get("preprocessing")
    if info and info.get("online"):
        doc.note(f"**{info['online']['label']}.** The native SUT decoded and preprocessed each "
                 f"sample's JPEG with DALI ({info['online'].get('dali_device', 'cpu')}) inside "
                 "the timed run; MLPerf preprocesses before it. Its figures measure a different "
                 "workload from the reference harness's and from any MLPerf result.")
    doc.p(preprocessing_line(info))
    if plots_missing:
        doc.note(f"No plots: {plots_missing}. This report has tables only.")
    if payload.get("complete") is False:
        doc.note("**Incomplete:** the invocation stopped before its end"
                 + (f" ({payload['error']})" if payload.get("error") else "")
                 + "; this report holds the runs finished until then.")
    doc.h(2, "Results")
    _headline(doc, payload)
    _audits(doc, payload)
    for name in ("throughput", "latency_percentiles", "latency_distribution"):
        if name in figs:
            doc.figure(figs[name])
    _server_peak(doc, payload)
    if "server_search" in figs:
        doc.figure(figs["server_search"])
    _latency_scenarios_note(doc, payload)
    _sweep(doc, payload, figs)
    _published(doc, payload, figs)
    _runs_table(doc, payload)
    _setup(doc, payload)
    _environment(doc, payload)
    doc.p("LoadGen's logs of every run are under `<sut>/<scenario>/<mode>/` beside this report "
          "(search trials under `<sut>/Server/search/`, sweep settings under "
          "`native/sweep/<scenario>/`); `results.json` holds every figure above.")
    return doc


def write_report(out_dir: Path, payload: dict[str, Any],
                 rows: list[dict[str, Any]] | None = None, *, plots: bool = True) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``out_dir``; return the
    path of report.md. ``rows`` is accepted for compatibility (the rows come from the payload).
    Plots need matplotlib; without it (or with ``plots=False``) the reports say so."""
    from .plots import render

    figures: list[dict[str, Any]] = []
    missing: str | None = "disabled with --no-plots"
    if plots:
        figures, missing = render(payload)
    plot_dir = out_dir / "plots"
    if plot_dir.is_dir():
        for stale in plot_dir.glob("*.png"):
            stale.unlink()
    if figures:
        plot_dir.mkdir(exist_ok=True)
        for f in figures:
            (plot_dir / f"{f['name']}.png").write_bytes(f["png"])
    doc = build_doc(payload, figures, missing)
    md = out_dir / "report.md"
    md.write_text(doc.markdown("plots"), encoding="utf-8")
    (out_dir / "report.html").write_text(doc.html("fastres head-to-head"), encoding="utf-8")
    return md

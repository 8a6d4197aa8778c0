"""The head-to-head report: results.json, report.md, report.html with and without matplotlib,
the published-results section, environment capture, the Server search in the CLI, sweeps,
``--json`` progress, and ``--report-from``."""

from __future__ import annotations

import base64
import io
import json
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fastres.bench import cli, report
from fastres.bench.progress import Progress
from fastres.data.synthetic import make_default

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=64, quiet=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the preprocessed store (and any engine model built from the
    tiny model) is made once."""
    return tmp_path_factory.mktemp("cache")


def _args(tiny, cache, out: Path, *extra: str) -> list[str]:
    return ["--model", str(tiny.model_path), "--dataset-path", str(tiny.dataset_dir),
            "--cache-dir", str(cache), "--output", str(out), "--quiet", *extra]


def _no_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[bytes] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        src = dict(attrs).get("src", "")
        if tag == "img" and src.startswith("data:image/png;base64,"):
            self.images.append(base64.b64decode(src.split(",", 1)[1]))


@pytest.fixture(scope="module")
def small_run(tiny, cache, tmp_path_factory):
    """Both SUTs in Server (performance, 0.5 s runs), the peak searched on a budget so small
    that one trial runs; the Offline throughput that starts the search is probed."""
    out = tmp_path_factory.mktemp("run") / "out"
    rc = cli.main(_args(tiny, cache, out, "--scenario", "Server", "--mode", "performance",
                        "--time", "0.5", "--search-budget", "1", "--find-peak"))
    assert rc == 0
    return out, json.loads((out / "results.json").read_text())


def test_report_with_plots(small_run):
    out, results = small_run
    html = (out / "report.html").read_text()
    parser = _Images()
    parser.feed(html)
    assert len(parser.images) >= 4 and all(i.startswith(PNG_MAGIC) for i in parser.images)
    assert "<table>" in html and "<section" in html
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert {"throughput.png", "latency_percentiles.png", "latency_distribution.png",
            "server_search.png", "published.png"} <= set(pngs)
    md = (out / "report.md").read_text()
    for name in pngs:
        assert f"(plots/{name})" in md
    for text in ("quick — not a valid MLPerf result", "## Results",
                 "## Server: highest VALID target QPS", "## Every run",
                 "## Environment", "## Setup"):
        assert text in md and report.Doc._inline(text.lstrip("# ")) in html


def test_published_results_are_labelled_and_kept_apart(small_run):
    out, results = small_run
    md = (out / "report.md").read_text()
    section = md[md.index("## Published MLPerf results"):md.index("## Every run")]
    for figure in ("166,664", "150,027", "158,101", "147,261", "756,960", "632,241"):
        assert figure in section
    for per_accelerator in ("41,666", "37,507", "39,525", "36,815", "94,620", "79,030"):
        assert per_accelerator in section
    assert "MLPerf Inference v2.1" in section and "MLPerf Inference v4.1" in section
    assert "XE8545" in section and "R750xa" in section and "H200" in section
    # This run's own figures never sit in the published table, and published ones never in
    # this run's tables.
    published_rows = [line for line in section[:section.index("### This run")].splitlines()
                      if line.startswith("| MLPerf Inference")]
    assert len(published_rows) == 3
    assert not any("reference" in row or "native" in row for row in published_rows)
    results_part = md[:md.index("## Published MLPerf results")]
    assert "166,664" not in results_part and "XE8545" not in results_part
    assert [e["accelerators"] for e in results["published"]] == [4, 4, 8]


def test_results_json_has_environment_settings_and_search(small_run):
    _, results = small_run
    env = results["environment"]
    for key in ("cpu", "cores", "gpus", "python", "fastres", "onnxruntime", "tensorrt", "dali",
                "mlcommons-loadgen"):
        assert key in env, key
    assert env["cores"] >= 1 and env["mlcommons-loadgen"] and env["onnxruntime"]
    settings = results["settings"]
    assert settings["quick"] is True and results["label"] == report.QUICK_LABEL
    assert settings["find_peak"] is True and settings["search"]["budget_s"] == 1.0
    assert settings["command_line"].startswith("python -m fastres.bench ")
    assert set(settings["native_config"]) == {"Server"}
    out = small_run[0]
    for sut in ("reference", "native"):
        peak = results["server_peak"][sut]
        assert peak["search"]["runs"] == 1 and peak["search"]["stopped"] == "budget"
        (trial,) = peak["search"]["trials"]
        assert trial["load"] == pytest.approx(peak["search"]["start"], rel=1e-3)
        assert Path(trial["log_dir"]) == out / sut / "Server" / "search" / "trial-01"
        assert (out / sut / "probe" / "Offline" / "mlperf_log_summary.txt").is_file()
    perf = {(r["sut"], r["scenario"]): r for r in results["runs"]}
    assert set(perf) == {("reference", "Server"), ("native", "Server")}
    server = perf[("native", "Server")]
    assert Path(server["log_dir"]) == out / "native" / "Server" / "performance"
    dist = server["latency_distribution"]  # the trace is on for quick runs with a model
    assert dist["source"] == "mlperf_log_trace.json" and sum(dist["counts"]) == dist["count"]
    assert dist["percentiles_ns"]["p99"] == pytest.approx(server["latencies_ns"]["p99"])
    assert server["throughput"] > 0 and server["test_parameters"]


def test_report_without_matplotlib_is_tables_only(small_run, monkeypatch, tmp_path):
    out, results = small_run
    _no_matplotlib(monkeypatch)
    target = tmp_path / "copy"
    target.mkdir()
    (target / "results.json").write_text(json.dumps(results))
    assert cli.main(["--report-from", str(target / "results.json"), "--quiet"]) == 0
    html = (target / "report.html").read_text()
    md = (target / "report.md").read_text()
    assert "data:image/png" not in html and "<table>" in html
    assert "matplotlib is not installed" in md and "tables only" in md
    assert "pip install" in md
    assert not list(target.glob("plots/*.png"))
    assert "166,664" in md  # the sections stay, as tables


def test_small_run_without_matplotlib(tiny, cache, tmp_path, monkeypatch):
    _no_matplotlib(monkeypatch)
    out = tmp_path / "out"
    assert cli.main(_args(tiny, cache, out, "--mode", "performance", "--time", "0.5")) == 0
    md = (out / "report.md").read_text()
    assert "tables only" in md and "Offline" in md
    assert "data:image/png" not in (out / "report.html").read_text()


def test_json_progress_lines_parse(tiny, cache, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(_args(tiny, cache, out, "--mode", "accuracy", "--count", "16", "--json"))
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("run_start") == kinds.count("run_end") == 2
    end = next(e for e in events if e["event"] == "run_end")
    assert end["scenario"] == "Offline" and end["accuracy"] == pytest.approx(100.0)
    done = events[-1]
    assert done["rc"] == 0 and Path(done["results"]).is_file()
    assert Path(done["report_html"]).is_file()
    assert all("elapsed_s" in e for e in events)


def test_json_errors_are_json_too(tiny, cache, tmp_path, capsys):
    rc = cli.main(_args(tiny, cache, tmp_path / "out", "--scenario", "Offlne", "--json"))
    assert rc == 2
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["event"] == "error" and "Offlne" in json.loads(line)["message"]


def test_sweep_reports_a_table_a_plot_and_the_best_setting(tiny, cache, tmp_path):
    out = tmp_path / "out"
    rc = cli.main(_args(tiny, cache, out, "--sut", "native", "--engine", "null", "--mode",
                        "performance", "--time", "0.5",
                        "--sweep", "batch_size=1,16", "copy_streams=2"))
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    sweep = results["sweep"]
    assert sweep["spec"] == {"batch_size": [1, 16], "copy_streams": [2]}
    offline = sweep["scenarios"]["Offline"]
    assert [r["setting"] for r in offline["results"]] == [
        {"batch_size": 1, "copy_streams": 2}, {"batch_size": 16, "copy_streams": 2}]
    best = offline["best"]
    values = [r["value"] for r in offline["results"]]
    assert values[best] == max(v for v, r in zip(values, offline["results"]) if r["valid"]
                               or not any(x["valid"] for x in offline["results"]))
    for r in offline["results"]:
        assert r["native_config"]["batch_size"] == r["setting"]["batch_size"]
        assert Path(r["log_dir"]).parent == out / "native" / "sweep" / "Offline"
    md = (out / "report.md").read_text()
    assert "## Native SUT knob sweep" in md and "**best**" in md
    assert (out / "plots" / "sweep.png").read_bytes().startswith(PNG_MAGIC)
    # The native engine was the null one: no trace by default (it would cost throughput).
    main = next(r for r in results["runs"] if r["sut"] == "native")
    assert main["latency_distribution"] is None
    assert results["settings"]["latency_trace"] == {"native": False}


def test_progress_display_modes():
    human, machine = io.StringIO(), io.StringIO()
    clock = iter(float(i) for i in range(100))
    p = Progress("human", human=human, machine=machine, clock=lambda: next(clock))
    p.plan([10.0, 20.0])
    p.run_start(kind="run", sut="native", scenario="Server", mode="performance", expected_s=12.0)
    p.run_end({"sut": "native", "scenario": "Server", "mode": "performance", "value": 99.5,
               "metric": "Completed samples per second", "valid": True, "wall_s": 11.0})
    text = human.getvalue()
    assert "[1/2] native Server performance" in text and "elapsed" in text and "left ~" in text
    assert "VALID" in text and machine.getvalue() == ""
    quiet = io.StringIO()
    q = Progress("quiet", human=quiet, machine=quiet)
    q.plan([1.0])
    q.say("hello")
    assert quiet.getvalue() == ""


def test_long_runs_get_still_running_ticks():
    machine = io.StringIO()
    p = Progress("json", machine=machine, tick_s=0.01)
    p.plan([5.0])
    p.run_start(kind="run", sut="native", scenario="Offline", mode="performance", expected_s=5.0)
    deadline = time.monotonic() + 30
    while '"tick"' not in machine.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    p.run_end({"sut": "native", "scenario": "Offline", "mode": "performance", "wall_s": 0.1})
    events = [json.loads(line) for line in machine.getvalue().splitlines()]
    tick = next(e for e in events if e["event"] == "tick")
    assert tick["run"] == "native Offline performance" and tick["expected_s"] == 5.0
    assert events[-1]["event"] == "run_end"

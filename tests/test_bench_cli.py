"""``python -m fastres.bench`` end to end on a tiny synthetic model, and its input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from fastres.bench import cli
from fastres.data.synthetic import make_default


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=64, quiet=True)


def _base_args(tiny, tmp_path):
    return ["--model", str(tiny.model_path), "--dataset-path", str(tiny.dataset_dir),
            "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"), "--quiet"]


def test_offline_both_modes_writes_results_report_and_logs(tiny, tmp_path, capsys):
    rc = cli.main(_base_args(tiny, tmp_path))
    assert rc == 0
    out = capsys.readouterr().out
    assert "quick — not a valid MLPerf result" in out
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["settings"]["quick"] is True
    assert results["settings"]["scenarios"] == ["Offline"]
    runs = {(r["sut"], r["scenario"], r["mode"]): r for r in results["runs"]}
    assert set(runs) == {(s, "Offline", m) for s in ("reference", "native")
                         for m in ("performance", "accuracy")}
    for sut in ("reference", "native"):
        perf = runs[(sut, "Offline", "performance")]
        assert perf["metric"] == "Samples per second" and perf["value"] > 0
        assert perf["valid"] is True
    native_row = next(r for r in results["rows"] if r["sut"] == "native")
    ref_perf = runs[("reference", "Offline", "performance")]["value"]
    assert native_row["speedup"] == pytest.approx(
        runs[("native", "Offline", "performance")]["value"] / ref_perf)
    acc = runs[("reference", "Offline", "accuracy")]
    # The accuracy printed must be what MLPerf's rules read from LoadGen's own log.
    log = json.loads((Path(acc["log_dir"]) / "mlperf_log_accuracy.json").read_text())
    labels = np.loadtxt(tiny.val_map, dtype=str)[:, 1].astype(int)
    seen, good = set(), 0
    for entry in log:
        if entry["qsl_idx"] in seen:
            continue
        seen.add(entry["qsl_idx"])
        good += int(np.frombuffer(bytes.fromhex(entry["data"]), np.float32)[0]) == labels[entry["qsl_idx"]]
    assert acc["accuracy"] == pytest.approx(100.0 * good / len(seen))
    assert acc["accuracy_total"] == 64 and acc["accuracy"] >= 99.0
    for sut in ("reference", "native"):
        for mode in ("performance", "accuracy"):
            assert (tmp_path / "out" / sut / "Offline" / mode / "mlperf_log_summary.txt").is_file()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "quick — not a valid MLPerf result" in report and "Offline" in report
    assert results["environment"]["mlcommons-loadgen"]


def test_count_limits_the_dataset(tiny, tmp_path):
    rc = cli.main(_base_args(tiny, tmp_path) + ["--count", "16", "--mode", "accuracy"])
    assert rc == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["settings"]["images"] == 16
    assert [r["accuracy_total"] for r in results["runs"]] == [16, 16]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--scenario", "Offlne"], "unknown scenario"),
        (["--sut", "fast"], "unknown sut"),
        (["--official", "--time", "5"], "drop --time"),
        (["--user-conf", "/nonexistent/user.conf"], "user.conf"),
        (["--count", "100000"], "--count"),
        (["--batch-timeout-us", "-1"], "--batch-timeout-us"),
        (["--batch-size", "100000"], "batch_size"),
    ],
)
def test_bad_input_is_refused_before_work(tiny, tmp_path, capsys, extra, message):
    rc = cli.main(_base_args(tiny, tmp_path) + extra)
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_missing_model_and_dataset_are_named(tiny, tmp_path, capsys):
    assert cli.main(_base_args(tiny, tmp_path) + ["--model", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx" in capsys.readouterr().err
    assert cli.main(_base_args(tiny, tmp_path) + ["--dataset-path", str(tmp_path / "nodata")]) == 2
    assert "nodata" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(_base_args(tiny, tmp_path) + ["--dataset-path", str(empty)]) == 2
    assert "val_map.txt" in capsys.readouterr().err


def test_wrong_model_interface_lists_what_it_has(tiny, tmp_path, capsys):
    model = onnx.load(str(tiny.model_path))
    model.graph.input[0].name = "images"
    for node in model.graph.node:
        node.input[:] = ["images" if i == "input_tensor:0" else i for i in node.input]
    bad = tmp_path / "renamed.onnx"
    onnx.save(model, str(bad))
    assert cli.main(_base_args(tiny, tmp_path) + ["--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "input_tensor:0" in err and "images" in err and "--input-name" in err
    # Naming the input makes it usable.
    assert cli.main(_base_args(tiny, tmp_path) + ["--model", str(bad), "--input-name", "images",
                                                  "--mode", "accuracy"]) == 0


def test_argparse_rejects_non_positive_numbers(tiny, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(_base_args(tiny, tmp_path) + ["--threads", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_module_entry_point_runs(tiny, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastres.bench", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--scenario" in proc.stdout


def test_all_scenarios_accuracy(tiny, tmp_path):
    rc = cli.main(_base_args(tiny, tmp_path) + ["--scenario", "all", "--mode", "accuracy"])
    assert rc == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(r["scenario"], r["sut"]) for r in results["runs"]] == [
        (sc, sut) for sc in ("SingleStream", "MultiStream", "Server", "Offline")
        for sut in ("reference", "native")]
    for r in results["runs"]:
        assert r["accuracy_total"] == 64 and r["accuracy"] >= 99.0, r
    # Both SUTs answer every sample the same way (the same model on the same data).
    by_sut = {}
    for r in results["runs"]:
        log = json.loads((Path(r["log_dir"]) / "mlperf_log_accuracy.json").read_text())
        dtype = np.int32 if r["sut"] == "native" else np.float32
        answers = {e["qsl_idx"]: int(np.frombuffer(bytes.fromhex(e["data"]), dtype)[0]) for e in log}
        by_sut.setdefault(r["scenario"], {})[r["sut"]] = answers
    for scenario, answers in by_sut.items():
        assert answers["reference"] == answers["native"], scenario

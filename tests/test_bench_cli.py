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
from fastres.bench.sweep import grid, parse_sweep, pick_best, setting_label
from fastres.errors import InvalidArgument
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
        (["--sweep", "gpu_batch_size=1,2"], "unknown executor knob 'gpu_batch_size'; known: batch_size"),
        (["--sweep", "batch_size=0,8"], "batch_size must be >= 1"),
        (["--sweep", "batch_size"], "expected KNOB=V1,V2"),
        (["--sweep", "batch_size=1,x"], "'x' is not an integer"),
        (["--sweep", "batch_size=1", "batch_size=2"], "given twice"),
        (["--sweep", "batch_size=1,8", "--batch-size", "4"], "give it one way"),
        (["--sweep", "batch_size=1,100000"], "--sweep setting batch_size=100000 in Offline"),
        (["--sut", "reference", "--sweep", "batch_size=1,8"], "include native in --sut"),
        (["--mode", "accuracy", "--sweep", "batch_size=1,8"], "--mode performance"),
        (["--find-peak"], "include Server in --scenario"),
        (["--find-peak", "--scenario", "Server", "--target-qps", "5"], "drop --target-qps"),
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
    for flag, value, message in (("--search-precision", "1.5", "between 0 and 1"),
                                 ("--search-budget", "0", "positive number"),
                                 ("--latency-trace", "maybe", "invalid choice")):
        with pytest.raises(SystemExit):
            cli.main(_base_args(tiny, tmp_path) + [flag, value])
        assert message in capsys.readouterr().err


def test_sweep_grid_parsing():
    known = ("batch_size", "copy_streams", "batch_timeout_us", "deque_limit")
    spec = parse_sweep(["batch_size=1,8,32", "copy-streams=1,2", "batch_timeout_us=0,500"], known)
    assert spec == {"batch_size": [1, 8, 32], "copy_streams": [1, 2], "batch_timeout_us": [0, 500]}
    settings = grid(spec)
    assert len(settings) == 12
    assert settings[0] == {"batch_size": 1, "copy_streams": 1, "batch_timeout_us": 0}
    assert settings[1] == {"batch_size": 1, "copy_streams": 1, "batch_timeout_us": 500}
    assert settings[-1] == {"batch_size": 32, "copy_streams": 2, "batch_timeout_us": 500}
    assert parse_sweep(["batch_size=8,8,1"], known) == {"batch_size": [8, 1]}
    assert setting_label(settings[0]) == "batch_size=1 copy_streams=1 batch_timeout_us=0"
    assert grid({}) == []
    with pytest.raises(InvalidArgument, match="more than"):
        parse_sweep([f"batch_size={','.join(map(str, range(1, 20)))}",
                     f"copy_streams={','.join(map(str, range(1, 20)))}"], known)
    with pytest.raises(InvalidArgument, match="deque_limit must be >= 0"):
        parse_sweep(["deque_limit=-1"], known)


def test_sweep_best_setting():
    def r(value, valid=True, p99=1.0):
        return {"value": value, "valid": valid, "latencies_ns": {"p99": p99}, "sut_errors": 0}

    assert pick_best([r(10), r(30), r(20)], "Offline") == 1
    assert pick_best([r(10), r(30, valid=False), r(20)], "Offline") == 2
    assert pick_best([r(5e6), r(2e6), r(3e6)], "SingleStream") == 1
    assert pick_best([r(100, p99=9e6), r(100, p99=4e6), r(100, False, 1e6)], "Server") == 1
    assert pick_best([{"value": None}], "Offline") is None


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

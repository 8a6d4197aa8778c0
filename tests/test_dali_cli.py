"""``python -m fastres.bench`` with DALI: ``--preprocess dali``, ``--skip-bad`` (both
preprocessings) and ``--online``, end to end on the tiny synthetic default, and their input
errors before any work."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fastres.bench import cli
from fastres.data import dali as fd
from fastres.data.synthetic import make_default
from fastres.sut.online import ONLINE_LABEL

needs_dali = pytest.mark.skipif(
    not fd.dali_available(), reason="NVIDIA DALI is not installed: pip install 'fastres[dali]' "
                                    "to run the DALI command-line tests")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=64,
                        quiet=True)


def base_args(dataset: Path, model: Path, tmp_path: Path) -> list[str]:
    # The fp32 ONNX Runtime engine: the INT8 default would calibrate first (slower here).
    return ["--model", str(model), "--dataset-path", str(dataset), "--cache-dir",
            str(tmp_path / "cache"), "--output", str(tmp_path / "out"), "--quiet",
            "--engine", "onnxruntime"]


def results(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "results.json").read_text())


def log_answers(run: dict) -> dict[int, int]:
    dtype = np.int32 if run["sut"] == "native" else np.float32
    out: dict[int, int] = {}
    for e in json.loads((Path(run["log_dir"]) / "mlperf_log_accuracy.json").read_text()):
        out.setdefault(e["qsl_idx"], int(np.frombuffer(bytes.fromhex(e["data"]), dtype)[0]))
    return out


@pytest.fixture
def damaged(tiny, tmp_path):
    """A copy of the first 16 images with a truncated JPEG (the 4th) and an empty one (the 10th)."""
    root = tmp_path / "imagenet"
    shutil.copytree(tiny.dataset_dir, root)
    lines = (root / "val_map.txt").read_text().split("\n")[:16]
    (root / "val_map.txt").write_text("\n".join(lines) + "\n")
    bad = [root / lines[3].split()[0], root / lines[9].split()[0]]
    bad[0].write_bytes(bad[0].read_bytes()[:600])
    bad[1].write_bytes(b"")
    return root, bad


# --------------------------------------------------------------------------- refused up front

def test_dali_flags_without_dali_are_unavailable_naming_the_extra(tiny, tmp_path, capsys,
                                                                  monkeypatch):
    for name in [m for m in sys.modules if m == "nvidia" or m.startswith("nvidia.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nvidia", None)  # import nvidia... -> ImportError
    for extra in (["--preprocess", "dali"], ["--online"]):
        rc = cli.main(base_args(tiny.dataset_dir, tiny.model_path, tmp_path) + extra)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert f"{extra[0]}" in err and "pip install 'fastres[dali]'" in err
        # nothing ran: no results, no store, not even the output folder's runs
        assert not (tmp_path / "out" / "results.json").exists()
        assert not (tmp_path / "cache" / "store").exists()


@pytest.mark.parametrize("extra, message", [
    (["--online", "--sut", "reference"], "include native in --sut"),
    (["--dali-device", "cpu"], "add --preprocess dali or --online"),
    (["--preprocess", "opencv"], "invalid choice"),
])
def test_bad_dali_flags_are_refused_before_work(tiny, tmp_path, capsys, extra, message):
    try:
        rc = cli.main(base_args(tiny.dataset_dir, tiny.model_path, tmp_path) + extra)
    except SystemExit as exc:  # argparse's own refusal
        rc = exc.code
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cache" / "store").exists()


@needs_dali
@pytest.mark.skipif(fd.cuda_device_count() > 0, reason="this machine has a CUDA device")
def test_dali_gpu_without_a_gpu_is_refused(tiny, tmp_path, capsys):
    rc = cli.main(base_args(tiny.dataset_dir, tiny.model_path, tmp_path)
                  + ["--preprocess", "dali", "--dali-device", "gpu"])
    assert rc == 2 and "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "store").exists()


# --------------------------------------------------------------------------- --preprocess dali

@needs_dali
def test_preprocess_dali_fills_the_store_both_suts_read_and_says_so(tiny, tmp_path, capsys):
    rc = cli.main(base_args(tiny.dataset_dir, tiny.model_path, tmp_path)
                  + ["--preprocess", "dali", "--mode", "accuracy"])
    assert rc == 0
    out = capsys.readouterr().out
    res = results(tmp_path)
    info = res["preprocessing"]
    assert info["producer"] == "dali-cpu" and res["settings"]["store_producer"] == "dali-cpu"
    assert info["producer_info"]["dali"] == fd.dali_version() and info["online"] is None
    assert Path(info["store"]).name.startswith("fp32-dali-cpu-")
    assert "DALI on the CPU" in out and "[dali-cpu]" in out
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Preprocessed store made by DALI on the CPU (fastres.data.dali) [dali-cpu]" in report
    runs = {r["sut"]: r for r in res["runs"]}
    assert {r["accuracy_total"] for r in runs.values()} == {64}
    # Both harnesses read the same DALI-made tensors: the same model gives the same answers.
    assert log_answers(runs["reference"]) == log_answers(runs["native"])
    # The store is cached apart from the reference preprocessing's.
    rc = cli.main(base_args(tiny.dataset_dir, tiny.model_path, tmp_path) + ["--mode", "accuracy"])
    assert rc == 0 and results(tmp_path)["preprocessing"]["producer"] == "reference"
    assert len(list((tmp_path / "cache" / "store").iterdir())) == 2


# --------------------------------------------------------------------------- --skip-bad

@pytest.mark.parametrize("preprocess", ["reference", pytest.param("dali", marks=needs_dali)])
def test_bad_jpeg_is_named_or_skipped_and_counted(tiny, damaged, tmp_path, capsys, preprocess):
    root, bad = damaged
    args = base_args(root, tiny.model_path, tmp_path) + ["--preprocess", preprocess,
                                                         "--mode", "accuracy"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert bad[0].name in err and "--skip-bad" in err, err
    assert not (tmp_path / "out" / "results.json").exists()

    assert cli.main(args + ["--skip-bad"]) == 0
    captured = capsys.readouterr()
    res = results(tmp_path)
    info = res["preprocessing"]
    assert info["skipped_bad"] == 2 and info["skip_bad"] is True
    assert [Path(f).name for f in info["skipped_bad_files"]] == [bad[0].name, bad[1].name]
    assert "2 bad image(s) skipped (--skip-bad)" in captured.out
    assert "2 bad image(s) skipped (--skip-bad)" in (tmp_path / "out" / "report.md").read_text()
    assert res["settings"]["images_listed"] == 16 and res["settings"]["images"] == 14
    assert {r["accuracy_total"] for r in res["runs"]} == {14}


# --------------------------------------------------------------------------- --online

@needs_dali
def test_online_native_run_is_labelled_and_answers_as_the_reference(tiny, tmp_path, capsys):
    rc = cli.main(base_args(tiny.dataset_dir, tiny.model_path, tmp_path)
                  + ["--online", "--mode", "both"])
    assert rc == 0
    out = capsys.readouterr().out
    assert ONLINE_LABEL in out and "native (online, beyond MLPerf)  Offline" in out
    res = results(tmp_path)
    assert ONLINE_LABEL in res["label"] and res["settings"]["online"] is True
    assert res["preprocessing"]["online"]["label"] == ONLINE_LABEL
    for name in ("report.md", "report.html"):
        text = (tmp_path / "out" / name).read_text()
        assert ONLINE_LABEL in text and "native (online, beyond MLPerf)" in text
    runs = {(r["sut"], r["mode"]): r for r in res["runs"]}
    native = runs[("native", "accuracy")]
    assert ONLINE_LABEL in native["label"] and "online" not in runs[("reference", "accuracy")]
    assert native["online"]["samples"] >= 64 and native["online"]["copied_bytes"] == 0
    assert native["sut_errors"] == 0 and native["accuracy_total"] == 64
    # The reference preprocessed offline, the native SUT online with DALI: same answers here.
    assert log_answers(native) == log_answers(runs[("reference", "accuracy")])
    perf = runs[("native", "performance")]
    assert perf["value"] > 0 and perf["online"]["preprocess_ns"] > 0

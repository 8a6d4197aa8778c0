"""MLPerf compliance audits TEST01 and TEST04 (fastres.bench.audit) through the real LoadGen.

Oracles: LoadGen itself (it parses our audit.config and says in its detail log that it found
and applied it; its accuracy log holds what it sampled), and the published verification rules
re-computed here by hand from the raw log files.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np
import pytest

import fastres
from fastres import loadgen as flg
from fastres.bench import audit
from fastres.bench import cli
from fastres.errors import InvalidArgument
from fastres.sut.native import NativeSUT, make_config


class Store:
    format = "fp32"

    def __init__(self, n: int = 64) -> None:
        self.data = np.random.default_rng(1).standard_normal((n, 1, 4, 4)).astype(np.float32)
        self.labels = np.arange(n, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.data)


def index_engine(max_batch: int) -> fastres.NullEngine:
    """Answers every sample with its own QSL index: each response is checkable."""
    return fastres.NullEngine(input_dtype="float32", input_shape=(1, 4, 4), max_batch=max_batch,
                              answer="index")


SERVER = dict(target_qps=500, min_duration_ms=400, max_duration_ms=10_000, min_query_count=500)


def run(engine, store, scenario, mode, out, *, test=None, config=None, **kw):
    config = config or make_config(scenario)
    settings = flg.make_settings(scenario, mode, **kw)
    with NativeSUT(engine, store, scenario=scenario, config=config) as sut:
        if test is None:
            result = flg.run_test(sut.sut, sut.qsl, settings, out)
        else:
            result = audit.run_audit(test, sut.sut, sut.qsl, settings, out)
        assert sut.failure is None
    return result


def detail_values(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG"):
            record = json.loads(line[len(":::MLLOG"):])
            values[record["key"]] = record["value"]
    return values


# --------------------------------------------------------------------------------------------
# audit.config: what it holds, where it lives


@pytest.mark.parametrize("scenario", flg.SCENARIOS)
def test_audit_configs_as_loadgen_reads_them(tmp_path, scenario):
    """LoadGen's own parser (the call StartTest makes: model '*', conf_type 2) gives the
    published TEST01 and TEST04 settings."""
    for test, expected in (
            ("TEST01", {"mode": lg.TestMode.PerformanceOnly,
                        "accuracy_log_rng_seed": 720381539243781796,
                        "accuracy_log_sampling_target": 4096,
                        "performance_issue_same": False}),
            ("TEST04", {"mode": lg.TestMode.PerformanceOnly, "performance_issue_unique": False,
                        "performance_issue_same": True, "performance_issue_same_index": 3,
                        "accuracy_log_sampling_target": 0})):
        path = tmp_path / f"{test}.config"
        path.write_text(audit.audit_config_text(test))
        settings = lg.TestSettings()
        settings.mode = lg.TestMode.AccuracyOnly  # something the audit must override
        assert settings.FromConfig(str(path), "*", scenario, 2) == 0
        assert {k: getattr(settings, k) for k in expected} == expected, test


def test_audit_config_lives_in_the_run_folder_and_is_always_removed(tmp_path, monkeypatch):
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    store = Store()
    config = make_config("Server")
    out = tmp_path / "TEST04"
    seen_during_run: list[bool] = []
    real = flg.run_test

    def spy(*args, **kwargs):
        seen_during_run.append((out / "audit.config").is_file())
        return real(*args, **kwargs)

    monkeypatch.setattr(flg, "run_test", spy)
    run(index_engine(config.batch_size), store, "Server", "performance", out, test="TEST04",
        config=config, **SERVER)
    assert seen_during_run == [True]
    assert not (out / "audit.config").exists()
    assert list(workdir.iterdir()) == []  # nothing was ever written to the working folder
    detail = flg.parse_detail(out / "mlperf_log_detail.txt")
    assert any("Found Audit Config file" in w for w in detail.warnings)
    # TEST04 applied: every query issued the same sample
    log = json.loads((out / "mlperf_log_accuracy.json").read_text())
    assert log == []  # TEST04 samples no responses
    assert detail.values["effective_performance_issue_same"] is True

    # removed on an exception too
    def boom(*args, **kwargs):
        assert (out / "audit.config").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(flg, "run_test", boom)
    with NativeSUT(index_engine(config.batch_size), store, scenario="Server",
                   config=config) as sut, pytest.raises(KeyboardInterrupt):
        audit.run_audit("TEST01", sut.sut, sut.qsl, flg.make_settings("Server", **SERVER), out)
    assert not (out / "audit.config").exists()


def test_a_stray_audit_config_in_the_working_folder_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audit.config").write_text(audit.audit_config_text("TEST04"))
    store = Store()
    config = make_config("Server")
    run(index_engine(config.batch_size), store, "Server", "performance", tmp_path / "run",
        config=config, **SERVER)
    detail = flg.parse_detail(tmp_path / "run" / "mlperf_log_detail.txt")
    assert not any("Audit Config" in w for w in detail.warnings)
    assert detail.values["effective_performance_issue_same"] is False


def test_a_leftover_audit_config_in_the_run_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "audit.config").write_text(audit.audit_config_text("TEST01"))
    store = Store()
    config = make_config("Offline")
    with pytest.raises(InvalidArgument, match="audit.config left by an interrupted"):
        run(index_engine(config.batch_size), store, "Offline", "performance", out,
            config=config)


def test_parse_audits():
    assert audit.parse_audits(["test04,TEST01"]) == ["TEST04", "TEST01"]
    assert audit.parse_audits(["all"]) == ["TEST01", "TEST04"]
    assert audit.parse_audits(None) == []
    with pytest.raises(InvalidArgument, match="unknown audit 'TEST05'"):
        audit.parse_audits(["TEST05"])


# --------------------------------------------------------------------------------------------
# TEST01


def _test01_oracle(acc_log: Path, perf_log: Path) -> tuple[int, int]:
    """(matches, mismatches) as verify_accuracy.py counts them, int32 responses."""
    stored = {}
    for e in json.loads(acc_log.read_text()):
        stored.setdefault(e["qsl_idx"], e["data"])
    match = mismatch = 0
    for e in json.loads(perf_log.read_text()):
        if e["qsl_idx"] in stored:
            match += 1
            a = np.frombuffer(bytes.fromhex(stored[e["qsl_idx"]]), np.int32)
            b = np.frombuffer(bytes.fromhex(e["data"]), np.int32)
            mismatch += (a.size != b.size) if (a.size == 0 or b.size == 0) else int(a[0] != b[0])
        stored[e["qsl_idx"]] = e["data"]
    return match, mismatch


def test_test01_passes_for_an_honest_sut(tmp_path):
    store = Store()
    config = make_config("Server")
    engine = index_engine(config.batch_size)
    run(engine, store, "Server", "accuracy", tmp_path / "accuracy", config=config, **SERVER)
    run(engine, store, "Server", "performance", tmp_path / "performance", config=config, **SERVER)
    run(engine, store, "Server", "performance", tmp_path / "TEST01", test="TEST01",
        config=config, **SERVER)
    result = audit.verify("TEST01", performance_dir=tmp_path / "performance",
                          accuracy_dir=tmp_path / "accuracy", audit_dir=tmp_path / "TEST01",
                          dtype="int32")
    checks = {c.name: c for c in result.checks}
    match, mismatch = _test01_oracle(tmp_path / "accuracy" / "mlperf_log_accuracy.json",
                                     tmp_path / "TEST01" / "mlperf_log_accuracy.json")
    # the sampling target (4096) exceeds the samples issued, so LoadGen logs every response
    assert match == detail_values(tmp_path / "TEST01" / "mlperf_log_detail.txt")[
        "result_query_count"] > 0
    assert checks["accuracy"].passed and mismatch == 0
    assert checks["accuracy"].figures["audit_log_qsl_idx_match"] == match
    # The performance verdict is the published rule applied to the two detail logs; in Server
    # the completed rate follows LoadGen's own schedule (same seed, same target).
    ref = detail_values(tmp_path / "performance" / "mlperf_log_detail.txt")
    test = detail_values(tmp_path / "TEST01" / "mlperf_log_detail.txt")
    r, t = ref["result_completed_samples_per_sec"], test["result_completed_samples_per_sec"]
    assert checks["performance"].passed == (0.9 * r <= t <= 1.1 * r)
    assert checks["performance"].figures["performance_run"] == r
    assert result.passed


class Cheater:
    """Answers correctly until told to cheat: then every label is off by one (a SUT that
    answers differently in performance mode than in accuracy mode)."""

    def __init__(self) -> None:
        self.cheat = False

    def __call__(self, inputs, labels, indices):
        labels[:] = indices.astype(np.int32) + (1 if self.cheat else 0)


def test_test01_fails_a_sut_that_answers_differently_in_performance_mode(tmp_path):
    store = Store()
    config = make_config("Offline", batch_size=8)
    fn = Cheater()
    engine = fastres.PythonEngine(fn, "float32", (1, 4, 4), 8)
    kw = dict(target_qps=2000, min_duration_ms=200, max_duration_ms=10_000)
    run(engine, store, "Offline", "accuracy", tmp_path / "accuracy", config=config, **kw)
    run(engine, store, "Offline", "performance", tmp_path / "performance", config=config, **kw)
    fn.cheat = True
    run(engine, store, "Offline", "performance", tmp_path / "TEST01", test="TEST01",
        config=config, **kw)
    result = audit.verify("TEST01", performance_dir=tmp_path / "performance",
                          accuracy_dir=tmp_path / "accuracy", audit_dir=tmp_path / "TEST01",
                          dtype="int32")
    acc = next(c for c in result.checks if c.name == "accuracy")
    match, mismatch = _test01_oracle(tmp_path / "accuracy" / "mlperf_log_accuracy.json",
                                     tmp_path / "TEST01" / "mlperf_log_accuracy.json")
    # The script compares a repeated qsl_idx with the previous audit-run entry (it replaces the
    # stored data), so each cheated sample counts once: at its first occurrence.
    distinct = {e["qsl_idx"] for e in json.loads(
        (tmp_path / "TEST01" / "mlperf_log_accuracy.json").read_text())}
    assert mismatch == len(distinct) > 0 and match >= mismatch
    assert not acc.passed and acc.figures["audit_log_data_mismatch"] == mismatch
    assert "differ from the accuracy run" in acc.message
    assert not result.passed


def test_test01_fails_when_loadgen_did_not_read_the_config(tmp_path):
    store = Store()
    config = make_config("Server")
    engine = index_engine(config.batch_size)
    run(engine, store, "Server", "accuracy", tmp_path / "accuracy", config=config, **SERVER)
    run(engine, store, "Server", "performance", tmp_path / "performance", config=config, **SERVER)
    # an "audit" run without its audit.config: an ordinary performance run
    run(engine, store, "Server", "performance", tmp_path / "TEST01", config=config, **SERVER)
    result = audit.verify("TEST01", performance_dir=tmp_path / "performance",
                          accuracy_dir=tmp_path / "accuracy", audit_dir=tmp_path / "TEST01",
                          dtype="int32")
    checks = {c.name: c for c in result.checks}
    assert not checks["audit.config read"].passed
    assert "did not report 'Found Audit Config file'" in checks["audit.config read"].message
    assert not checks["accuracy"].passed  # nothing was sampled to compare
    assert checks["accuracy"].figures["audit_log_entries"] == 0
    assert not result.passed


def _doctor_detail(src: Path, dst: Path, **values) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    lines = []
    for line in (src / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG"):
            record = json.loads(line[len(":::MLLOG"):])
            if record["key"] in values:
                record["value"] = values[record["key"]]
                line = ":::MLLOG " + json.dumps(record)
        lines.append(line)
    (dst / "mlperf_log_detail.txt").write_text("\n".join(lines) + "\n")
    return dst / "mlperf_log_detail.txt"


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    """Real performance-run logs of each scenario (native SUT, index engine)."""
    root = tmp_path_factory.mktemp("logs")
    store = Store()
    out = {}
    for scenario, kw in (("Server", SERVER),
                         ("Offline", dict(target_qps=3000, min_duration_ms=200)),
                         ("SingleStream", dict(min_duration_ms=200)),
                         ("MultiStream", dict(min_duration_ms=200))):
        config = make_config(scenario)
        engine = index_engine(config.batch_size)
        if scenario == "Offline":  # at most 2 slots x 1000 samples/s: VALID at 3000 expected
            engine = fastres.PythonEngine(lambda x, labels, idx: time.sleep(1e-3 * len(idx)),
                                          "float32", (1, 4, 4), config.batch_size)
        r = run(engine, store, scenario, "performance", root / scenario, config=config, **kw)
        assert r.valid, (scenario, r.summary.unmet)
        out[scenario] = root / scenario
    return out


@pytest.mark.parametrize("scenario, key", [("Server", "result_completed_samples_per_sec"),
                                           ("Offline", "result_samples_per_second"),
                                           ("SingleStream", "early_stopping_latency_ss"),
                                           ("MultiStream", "early_stopping_latency_ms")])
def test_test01_performance_rule(logs, tmp_path, scenario, key):
    ref = logs[scenario] / "mlperf_log_detail.txt"
    score = float(detail_values(ref)[key])
    # The published threshold: 10%, 20% for SingleStream <= 200 us / MultiStream <= 1.6 ms.
    t = 0.20 if (scenario == "SingleStream" and score <= 200000) or (
        scenario == "MultiStream" and score <= 1600000) else 0.10
    for factor, ok in ((1.0, True), (1 + t - 0.01, True), (1 - t + 0.01, True),
                       (1 + t + 0.01, False), (1 - t - 0.01, False)):
        test = _doctor_detail(logs[scenario], tmp_path / f"x{factor}", **{key: score * factor})
        check = audit.verify_test01_performance(ref, test)
        assert check.passed is ok, (factor, check.message)
        assert check.figures["threshold"] == t
    invalid = _doctor_detail(logs[scenario], tmp_path / "invalid", result_validity="INVALID")
    check = audit.verify_test01_performance(ref, invalid)
    assert not check.passed and "INVALID" in check.message
    check = audit.verify_test01_performance(invalid, ref)
    assert not check.passed and "performance run is INVALID" in check.message
    if scenario == "Server":
        other = _doctor_detail(logs[scenario], tmp_path / "lat",
                               effective_target_latency_ns=10_000_000)
        check = audit.verify_test01_performance(ref, other)
        assert not check.passed and "target latency differs" in check.message


def test_test01_accuracy_rule_on_handwritten_logs(tmp_path):
    def log(name, entries):
        path = tmp_path / name
        path.write_text(json.dumps([{"seq_id": i, "qsl_idx": q, "data": d}
                                    for i, (q, d) in enumerate(entries)]))
        return path

    h = lambda v: np.array([v], np.int32).tobytes().hex()  # noqa: E731
    acc = log("acc.json", [(0, h(5)), (1, h(6)), (2, ""), (1, h(9))])  # a duplicate key
    same = log("same.json", [(0, h(5)), (2, ""), (7, h(1))])  # 7: not in the accuracy log
    check = audit.verify_test01_accuracy(acc, same, "int32")
    assert check.passed
    assert check.figures["missing_qsl_idxs"] == 1 and check.figures["audit_log_qsl_idx_match"] == 2
    assert check.figures["accuracy_log_duplicate_keys"] == 1
    assert check.figures["accuracy_log_data_mismatch"] == 1
    empty_vs_full = log("e.json", [(2, h(3))])
    assert not audit.verify_test01_accuracy(acc, empty_vs_full, "int32").passed
    none = log("none.json", [(7, h(1))])
    check = audit.verify_test01_accuracy(acc, none, "int32")
    assert not check.passed and check.figures["audit_log_qsl_idx_match"] == 0
    # a later entry of the same qsl_idx is compared with the one before it, as the script does
    drift = log("drift.json", [(0, h(5)), (0, h(5))])
    assert audit.verify_test01_accuracy(acc, drift, "int32").passed
    with pytest.raises(InvalidArgument, match="dtype"):
        audit.verify_test01_accuracy(acc, same, "uint8")
    broken = log("broken.json", [(0, "zz")])  # not hex: a failed check, not a crash
    check = audit.verify_test01_accuracy(acc, broken, "int32")
    assert not check.passed and "malformed" in check.message


# --------------------------------------------------------------------------------------------
# TEST04


def _doctor_summary(src: Path, dst: Path, pattern: str, value: str) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    text = (src / "mlperf_log_summary.txt").read_text()
    new, n = re.subn(pattern, lambda m: m.group(1) + value, text, flags=re.M)
    assert n, pattern
    (dst / "mlperf_log_summary.txt").write_text(new)
    return dst / "mlperf_log_summary.txt"


@pytest.mark.parametrize("scenario", flg.SCENARIOS)
def test_test04_rule(logs, tmp_path, scenario):
    ref = logs[scenario] / "mlperf_log_summary.txt"
    text = ref.read_text()
    if scenario in ("Server", "Offline"):
        name = "Completed samples per second" if scenario == "Server" else "Samples per second"
        pattern = rf"^({name}\s*:\s*)\S+"
        score = float(re.search(pattern, text, re.M).group(0).split(":")[1])
        faster = lambda f: f"{score * f}"  # noqa: E731 - a throughput: higher is faster
        t = 0.10
    else:
        pct = "90.0" if scenario == "SingleStream" else "99.0"
        pattern = rf"^( \* Early stopping {pct}th percentile estimate: )\S+"
        latency = float(re.search(pattern, text, re.M).group(0).split(": ")[1])
        faster = lambda f: f"{int(latency / f)}"  # noqa: E731 - a latency: lower is faster
        # the script compares 1e9/latency with its ns thresholds: 20% in practice
        t = 0.20 if 1e9 / latency <= (200000 if scenario == "SingleStream" else 1600000) else 0.10
    for factor, ok in ((1.0, True), (0.5, True), (1 + t - 0.02, True), (1 + t + 0.02, False)):
        test = _doctor_summary(logs[scenario], tmp_path / f"f{factor}", pattern, faster(factor))
        check = audit.verify_test04_performance(ref, test)
        assert check.passed is ok, (factor, check.message)
    invalid = _doctor_summary(logs[scenario], tmp_path / "inv", r"^(Result is : )\S+", "INVALID")
    check = audit.verify_test04_performance(ref, invalid)
    assert not check.passed and "INVALID" in check.message


def test_test04_passes_for_a_sut_that_does_not_cache(tmp_path):
    store = Store()
    config = make_config("Server")
    engine = index_engine(config.batch_size)
    run(engine, store, "Server", "performance", tmp_path / "performance", config=config, **SERVER)
    result = run(engine, store, "Server", "performance", tmp_path / "TEST04", test="TEST04",
                 config=config, **SERVER)
    assert result.detail.values["effective_performance_issue_same_index"] == 3
    verdict = audit.verify("TEST04", performance_dir=tmp_path / "performance",
                           audit_dir=tmp_path / "TEST04")
    summaries = [flg.parse_summary(tmp_path / d / "mlperf_log_summary.txt")
                 for d in ("performance", "TEST04")]
    ref, test = (float(s.raw["Completed samples per second"]) for s in summaries)
    assert verdict.checks[-1].passed == (test < 1.1 * ref)
    assert verdict.passed


class CachingEngine:
    """Does 1 ms of work per sample, unless the whole batch repeats the sample it saw last:
    then it answers from its cache (the behaviour TEST04 exists to catch)."""

    def __init__(self) -> None:
        self.last = None
        self.lock = threading.Lock()

    def __call__(self, inputs, labels, indices):
        with self.lock:
            cached = self.last is not None and bool(np.all(indices == self.last))
            self.last = int(indices[-1])
        if not cached:
            time.sleep(0.001 * len(indices))
        labels[:] = indices.astype(np.int32)


def test_test04_fails_a_sut_that_caches_repeated_samples(tmp_path):
    store = Store()
    config = make_config("Offline", batch_size=16)
    engine = fastres.PythonEngine(CachingEngine(), "float32", (1, 4, 4), 16)
    run(engine, store, "Offline", "performance", tmp_path / "performance", config=config,
        target_qps=2000, min_duration_ms=200, max_duration_ms=20_000)
    # many more samples for the audit run, so that the cached run still lasts its minimum
    run(engine, store, "Offline", "performance", tmp_path / "TEST04", test="TEST04",
        config=config, target_qps=400_000, min_duration_ms=200, max_duration_ms=20_000)
    verdict = audit.verify("TEST04", performance_dir=tmp_path / "performance",
                           audit_dir=tmp_path / "TEST04")
    check = verdict.checks[-1]
    assert not verdict.passed and not check.passed
    summary = flg.parse_summary(tmp_path / "TEST04" / "mlperf_log_summary.txt")
    if summary.valid:  # caught by the rule itself: much faster on the same sample
        assert check.figures["ratio"] > 1.1 and "at most +10% allowed" in check.message
    else:
        assert "INVALID" in check.message


# --------------------------------------------------------------------------------------------
# python -m fastres.bench --audit


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fastres.data.synthetic import make_default

    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=64,
                        quiet=True)


@pytest.mark.slow
def test_cli_audits_both_suts_and_reports_pass_fail(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    rc = cli.main(["--model", str(tiny.model_path), "--dataset-path", str(tiny.dataset_dir),
                   "--cache-dir", str(tmp_path / "cache"), "--output", str(out), "--quiet",
                   "--scenario", "Server", "--target-qps", "1000",  # one-second runs
                   "--engine", "onnxruntime", "--audit", "all"])
    results = json.loads((out / "results.json").read_text())
    audits = {(a["sut"], a["test"]): a for a in results["audits"]}
    assert set(audits) == {(s, t) for s in ("reference", "native") for t in ("TEST01", "TEST04")}
    for (sut, test), a in audits.items():
        assert a["scenario"] == "Server"
        assert a["passed"] == all(c["passed"] for c in a["checks"])
        log_dir = out / sut / "Server" / test
        assert (log_dir / "mlperf_log_summary.txt").is_file()
        assert not (log_dir / "audit.config").exists()
        read = next(c for c in a["checks"] if c["name"] == "audit.config read")
        assert read["passed"], read
        if test == "TEST01":  # deterministic: the same model answers the same in both modes
            acc = next(c for c in a["checks"] if c["name"] == "accuracy")
            assert acc["passed"], acc
    assert not list(out.rglob("audit.config"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]
    # exit status: failure exactly when an audit failed (no run failed here)
    assert not any(r["failed"] for r in results["runs"])
    assert rc == (0 if all(a["passed"] for a in audits.values()) else 1)
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "MLPerf compliance audits" in report and "MLPerf compliance audits" in html
    for (sut, test), a in audits.items():
        verdict = "PASS" if a["passed"] else "FAIL"
        assert f"{test} {sut} Server: {verdict}" in printed
        assert re.search(rf"\| {sut} \| Server \| {test} \| (\*\*)?{verdict}", report)


@pytest.mark.parametrize("extra, message", [
    (["--audit", "TEST02"], "unknown audit 'TEST02'"),
    (["--audit", "TEST01", "--mode", "performance"], "use --mode both"),
    (["--audit", "TEST04", "--mode", "accuracy"], "--mode performance or both"),
])
def test_cli_audit_flags_are_checked_before_work(tiny, tmp_path, capsys, extra, message):
    rc = cli.main(["--model", str(tiny.model_path), "--dataset-path", str(tiny.dataset_dir),
                   "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
                   "--quiet"] + extra)
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()

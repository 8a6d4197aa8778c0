"""fastres.loadgen against the real LoadGen: settings, runs, summaries, accuracy logs.

The SUTs here are small Python fakes that answer from a worker thread, so the tests exercise
LoadGen itself and fastres' glue around it, not a model."""

from __future__ import annotations

import array
import ast
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlperf_loadgen as lg
import numpy as np
import pytest

from fastres import loadgen as flg
from fastres.errors import DataError, InvalidArgument

N_SAMPLES = 60  # not a multiple of MultiStream's 8: LoadGen pads with repeated indices


# --------------------------------------------------------------------------------------------
# a fake SUT


class FakeSUT:
    """Answers ``labels[index] + shift`` as ``dtype`` from one worker thread, after sleeping
    ``per_sample_s`` per sample (a slow SUT when that is large)."""

    def __init__(self, labels: np.ndarray, *, shift: int = 0, dtype: str = "float32",
                 per_sample_s: float = 0.0, wrong_odd: bool = False) -> None:
        self.labels = labels
        self.shift = shift
        self.dtype = np.dtype(dtype)
        self.per_sample_s = per_sample_s
        self.wrong_odd = wrong_odd
        self.loaded: set[int] = set()
        self.tasks: queue.Queue = queue.Queue()
        self.worker = threading.Thread(target=self._work, daemon=True)
        self.worker.start()
        self.sut = flg.make_sut(self.tasks.put, lambda: None)
        self.qsl = flg.make_qsl(len(labels), len(labels), self._load, self._unload)

    def _load(self, indices: list[int]) -> None:
        self.loaded.update(indices)

    def _unload(self, indices: list[int]) -> None:
        self.loaded.difference_update(indices)

    def answer(self, index: int) -> int:
        label = int(self.labels[index]) + self.shift
        if self.wrong_odd and index % 2:
            label += 1
        return label

    def _work(self) -> None:
        while True:
            samples = self.tasks.get()
            if samples is None:
                return
            if self.per_sample_s:
                time.sleep(self.per_sample_s * len(samples))
            keep, responses = [], []
            for q in samples:
                buf = array.array("B", np.array([self.answer(q.index)], self.dtype).tobytes())
                keep.append(buf)
                address, length = buf.buffer_info()
                responses.append(lg.QuerySampleResponse(q.id, address, length))
            lg.QuerySamplesComplete(responses)

    def close(self) -> None:
        self.tasks.put(None)
        self.worker.join()
        self.qsl.close()
        self.sut.close()

    def __enter__(self) -> FakeSUT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 1000, N_SAMPLES).astype(np.int32)


def mlperf_accuracy(path: Path, labels: np.ndarray, dtype: str) -> tuple[int, int]:
    """An independent re-implementation of tools/accuracy-imagenet.py's loop."""
    results = json.loads(path.read_text())
    seen, good = set(), 0
    for j in results:
        idx = j["qsl_idx"]
        if idx in seen:
            continue
        seen.add(idx)
        found = int(np.frombuffer(bytes.fromhex(j["data"]), {"float32": np.float32,
                                                             "int32": np.int32,
                                                             "int64": np.int64}[dtype])[0])
        if labels[idx] == found:
            good += 1
    return good, len(seen)


# --------------------------------------------------------------------------------------------
# scenarios, modes, settings


@pytest.mark.parametrize("text,expected", [
    ("offline", "Offline"), ("SERVER", "Server"), ("singlestream", "SingleStream"),
    ("single-stream", "SingleStream"), ("Multi_Stream", "MultiStream"),
    (lg.TestScenario.Server, "Server"),
])
def test_parse_scenario(text, expected):
    assert flg.parse_scenario(text) == expected


def test_unknown_scenario_lists_valid_ones():
    with pytest.raises(InvalidArgument) as err:
        flg.parse_scenario("batch")
    for name in flg.SCENARIOS:
        assert name in str(err.value)
    with pytest.raises(InvalidArgument):
        flg.make_settings("streaming", "performance")


def test_parse_mode():
    assert flg.parse_mode("Performance") == "performance"
    assert flg.parse_mode("AccuracyOnly") == "accuracy"
    assert flg.parse_mode(lg.TestMode.AccuracyOnly) == "accuracy"
    with pytest.raises(InvalidArgument, match="performance, accuracy"):
        flg.parse_mode("submission")


def test_performance_sample_count():
    assert flg.performance_sample_count(50_000) == 1024
    assert flg.performance_sample_count(64) == 64
    with pytest.raises(InvalidArgument):
        flg.performance_sample_count(0)


@pytest.mark.parametrize("scenario", flg.SCENARIOS)
def test_quick_settings(scenario):
    s = flg.make_settings(scenario.lower(), "performance", target_qps=321.0)
    assert isinstance(s, lg.TestSettings)
    assert s.quick and s.label == flg.QUICK_LABEL == "quick — not a valid MLPerf result"
    assert s.scenario == getattr(lg.TestScenario, scenario)
    assert s.mode == lg.TestMode.PerformanceOnly
    assert s.min_duration_ms == flg.QUICK_MIN_DURATION_MS
    assert s.max_duration_ms == flg.QUICK_MAX_DURATION_MS
    assert s.performance_sample_count_override == 0  # the QSL's count, not 1024
    # the rest still comes from mlperf.conf
    assert s.server_target_latency_ns == 15_000_000
    assert s.multi_stream_samples_per_query == 8
    assert s.qsl_rng_seed == 2085463073848966840
    assert s.server_target_qps == s.offline_expected_qps == 321.0
    fields = s.as_dict()
    assert fields["scenario"] == scenario and fields["min_duration_ms"] == 1000


@pytest.mark.parametrize("scenario", flg.SCENARIOS)
def test_official_settings_load_embedded_mlperf_conf_every_time(scenario):
    # LoadGen's FromConfig(conf_type=1) loads mlperf.conf only on its first call in a process;
    # fastres must get the same settings on every call.
    for _ in range(3):
        s = flg.make_settings(scenario, "accuracy", official=True)
        assert not s.quick and s.label == flg.OFFICIAL_LABEL
        assert s.mode == lg.TestMode.AccuracyOnly
        assert s.min_duration_ms == flg.OFFICIAL_MIN_DURATION_MS
        assert s.performance_sample_count_override == 1024
        assert s.qsl_rng_seed == 2085463073848966840
        assert s.server_target_latency_ns == 15_000_000
        if scenario == "Offline":
            assert s.min_query_count == 24576
        if scenario == "MultiStream":
            assert s.min_query_count == 662


def test_official_rejects_duration_and_count_overrides():
    with pytest.raises(InvalidArgument, match="min_duration_ms"):
        flg.make_settings("Offline", official=True, min_duration_ms=1000)
    s = flg.make_settings("Server", official=True, target_qps=42)  # a user.conf value: allowed
    assert s.server_target_qps == 42


def test_user_conf_applied_after_mlperf_conf(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("# target for this machine\nresnet50.Server.target_qps = 123\n"
                    "*.Offline.target_qps = 77\n")
    for official in (True, False):
        s = flg.make_settings("Server", official=official, user_conf=conf)
        assert s.server_target_qps == 123
        assert s.offline_expected_qps == 77
        assert s.server_target_latency_ns == 15_000_000  # mlperf.conf still loaded
        assert s.user_conf == conf.resolve()
    # keywords win over user.conf
    assert flg.make_settings("Server", user_conf=conf, target_qps=5).server_target_qps == 5


def test_missing_user_conf_is_named(tmp_path):
    missing = tmp_path / "nope" / "user.conf"
    with pytest.raises(InvalidArgument, match="nope/user.conf"):
        flg.make_settings("Offline", official=True, user_conf=missing)


BAD_USER_CONFS = [
    ("resnet50.Server.target_qps = fast\n", "'fast' is not a number"),
    ("*.Server.target_qps = 5 # five\n", "'#' is not a number"),  # LoadGen rejects it too
    ("#hello world\n", "expected '='"),
    ("*.Server.target_qps 7\n", "expected '='"),
]


@pytest.mark.parametrize("text,complaint", BAD_USER_CONFS)
def test_unparsable_user_conf(tmp_path, text, complaint):
    conf = tmp_path / "user.conf"
    conf.write_text(text)
    with pytest.raises(InvalidArgument, match=complaint) as err:
        flg.make_settings("Server", user_conf=conf)
    assert "line 1" in str(err.value)


def test_loadgen_rejects_the_user_confs_fastres_rejects(tmp_path):
    # In a child process: a failed FromConfig logs an error into the next test's detail log.
    paths = []
    for i, (text, _) in enumerate(BAD_USER_CONFS):
        paths.append(tmp_path / f"bad{i}.conf")
        paths[-1].write_text(text)
    code = ("import sys, mlperf_loadgen as lg\n"
            "print([lg.TestSettings().FromConfig(p, 'resnet50', 'Server', 2) "
            "for p in sys.argv[1:]])")
    out = subprocess.run([sys.executable, "-c", code, *map(str, paths)], check=True,
                         capture_output=True, text=True).stdout
    assert all(rc != 0 for rc in ast.literal_eval(out.strip().splitlines()[-1]))


def test_user_conf_grammar_edge_cases_accepted(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("# a comment\n\n*.Offline.target_qps = 1e3\n*.Server.target_qps =\n"
                    "resnet50.Server.target_qps = 0x10\n")
    s = flg.make_settings("Server", user_conf=conf)
    assert (s.offline_expected_qps, s.server_target_qps) == (1000.0, 16.0)


def test_bad_numbers_rejected():
    with pytest.raises(InvalidArgument, match="target_qps"):
        flg.make_settings("Server", target_qps=-1)
    with pytest.raises(InvalidArgument, match="min_query_count"):
        flg.make_settings("Server", min_query_count=0)


# --------------------------------------------------------------------------------------------
# handles


def test_handles_destroyed_even_on_error():
    with pytest.raises(RuntimeError):
        with flg.make_sut(lambda qs: None) as sut, \
                flg.make_qsl(8, 4, lambda s: None, lambda s: None) as qsl:
            assert isinstance(sut.handle, int) and isinstance(qsl.handle, int)
            raise RuntimeError("boom")
    assert sut.closed and qsl.closed
    sut.close()  # idempotent
    with pytest.raises(InvalidArgument, match="destroyed"):
        _ = sut.handle


def test_make_qsl_validates_counts():
    with pytest.raises(InvalidArgument, match="performance_count"):
        flg.make_qsl(8, 9, lambda s: None, lambda s: None)
    with pytest.raises(InvalidArgument, match="total_count"):
        flg.make_qsl(0, 0, lambda s: None, lambda s: None)


# --------------------------------------------------------------------------------------------
# runs


QUICK_RUN = {  # short runs a fast fake SUT passes
    "SingleStream": dict(min_duration_ms=500),
    "MultiStream": dict(min_duration_ms=500),
    "Server": dict(min_duration_ms=300, target_qps=2000),
    "Offline": dict(min_duration_ms=300, target_qps=2000),
}


@pytest.mark.parametrize("scenario", flg.SCENARIOS)
def test_quick_performance_run_is_valid_and_parsed(scenario, labels, tmp_path):
    settings = flg.make_settings(scenario, "performance", **QUICK_RUN[scenario])
    # Offline: 2000 samples/s expected, so the SUT must not be faster
    per_sample = 1 / 2000 if scenario == "Offline" else 0.0
    with FakeSUT(labels, per_sample_s=per_sample) as fake:
        result = flg.run_test(fake.sut, fake.qsl, settings, tmp_path / "out")
    s = result.summary
    assert result.quick and result.label == flg.QUICK_LABEL
    assert result.scenario == scenario and result.mode == "performance"
    assert s.scenario == scenario and s.mode == "PerformanceOnly"
    assert s.result == "VALID", (s.unmet, s.early_stopping, s.recommendations)
    assert result.valid and s.unmet == []
    assert s.constraints["Min duration satisfied"] and s.constraints["Min queries satisfied"]
    expected_metric = {
        "SingleStream": "90.0th percentile latency (ns)",
        "MultiStream": "99.0th percentile latency (ns)",
        "Server": "Completed samples per second",
        "Offline": "Samples per second",
    }[scenario]
    assert result.metric == expected_metric and result.value > 0
    for key in ("min", "mean", "p50", "p90", "p95", "p97", "p99", "max"):
        assert key in s.latencies_ns
    assert s.latencies_ns["min"] <= s.latencies_ns["p50"] <= s.latencies_ns["max"]
    if scenario == "Server":
        assert s.scheduled_samples_per_second > 0
    if scenario != "Offline":
        assert "p99.9" in s.latencies_ns
    assert s.test_parameters["min_duration (ms)"] == str(QUICK_RUN[scenario]["min_duration_ms"])
    assert s.errors == 0
    assert result.detail is not None and result.detail.errors == []
    # mlperf.conf was loaded (its RNG seeds reached LoadGen), with no conf-file error
    assert result.detail.values["requested_qsl_rng_seed"] == 2085463073848966840
    assert result.detail.values["requested_scenario"] == scenario


def test_two_runs_with_user_conf_log_no_config_error(labels, tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.target_qps = 2000\n")
    for i in range(2):
        settings = flg.make_settings("Offline", user_conf=conf, min_duration_ms=100)
        with FakeSUT(labels, per_sample_s=1 / 2000) as fake:
            result = flg.run_test(fake.sut, fake.qsl, settings, tmp_path / f"run{i}")
        assert not any("conf" in e for e in result.detail.errors), result.detail.errors
        assert result.detail.values["requested_offline_expected_qps"] == 2000


def test_server_over_capacity_is_invalid(labels, tmp_path):
    # 2000 queries/s scheduled at a SUT that does 500/s: latency far above 15 ms
    settings = flg.make_settings("Server", target_qps=2000, min_duration_ms=300,
                                 min_query_count=100)
    with FakeSUT(labels, per_sample_s=0.002) as fake:
        result = flg.run_test(fake.sut, fake.qsl, settings, tmp_path)
    s = result.summary
    assert s.result == "INVALID" and not result.valid
    assert "Performance constraints satisfied" in s.unmet
    assert s.constraints["Performance constraints satisfied"] is False
    assert s.latencies_ns["p99"] > 15_000_000


def test_min_queries_impossible_within_max_duration_is_invalid(labels, tmp_path):
    settings = flg.make_settings("SingleStream", min_duration_ms=100, max_duration_ms=300,
                                 min_query_count=5000, expected_latency_ns=1_000_000)
    with FakeSUT(labels, per_sample_s=0.001) as fake:
        result = flg.run_test(fake.sut, fake.qsl, settings, tmp_path)
    s = result.summary
    assert s.result == "INVALID"
    assert "Min queries satisfied" in s.unmet
    assert s.constraints["Min duration satisfied"] is True


def test_unwritable_output_folder_fails_before_the_test(labels, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    settings = flg.make_settings("Offline")
    with FakeSUT(labels) as fake:
        with pytest.raises(InvalidArgument, match="a_file"):
            flg.run_test(fake.sut, fake.qsl, settings, blocker / "out")
        if os.geteuid() != 0:  # root writes anywhere
            locked = tmp_path / "locked"
            locked.mkdir(mode=0o500)
            with pytest.raises(InvalidArgument, match="not writable"):
                flg.run_test(fake.sut, fake.qsl, settings, locked)


def test_plain_loadgen_settings_accepted(labels, tmp_path):
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.AccuracyOnly
    settings.server_target_qps = 2000  # LoadGen's default, 1 query/s, would take a minute
    with FakeSUT(labels) as fake:
        result = flg.run_test(fake.sut, fake.qsl, settings, tmp_path)
    assert (result.scenario, result.mode) == ("Server", "accuracy")
    assert result.quick and result.label == flg.QUICK_LABEL  # 10 s < mlperf.conf's 600 s
    assert flg.accuracy_from_log(tmp_path / "mlperf_log_accuracy.json", labels).accuracy == 100


def test_stale_logs_are_removed(labels, tmp_path):
    (tmp_path / "mlperf_log_accuracy.json").write_text('[{"qsl_idx": 0, "data": "00"}]')
    settings = flg.make_settings("SingleStream", min_duration_ms=100)
    with FakeSUT(labels) as fake:
        flg.run_test(fake.sut, fake.qsl, settings, tmp_path)
    assert json.loads((tmp_path / "mlperf_log_accuracy.json").read_text()) == []


# --------------------------------------------------------------------------------------------
# accuracy


@pytest.mark.parametrize("scenario,dtype", [
    ("MultiStream", "float32"), ("Offline", "int64"), ("SingleStream", "int32"),
])
def test_accuracy_log_read_as_mlperf_reads_it(scenario, dtype, labels, tmp_path):
    settings = flg.make_settings(scenario, "accuracy", target_qps=10_000)
    with FakeSUT(labels, dtype=dtype, wrong_odd=True) as fake:
        result = flg.run_test(fake.sut, fake.qsl, settings, tmp_path)
    log_path = tmp_path / "mlperf_log_accuracy.json"
    entries = json.loads(log_path.read_text())
    if scenario == "MultiStream":  # 60 samples in queries of 8: LoadGen repeats some
        assert len(entries) > N_SAMPLES
    acc = flg.accuracy_from_log(log_path, labels, dtype)
    good, total = mlperf_accuracy(log_path, labels, dtype)
    assert (acc.good, acc.total) == (good, total) == (N_SAMPLES // 2, N_SAMPLES)
    assert acc.accuracy == pytest.approx(100.0 * good / total) == 50.0
    assert acc.entries == len(entries) and acc.duplicates == len(entries) - N_SAMPLES
    assert result.summary.result is None  # LoadGen prints no verdict in accuracy mode
    assert (result.summary.scenario, result.summary.mode) == (scenario, "AccuracyOnly")


def test_accuracy_all_right_and_all_shifted(labels, tmp_path):
    for shift, expected in ((0, 100.0), (1, 0.0)):
        settings = flg.make_settings("Offline", "accuracy")
        with FakeSUT(labels, shift=shift) as fake:
            flg.run_test(fake.sut, fake.qsl, settings, tmp_path / str(shift))
        acc = flg.accuracy_from_log(tmp_path / str(shift) / "mlperf_log_accuracy.json", labels)
        assert acc.accuracy == expected and acc.total == N_SAMPLES


def _hex(value, dtype="float32") -> str:
    return np.array([value], dtype).tobytes().hex().upper()


def test_accuracy_from_handwritten_log_first_occurrence_counts(tmp_path):
    labels = np.array([5, 6, 7, 8], np.int32)
    entries = [
        {"seq_id": 0, "qsl_idx": 0, "data": _hex(5)},      # right
        {"seq_id": 1, "qsl_idx": 1, "data": _hex(9)},      # wrong
        {"seq_id": 2, "qsl_idx": 1, "data": _hex(6)},      # duplicate: ignored, though right
        {"seq_id": 3, "qsl_idx": 2, "data": _hex(7.9)},    # int(7.9) == 7: right
        {"seq_id": 4, "qsl_idx": 3, "data": ""},           # failed answer: wrong
    ]
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(json.dumps(entries))
    acc = flg.accuracy_from_log(path, labels)
    assert (acc.good, acc.total, acc.entries, acc.duplicates) == (2, 4, 5, 1)
    assert acc.accuracy == 50.0


def test_accuracy_from_log_errors(tmp_path):
    path = tmp_path / "mlperf_log_accuracy.json"
    with pytest.raises(DataError, match="cannot read"):
        flg.accuracy_from_log(path, [1])
    path.write_text("[]")
    with pytest.raises(DataError, match="no entries"):
        flg.accuracy_from_log(path, [1])
    path.write_text(json.dumps([{"qsl_idx": 3, "data": _hex(1)}]))
    with pytest.raises(DataError, match="qsl_idx 3"):
        flg.accuracy_from_log(path, [1, 2])
    with pytest.raises(InvalidArgument, match="dtype"):
        flg.accuracy_from_log(path, [1, 2, 3, 4], dtype="complex64")
    path.write_text(json.dumps([{"qsl_idx": 0, "data": "ABC"}]))
    with pytest.raises(DataError, match="hex"):
        flg.accuracy_from_log(path, [1])


# --------------------------------------------------------------------------------------------
# parsing


HANDWRITTEN = """\
================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Server
Mode     : PerformanceOnly
Completed samples per second    : 99.51
Result is : INVALID
  Performance constraints satisfied : NO
  Min duration satisfied : Yes
  Min queries satisfied : Yes
  Early stopping satisfied: NO
Recommendations:
 * Reduce target QPS to improve latency.
Early Stopping Result:
 * Run unsuccessful.
 * Processed 1200 queries.
 * Would need to run at least 300 more queries,
 with the run being successful if every additional
 query were under latency.

================================================
Additional Stats
================================================
Scheduled samples per second : 100.02
Min latency (ns)                : 1000
Max latency (ns)                : 90000000
Mean latency (ns)               : 5000000
50.00 percentile latency (ns)   : 4000000
90.00 percentile latency (ns)   : 12000000
95.00 percentile latency (ns)   : 14000000
97.00 percentile latency (ns)   : 15000000
99.00 percentile latency (ns)   : 30000000
99.90 percentile latency (ns)   : 80000000

================================================
Test Parameters Used
================================================
samples_per_query : 1
target_qps : 100
target_latency (ns): 15000000

2 warnings encountered. See detailed log.

No errors encountered during test.
"""


def test_parse_handwritten_summary():
    s = flg.parse_summary_text(HANDWRITTEN)
    assert (s.sut_name, s.scenario, s.mode) == ("PySUT", "Server", "PerformanceOnly")
    assert s.metric == "Completed samples per second" and s.value == 99.51
    assert s.scheduled_samples_per_second == 100.02
    assert s.result == "INVALID" and not s.valid
    assert s.unmet == ["Performance constraints satisfied", "Early stopping satisfied"]
    assert s.constraints["Min duration satisfied"] is True
    assert s.recommendations == ["Reduce target QPS to improve latency."]
    assert s.early_stopping[-1].startswith("Would need to run at least 300 more queries, with")
    assert s.early_stopping[-1].endswith("query were under latency.")
    assert s.latencies_ns == {"min": 1000, "mean": 5e6, "p50": 4e6, "p90": 12e6, "p95": 14e6,
                              "p97": 15e6, "p99": 30e6, "p99.9": 80e6, "max": 90e6}
    assert s.test_parameters == {"samples_per_query": "1", "target_qps": "100",
                                 "target_latency (ns)": "15000000"}
    assert (s.warnings, s.errors) == (2, 0)
    assert s.raw["Result is"] == "INVALID"


def test_parse_summary_latency_headline():
    text = ("Scenario : SingleStream\nMode     : PerformanceOnly\n"
            "90.0th percentile latency (ns) : 3516\nResult is : VALID\n"
            "  Min duration satisfied : Yes\n")
    s = flg.parse_summary_text(text)
    assert s.metric == "90.0th percentile latency (ns)" and s.value == 3516
    assert s.valid and s.unmet == []


def test_parse_summary_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        flg.parse_summary(tmp_path / "mlperf_log_summary.txt")

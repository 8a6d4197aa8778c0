"""Faults at the SUT level, through the real LoadGen, with LoadGen's own logs as the oracle.

Every test checks that each response LoadGen issued came back exactly once: the runs log every
response (accuracy mode, or ``accuracy_log_probability = 1`` in performance mode), and
:func:`fastres.loadgen.account_responses` counts them by LoadGen's sequence ids; the counts are
re-derived here from the raw ``mlperf_log_accuracy.json`` too. And that the run is reported as
failed: the SUT's ``failure``, and ``python -m fastres.bench``'s exit status and report.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fastres
from fastres import loadgen as flg
from fastres.bench import cli
from fastres.errors import FastresError, InvalidArgument
from fastres.sut import native as native_mod
from fastres.sut import reference as reference_mod
from fastres.sut.native import NativeSUT, make_config
from fastres.sut.reference import NullBackend, ReferenceSUT

HANG_LIMIT_S = 0.5


class Store:
    """64-byte samples; labels are the sample indices (the index engine answers them)."""

    format = "fp32"

    def __init__(self, n: int = 96) -> None:
        self.data = np.random.default_rng(3).standard_normal((n, 1, 4, 4)).astype(np.float32)
        self.labels = np.arange(n, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.data)

    def sample(self, i: int) -> np.ndarray:
        return self.data[i]

    def gather(self, idx) -> np.ndarray:
        return self.data[np.asarray(idx)]


def guarded(fn, limit_s: float = 120.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) if it does not end."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"the test did not end within {limit_s} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def every_response(scenario: str, mode: str = "performance", **kw) -> flg.Settings:
    settings = flg.make_settings(scenario, mode, **kw)
    settings.accuracy_log_probability = 1.0  # LoadGen logs each response with its seq_id
    return settings


def raw_counts(out: Path) -> tuple[int, int, list[dict]]:
    """(entries, distinct seq ids, entries) straight from the accuracy log."""
    log = json.loads((out / "mlperf_log_accuracy.json").read_text())
    return len(log), len({e["seq_id"] for e in log}), log


def assert_each_response_once(out: Path) -> flg.ResponseAccount:
    account = flg.account_responses(out)
    entries, distinct, _ = raw_counts(out)
    assert account.complete
    assert entries == distinct == account.issued > 0, (entries, distinct, account)
    assert account.ok and account.missing == 0 and account.duplicates == 0
    return account


def _int32(entry: dict) -> int | None:
    data = np.frombuffer(bytes.fromhex(entry["data"]), np.int32)
    return int(data[0]) if data.size else None


SERVER = dict(target_qps=1000, min_duration_ms=300, max_duration_ms=10_000, min_query_count=300)
OFFLINE = dict(target_qps=20_000, min_duration_ms=100, max_duration_ms=10_000)


# --------------------------------------------------------------------------------------------
# an engine that raises on some batches


class Flaky:
    """Answers each sample's index; raises on every third call."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, inputs, labels, indices):
        with self.lock:
            self.calls += 1
            fail = self.calls % 3 == 0
        if fail:
            raise RuntimeError("injected engine failure")
        labels[:] = indices.astype(np.int32)


@pytest.mark.parametrize("scenario, kw", [("Server", SERVER), ("Offline", OFFLINE)])
def test_native_engine_raising_on_some_batches(tmp_path, scenario, kw):
    store = Store()
    config = make_config(scenario, batch_size=4, batch_timeout_us=200)
    engine = fastres.PythonEngine(Flaky(), "float32", (1, 4, 4), 4)

    def go():
        with NativeSUT(engine, store, scenario=scenario, config=config) as sut:
            flg.run_test(sut.sut, sut.qsl, every_response(scenario, **kw), tmp_path)
            return sut.errors, sut.failure, sut.stats()

    errors, failure, stats = guarded(go)
    account = assert_each_response_once(tmp_path)
    _, _, log = raw_counts(tmp_path)
    answers = [_int32(e) for e in log]
    # a failed batch's samples are answered label -1; every other answer is its own index
    assert sum(a == -1 for a in answers) == errors > 0
    assert 0 < stats["failed_batches"] <= errors <= 4 * stats["failed_batches"]
    assert all(a == e["qsl_idx"] for a, e in zip(answers, log) if a != -1)
    assert stats["submitted"] == stats["completed"] == account.issued
    assert failure and "answered without a result" in failure and "injected" in failure


class FlakyBackend(NullBackend):
    """The reference's null backend, raising on every third batch after the warm-up."""

    def __init__(self) -> None:
        super().__init__((None, 1, 4, 4))
        self.calls = 0
        self.lock = threading.Lock()

    def predict(self, img):
        with self.lock:
            self.calls += 1
            fail = self.calls > reference_mod.WARMUP_PREDICTIONS and self.calls % 3 == 0
        if fail:
            raise RuntimeError("injected backend failure")
        return super().predict(img)


@pytest.mark.parametrize("scenario, kw", [("Server", SERVER), ("Offline", OFFLINE),
                                          ("SingleStream", dict(min_duration_ms=200,
                                                                min_query_count=100))])
def test_reference_backend_raising_on_some_batches(tmp_path, scenario, kw):
    store = Store()

    def go():
        with ReferenceSUT(None, store, scenario=scenario, backend=FlakyBackend(), threads=2,
                          max_batchsize=8) as sut:
            flg.run_test(sut.sut, sut.qsl, every_response(scenario, **kw), tmp_path)
            sut.runner.finish()
            return sut.errors, sut.failure

    errors, failure = guarded(go)
    account = assert_each_response_once(tmp_path)
    # failed chunks are answered with empty responses, as the reference does
    assert account.empty > 0 and errors > 0
    assert failure and "injected backend failure" in failure


# --------------------------------------------------------------------------------------------
# an engine that hangs


class HangingBackend(NullBackend):
    """Blocks forever (until released) on its ``hang_at``-th call after the warm-up."""

    def __init__(self, hang_at: int = 4) -> None:
        super().__init__((None, 1, 4, 4))
        self.calls = 0
        self.hang_at = reference_mod.WARMUP_PREDICTIONS + hang_at
        self.release = threading.Event()

    def predict(self, img):
        self.calls += 1
        if self.calls == self.hang_at:
            self.release.wait()
        return super().predict(img)


@pytest.mark.parametrize("scenario, kw", [
    ("Server", SERVER), ("Offline", OFFLINE),
    ("SingleStream", dict(min_duration_ms=200, min_query_count=100)),
    ("MultiStream", dict(min_duration_ms=200, min_query_count=100))])
def test_reference_watchdog_ends_a_hung_run_with_a_clear_error(tmp_path, scenario, kw):
    store = Store()
    backend = HangingBackend()
    try:
        def go():
            with ReferenceSUT(None, store, scenario=scenario, backend=backend, threads=2,
                              max_batchsize=8, watchdog_s=HANG_LIMIT_S) as sut:
                flg.run_test(sut.sut, sut.qsl, every_response(scenario, **kw), tmp_path)
                return sut.errors, sut.failure, sut.last_error
        errors, failure, last_error = guarded(go, limit_s=60)
    finally:
        backend.release.set()
    assert backend.calls >= backend.hang_at  # it really hung
    account = assert_each_response_once(tmp_path)
    assert account.empty >= 1 and errors >= 1
    assert failure is not None
    assert "did not answer a batch" in last_error and "HangingBackend" in last_error
    assert f"watchdog limit of {HANG_LIMIT_S:g} s" in last_error and "--watchdog-s" in last_error


def test_reference_watchdog_leaves_a_slow_but_answering_backend_alone(tmp_path):
    class Slow(NullBackend):
        def predict(self, img):
            time.sleep(0.02)
            return super().predict(img)

    store = Store()
    with ReferenceSUT(None, store, scenario="Offline", backend=Slow((None, 1, 4, 4)),
                      threads=2, watchdog_s=5.0) as sut:
        flg.run_test(sut.sut, sut.qsl, every_response("Offline", "accuracy"), tmp_path)
        assert sut.failure is None and sut.errors == 0
    account = assert_each_response_once(tmp_path)
    assert account.empty == 0


def test_native_watchdog_ends_a_hung_run_with_a_clear_error(tmp_path):
    """The executor's watchdog (ExecutorConfig.watchdog_ms, in C++): the hung batch's samples
    are completed as failed, an EngineError names the engine, slot, batch and limit, and
    stop() does not wait for the hung call."""
    store = Store()
    release = threading.Event()
    calls = {"n": 0}

    def hang(inputs, labels, indices):
        calls["n"] += 1
        if calls["n"] == 3:
            release.wait()
        labels[:] = indices.astype(np.int32)

    config = make_config("Server", batch_size=4, batch_timeout_us=200)
    config.watchdog_ms = int(HANG_LIMIT_S * 1000)
    engine = fastres.PythonEngine(hang, "float32", (1, 4, 4), 4)
    try:
        def go():
            with NativeSUT(engine, store, scenario="Server", config=config) as sut:
                flg.run_test(sut.sut, sut.qsl, every_response("Server", **SERVER), tmp_path)
                return sut.errors, sut.failure
        errors, failure = guarded(go, limit_s=60)
    finally:
        release.set()
    assert_each_response_once(tmp_path)
    assert errors >= 1 and failure is not None
    assert "watchdog" in failure.lower() and str(config.watchdog_ms) in failure


# --------------------------------------------------------------------------------------------
# stop() during a Server run


@pytest.mark.parametrize("sut_kind", ["native", "reference"])
def test_stop_during_a_server_run(tmp_path, sut_kind):
    store = Store()
    kw = dict(target_qps=1000, min_duration_ms=1500, max_duration_ms=10_000,
              min_query_count=1500)

    def make():
        if sut_kind == "native":
            config = make_config("Server")
            engine = fastres.NullEngine(input_dtype="float32", input_shape=(1, 4, 4),
                                        max_batch=config.batch_size, answer="index")
            return NativeSUT(engine, store, scenario="Server", config=config)
        return ReferenceSUT(None, store, scenario="Server", backend=NullBackend((None, 1, 4, 4)),
                            threads=2)

    def answered(sut) -> int:
        return sut.stats()["completed"] if sut_kind == "native" else sut.runner.total

    def stop_after_200(sut) -> None:  # mid-run: 200 of the 1500 queries answered
        while answered(sut) < 200:
            time.sleep(0.005)
        sut.stop()

    def go():
        with make() as sut:
            stopper = threading.Thread(target=stop_after_200, args=(sut,), daemon=True)
            stopper.start()
            flg.run_test(sut.sut, sut.qsl, every_response("Server", **kw), tmp_path)
            stopper.join()
            return sut.errors, sut.failure

    errors, failure = guarded(go)
    account = assert_each_response_once(tmp_path)
    # queries after the stop were answered empty, at once: the test ended
    assert errors > 0 and account.empty >= errors
    assert failure is not None
    assert account.issued - account.empty > 0  # those before the stop were answered


# --------------------------------------------------------------------------------------------
# LoadGen's flush


@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_loadgen_flush_issues_the_partial_batch(tmp_path, scenario):
    """A batch window longer than the test: only LoadGen's FlushQueries (the native SUT's
    flush) can issue the last, partial batch in time. The guard is shorter than the window."""
    store = Store(60)
    config = make_config(scenario, batch_size=64, copy_streams=1,
                         batch_timeout_us=30_000_000)
    engine = fastres.NullEngine(input_dtype="float32", input_shape=(1, 4, 4), max_batch=64,
                                answer="index")

    def go():
        with NativeSUT(engine, store, scenario=scenario, config=config) as sut:
            flg.run_test(sut.sut, sut.qsl, flg.make_settings(scenario, "accuracy",
                                                             target_qps=1000), tmp_path)
            return sut.stats(), sut.failure

    stats, failure = guarded(go, limit_s=20)
    account = assert_each_response_once(tmp_path)
    assert account.issued == 60 and failure is None
    assert stats["completed"] == 60 and stats["batches"] < 60  # batched, then flushed
    _, _, log = raw_counts(tmp_path)
    assert all(_int32(e) == e["qsl_idx"] for e in log)


# --------------------------------------------------------------------------------------------
# repeated runs in one process


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("sut_kind", ["native", "reference"])
def test_repeated_runs_do_not_grow_memory(tmp_path, sut_kind, monkeypatch):
    """Twenty Offline runs of 11,000 samples each, engine errors included: a leak of 25 bytes
    a sample would add 4 MiB over the last 16 runs, the bound."""
    # pytest keeps every captured log record of a test in memory (~0.8 MiB a run for the
    # reference's per-chunk error lines), which is pytest's growth, not the SUT's
    monkeypatch.setattr(reference_mod.log, "disabled", True)
    store = Store(256)
    BIG = dict(target_qps=100_000, min_duration_ms=100, max_duration_ms=10_000)
    rss = []
    for i in range(20):
        out = tmp_path / f"run{i}"
        if sut_kind == "native":
            config = make_config("Offline", batch_size=16)
            engine = fastres.PythonEngine(Flaky(), "float32", (1, 4, 4), 16)
            with NativeSUT(engine, store, scenario="Offline", config=config) as sut:
                flg.run_test(sut.sut, sut.qsl, flg.make_settings("Offline", **BIG), out)
                assert sut.errors > 0
        else:
            with ReferenceSUT(None, store, scenario="Offline", backend=FlakyBackend(),
                              threads=2, watchdog_s=30) as sut:
                flg.run_test(sut.sut, sut.qsl, flg.make_settings("Offline", **BIG), out)
                sut.runner.finish()
                assert sut.errors > 0
        for name in flg.LOG_FILES:  # keep the disk use flat too
            (out / name).unlink(missing_ok=True)
        gc.collect()
        rss.append(_rss_mib())
    growth = rss[-1] - rss[3]
    assert growth < 4.0, f"RSS grew {growth:.1f} MiB over 16 runs: {[round(r, 1) for r in rss]}"


# --------------------------------------------------------------------------------------------
# python -m fastres.bench reports a failed run as FAILED, never as a result


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fastres.data.synthetic import make_default

    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=64,
                        quiet=True)


def _cli(tiny, tmp_path, *extra):
    return cli.main(["--model", str(tiny.model_path), "--dataset-path", str(tiny.dataset_dir),
                     "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
                     "--quiet", "--scenario", "Offline", "--mode", "accuracy", *extra])


def _assert_reported_failed(tmp_path, capsys, rc, sut, why):
    assert rc == 1
    captured = capsys.readouterr()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    (run,) = [r for r in results["runs"] if r["sut"] == sut]
    assert run["failed"] and why in run["failed"]
    assert results["complete"] is True
    (row,) = [r for r in results["rows"] if r["sut"] == sut]
    assert row["failed"] and row["accuracy"] is None  # no figure of a failed run
    table_line = next(line for line in captured.out.splitlines() if line.startswith(sut))
    assert "FAILED" in table_line and "%" not in table_line
    assert f"FAILED {sut} Offline, not a result" in captured.out
    assert "failed runs, not results" in captured.err and why in captured.err
    report = (tmp_path / "out" / "report.md").read_text()
    assert "FAILED runs are not results" in report and why in report
    # the accuracy LoadGen measured is nowhere in the report's tables as a result
    assert f"top-1 {run['accuracy']:.3f}%" not in report


def test_cli_native_engine_errors_fail_the_run(tiny, tmp_path, capsys, monkeypatch):
    def flaky_engine(name, store, config, **kw):
        return fastres.PythonEngine(Flaky(), "float32", tuple(store.data.shape[1:]),
                                    int(config.batch_size))

    monkeypatch.setattr(native_mod, "make_engine", flaky_engine)
    rc = _cli(tiny, tmp_path, "--sut", "native", "--batch-size", "4")
    _assert_reported_failed(tmp_path, capsys, rc, "native", "injected engine failure")


def test_cli_reference_hang_fails_the_run(tiny, tmp_path, capsys, monkeypatch):
    made: list[HangingBackend] = []

    class Hanging(HangingBackend):
        def __init__(self, model_path, input_name, output_name, providers):
            super().__init__(hang_at=2)
            self.input_shape = [None, 3, 224, 224]
            made.append(self)

    monkeypatch.setattr(reference_mod, "_OnnxBackend", Hanging)
    try:
        rc = guarded(lambda: _cli(tiny, tmp_path, "--sut", "reference", "--watchdog-s", "0.5"),
                     limit_s=60)
    finally:
        for b in made:
            b.release.set()
    _assert_reported_failed(tmp_path, capsys, rc, "reference", "watchdog limit of 0.5 s")


# --------------------------------------------------------------------------------------------
# close() during a run, the response accounting itself, and keeping what was done


@pytest.mark.parametrize("sut_kind", ["native", "reference"])
def test_close_during_a_run_is_refused_and_stop_then_close_works(tmp_path, sut_kind):
    """Destroying LoadGen's handles mid-test would crash the process: close() refuses with a
    clear error and changes nothing; stop() ends the run; close() afterwards works."""
    store = Store()
    if sut_kind == "native":
        config = make_config("Server")
        sut = NativeSUT(fastres.NullEngine(input_dtype="float32", input_shape=(1, 4, 4),
                                           max_batch=config.batch_size, answer="index"),
                        store, scenario="Server", config=config)
    else:
        sut = ReferenceSUT(None, store, scenario="Server", backend=NullBackend((None, 1, 4, 4)),
                           threads=2)
    refused: list[str] = []

    def close_then_stop():
        time.sleep(0.2)
        try:
            sut.close()
        except InvalidArgument as exc:
            refused.append(str(exc))
        sut.stop()

    t = threading.Thread(target=close_then_stop, daemon=True)
    t.start()
    guarded(lambda: flg.run_test(sut.sut, sut.qsl, every_response(
        "Server", target_qps=1000, min_duration_ms=1500, max_duration_ms=10_000,
        min_query_count=1500), tmp_path))
    t.join()
    assert refused and "call stop()" in refused[0]
    assert_each_response_once(tmp_path)
    assert sut.failure is not None
    sut.close()
    with pytest.raises(InvalidArgument, match="closed"):
        sut.sut


def test_account_responses_sees_duplicate_missing_and_foreign_responses(tmp_path):
    store = Store(32)
    config = make_config("Offline")
    engine = fastres.NullEngine(input_dtype="float32", input_shape=(1, 4, 4),
                                max_batch=config.batch_size, answer="index")
    with NativeSUT(engine, store, scenario="Offline", config=config) as sut:
        flg.run_test(sut.sut, sut.qsl, flg.make_settings("Offline", "accuracy"), tmp_path)
    good = assert_each_response_once(tmp_path)
    assert good.issued == 32
    log = json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())
    doctored = log[1:] + [log[5], {**log[6], "seq_id": 999}]  # one missing, one twice, one foreign
    (tmp_path / "mlperf_log_accuracy.json").write_text(json.dumps(doctored))
    bad = flg.account_responses(tmp_path)
    assert (bad.duplicates, bad.missing, bad.foreign) == (1, 1, 1) and not bad.ok
    why = cli._failure(None, bad)
    assert "1 duplicate, 1 missing and 1 unknown responses of 32 issued" in why


def test_a_failure_midway_keeps_the_finished_runs(tiny, tmp_path, capsys, monkeypatch):
    real = cli._run_one

    def accuracy_run_fails(sut_name, args, model, store, scenario, mode, *rest, **kwargs):
        if mode == "accuracy":  # after the performance run (and any rerun of it) finished
            raise FastresError("injected: the machine went away")
        return real(sut_name, args, model, store, scenario, mode, *rest, **kwargs)

    monkeypatch.setattr(cli, "_run_one", accuracy_run_fails)
    rc = _cli(tiny, tmp_path, "--mode", "both", "--sut", "native", "--engine", "onnxruntime")
    assert rc == 2 and "injected" in capsys.readouterr().err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["complete"] is False and "injected" in results["error"]
    assert [(r["sut"], r["mode"]) for r in results["runs"]] == [("native", "performance")]
    assert (tmp_path / "out" / "native" / "Offline" / "performance" /
            "mlperf_log_summary.txt").is_file()
    # the report can be rebuilt from what was kept, and says it is incomplete
    monkeypatch.setattr(cli, "_run_one", real)
    assert cli.main(["--report-from", str(tmp_path / "out"), "--quiet"]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**Incomplete:**" in report and "injected" in report

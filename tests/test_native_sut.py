"""The native SUT through the real LoadGen, in every scenario."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastres
from fastres import loadgen as flg
from fastres.errors import InvalidArgument
from fastres.sut.native import NativeSUT, check_buffers, make_config, make_engine, run_native

SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")


class FakeStore:
    format = "fp32"

    def __init__(self, n: int = 96, shape=(1, 4, 4)) -> None:
        rng = np.random.default_rng(0)
        self.data = rng.standard_normal((n, *shape)).astype(np.float32)
        # The index-echo engine answers each sample's QSL index: labels = indices makes the
        # accuracy check prove every response carries its own sample's answer.
        self.labels = np.arange(n, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.data)


def _decode(log_dir):
    log = json.loads((log_dir / "mlperf_log_accuracy.json").read_text())
    return [(e["qsl_idx"], int(np.frombuffer(bytes.fromhex(e["data"]), np.int32)[0])) for e in log]


@pytest.mark.parametrize("issue", ["fast", "objects"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_response_carries_its_own_answer(tmp_path, scenario, issue):
    store = FakeStore()
    config = make_config(scenario)
    engine = fastres.NullEngine(input_dtype="float32", input_shape=(1, 4, 4),
                                max_batch=config.batch_size, answer="index")
    result = run_native(engine, store, scenario, "accuracy", tmp_path, config=config, issue=issue)
    assert result.sut_errors == 0
    assert result.accuracy.total == len(store) and result.accuracy.good == len(store)
    pairs = _decode(tmp_path)
    assert all(idx == answer for idx, answer in pairs)
    assert {idx for idx, _ in pairs} == set(range(len(store)))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_performance_runs_and_batches(tmp_path, scenario):
    store = FakeStore()
    config = make_config(scenario)
    engine = make_engine("null", store, config)
    settings = flg.make_settings(scenario, "performance", target_qps=2000,
                                 min_duration_ms=300, max_duration_ms=5000,
                                 min_query_count=64 if scenario != "Offline" else 1)
    with NativeSUT(engine, store, scenario=scenario, config=config) as sut:
        result = flg.run_test(sut.sut, sut.qsl, settings, tmp_path)
        stats = sut.stats()
        errors = sut.errors
    assert errors == 0
    assert result.value and result.value > 0
    assert stats["completed"] == stats["submitted"] > 0
    if scenario == "MultiStream":
        assert stats["mean_batch_size"] == pytest.approx(8.0)
    if scenario == "SingleStream":
        assert stats["mean_batch_size"] == pytest.approx(1.0)


def test_engine_errors_are_counted_and_nothing_hangs(tmp_path):
    store = FakeStore(64)
    calls = {"n": 0}

    def flaky(inputs, labels, indices):
        calls["n"] += 1
        if calls["n"] % 2 == 0:
            raise RuntimeError("injected failure")
        labels[:] = indices.astype(np.int32)

    config = make_config("Offline", batch_size=4, copy_streams=1)
    engine = fastres.PythonEngine(flaky, "float32", (1, 4, 4), 4)
    result = run_native(engine, store, "Offline", "accuracy", tmp_path, config=config)
    # Every sample was completed exactly once (LoadGen saw all of them) and the failures show.
    assert result.accuracy.total == len(store)
    assert 0 < result.sut_errors < len(store)
    assert result.accuracy.good == len(store) - result.sut_errors


def test_engine_and_store_must_agree(tmp_path):
    store = FakeStore()
    engine = fastres.NullEngine(input_dtype="int8", input_shape=(3, 224, 224), max_batch=8)
    with pytest.raises(InvalidArgument, match="bytes a sample"):
        NativeSUT(engine, store, scenario="Offline")


def test_unknown_knob_and_huge_buffers_are_refused():
    with pytest.raises(InvalidArgument, match="gpu_batch_size"):
        make_config("Offline", gpu_batch_size=4)
    with pytest.raises(InvalidArgument, match="--batch-size"):
        check_buffers(make_config("Offline", batch_size=1 << 20, copy_streams=64), 602112)
    with pytest.raises(fastres.errors.InvalidArgument, match="batch_size"):
        make_config("Offline", batch_size=0).validate(fastres.NullEngine(max_batch=8))


def test_scenario_defaults():
    assert make_config("SingleStream").batch_size == 1
    assert make_config("MultiStream").batch_size == 8
    assert make_config("Offline", batch_size=16).batch_size == 16


def test_onnxruntime_engine_builds_one_session_per_slot(tmp_path):
    """The slot threads are C++ threads with a Python thread state only during each call; the
    engine must still keep one session per slot, not build one per batch."""
    from fastres.data.synthetic import make_default
    from fastres.data.imagenet import ImagenetDataset
    from fastres.data.store import build_store
    from fastres.engines.onnxruntime import OnnxRuntimeEngine

    d = make_default(tmp_path / "syn", variant="tiny", n_images=32, quiet=True)
    store = build_store(ImagenetDataset(d.dataset_dir), "fp32", tmp_path / "cache", quiet=True, workers=1)
    fn = OnnxRuntimeEngine(d.model_path, slots=2)
    fn.warm_up()
    assert fn.sessions_built == 2
    engine = fastres.PythonEngine(fn, "float32", (3, 224, 224), 4)
    library = fastres.SampleLibrary.for_engine(engine)
    library.load(np.arange(32), store.data)
    answers = {}

    def on_complete(ids, labels, error):
        assert error is None
        answers.update(zip(ids.tolist(), labels.tolist()))

    with fastres.Executor(engine, library, make_config("Offline", batch_size=4, copy_streams=2),
                          on_complete) as ex:
        ex.submit(np.arange(32), np.arange(32))
        ex.flush()
    assert fn.sessions_built == 2
    assert [answers[i] for i in range(32)] == store.labels.tolist()

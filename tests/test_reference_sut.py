"""The reference SUT through the real LoadGen, with a tiny ONNX model whose answers are known.

The model has the MLPerf ResNet50 interface (``input_tensor:0`` float32 [N,3,224,224],
``ArgMax:0`` int64 [N], ``softmax_tensor:0`` [N,1001]) and answers the class written in
pixel [0,0,0] of each sample. The fake store writes ``label + 1`` there, as the real model's
classes are 1..1000 with 0 for background, so the reference's −1 offset gives back the label.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fastres import loadgen as flg
from fastres.errors import InvalidArgument, ModelError
from fastres.sut import reference
from fastres.sut.reference import ReferenceSUT, run_reference

N_SAMPLES = 64


def build_tiny_model(path: Path, *, input_name: str = "input_tensor:0",
                     output_name: str = "ArgMax:0", layout: str = "NCHW") -> Path:
    shape = ["N", 3, 224, 224] if layout == "NCHW" else ["N", 224, 224, 3]
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)]
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.INT64, ["N"]),
               helper.make_tensor_value_info("softmax_tensor:0", TensorProto.FLOAT, ["N", 1001])]
    big = np.iinfo(np.int64).max
    initializers = [
        numpy_helper.from_array(np.array([0, 0, 0, 0], np.int64), "starts"),
        numpy_helper.from_array(np.array([big, 1, 1, 1], np.int64), "ends"),
        numpy_helper.from_array(np.array([-1, 1], np.int64), "column"),
        numpy_helper.from_array(np.arange(1001, dtype=np.float32)[None, :], "classes"),
    ]
    nodes = [  # logits = one-hot(x[:, 0, 0, 0]) over 1001 classes
        helper.make_node("Slice", [input_name, "starts", "ends"], ["pixel"]),
        helper.make_node("Reshape", ["pixel", "column"], ["code"]),
        helper.make_node("Equal", ["code", "classes"], ["hit"]),
        helper.make_node("Cast", ["hit"], ["logits"], to=TensorProto.FLOAT),
        helper.make_node("Softmax", ["logits"], ["softmax_tensor:0"], axis=1),
        helper.make_node("ArgMax", ["logits"], [output_name], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(nodes, "tiny_resnet50_interface", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class FakeStore:
    """The fastres.data.store interface, in memory."""

    format = "fp32"

    def __init__(self, n: int = N_SAMPLES, seed: int = 0) -> None:
        self.labels = np.random.default_rng(seed).integers(0, 1000, n).astype(np.int32)
        self.data = np.zeros((n, 3, 224, 224), np.float32)
        self.data[:, 0, 0, 0] = self.labels + 1
        self.data[:, 1:, 5:9, 5:9] = 0.5  # something else in the image

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, i: int) -> np.ndarray:
        return self.data[i]

    def gather(self, indices) -> np.ndarray:
        return self.data[np.asarray(indices)]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="module")
def store() -> FakeStore:
    return FakeStore()


def mlperf_accuracy(path: Path, labels: np.ndarray) -> tuple[int, int]:
    """tools/accuracy-imagenet.py's loop, re-implemented independently (float32 answers)."""
    seen, good = set(), 0
    for j in json.loads(path.read_text()):
        idx = j["qsl_idx"]
        if idx in seen:
            continue
        seen.add(idx)
        if labels[idx] == int(np.frombuffer(bytes.fromhex(j["data"]), np.float32)[0]):
            good += 1
    return good, len(seen)


# Short runs the reference passes with the tiny model on two cores. Offline: LoadGen issues
# target_qps * min_duration * 1.1 samples at once, so a high target keeps the run longer than
# its minimum duration.
QUICK_RUN = {
    "SingleStream": dict(min_duration_ms=500),
    "MultiStream": dict(min_duration_ms=500),
    "Server": dict(min_duration_ms=500, target_qps=1000),
    "Offline": dict(min_duration_ms=300, target_qps=30_000),
}
METRICS = {
    "SingleStream": "90.0th percentile latency (ns)",
    "MultiStream": "99.0th percentile latency (ns)",
    "Server": "Completed samples per second",
    "Offline": "Samples per second",
}


@pytest.mark.parametrize("scenario", flg.SCENARIOS)
def test_quick_performance_valid(scenario, model, store, tmp_path):
    result = run_reference(model, store, scenario, "performance", tmp_path, threads=2,
                           **QUICK_RUN[scenario])
    s = result.summary
    assert s.result == "VALID", (s.unmet, s.early_stopping, s.recommendations)
    assert result.quick and result.label == "quick — not a valid MLPerf result"
    assert result.metric == METRICS[scenario] and result.value > 0
    assert s.scenario == scenario and result.mode == "performance"
    assert result.sut_errors == 0 and result.accuracy is None
    assert result.detail.errors == []
    assert (tmp_path / "mlperf_log_summary.txt").is_file()


@pytest.mark.parametrize("scenario", flg.SCENARIOS)
def test_accuracy_is_100_percent_and_read_as_mlperf_reads_it(scenario, model, store, tmp_path):
    result = run_reference(model, store, scenario, "accuracy", tmp_path, threads=2,
                           **QUICK_RUN[scenario])
    acc = result.accuracy
    assert (acc.good, acc.total, acc.accuracy) == (N_SAMPLES, N_SAMPLES, 100.0)
    assert mlperf_accuracy(tmp_path / "mlperf_log_accuracy.json", store.labels) == \
        (N_SAMPLES, N_SAMPLES)
    assert result.sut_errors == 0


def test_accuracy_with_duplicates_matches_mlperf(model, tmp_path):
    store = FakeStore(n=60, seed=3)  # MultiStream pads 60 samples to 64 with repeats
    store.data[1::3, 0, 0, 0] += 1   # every third answer off by one
    result = run_reference(model, store, "MultiStream", "accuracy", tmp_path, threads=2)
    good, total = mlperf_accuracy(tmp_path / "mlperf_log_accuracy.json", store.labels)
    assert result.accuracy.duplicates > 0
    assert (result.accuracy.good, result.accuracy.total) == (good, total) == (40, 60)


def test_offset_zero_gives_zero_accuracy(model, store, tmp_path):
    settings = flg.make_settings("Offline", "accuracy")
    with ReferenceSUT(model, store, scenario="Offline", threads=2) as sut:
        sut.runner.offset = 0  # forget the background class
        sut.start_run(take_accuracy=True)
        flg.run_test(sut.sut, sut.qsl, settings, tmp_path)
    acc = flg.accuracy_from_log(tmp_path / "mlperf_log_accuracy.json", store.labels)
    assert (acc.good, acc.total, acc.accuracy) == (0, N_SAMPLES, 0.0)


def test_responses_are_one_float32_label_per_sample(model, store, tmp_path):
    run_reference(model, store, "Offline", "accuracy", tmp_path, threads=1, max_batchsize=5)
    for entry in json.loads((tmp_path / "mlperf_log_accuracy.json").read_text()):
        data = bytes.fromhex(entry["data"])
        assert len(data) == 4
        assert np.frombuffer(data, np.float32)[0] == store.labels[entry["qsl_idx"]]


def test_reference_counts_its_own_top1(model, store, tmp_path):
    settings = flg.make_settings("Offline", "accuracy")
    with ReferenceSUT(model, store, scenario="Offline", threads=2) as sut:
        sut.start_run(take_accuracy=True)
        flg.run_test(sut.sut, sut.qsl, settings, tmp_path)
        sut.runner.finish()
        assert (sut.runner.good, sut.runner.total) == (N_SAMPLES, N_SAMPLES)


# --------------------------------------------------------------------------------------------
# the harness's shape: threads, queue, chunks, QSL


def test_runners_and_threads(model, store):
    with ReferenceSUT(model, store, scenario="SingleStream") as sut:
        assert type(sut.runner) is reference._RunnerBase
        assert sut.threads == os.cpu_count()
    with ReferenceSUT(model, store, scenario="server", threads=3) as sut:
        runner = sut.runner
        assert type(runner) is reference._QueueRunner
        assert len(runner.workers) == 3 and runner.tasks.maxsize == 12
        workers = list(runner.workers)
        assert all(w.is_alive() for w in workers)
    assert not any(w.is_alive() for w in workers)  # close() stopped and joined them


@pytest.mark.parametrize("scenario", ["SingleStream", "Offline"])
def test_inference_thread(scenario, model, store, tmp_path):
    issuing: set[str] = set()
    inferring: set[str] = set()
    with ReferenceSUT(model, store, scenario=scenario, threads=2) as sut:
        enqueue, predict = sut.runner.enqueue, sut.backend.predict

        def spy_enqueue(query_samples):
            issuing.add(threading.current_thread().name)
            enqueue(query_samples)

        def spy_predict(img):
            inferring.add(threading.current_thread().name)
            return predict(img)

        sut.runner.enqueue, sut.backend.predict = spy_enqueue, spy_predict
        flg.run_test(sut.sut, sut.qsl, flg.make_settings(scenario, "accuracy"), tmp_path)
    assert issuing and inferring
    if scenario == "SingleStream":  # RunnerBase: inside IssueQuery
        assert inferring == issuing
    else:  # QueueRunner: only in the workers
        assert all(name.startswith("reference-worker-") for name in inferring)
        assert not inferring & issuing


def test_chunking_as_the_reference():
    runner = reference._RunnerBase.__new__(reference._RunnerBase)
    runner.max_batchsize = 32
    samples = [SimpleNamespace(id=1000 + i, index=i) for i in range(100)]
    chunks = runner._chunks(samples)
    assert [len(ids) for ids, _ in chunks] == [32, 32, 32, 4]
    assert chunks[3] == ([1096, 1097, 1098, 1099], [96, 97, 98, 99])
    assert [len(ids) for ids, _ in runner._chunks(samples[:31])] == [31]
    assert [len(ids) for ids, _ in runner._chunks(samples[:32])] == [32]


def test_qsl_loads_copies_and_unloads(store):
    ds = reference._InMemoryDataset(store, "NCHW")
    ds.load_query_samples([3, 5, 7])
    assert sorted(ds.image_list_inmemory) == [3, 5, 7]
    assert not np.shares_memory(ds.image_list_inmemory[3], store.data)
    data, labels = ds.get_samples([7, 3])
    assert data.shape == (2, 3, 224, 224) and data.dtype == np.float32
    assert list(labels) == [store.labels[7], store.labels[3]]
    ds.unload_query_samples([5])
    assert sorted(ds.image_list_inmemory) == [3, 7]
    ds.load_query_samples([1])  # a new set replaces the old one, as in dataset.py
    assert sorted(ds.image_list_inmemory) == [1]
    ds.unload_query_samples(None)
    assert ds.image_list_inmemory == {}
    nhwc = reference._InMemoryDataset(store, "NHWC")
    nhwc.load_query_samples([2])
    img = nhwc.image_list_inmemory[2]
    assert img.shape == (224, 224, 3) and img.flags.c_contiguous
    assert np.array_equal(img, store.data[2].transpose(1, 2, 0))


def test_nhwc_model(tmp_path, store):
    nhwc = build_tiny_model(tmp_path / "nhwc.onnx", layout="NHWC")
    result = run_reference(nhwc, store, "Offline", "accuracy", tmp_path / "out",
                           data_format="nhwc", threads=2)
    assert result.accuracy.accuracy == 100.0
    with pytest.raises(ModelError, match="data_format='NCHW'"):
        ReferenceSUT(nhwc, store, scenario="Offline")
    with pytest.raises(ModelError, match="data_format='NHWC'"):
        ReferenceSUT(tmp_path / "nhwc.onnx", store, scenario="Offline", data_format="NCHW")


def test_performance_sample_count(model, store):
    with ReferenceSUT(model, store, scenario="Offline", threads=1) as sut:
        assert sut._qsl_handle.performance_count == N_SAMPLES
        assert sut._qsl_handle.total_count == N_SAMPLES


def test_close_destroys_handles_and_is_idempotent(model, store):
    sut = ReferenceSUT(model, store, scenario="MultiStream", threads=1)
    assert isinstance(sut.sut, int) and isinstance(sut.qsl, int)
    sut.close()
    sut.close()
    with pytest.raises(InvalidArgument, match="closed"):
        _ = sut.sut


# --------------------------------------------------------------------------------------------
# errors at the edge


def test_wrong_model_names_are_listed(tmp_path, store):
    odd = build_tiny_model(tmp_path / "odd.onnx", input_name="images", output_name="top1")
    with pytest.raises(ModelError) as err:
        ReferenceSUT(odd, store, scenario="Offline")
    message = str(err.value)
    for text in ("'input_tensor:0'", "'images'", "input_name=", "'ArgMax:0'", "'top1'",
                 "'softmax_tensor:0'", "output_name="):
        assert text in message
    result = run_reference(odd, store, "Offline", "accuracy", tmp_path / "out", threads=1,
                           input_name="images", output_name="top1")
    assert result.accuracy.accuracy == 100.0


def test_softmax_output_is_argmaxed(model, store, tmp_path):
    # PostProcessArgMax: a [N, 1001] output is reduced over classes before the offset
    result = run_reference(model, store, "Offline", "accuracy", tmp_path, threads=1,
                           output_name="softmax_tensor:0")
    assert result.accuracy.accuracy == 100.0


def test_missing_model(tmp_path, store):
    with pytest.raises(ModelError, match="does not exist"):
        ReferenceSUT(tmp_path / "none.onnx", store, scenario="Offline")


def test_store_must_be_fp32(model):
    store = FakeStore(n=4)
    store.format = "int8_linear"
    with pytest.raises(InvalidArgument, match="fp32 only"):
        ReferenceSUT(model, store, scenario="Offline")


@pytest.mark.parametrize("kwargs,complaint", [
    (dict(scenario="batch"), "valid scenarios"),
    (dict(scenario="Offline", threads=0), "threads"),
    (dict(scenario="Offline", max_batchsize=0), "max_batchsize"),
    (dict(scenario="Offline", data_format="CHW"), "data_format"),
])
def test_bad_options(model, store, kwargs, complaint):
    with pytest.raises(InvalidArgument, match=complaint):
        ReferenceSUT(model, store, **kwargs)


def test_run_reference_checks_output_folder_before_loading(store, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    # the model does not exist either: the folder is reported first, before any loading
    with pytest.raises(InvalidArgument, match="output folder"):
        run_reference(tmp_path / "none.onnx", store, "Offline", "performance", blocker / "x")
    with pytest.raises(InvalidArgument, match="valid scenarios"):
        run_reference(tmp_path / "none.onnx", store, "Batch", "performance", tmp_path / "y")
    with pytest.raises(InvalidArgument, match="user.conf"):
        run_reference(tmp_path / "none.onnx", store, "Offline", "performance", tmp_path / "z",
                      user_conf=tmp_path / "user.conf")

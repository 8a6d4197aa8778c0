"""INT8: graph surgery, the two Q/DQ forms from one calibration, the 99% rule, the cache, bad
calibration input, and the INT8 engines in the native executor — on the tiny synthetic model."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import fastres
from fastres.data.imagenet import ImagenetDataset
from fastres.data.store import build_store
from fastres.data.synthetic import make_default
from fastres.engines import quantize as q
from fastres.errors import DataError, InvalidArgument, ModelError, Unavailable
from fastres.sut.native import make_config, make_engine, run_native


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=64, quiet=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def store(tiny, cache):
    return build_store(ImagenetDataset(tiny.dataset_dir), "fp32", cache, quiet=True, workers=1)


@pytest.fixture(scope="module")
def calibration(tiny, store):
    return q.Calibration.from_store(store, tiny.cal_list)


@pytest.fixture(scope="module")
def models(tiny, calibration, cache):
    return q.build_int8(tiny.model_path, calibration, cache, quiet=True)


def _original_top1(tiny, store):
    return q.predict(tiny.model_path, np.asarray(store.data), output_name="ArgMax:0", offset=-1)


def test_surgery_keeps_top1_on_every_sample_and_answers_int32(tiny, store, tmp_path):
    out = tmp_path / "surgered.onnx"
    proto, info = q.surgery(tiny.model_path, out)
    assert info.background and info.classifier == "weights"
    assert [o.name for o in proto.graph.output] == [q.TOP1_OUTPUT]
    assert proto.graph.output[0].type.tensor_type.elem_type == TensorProto.INT32
    assert not any(n.op_type == "Softmax" for n in proto.graph.node)
    gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
    w = next(i for i in proto.graph.initializer if i.name == gemm.input[1])
    assert 1000 in w.dims and 1001 not in w.dims
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    ours = q.predict(out, np.asarray(store.data))
    assert np.array_equal(ours, _original_top1(tiny, store))
    assert np.mean(ours == store.labels) == 1.0


def test_surgery_slices_logits_when_the_classifier_is_not_a_plain_gemm(tmp_path):
    """A classifier surgery cannot read (here: logits from a Mul) gets a Slice on the logits."""
    w = np.random.default_rng(0).standard_normal((3, 1001)).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["input_tensor:0"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["m"]),
             helper.make_node("Mul", ["m", "two"], ["logits"]),
             helper.make_node("ArgMax", ["logits"], ["ArgMax:0"], axis=1, keepdims=0)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input_tensor:0", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("ArgMax:0", TensorProto.INT64, ["N"])],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(np.float32(2.0), "two")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    x = np.random.default_rng(1).standard_normal((8, 3, 224, 224)).astype(np.float32)
    _, info = q.surgery(path, tmp_path / "s.onnx")
    assert info.classifier == "slice"
    ref = q.predict(path, x, output_name="ArgMax:0", offset=-1)
    ours = q.predict(tmp_path / "s.onnx", x)
    # Where the original picks the background its label is -1; the surgered model never does.
    assert np.array_equal(ours[ref >= 0], ref[ref >= 0])


def _bad_model(tmp_path, producer_op):
    nodes = [helper.make_node("GlobalAveragePool", ["input_tensor:0"], ["p"]),
             helper.make_node(producer_op, ["p"], ["ArgMax:0"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input_tensor:0", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("ArgMax:0", TensorProto.FLOAT, None)])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_models_without_the_expected_interface_are_refused(tiny, tmp_path):
    with pytest.raises(ModelError, match="not from an ArgMax"):
        q.surgery(_bad_model(tmp_path, "Flatten"))
    with pytest.raises(ModelError, match="no output named 'top1'"):
        q.surgery(tiny.model_path, output_name="top1")
    with pytest.raises(ModelError, match="model file not found"):
        q.surgery(tmp_path / "missing.onnx")


def test_two_forms_have_the_expected_qdq_structure(models):
    cpu = q.qdq_summary(models.cpu)
    trt = q.qdq_summary(models.tensorrt)
    assert cpu["activation_types"] == ["uint8"]
    assert trt["activation_types"] == ["int8"] and trt["activation_zero_points_zero"]
    for s in (cpu, trt):
        assert s["weight_types"] == ["int8"]
        assert s["weights_per_channel"] and s["weights_symmetric"]
        assert s["quantized_weights"] >= 2  # both convs; the classifier stays fp32
    assert trt["int32_bias_dq"] == 0  # TensorRT takes float biases
    # One set of ranges made both forms.
    assert models.ranges.is_file() and models.meta["fields"]["settings"] == {"method": "minmax"}


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_every_calibration_method_meets_the_99_percent_rule(tiny, store, calibration, cache, method):
    models = q.build_int8(tiny.model_path, calibration, cache, method=method, quiet=True)
    assert models.meta["fields"]["settings"]["method"] == method
    report = q.check_accuracy(models, tiny.model_path, np.asarray(store.data), store.labels,
                              forms=("cpu",))
    assert report.passes("cpu"), report.format()


def test_99_percent_rule_on_the_fixture(tiny, store, models):
    report = q.check_accuracy(models, tiny.model_path, np.asarray(store.data), store.labels,
                              forms=("fp32", "cpu", "tensorrt"))
    assert report.top1["fp32"] == report.top1["original"]
    assert report.passes("cpu") and report.passes("tensorrt"), report.format()
    assert "PASS" in report.format()


def test_cache_is_reused_and_invalidated(tiny, store, calibration, tmp_path, capsys):
    cache = tmp_path / "cache"
    first = q.build_int8(tiny.model_path, calibration, cache)
    assert not first.reused and "building the INT8 models" in capsys.readouterr().err
    stamp = first.cpu.stat().st_mtime_ns
    again = q.build_int8(tiny.model_path, calibration, cache)
    assert again.reused and again.folder == first.folder and again.cpu.stat().st_mtime_ns == stamp
    assert capsys.readouterr().err == ""

    # Same names, different images.
    changed = q.Calibration.from_arrays(calibration.names, calibration.data * 0.5)
    r = q.build_int8(tiny.model_path, changed, cache)
    assert not r.reused and "calibration images changed" in capsys.readouterr().err
    # Calibration list changed (one image fewer).
    shorter = q.Calibration.from_arrays(calibration.names[:-1], calibration.data[:-1])
    r = q.build_int8(tiny.model_path, shorter, cache)
    assert not r.reused and "calibration list changed" in capsys.readouterr().err
    r = q.build_int8(tiny.model_path, calibration, cache, quiet=True)
    assert not r.reused and r.folder == first.folder

    # Model changed at the same path.
    model = tmp_path / "model.onnx"
    shutil.copy(tiny.model_path, model)
    q.build_int8(model, calibration, cache, quiet=True)
    proto = onnx.load(str(model))
    proto.doc_string = "changed"
    onnx.save(proto, str(model))
    r = q.build_int8(model, calibration, cache)
    assert not r.reused and "the model changed" in capsys.readouterr().err
    assert q.build_int8(model, calibration, cache, quiet=True).reused

    # Settings changed: another method is another folder; the minmax one stays valid.
    pct = q.build_int8(tiny.model_path, calibration, cache, method="percentile", quiet=True)
    assert not pct.reused and pct.folder != first.folder
    assert pct.meta["fields"]["settings"] == {"method": "percentile", "percentile": 99.999}
    assert q.build_int8(tiny.model_path, calibration, cache, quiet=True).reused

    # A damaged model file is noticed and rebuilt.
    first.cpu.write_bytes(b"garbage")
    r = q.build_int8(tiny.model_path, calibration, cache)
    assert not r.reused and "does not match its SHA-256" in capsys.readouterr().err


def test_bad_calibration_input_is_refused(tiny, store, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="calibration list is empty"):
        q.Calibration.from_store(store, empty)
    with pytest.raises(DataError, match="not found"):
        q.Calibration.from_store(store, tmp_path / "nope.txt")
    listed = tmp_path / "missing.txt"
    listed.write_text("ILSVRC2012_val_09999999.JPEG\n")
    with pytest.raises(DataError, match="ILSVRC2012_val_09999999.JPEG"):
        q.Calibration.from_store(store, listed)
    with pytest.raises(DataError, match="empty"):
        q.Calibration.from_arrays([], np.zeros((0, 3, 224, 224), np.float32))
    with pytest.raises(InvalidArgument, match="float32"):
        q.Calibration.from_arrays(["a"], np.zeros((1, 3, 224, 224), np.uint8))
    cal = q.Calibration.from_store(store, tiny.cal_list)
    with pytest.raises(InvalidArgument, match="minmax, entropy, percentile"):
        q.build_int8(tiny.model_path, cal, tmp_path, method="kl")
    with pytest.raises(InvalidArgument, match="percentile"):
        q.build_int8(tiny.model_path, cal, tmp_path, method="percentile", percentile=101)
    with pytest.raises(InvalidArgument, match="Calibration.from_store"):
        q.build_int8(tiny.model_path, str(tiny.cal_list), tmp_path)


def test_calibration_images_missing_from_the_store_are_preprocessed(tiny, cache, calibration):
    """With --count the store may lack calibration images: they come from the dataset folder."""
    small = build_store(ImagenetDataset(tiny.dataset_dir, count=8), "fp32", cache, quiet=True, workers=1)
    cal = q.Calibration.from_store(small, tiny.cal_list)
    assert cal.names == calibration.names and cal.digest == calibration.digest


def _run_engine(engine, store, batch):
    lib = fastres.SampleLibrary.for_engine(engine)
    n = len(store)
    lib.load(np.arange(n), store.data)
    answers = {}

    def on_complete(ids, labels, error):
        assert error is None
        answers.update(zip(ids.tolist(), labels.tolist()))

    with fastres.Executor(engine, lib, make_config("Offline", batch_size=batch, copy_streams=2),
                          on_complete) as ex:
        ex.submit(np.arange(n), np.arange(n))
        ex.flush()
    return np.array([answers[i] for i in range(n)])


def test_int8_engine_in_the_native_executor_answers_like_fp32(tiny, store, cache, models):
    config = make_config("Offline", batch_size=8, copy_streams=2)
    # No cache_dir/calibration: the store's cache folder and the dataset's calibration list.
    engine = make_engine("onnxruntime-int8", store, config, model=tiny.model_path, quiet=True)
    got = _run_engine(engine, store, 8)
    fp32 = _original_top1(tiny, store)
    assert np.mean(got == fp32) >= 0.99
    assert np.mean(got == store.labels) >= 0.99 * np.mean(fp32 == store.labels)


def test_int8_engine_accuracy_through_loadgen(tiny, store, tmp_path):
    config = make_config("Offline", batch_size=8)
    engine = make_engine("onnxruntime-int8", store, config, model=tiny.model_path, quiet=True)
    result = run_native(engine, store, "Offline", "accuracy", tmp_path, config=config)
    assert result.sut_errors == 0 and result.accuracy.total == len(store)
    assert result.accuracy.accuracy >= 99.0


def test_int8_engine_without_a_calibration_list_says_what_to_pass(tiny, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny.dataset_dir, data)
    (data / "cal_image_list_option_1.txt").unlink()
    st = build_store(ImagenetDataset(data), "fp32", tmp_path / "cache", quiet=True, workers=1)
    with pytest.raises(DataError, match="calibration list not found"):
        make_engine("onnxruntime-int8", st, make_config("Offline"), model=tiny.model_path)


def test_openvino_engine_is_optional(tiny, store, monkeypatch):
    from fastres.engines import openvino as ove

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(Unavailable, match=r"pip install 'fastres\[openvino\]'"):
        make_engine("openvino-int8", store, make_config("Offline"), model=tiny.model_path)
    assert not ove.available()


def test_openvino_int8_engine_answers_like_fp32(tiny, store, models):
    pytest.importorskip("openvino")
    config = make_config("Offline", batch_size=8, copy_streams=2)
    engine = make_engine("openvino-int8", store, config, model=tiny.model_path, quiet=True)
    got = _run_engine(engine, store, 8)
    assert np.mean(got == _original_top1(tiny, store)) >= 0.99

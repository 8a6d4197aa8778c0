"""The TensorRT engine's Python side without TensorRT: build options, profile shapes, cache keys
and the cache, the ONNX preparation (checked in ONNX Runtime against the unprepared models), and
every entry point saying what to install when TensorRT or the native engine is missing. The
native engine itself is tested in C++ against the TensorRT double (tests/tensorrt_double)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from fastres import _core
from fastres.bench.cli import main as bench_main
from fastres.data.imagenet import ImagenetDataset
from fastres.data.preprocess import to_int8_linear
from fastres.data.store import build_store
from fastres.data.synthetic import make_default
from fastres.engines import quantize as q
from fastres.engines import tensorrt as trt_engines
from fastres.engines.tensorrt import BuildOptions
from fastres.errors import InvalidArgument, ModelError, Unavailable
from fastres.sut.native import ENGINES, engine_device, make_config, make_engine

HAVE_TRT_PYTHON = True
try:
    import tensorrt  # noqa: F401
except ImportError:
    HAVE_TRT_PYTHON = False
needs_no_tensorrt = pytest.mark.skipif(HAVE_TRT_PYTHON or trt_engines.runtime_available(),
                                       reason="TensorRT is installed: the Unavailable paths cannot run")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=64, quiet=True)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def store(tiny, cache):
    return build_store(ImagenetDataset(tiny.dataset_dir), "fp32", cache, quiet=True, workers=1)


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(("change", "needle"), [
    ({"precision": "int4"}, "precision='int4': choose one of int8, fp16, fp32"),
    ({"input_format": "int8_chw4"}, "input_format='int8_chw4': choose one of fp32, int8_linear"),
    ({"batch_size": 0}, "batch_size=0: must be [1, 65536]"),
    ({"batch_size": 2.5}, "batch_size=2.5: expected an integer"),
    ({"batch_size": True}, "batch_size=True: expected an integer"),
    ({"profiles": 65}, "profiles=65: must be [1, 64]"),
    ({"workspace_mib": 8}, "workspace_mib=8: must be [16, 1048576]"),
    ({"optimization_level": 6}, "optimization_level=6: must be [0, 5]"),
    ({"device": -1}, "device=-1: must be >= 0"),
])
def test_bad_build_options_name_the_option_and_the_range(change, needle):
    with pytest.raises(InvalidArgument, match=None) as err:
        BuildOptions(**change).validate()
    assert needle in str(err.value)


def test_profile_shapes_one_per_copy_stream_min_1_opt_max_batch():
    shapes = trt_engines.profile_shapes(BuildOptions(batch_size=64, profiles=3), (3, 224, 224))
    assert shapes == [((1, 3, 224, 224), (64, 3, 224, 224), (64, 3, 224, 224))] * 3
    assert trt_engines.profile_shapes(BuildOptions(batch_size=1), [1, 224, 224, 4]) == \
        [((1, 1, 224, 224, 4),) * 3]
    with pytest.raises(InvalidArgument, match="every dimension must be > 0"):
        trt_engines.profile_shapes(BuildOptions(), (3, -1, 224))
    with pytest.raises(InvalidArgument, match="profiles=0"):
        trt_engines.profile_shapes(BuildOptions(profiles=0), (3, 224, 224))


GPU = {"name": "NVIDIA H200", "compute_capability": (9, 0)}


def test_cache_key_covers_model_options_tensorrt_and_gpu_but_not_the_device_index():
    base = BuildOptions(batch_size=64, profiles=2)
    fields, key = trt_engines.cache_key("a" * 64, base, "10.9.0", GPU)
    assert fields["tensorrt"] == "10.9.0" and fields["gpu"]["name"] == "NVIDIA H200"
    assert trt_engines.cache_key("a" * 64, base, "10.9.0", GPU)[1] == key  # deterministic
    changed = [
        trt_engines.cache_key("b" * 64, base, "10.9.0", GPU),
        trt_engines.cache_key("a" * 64, base, "11.4.0", GPU),
        trt_engines.cache_key("a" * 64, base, "10.9.0", {**GPU, "name": "NVIDIA A100-SXM4-80GB"}),
        trt_engines.cache_key("a" * 64, base, "10.9.0", {**GPU, "compute_capability": (8, 0)}),
        trt_engines.cache_key("a" * 64, base, "10.9.0", GPU, source={"int8_key": "x"}),
    ]
    for opt in ({"precision": "fp16"}, {"input_format": "int8_linear"}, {"batch_size": 32},
                {"profiles": 3}, {"workspace_mib": 1024}, {"optimization_level": 5}):
        changed.append(trt_engines.cache_key("a" * 64, BuildOptions(**{**base.as_dict(), **opt}),
                                             "10.9.0", GPU))
    assert len({k for _, k in changed} | {key}) == len(changed) + 1
    # The same GPU model at another index runs the same plan.
    assert trt_engines.cache_key("a" * 64, BuildOptions(batch_size=64, profiles=2, device=3),
                                 "10.9.0", GPU)[1] == key


def test_engine_dir_is_per_model_and_options_under_the_cache(tmp_path):
    a = trt_engines.engine_dir(tmp_path, tmp_path / "resnet50.onnx", BuildOptions())
    assert a.parent == tmp_path / "tensorrt" and a.name.startswith("resnet50-int8-fp32-b64-p1-")
    assert trt_engines.engine_dir(tmp_path, tmp_path / "resnet50.onnx", BuildOptions()) == a
    assert trt_engines.engine_dir(tmp_path, tmp_path / "resnet50.onnx", BuildOptions(profiles=2)) != a
    assert trt_engines.engine_dir(tmp_path, tmp_path / "other.onnx", BuildOptions()) != a


def test_a_cached_plan_is_reused_only_while_its_key_and_bytes_match(tmp_path):
    options = BuildOptions(precision="fp16", batch_size=8)
    fields, key = trt_engines.cache_key("c" * 64, options, "10.9.0", GPU)
    folder = tmp_path / "plan"
    assert trt_engines._cached(folder, key, fields) == (None, "")  # nothing there
    folder.mkdir()
    assert trt_engines._cached(folder, key, fields)[1] == "no meta.json (an interrupted build)"
    plan = folder / "engine.plan"
    plan.write_bytes(b"serialized engine")
    from fastres._files import sha256_file

    meta = {"key": key, "fields": fields, "plan_sha256": sha256_file(plan), "output": "top1:0",
            "label_offset": 0}
    (folder / "meta.json").write_text(json.dumps(meta))
    hit, why = trt_engines._cached(folder, key, fields)
    assert why == "" and hit.path == plan and hit.reused and hit.output == "top1:0"
    newer_fields, newer_key = trt_engines.cache_key("c" * 64, options, "11.4.0", GPU)
    assert trt_engines._cached(folder, newer_key, newer_fields)[1] == \
        "the TensorRT version changed (10.9.0 → 11.4.0)"
    other_gpu = trt_engines.cache_key("c" * 64, options, "10.9.0", {**GPU, "name": "L4"})
    assert trt_engines._cached(folder, other_gpu[1], other_gpu[0])[1].startswith("the GPU changed")
    plan.write_bytes(b"truncated")
    assert "not matching its SHA-256" in trt_engines._cached(folder, key, fields)[1]


# ------------------------------------------------------------------------------ ONNX preparation


def _surgered_top1(tiny, data, tmp_path):
    """The oracle: fastres.engines.quantize's surgered fp32 model in ONNX Runtime."""
    q.surgery(tiny.model_path, tmp_path / "surgered.onnx")
    return q.predict(str(tmp_path / "surgered.onnx"), data, output_name=q.TOP1_OUTPUT)


def test_fp32_preparation_answers_top1_like_the_mlperf_model(tiny, store, tmp_path):
    data = np.asarray(store.data)[:32]
    info = trt_engines.prepare_onnx(tiny.model_path, BuildOptions(precision="fp32"),
                                    tmp_path / "fp32.onnx")
    assert info["output"] == "top1:0" and "surgery" in info["steps"][0]
    got = q.predict(str(tmp_path / "fp32.onnx"), data, output_name="top1:0")
    want = q.predict(tiny.model_path, data, output_name="ArgMax:0", offset=-1)  # ArgMax - 1
    out = onnx.load(str(tmp_path / "fp32.onnx")).graph.output
    assert [o.name for o in out] == ["top1:0"] and out[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert np.array_equal(got, want)


def test_int8_linear_input_sees_the_int8_store_values(tiny, store, tmp_path):
    data = np.asarray(store.data)[:32]
    quantized = np.stack([to_int8_linear(x) for x in data])
    assert quantized.dtype == np.int8
    trt_engines.prepare_onnx(tiny.model_path, BuildOptions(precision="fp32", input_format="int8_linear"),
                             tmp_path / "i8.onnx")
    m = onnx.load(str(tmp_path / "i8.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT8
    assert m.graph.node[0].op_type == "DequantizeLinear"
    got = q.predict(str(tmp_path / "i8.onnx"), quantized, output_name="top1:0")
    # Oracle: the fp32 model fed the same values as float32.
    assert np.array_equal(got, _surgered_top1(tiny, quantized.astype(np.float32), tmp_path))


def test_fp16_preparation_computes_in_float16_with_float32_io(tiny, store, tmp_path):
    trt_engines.prepare_onnx(tiny.model_path, BuildOptions(precision="fp16"), tmp_path / "fp16.onnx")
    m = onnx.load(str(tmp_path / "fp16.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    kinds = {init.data_type for init in m.graph.initializer}
    assert onnx.TensorProto.FLOAT not in kinds and onnx.TensorProto.FLOAT16 in kinds
    first = m.graph.node[0]
    assert first.op_type == "Cast" and first.input[0] == "input_tensor:0"
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    floats = {vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    assert onnx.TensorProto.FLOAT not in floats  # nothing inside computes in float32
    data = np.asarray(store.data)[:32]
    try:
        got = q.predict(str(tmp_path / "fp16.onnx"), data, output_name="top1:0")
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's CPU provider may lack fp16 kernels
        pytest.skip(f"ONNX Runtime cannot run the fp16 model on this CPU: {exc}")
    # fp16 may flip near-ties; the synthetic model's margins are wide, so nearly all agree.
    assert np.mean(got == _surgered_top1(tiny, data, tmp_path)) >= 0.95


def test_int8_preparation_takes_the_tensorrt_qdq_form(tiny, store, cache, tmp_path):
    calibration = q.Calibration.from_store(store, tiny.cal_list)
    models = q.build_int8(tiny.model_path, calibration, cache, quiet=True)
    with pytest.raises(InvalidArgument, match="needs the TensorRT Q/DQ model"):
        trt_engines.prepare_onnx(tiny.model_path, BuildOptions(), tmp_path / "x.onnx")
    trt_engines.prepare_onnx(tiny.model_path, BuildOptions(input_format="int8_linear"),
                             tmp_path / "int8.onnx", int8_model=models.tensorrt)
    data = np.stack([to_int8_linear(x) for x in np.asarray(store.data)[:16]])
    got = q.predict(str(tmp_path / "int8.onnx"), data, output_name="top1:0")
    want = q.predict(str(models.tensorrt), data.astype(np.float32), output_name="top1:0")
    assert np.array_equal(got, want)


def test_int8_linear_needs_a_float_input_of_that_name(tiny):
    model, _ = q.surgery(tiny.model_path)
    with pytest.raises(ModelError, match="no input 'images'"):
        trt_engines.int8_linear_input(model, "images")
    again = trt_engines.int8_linear_input(model)
    with pytest.raises(ModelError, match="not float32"):
        trt_engines.int8_linear_input(again)


# ------------------------------------------------------------------------------ availability


def test_tensorrt_is_a_cuda_engine_of_the_native_sut():
    assert "tensorrt" in ENGINES
    assert engine_device("tensorrt") == "cuda"
    assert make_config("Server", device="cuda").use_graphs


@needs_no_tensorrt
def test_every_entry_point_says_what_to_install(tiny, store, tmp_path):
    assert not trt_engines.runtime_available()
    assert not hasattr(_core, "TensorRTEngine")
    with pytest.raises(Unavailable, match="pip install tensorrt"):
        trt_engines.import_tensorrt()
    with pytest.raises(Unavailable) as err:
        trt_engines.check_available()
    assert "pip install tensorrt" in str(err.value) and "FASTRES_WITH_TENSORRT=ON" in str(err.value)
    with pytest.raises(Unavailable, match="FASTRES_WITH_TENSORRT=ON"):
        trt_engines.load_engine(tmp_path / "engine.plan")
    with pytest.raises(Unavailable, match="pip install tensorrt"):
        trt_engines.build_engine(tiny.model_path, BuildOptions(), tmp_path)
    with pytest.raises(Unavailable, match="FASTRES_WITH_TENSORRT=ON"):
        make_engine("tensorrt", store, make_config("Offline", device="cuda"), model=tiny.model_path,
                    cache_dir=tmp_path, quiet=True)
    assert not (tmp_path / "int8").exists() and not (tmp_path / "tensorrt").exists()  # no work done


@needs_no_tensorrt
def test_bench_cli_refuses_the_tensorrt_engine_before_any_work(tmp_path, capsys):
    code = bench_main(["--engine", "tensorrt", "--sut", "native", "--scenario", "Offline",
                       "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
                       "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "the tensorrt engine needs" in err and "pip install tensorrt" in err
    assert "FASTRES_WITH_TENSORRT=ON" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()

"""The PyTorch engine (fastres.engines.torch): the ONNX graph run by PyTorch must answer what
ONNX Runtime answers (the oracle), through the executor and through the reference SUT, and the
torchvision-style ResNet50 must have ResNet50's shape. Skipped, loudly, without PyTorch (CI
installs only the project's extras, and torch is not one of them; on this project's machines
`pip install torch==2.13.0` takes the CPU build from disk). The CUDA path runs in the gpu test."""

from __future__ import annotations

import numpy as np
import pytest

import fastres
from fastres.errors import ModelError, Unavailable

torch = pytest.importorskip("torch", reason="PyTorch is not installed: the torch engine tests were NOT run "
                                            "(pip install torch)")

from fastres.engines.torch import SUPPORTED_OPS, ResNet50, TorchBackend, TorchEngine, from_onnx  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fastres.data.imagenet import ImagenetDataset
    from fastres.data.store import build_store
    from fastres.data.synthetic import make_default

    root = tmp_path_factory.mktemp("torch")
    d = make_default(root / "syn", variant="tiny", n_images=48, quiet=True)
    store = build_store(ImagenetDataset(d.dataset_dir), "fp32", root / "cache", quiet=True, workers=1)
    return d, store


def _ort_labels(model_path, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (argmax,) = sess.run(["ArgMax:0"], {"input_tensor:0": x})
    return argmax.astype(np.int64) - 1


def test_onnx_graph_in_torch_answers_what_onnx_runtime_answers(tiny):
    d, store = tiny
    x = np.asarray(store.data[:48])
    module = from_onnx(d.model_path)
    with torch.inference_mode():
        argmax = module(torch.from_numpy(x.copy())).numpy()
        logits_module = from_onnx(d.model_path, output_name="dense/logits")
        logits = logits_module(torch.from_numpy(x.copy())).numpy()
    expected = _ort_labels(d.model_path, x)
    assert np.array_equal(argmax - 1, expected)
    assert np.array_equal(logits.argmax(axis=1) - 1, expected)
    assert np.array_equal(expected, store.labels[:48])  # the synthetic model is exact on its data


def test_torch_engine_through_the_executor_answers_every_sample(tiny):
    d, store = tiny
    fn = TorchEngine(from_onnx(d.model_path), device="cpu", max_batch=8)
    assert fn.device_kind == "cpu"
    fn.warm_up()
    engine = fastres.PythonEngine(fn, "float32", (3, 224, 224), 8)
    library = fastres.SampleLibrary.for_engine(engine)
    library.load(np.arange(len(store)), store.data)
    answers: dict[int, int] = {}

    def on_complete(ids, labels, error):
        assert error is None, error
        answers.update(zip(ids.tolist(), labels.tolist()))

    order = np.random.default_rng(3).permutation(len(store))
    with fastres.Executor(engine, library, fastres.ExecutorConfig(batch_size=8, copy_streams=2,
                                                                   batch_timeout_us=1000), on_complete) as ex:
        ex.submit(np.arange(len(order)), order)
        ex.flush()
    assert [answers[i] for i in range(len(order))] == store.labels[order].tolist()


def test_torch_backend_runs_the_reference_sut(tiny, tmp_path):
    from fastres.sut.reference import run_reference

    d, store = tiny
    backend = TorchBackend(TorchEngine(from_onnx(d.model_path), device="cpu", max_batch=8))
    result = run_reference(d.model_path, store, "Offline", "accuracy", tmp_path, backend=backend, threads=2)
    assert result.accuracy.total == len(store) and result.accuracy.good == len(store)


def test_native_sut_builds_the_torch_engine_by_name(tiny, tmp_path):
    from fastres.sut.native import make_config, make_engine, run_native

    d, store = tiny
    config = make_config("Offline", batch_size=8, copy_streams=1)
    engine = make_engine("torch", store, config, model=d.model_path)
    assert engine.device == "cpu"
    result = run_native(engine, store, "Offline", "accuracy", tmp_path, config=config)
    assert result.sut_errors == 0 and result.accuracy.good == len(store)


def test_resnet50_has_resnet50s_shape_and_is_seeded():
    net = ResNet50(seed=1)
    params = sum(p.numel() for p in net.parameters())
    # torchvision's resnet50 has 25,557,032 parameters at 1000 classes; one more class adds 2049.
    assert params == 25_557_032 + 2049
    x = torch.randn((2, 3, 224, 224), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = net(x)
        b = ResNet50(seed=1)(x)
        c = ResNet50(seed=2)(x)
    assert a.shape == (2, 1001) and torch.equal(a, b) and not torch.equal(a, c)


def test_bad_models_and_devices_are_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(ModelError, match="does not exist"):
        from_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        from_onnx(tmp_path / "junk.onnx")
    graph = helper.make_graph(
        [helper.make_node("LRN", ["input_tensor:0"], ["y"], size=3),
         helper.make_node("ArgMax", ["y"], ["ArgMax:0"], axis=1, keepdims=0)], "g",
        [helper.make_tensor_value_info("input_tensor:0", TensorProto.FLOAT, [None, 3, 4, 4])],
        [helper.make_tensor_value_info("ArgMax:0", TensorProto.INT64, [None])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "lrn.onnx"))
    with pytest.raises(ModelError, match="cannot run ONNX operator\\(s\\) LRN"):
        from_onnx(tmp_path / "lrn.onnx")
    with pytest.raises(ModelError, match="no output 'softmax'"):
        from_onnx(tmp_path / "lrn.onnx", output_name="softmax")
    assert "Conv" in SUPPORTED_OPS and "LRN" not in SUPPORTED_OPS
    if not torch.cuda.is_available():
        with pytest.raises(Unavailable, match="sees no CUDA device"):
            TorchEngine(ResNet50(), device="cuda")
    with pytest.raises(fastres.errors.InvalidArgument, match="float16"):
        TorchEngine(ResNet50(), device="cpu", dtype="float16")


def _index_net():
    """A network whose answer is known exactly: each sample is filled with the constant
    (label + 1) / 1000 and the net scores class k by -(mean - k / 1000)^2, so argmax - 1 is the
    label. It proves the device path (CAI views, the slot's stream, the label copy) without a
    model file or a dataset, which the GPU machine does not have."""

    class IndexNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("centers", torch.arange(1001, dtype=torch.float32) / 1000)

        def forward(self, x):
            m = x.float().mean(dim=(1, 2, 3))
            return -(m[:, None] - self.centers[None, :]) ** 2

    return IndexNet()


def _index_samples(n: int) -> np.ndarray:
    return np.broadcast_to(((np.arange(n) + 1) / 1000).astype(np.float32)[:, None, None, None],
                           (n, 3, 8, 8)).copy()


def test_index_net_answers_its_labels_on_the_cpu():
    fn = TorchEngine(_index_net(), device="cpu", max_batch=16, input_shape=(3, 8, 8))
    labels = np.zeros(64, np.int32)
    fn(_index_samples(64), labels, np.arange(64))
    assert labels.tolist() == list(range(64))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_torch_engine_on_the_gpu_through_the_executor_answers_every_sample(dtype):
    if not torch.cuda.is_available():
        pytest.skip("PyTorch here has no CUDA")
    from fastres.sut.native import make_config

    n = 256
    fn = TorchEngine(_index_net(), device="cuda", dtype=dtype, max_batch=32, input_shape=(3, 8, 8))
    fn.warm_up()
    engine = fastres.PythonEngine(fn, "float32", (3, 8, 8), 32, device="cuda")
    library = fastres.SampleLibrary.for_engine(engine)
    library.load(np.arange(n), _index_samples(n))
    answers: dict[int, int] = {}

    def on_complete(ids, labels, error):
        assert error is None, error
        answers.update(zip(ids.tolist(), labels.tolist()))

    order = np.random.default_rng(5).permutation(n)
    for knobs in ({}, {"start_from_device": True}, {"run_infer_on_copy_streams": True}):
        answers.clear()
        cfg = make_config("Offline", device="cuda", batch_size=32, copy_streams=2, **knobs)
        with fastres.Executor(engine, library, cfg, on_complete) as ex:
            ex.sync_library()
            ex.submit(np.arange(n), order)
            ex.flush()
        assert [answers[i] for i in range(n)] == order.tolist(), knobs


@pytest.mark.gpu
def test_onnx_graph_on_the_gpu_keeps_the_cpu_answers(tiny):
    """The synthetic model through the executor on a GPU (fp32 and fp16): MLPerf's rule is 99% of
    the fp32 accuracy; the CPU answers (ONNX Runtime's, all correct here) are the oracle."""
    if not torch.cuda.is_available():
        pytest.skip("PyTorch here has no CUDA")
    from fastres.sut.native import make_config

    d, store = tiny
    for dtype, floor in (("float32", 0.99), ("float16", 0.99)):
        fn = TorchEngine(from_onnx(d.model_path), device="cuda", dtype=dtype, max_batch=16)
        fn.warm_up()
        engine = fastres.PythonEngine(fn, "float32", (3, 224, 224), 16, device="cuda")
        library = fastres.SampleLibrary.for_engine(engine)
        library.load(np.arange(len(store)), store.data)
        answers: dict[int, int] = {}

        def on_complete(ids, labels, error):
            assert error is None, error
            answers.update(zip(ids.tolist(), labels.tolist()))

        cfg = make_config("Offline", device="cuda", batch_size=16, copy_streams=2)
        with fastres.Executor(engine, library, cfg, on_complete) as ex:
            ex.submit(np.arange(len(store)), np.arange(len(store)))
            ex.flush()
        agree = np.mean([answers[i] == store.labels[i] for i in range(len(store))])
        assert agree >= floor, (dtype, agree)

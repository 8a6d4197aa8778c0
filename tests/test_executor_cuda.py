"""The executor's CUDA path and watchdog through the Python API.

Without a GPU (this machine, CI) the CUDA path cannot run: what is checked here is that it is
refused clearly (Unavailable naming the missing device or build), that its knobs are validated
by name, and the watchdog on the CPU path. The ``gpu`` tests run the whole pipeline on a device
(bench/device_check.sh); the C++ suite ``executor_cuda`` runs the same pipeline on the CPU
against the CUDA runtime double (tests/cuda_double).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import fastres
from fastres import errors
from fastres.sut.native import CUDA_KNOBS, config_dict, make_config

from test_executor import Recorder, echo_engine, index_library

WITH_CUDA = fastres.build_info()["with_cuda"]
needs_cuda_build = pytest.mark.skipif(not WITH_CUDA, reason="this build has no CUDA path (FASTRES_WITH_CUDA=OFF)")


# ------------------------------------------------------------------------------ knobs
def test_cuda_knobs_are_config_fields_with_lwis_names():
    c = fastres.ExecutorConfig(use_graphs=True, start_from_device=True, run_infer_on_copy_streams=True,
                               use_spin_wait=True, devices=[0, 1], watchdog_ms=250)
    assert (c.use_graphs, c.start_from_device, c.run_infer_on_copy_streams, c.use_spin_wait) == (True,) * 4
    assert list(c.devices) == [0, 1] and c.watchdog_ms == 250
    text = repr(c)
    for word in ("use_graphs=True", "start_from_device=True", "devices=[0, 1]", "watchdog_ms=250"):
        assert word in text
    defaults = fastres.ExecutorConfig()
    assert not defaults.use_graphs and list(defaults.devices) == [] and defaults.watchdog_ms == 0


@pytest.mark.parametrize("knob, value", [("use_graphs", True), ("start_from_device", True),
                                         ("run_infer_on_copy_streams", True), ("use_spin_wait", True),
                                         ("devices", [0])])
def test_cuda_knobs_are_refused_for_a_cpu_engine_by_name(knob, value):
    c = fastres.ExecutorConfig(batch_size=4, copy_streams=1, **{knob: value})
    with pytest.raises(errors.InvalidArgument, match=f"{knob} applies to CUDA engines only"):
        fastres.Executor(echo_engine(), index_library(4), c, Recorder())


def test_make_config_takes_cuda_knobs_and_gpu_defaults():
    cpu = make_config("Server")
    gpu = make_config("Server", device="cuda", devices="0,1", use_spin_wait=1)
    assert cpu.batch_size == 1 and not cpu.use_graphs  # CPU: answer each query at once
    assert gpu.batch_size == 64 and gpu.copy_streams == 4 and gpu.infer_streams == 3
    assert gpu.use_graphs and gpu.use_spin_wait and list(gpu.devices) == [0, 1]
    assert make_config("Offline").watchdog_ms == 60_000  # the native SUT never hangs forever
    d = config_dict(gpu)
    assert set(CUDA_KNOBS) <= set(d) and d["devices"] == [0, 1] and d["use_graphs"] is True
    for bad, match in [({"use_graphs": 2}, "true/false"), ({"devices": "a,b"}, "device indices"),
                       ({"devices": [-1]}, ">= 0"), ({"watchdog_ms": 1.5}, "integer"),
                       ({"graphs": True}, "unknown executor knob")]:
        with pytest.raises(errors.InvalidArgument, match=match):
            make_config("Offline", **bad)
    with pytest.raises(errors.InvalidArgument, match="'cpu' or 'cuda'"):
        make_config("Offline", device="tpu")


def test_watchdog_range_is_validated():
    with pytest.raises(errors.InvalidArgument, match="watchdog_ms=-1"):
        fastres.Executor(echo_engine(), index_library(4), fastres.ExecutorConfig(watchdog_ms=-1), Recorder())


# ------------------------------------------------------------------------------ refused clearly
@pytest.mark.skipif(WITH_CUDA, reason="checks the CPU-only build's message")
def test_a_cuda_engine_on_a_cpu_only_build_says_rebuild():
    engine = fastres.PythonEngine(lambda *a: None, "float32", (4,), 4, device="cuda")
    lib = fastres.SampleLibrary.for_engine(engine)
    with pytest.raises(errors.Unavailable, match="FASTRES_WITH_CUDA=ON"):
        fastres.Executor(engine, lib, fastres.ExecutorConfig(batch_size=4, copy_streams=1), Recorder())


@needs_cuda_build
def test_without_a_device_a_cuda_engine_is_unavailable_naming_the_device():
    if fastres.build_info()["cuda"]["devices"]:
        pytest.skip("this machine has a CUDA device")
    engine = fastres.TimedEngine(input_dtype="int32", input_shape=(4,), max_batch=8, batch_ns=1000)
    assert engine.device == "cuda" and engine.graph_capturable
    lib = fastres.SampleLibrary.for_engine(engine)
    with pytest.raises(errors.Unavailable, match="CUDA device 0 requested"):
        fastres.Executor(engine, lib, fastres.ExecutorConfig(batch_size=8, copy_streams=1), Recorder())


def test_python_engine_device_and_graph_options_are_checked():
    with pytest.raises(errors.InvalidArgument, match="'cpu' or 'cuda'"):
        fastres.PythonEngine(lambda *a: None, "float32", (4,), 4, device="gpu")
    with pytest.raises(errors.InvalidArgument, match="graph_capturable applies to CUDA engines only"):
        fastres.PythonEngine(lambda *a: None, "float32", (4,), 4, graph_capturable=True)
    cuda = fastres.PythonEngine(lambda *a: None, "float32", (4,), 4, device="cuda", graph_capturable=True)
    assert cuda.device == "cuda" and cuda.graph_capturable


@needs_cuda_build
def test_timed_engine_arguments_are_checked():
    with pytest.raises(errors.InvalidArgument, match="at least 4"):
        fastres.TimedEngine(input_dtype="int8", input_shape=(2,), max_batch=4)
    with pytest.raises(errors.InvalidArgument, match="batch_ns=-1"):
        fastres.TimedEngine(batch_ns=-1)
    e = fastres.TimedEngine(input_dtype="int8", input_shape=(3, 224, 224), max_batch=256, batch_ns=500, sample_ns=2)
    assert e.batch_time_ns(10) == 520


def test_sample_library_for_a_cpu_engine_is_not_pinned():
    assert not fastres.SampleLibrary.for_engine(echo_engine()).pinned


# ------------------------------------------------------------------------------ watchdog (CPU)
def test_watchdog_ends_a_hung_python_engine_call_with_a_named_error():
    release = threading.Event()

    def engine_fn(inputs, labels, indices):
        if 3 in indices.tolist():
            release.wait(30)  # hangs, with the GIL released, until the test ends it
        labels[:] = indices.astype(np.int32)

    engine = fastres.PythonEngine(engine_fn, "int32", (4,), 1)
    rec = Recorder()
    ex = fastres.Executor(engine, index_library(8), fastres.ExecutorConfig(
        batch_size=1, copy_streams=2, batch_timeout_us=0, watchdog_ms=500), rec)
    try:
        ex.submit(np.arange(8), np.arange(8))
        assert rec.wait(8, timeout=20)
        answers = rec.by_id()  # asserts exactly once
        assert set(answers) == set(range(8))
        assert answers[3][0] == -1 and "hung" in answers[3][1] and "watchdog_ms=500" in answers[3][1]
        assert all(answers[i] == (i, None) for i in range(8) if i != 3)
        stats = ex.stats()
        assert stats.watchdog_batches == 1 and stats.retired_slots == 1
        t0 = time.monotonic()
        with pytest.raises(errors.EngineError, match="hung"):
            ex.stop()
        assert time.monotonic() - t0 < 10  # stop() did not wait for the hung call
    finally:
        release.set()


# ------------------------------------------------------------------------------ on a GPU
def _index_store(n: int, sample_shape=(3, 224, 224), dtype=np.int8) -> np.ndarray:
    """Samples whose first 4 bytes hold their own index (what TimedEngine answers)."""
    store = np.zeros((n, *sample_shape), dtype=dtype)
    flat = store.reshape(n, -1).view(np.uint8)
    flat[:, :4] = np.arange(n, dtype="<i4").view(np.uint8).reshape(n, 4)
    return store


@pytest.mark.gpu
@pytest.mark.parametrize("knobs", [
    {},
    {"use_graphs": True},
    {"start_from_device": True},
    {"start_from_device": True, "use_graphs": True},
    {"run_infer_on_copy_streams": True, "use_spin_wait": True},
    {"infer_streams": 2, "copy_streams": 3},
    {"watchdog_ms": 10_000},
])
def test_timed_engine_answers_every_sample_with_its_own_index_on_the_gpu(knobs):
    n = 512
    store = _index_store(n)
    engine = fastres.TimedEngine(max_batch=64, batch_ns=20_000, sample_ns=100)
    lib = fastres.SampleLibrary.for_engine(engine)
    assert lib.pinned
    lib.load(np.arange(n), store)
    cfg = fastres.ExecutorConfig(**{"batch_size": 64, "copy_streams": 2, "batch_timeout_us": 500, **knobs})
    rec = Recorder()
    with fastres.Executor(engine, lib, cfg, rec) as ex:
        ex.sync_library()
        order = np.random.default_rng(1).permutation(np.tile(np.arange(n), 3))  # repeats, any order
        ids = np.arange(len(order))
        for chunk in np.array_split(np.arange(len(order)), 37):
            ex.submit(ids[chunk], order[chunk])
        ex.flush()
        stats = ex.stats()
    answers = rec.by_id()
    assert len(answers) == len(order)
    assert all(answers[int(i)] == (int(order[i]), None) for i in ids)
    if knobs.get("use_graphs"):
        assert stats.graph_launches > 0 and stats.graph_captures > 0
    if knobs.get("start_from_device"):
        assert stats.library_uploads >= 1
        assert stats.device_gathers + stats.bound_batches == stats.batches
    else:
        assert stats.h2d_copies >= stats.batches


@pytest.mark.gpu
def test_cuda_python_engine_gets_device_views_and_the_stream():
    """A CUDA PythonEngine gets __cuda_array_interface__ views of the slot's device buffers and
    the stream to enqueue on; here it enqueues fastres's own top-1 kernel through the raw-pointer
    entry point (rows of 4 scores, one-hot at 3 - i % 4), so no CuPy or PyTorch is needed."""
    from fastres import _core

    seen = []

    def fn(inputs, labels, indices, stream):
        assert isinstance(inputs, fastres.CudaArray) and inputs.readonly and not labels.readonly
        cai = inputs.__cuda_array_interface__
        assert cai["version"] == 3 and cai["typestr"] == "<f4" and cai["shape"] == (len(indices), 4)
        assert cai["data"] == (inputs.ptr, True) and cai["stream"] == stream != 0
        assert labels.__cuda_array_interface__["typestr"] == "<i4" and labels.shape == (len(indices),)
        seen.append(stream)
        _core.kernels._top1_ptr(labels.ptr, inputs.ptr, len(indices), 4, 0, stream)

    engine = fastres.PythonEngine(fn, "float32", (4,), 16, device="cuda")
    lib = fastres.SampleLibrary.for_engine(engine)
    store = np.zeros((64, 4), np.float32)
    store[np.arange(64), 3 - np.arange(64) % 4] = 1.0
    lib.load(np.arange(64), store)
    rec = Recorder()
    with fastres.Executor(engine, lib, fastres.ExecutorConfig(batch_size=16, copy_streams=2), rec) as ex:
        ex.submit(np.arange(64), np.arange(64)[::-1].copy())
        ex.flush()
    answers = rec.by_id()
    assert all(answers[i] == (3 - (63 - i) % 4, None) for i in range(64))
    assert len(seen) >= 4


@pytest.mark.gpu
def test_an_engine_error_on_the_cuda_path_fails_its_batch_once():
    def fn(inputs, labels, indices, stream):
        raise RuntimeError("simulated launch failure")

    engine = fastres.PythonEngine(fn, "int32", (4,), 4, device="cuda")
    lib = fastres.SampleLibrary.for_engine(engine)
    lib.load(np.arange(8), (np.arange(8, dtype=np.int32)[:, None] + np.arange(4, dtype=np.int32)).copy())
    rec = Recorder()
    ex = fastres.Executor(engine, lib, fastres.ExecutorConfig(batch_size=4, copy_streams=1), rec)
    ex.submit(np.arange(8), np.arange(8))
    with pytest.raises(errors.EngineError, match="simulated launch failure"):
        ex.stop()
    answers = rec.by_id()
    assert len(answers) == 8 and all(label == -1 and "simulated launch failure" in err
                                     for label, err in answers.values())

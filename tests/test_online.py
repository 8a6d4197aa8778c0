"""Online preprocessing (fastres.sut.online; beyond MLPerf): raw JPEG bytes in the QSL, handles
in the executor, DALI inside the timed path, under the real LoadGen.

The oracle for the answers is the offline path: the same executor over a store preprocessed
before the run (by DALI: answers identical; by the reference: the agreement MLPerf's accuracy
rule cares about), read back from LoadGen's accuracy logs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastres import _core
from fastres.data import dali as fd
from fastres.data.imagenet import ImagenetDataset
from fastres.data.store import build_store
from fastres.errors import EngineError, InvalidArgument, Unavailable
from fastres.sut import online as on
from fastres.sut.native import engine_fn, make_config, make_engine, run_native

needs_dali = pytest.mark.skipif(
    not fd.dali_available(), reason="NVIDIA DALI is not installed: pip install 'fastres[dali]' "
                                    "to run the online-mode tests")
N_IMAGES = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fastres.data.synthetic import make_default

    return make_default(tmp_path_factory.mktemp("synthetic"), variant="tiny", n_images=N_IMAGES,
                        quiet=True)


@pytest.fixture(scope="module")
def dataset(tiny):
    return ImagenetDataset(tiny.dataset_dir, tiny.val_map)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def reference_store(dataset, cache):
    return build_store(dataset, "fp32", cache, workers=1, quiet=True)


def answers(log_dir: Path) -> dict[int, int]:
    """qsl_idx -> int32 answer from LoadGen's accuracy log (first entry of each sample). The
    LoadGen sink answers the samples of a failed batch -1."""
    out: dict[int, int] = {}
    for e in json.loads((Path(log_dir) / "mlperf_log_accuracy.json").read_text()):
        out.setdefault(e["qsl_idx"], int(np.frombuffer(bytes.fromhex(e["data"]), np.int32)[0]))
    return out


def offline_answers(store, model, scenario, out_dir) -> dict[int, int]:
    config = make_config(scenario, batch_size=8 if scenario == "Offline" else None)
    engine = make_engine("onnxruntime", store, config, model=model)
    result = run_native(engine, store, scenario, "accuracy", out_dir, config=config)
    assert result.sut_errors == 0
    return answers(out_dir)


def online_run(store, model, scenario, out_dir, samples=None, batch_size=8, **kwargs):
    config = make_config(scenario, batch_size=batch_size if scenario == "Offline" else None)
    inner = engine_fn("onnxruntime", store, config, model=model)
    samples = samples if samples is not None else on.EncodedSamples.from_store(store)
    engine, online = on.make_online_engine(inner, samples, config, **kwargs)
    with on.OnlineSUT(engine, samples, scenario=scenario, config=config) as sut:
        from fastres import loadgen as flg

        result = flg.run_test(sut.sut, sut.qsl, flg.make_settings(scenario, "accuracy"), out_dir)
        errors, last_error = sut.errors, sut.last_error
    return result, errors, last_error, online


# --------------------------------------------------------------------------- the QSL's bytes

def test_encoded_samples_hold_the_files_bytes_behind_fixed_size_handles(dataset, tmp_path):
    paths = [dataset.path(i) for i in range(8)]
    gone = tmp_path / "gone.JPEG"
    gone.write_bytes(b"soon deleted")
    samples = on.EncodedSamples(paths + [gone], list(dataset.labels[:8]) + [0])
    gone.unlink()
    assert samples.data.shape == (9, 3) and samples.data.dtype == np.int64
    samples.load([2, 5, 8])
    samples.load([5, 7])  # 5 is loaded already: only 7 is read, into a second arena
    handles = samples.data[[2, 5, 7, 8]]
    assert handles[:, 0].tolist() == [0, 0, 1, 0]
    got = samples.encoded(handles)
    assert [bytes(g) for g in got[:3]] == [paths[i].read_bytes() for i in (2, 5, 7)]
    assert got[3].size == 0 and "cannot read image" in samples.read_errors[8]
    assert samples.bytes_loaded == sum(paths[i].stat().st_size for i in (2, 5, 7))
    samples.unload([2, 5])  # arena 0 still holds sample 8 (an empty handle): kept
    assert samples.data[2, 0] == -1 and samples.data[8, 0] == 0
    samples.unload([8])  # now arena 0 holds nothing: freed
    assert samples.bytes_loaded == paths[7].stat().st_size
    with pytest.raises(EngineError, match="names no loaded arena"):
        samples.encoded(handles[:1])
    samples.unload()
    assert samples.bytes_loaded == 0 and not samples.read_errors
    with pytest.raises(InvalidArgument, match="2 images but 1 labels"):
        on.EncodedSamples(paths[:2], [0])


# --------------------------------------------------------------------------- answers

@needs_dali
@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream"])
def test_online_answers_are_the_offline_runs_answers(tiny, dataset, cache, reference_store,
                                                     tmp_path, scenario):
    dali_store = fd.build_dali_store(dataset, "fp32", cache, quiet=True)
    _, errors, _, online = online_run(reference_store, tiny.model_path, scenario,
                                      tmp_path / "online")
    assert errors == 0
    got = answers(tmp_path / "online")
    assert sorted(got) == list(range(N_IMAGES))  # every sample answered
    # The same DALI preprocessing before the run: the same tensors, so the same answers.
    assert got == offline_answers(dali_store, tiny.model_path, scenario, tmp_path / "dali")
    # The reference preprocessing: MLPerf's oracle, agreement >= 99.5 % (measured: 100 %).
    ref = offline_answers(reference_store, tiny.model_path, scenario, tmp_path / "ref")
    agreement = np.mean([got[i] == ref[i] for i in range(N_IMAGES)])
    assert agreement >= 0.995
    assert np.mean([got[i] == dataset.labels[i] for i in range(N_IMAGES)]) >= 0.99
    stats = online.stats()
    assert stats["samples"] == N_IMAGES and stats["skipped_bad"] == 0
    # The inner engine read DALI's own buffers: no copy by fastres.
    assert stats["zero_copy_batches"] == stats["batches"] and stats["copied_bytes"] == 0
    assert online.pipelines_built == int(make_config(scenario).copy_streams)
    assert stats["label"] == on.ONLINE_LABEL


@needs_dali
def test_copy_output_gives_the_same_answers_and_counts_its_copies(tiny, reference_store,
                                                                  tmp_path):
    _, errors, _, online = online_run(reference_store, tiny.model_path, "Offline",
                                      tmp_path / "copy", output="copy")
    online_run(reference_store, tiny.model_path, "Offline", tmp_path / "view")
    assert errors == 0
    assert answers(tmp_path / "copy") == answers(tmp_path / "view")
    stats = online.stats()
    assert stats["copied_bytes"] == N_IMAGES * 3 * 224 * 224 * 4
    assert stats["zero_copy_batches"] == 0


# --------------------------------------------------------------------------- bad JPEGs

@pytest.fixture
def damaged(tiny, dataset, tmp_path):
    """A copy of the first 24 images with a truncated JPEG (sample 5), an empty one (sample 13)
    and one deleted after the samples were listed (sample 20)."""
    root = tmp_path / "imagenet"
    root.mkdir()
    for rel in dataset.files[:24]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny.dataset_dir / rel, root / rel)
    paths = [root / rel for rel in dataset.files[:24]]
    paths[5].write_bytes(paths[5].read_bytes()[:700])
    paths[13].write_bytes(b"")
    samples = on.EncodedSamples(paths, dataset.labels[:24])
    paths[20].unlink()
    return samples


@needs_dali
def test_bad_jpeg_online_is_a_named_error_and_no_response_is_lost(tiny, reference_store,
                                                                  damaged, tmp_path):
    # Batches of 4: the three bad images fail at most 12 of the 24 samples.
    _, errors, last_error, _ = online_run(reference_store, tiny.model_path, "Offline", tmp_path,
                                          samples=damaged, batch_size=4)
    got = answers(tmp_path)
    assert sorted(got) == list(range(24))  # LoadGen got an answer for every sample
    failed = [i for i, a in got.items() if a == -1]
    assert errors == len(failed) and 3 <= len(failed) <= 12  # the batches holding bad images
    assert {5, 13, 20} <= set(failed)
    assert all(got[i] == damaged.labels[i] for i in got if i not in failed)
    assert last_error is not None and "PythonEngine: the callable raised DataError" in last_error
    assert any(f"val_0000{k:04d}.JPEG" in last_error for k in (6, 14, 21)), last_error
    assert "--skip-bad" in last_error


@needs_dali
def test_skip_bad_online_answers_the_bad_as_skipped_and_counts_them(tiny, reference_store,
                                                                   damaged, tmp_path):
    _, errors, _, online = online_run(reference_store, tiny.model_path, "Offline", tmp_path,
                                      samples=damaged, batch_size=4, skip_bad=True)
    got = answers(tmp_path)
    assert errors == 0 and sorted(got) == list(range(24))
    assert [i for i, a in got.items() if a == on.SKIPPED_LABEL] == [5, 13, 20]
    assert all(got[i] == damaged.labels[i] for i in got if i not in (5, 13, 20))
    stats = online.stats()
    assert stats["skipped_bad"] == 3
    names = stats["skipped_bad_files"]
    assert [Path(n.split(":")[0]).name for n in names] == [
        "ILSVRC2012_val_00000006.JPEG", "ILSVRC2012_val_00000014.JPEG",
        "ILSVRC2012_val_00000021.JPEG"]
    assert "not a decodable image" in names[0] and "0 bytes" in names[1]
    assert "cannot read image" in names[2]


# --------------------------------------------------------------------------- GPU hand-off

class FakeTensorGPU:
    """Stands in for DALI's TensorGPU: only its CUDA array interface and DLPack calls."""

    def __init__(self, shape):
        self.cai = {"shape": shape, "typestr": "<f4", "data": (0x7F0000, False), "version": 2}
        self.dlpack_streams = []

    @property
    def __cuda_array_interface__(self):
        return self.cai

    def __dlpack__(self, stream=None, **kwargs):
        self.dlpack_streams.append(stream)
        return "capsule"


class FakeTensorListGPU:
    def __init__(self, n):
        self.tensor = FakeTensorGPU((n, 3, 224, 224))
        self.copies = []

    def as_tensor(self):
        return self.tensor

    def copy_to_external(self, ptr, cuda_stream=None, non_blocking=False):
        self.copies.append((ptr.value, cuda_stream.value, non_blocking))


@needs_dali
def test_gpu_handoff_contract_with_a_stand_in_for_dali(dataset, monkeypatch):
    """The GPU path cannot run here (no GPU); this checks its wiring against the contract:
    handles looked up on the host by QSL index, DALI run on the slot's stream, the inner engine
    called with the device batch and that stream, CUDA array interface v3 carrying it."""
    samples = on.EncodedSamples([dataset.path(i) for i in range(6)], dataset.labels[:6])
    samples.load(range(6))
    seen = {}

    class FakePreprocessor:
        def run_batch_on_stream(self, encoded, stream, *, names, skip_bad):
            seen["encoded"], seen["stream"], seen["names"] = encoded, stream, names
            return fd.DeviceBatch(FakeTensorListGPU(len(encoded)), stream, [])

    def inner(batch, labels, indices, stream):
        seen["cai"], seen["inner_stream"] = batch.__cuda_array_interface__, stream
        seen["batch"] = batch

    online = on.OnlineEngine(inner, samples, device="gpu", max_batch=4)
    monkeypatch.setattr(online, "_preprocessor", lambda: FakePreprocessor())
    online(object(), object(), np.array([4, 1], np.uint64), 0xBEEF)
    assert [bytes(e) for e in seen["encoded"]] == [dataset.path(i).read_bytes() for i in (4, 1)]
    assert seen["stream"] == seen["inner_stream"] == 0xBEEF
    assert seen["names"] == [str(dataset.path(4)), str(dataset.path(1))]
    assert seen["cai"]["version"] == 3 and seen["cai"]["stream"] == 0xBEEF
    assert seen["cai"]["shape"] == (2, 3, 224, 224)
    batch = seen["batch"]
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    assert batch.__dlpack__(stream=0xBEEF) == "capsule"
    assert batch._tensor.dlpack_streams == [0xBEEF]
    batch.copy_to(0x1000)
    assert batch._list.copies == [(0x1000, 0xBEEF, True)]
    # CUDA array interface v3 forbids stream 0: the legacy default stream is 1.
    assert fd.DeviceBatch(FakeTensorListGPU(1), 0, []).__cuda_array_interface__["stream"] == 1
    assert online.stats()["samples"] == 2


@needs_dali
def test_gpu_online_needs_the_cuda_executor(dataset):
    samples = on.EncodedSamples([dataset.path(0)], dataset.labels[:1])
    config = make_config("Offline", batch_size=2, copy_streams=1)
    if not _core.build_info()["with_cuda"]:
        with pytest.raises(Unavailable, match="CUDA path"):
            on.make_online_engine(lambda *a: None, samples, config, device="gpu")
    cpu = on.OnlineEngine(lambda *a: None, samples, device="cpu")
    with pytest.raises(EngineError, match="preprocesses on the CPU"):
        cpu(np.zeros((1, 3), np.int64), np.zeros(1, np.int32), np.zeros(1, np.uint64), 5)
    gpu = on.OnlineEngine(lambda *a: None, samples, device="gpu")
    with pytest.raises(EngineError, match="needs the executor's CUDA path"):
        gpu(np.zeros((1, 3), np.int64), np.zeros(1, np.int32), np.zeros(1, np.uint64))


def test_without_dali_the_online_engine_names_the_extra(dataset, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "nvidia" or m.startswith("nvidia.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "nvidia", None)
    samples = on.EncodedSamples([dataset.path(0)], dataset.labels[:1])
    with pytest.raises(Unavailable, match=r"pip install 'fastres\[dali\]'"):
        on.OnlineEngine(lambda *a: None, samples)


def test_online_sut_takes_encoded_samples(reference_store):
    engine = _core.NullEngine(input_dtype="int64", input_shape=(3,), max_batch=4)
    with pytest.raises(InvalidArgument, match="OnlineSUT takes EncodedSamples"):
        on.OnlineSUT(engine, reference_store, scenario="Offline")


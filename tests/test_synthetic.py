"""The synthetic default: dataset layout, determinism, model interface, accuracy, caching.

Fast tests use the tiny variant on a few dozen images; the one ``slow`` test builds the real
default (1024 images, ResNet50) and re-measures its accuracy independently of the builder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fastres.data import preprocess
from fastres.data import synthetic as syn
from fastres.errors import DataError, InvalidArgument

N_SMALL = 64


def _val_map(path: Path) -> list[tuple[str, int]]:
    return [(name, int(label)) for name, label in
            (line.split() for line in path.read_text().splitlines())]


def _session(model_path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


def _predict(model_path: Path, dataset_dir: Path, fmt: str = "fp32",
             batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """ArgMax of the model on every image (reference preprocessing), and the val_map labels."""
    entries = _val_map(dataset_dir / syn.VAL_MAP_NAME)
    session = _session(model_path)
    preds = []
    for start in range(0, len(entries), batch):
        x = np.stack([preprocess.preprocess_image(dataset_dir / name, fmt)
                      for name, _ in entries[start:start + batch]]).astype(np.float32)
        preds.append(session.run(["ArgMax:0"], {"input_tensor:0": x})[0])
    return np.concatenate(preds), np.array([label for _, label in entries])


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> syn.SyntheticDefault:
    return syn.make_default(tmp_path_factory.mktemp("cache"), "tiny", n_images=N_SMALL,
                            quiet=True)


# ---------------------------------------------------------------------------------------- data


def test_dataset_layout(tiny: syn.SyntheticDefault) -> None:
    entries = _val_map(tiny.val_map)
    assert len(entries) == N_SMALL
    assert [name for name, _ in entries] == [
        f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, N_SMALL + 1)]
    assert all(0 <= label <= 999 for _, label in entries)
    # MLPerf's format exactly: '<name> <label>' with one space.
    assert re.fullmatch(r"ILSVRC2012_val_\d{8}\.JPEG \d{1,3}", tiny.val_map.read_text()
                        .splitlines()[0])
    assert all((tiny.dataset_dir / name).is_file() for name, _ in entries)
    cal = tiny.cal_list.read_text().splitlines()
    assert 1 <= len(cal) <= 100 and set(cal) <= {name for name, _ in entries}
    assert tiny.cal_list.parent == tiny.dataset_dir == tiny.val_map.parent


def test_images_vary_in_size_and_orientation(tiny: syn.SyntheticDefault) -> None:
    shapes = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2]
              for p in sorted(tiny.dataset_dir.glob("*.JPEG"))]
    shorts = [min(s) for s in shapes]
    assert min(shorts) >= 160 and max(shorts) <= 500 and len(set(shapes)) > N_SMALL // 2
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes)
    assert all(max(s) <= 2 * min(s) + 1 for s in shapes)


def test_grayscale_images_are_single_channel(tiny: syn.SyntheticDefault) -> None:
    gray = [p for p in sorted(tiny.dataset_dir.glob("*.JPEG"))
            if cv2.imread(str(p), cv2.IMREAD_UNCHANGED).ndim == 2]
    assert len(gray) == tiny.meta["n_grayscale"] >= 1
    # The reference decoder replicates them to three channels.
    assert preprocess.decode_image(gray[0]).shape[2] == 3


def test_labels_spread_and_include_the_ends() -> None:
    labels = syn.class_labels(0)
    assert len(labels) == len(set(labels.tolist())) == syn.NUM_SYNTHETIC_CLASSES
    assert labels[0] == 0 and labels[-1] == 999
    assert not np.array_equal(labels, syn.class_labels(1))


def test_dataset_is_deterministic(tmp_path: Path) -> None:
    a = syn.make_dataset(tmp_path / "a", 12, seed=3, quiet=True)
    b = syn.make_dataset(tmp_path / "b", 12, seed=3, quiet=True)
    c = syn.make_dataset(tmp_path / "c", 12, seed=4, quiet=True)
    for name in (syn.VAL_MAP_NAME, syn.CAL_LIST_NAME, "ILSVRC2012_val_00000007.JPEG"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / syn.VAL_MAP_NAME).read_text() != (c / syn.VAL_MAP_NAME).read_text()


def test_dataset_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("keep me")
    with pytest.raises(InvalidArgument, match="empty"):
        syn.make_dataset(tmp_path, 4, quiet=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_images": 0}, "n_images"),
    ({"n_images": 2.5}, "n_images"),
    ({"seed": -1}, "seed"),
    ({"variant": "resnet18"}, "resnet50, tiny"),
])
def test_bad_arguments_are_refused_before_any_work(tmp_path: Path, kwargs: dict,
                                                   match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        syn.make_default(tmp_path, **{"variant": "tiny", **kwargs}, quiet=True)
    assert not any(tmp_path.iterdir())


def test_make_model_without_val_map_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="val_map.txt"):
        syn.make_model(tmp_path, tmp_path / "m.onnx", "tiny", quiet=True)


# --------------------------------------------------------------------------------------- model


def test_model_interface(tiny: syn.SyntheticDefault) -> None:
    model = onnx.load(str(tiny.model_path))
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    assert inp.name == "input_tensor:0"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 224, 224]
    outputs = {o.name: o for o in model.graph.output}
    assert set(outputs) == {"ArgMax:0", "softmax_tensor:0"}
    assert outputs["ArgMax:0"].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert outputs["softmax_tensor:0"].type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    session = _session(tiny.model_path)
    names = sorted(tiny.dataset_dir.glob("*.JPEG"))
    for n in (1, 5):  # dynamic batch
        x = np.stack([preprocess.preprocess_image(p) for p in names[:n]])
        argmax, softmax = session.run(["ArgMax:0", "softmax_tensor:0"], {"input_tensor:0": x})
        assert argmax.dtype == np.int64 and argmax.shape == (n,)
        assert softmax.dtype == np.float32 and softmax.shape == (n, 1001)
        np.testing.assert_array_equal(argmax, softmax.argmax(axis=1))
        np.testing.assert_allclose(softmax.sum(axis=1), 1.0, rtol=1e-5)
        assert (argmax >= 1).all()  # class 0 is background, never predicted


def test_tiny_accuracy_measured_independently(tiny: syn.SyntheticDefault) -> None:
    preds, labels = _predict(tiny.model_path, tiny.dataset_dir)
    top1 = np.mean(preds - 1 == labels)
    assert top1 >= 0.99
    assert tiny.accuracy == pytest.approx(top1)
    preds_int8, _ = _predict(tiny.model_path, tiny.dataset_dir, "int8_linear")
    assert np.mean(preds_int8 == preds) >= 0.995
    assert tiny.meta["fp32_int8_linear_agreement"] >= 0.995


def test_model_is_deterministic(tiny: syn.SyntheticDefault, tmp_path: Path) -> None:
    again = syn.make_model(tiny.dataset_dir, tmp_path / "again.onnx", "tiny", seed=0,
                           quiet=True)
    assert again.read_bytes() == tiny.model_path.read_bytes()
    sidecar = json.loads((tmp_path / "again.onnx.json").read_text())
    assert sidecar["model_sha256"] == tiny.meta["model_sha256"]


# --------------------------------------------------------------------------------------- cache


def test_cache_is_reused(tiny: syn.SyntheticDefault) -> None:
    meta = tiny.model_path.parent / syn.META_NAME
    before = meta.stat().st_mtime_ns, tiny.model_path.stat().st_mtime_ns
    cache_dir = tiny.model_path.parent.parent
    again = syn.make_default(cache_dir, "tiny", n_images=N_SMALL, quiet=True)
    assert again == tiny
    assert (meta.stat().st_mtime_ns, tiny.model_path.stat().st_mtime_ns) == before
    assert tiny.model_path.parent == syn.default_dir(cache_dir, "tiny", N_SMALL, 0)
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")]  # no temp leftovers


def _corrupt_model(d: syn.SyntheticDefault) -> None:
    with open(d.model_path, "r+b") as f:
        f.seek(d.model_path.stat().st_size // 2)
        f.write(b"\x00corrupt\x00")


def _delete_image(d: syn.SyntheticDefault) -> None:
    (d.dataset_dir / "ILSVRC2012_val_00000003.JPEG").unlink()


def _interrupt_build(d: syn.SyntheticDefault) -> None:
    (d.model_path.parent / syn.META_NAME).unlink()


@pytest.mark.parametrize("damage, reason", [
    (_corrupt_model, "SHA-256"),
    (_delete_image, "missing"),
    (_interrupt_build, "meta.json"),
])
def test_damaged_cache_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  damage, reason: str) -> None:
    first = syn.make_default(tmp_path, "tiny", n_images=12, quiet=True)
    damage(first)
    with caplog.at_level(logging.WARNING, logger="fastres.data"):
        second = syn.make_default(tmp_path, "tiny", n_images=12, quiet=True)
    assert "rebuilding" in caplog.text and reason in caplog.text
    assert hashlib.sha256(Path(second.model_path).read_bytes()).hexdigest() == second.meta["model_sha256"]
    assert second.meta["model_sha256"] == first.meta["model_sha256"]  # deterministic rebuild
    assert len(list(second.dataset_dir.glob("*.JPEG"))) == 12


def test_interrupted_build_leaves_nothing_that_looks_valid(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(syn, "make_model", crash)
    with pytest.raises(KeyboardInterrupt):
        syn.make_default(tmp_path, "tiny", n_images=4, quiet=True)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    d = syn.make_default(tmp_path, "tiny", n_images=4, quiet=True)
    assert d.accuracy >= 0.99


# ---------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_full_default_reaches_99_percent(tmp_path_factory: pytest.TempPathFactory) -> None:
    d = syn.make_default(tmp_path_factory.mktemp("full"), quiet=True)
    assert d.variant == "resnet50" and d.meta["n_images"] == 1024
    model = onnx.load(str(d.model_path), load_external_data=False)
    assert sum(n.op_type == "Conv" for n in model.graph.node) == 53  # ResNet50
    preds, labels = _predict(d.model_path, d.dataset_dir)
    assert len(labels) == 1024
    top1 = np.mean(preds - 1 == labels)
    assert top1 >= 0.99
    assert d.accuracy == pytest.approx(top1)
    assert d.meta["fp32_int8_linear_agreement"] >= 0.995

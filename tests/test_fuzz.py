"""Fuzzing, bounded for CI: the val_map parser, the preprocessing and the store reader under
hypothesis. Each target runs a fixed number of examples with a per-example deadline, so a hang
or a slow path fails the test instead of stalling CI; together they take about a minute on two
cores.

The property everywhere: bad input ends in the library's own named error (DataError, with the
file in the message), never another exception, a crash or a hang; good input gives what an
independent route gives (the reference's ``cv2.imread`` steps, a recount of the lines, the
store's original contents).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastres.data.imagenet import NUM_CLASSES, parse_val_map
from fastres.data.preprocess import preprocess_image
from fastres.data.store import DATA_NAME, INDEX_NAME, build_store, open_store
from fastres.data.imagenet import ImagenetDataset
from fastres.errors import DataError

FUZZ = settings(max_examples=150, deadline=2000, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
MEANS_RGB = np.array([123.68, 116.78, 103.94], np.float32)


def reference_preprocess(path: Path) -> np.ndarray:
    """pre_process_vgg on cv2.imread, as the reference does it (an independent route)."""
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    new_h, new_w = (256, (256 * w) // h) if h <= w else ((256 * h) // w, 256)
    img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
    top, left = (new_h - 224) // 2, (new_w - 224) // 2
    return (img[top:top + 224, left:left + 224].astype(np.float32) - MEANS_RGB).transpose(2, 0, 1)


# --------------------------------------------------------------------------------------------
# val_map.txt


@FUZZ
@given(blob=st.binary(max_size=400) | st.text(max_size=300).map(lambda t: t.encode("utf-8")))
@example(blob=b"\xef")  # a lone truncated BOM once read as an empty file (found by this test)
@example(blob=b"\xef\xbb")
def test_val_map_parser_on_arbitrary_bytes(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("vm") / "val_map.txt"
    path.write_bytes(blob)
    try:
        entries = parse_val_map(path)
    except DataError as exc:
        assert "val_map" in str(exc)  # the file is named
        return
    # accepted: it must be what a recount says
    text = blob.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.split() for line in text.split("\n") if line.split()]
    assert [(rel, label) for rel, label in entries] == [(f[0], int(f[1])) for f in lines]
    assert all(0 <= label < NUM_CLASSES for _, label in entries)


# --------------------------------------------------------------------------------------------
# preprocessing


def _encoded(h: int, w: int, channels: int, ext: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


@FUZZ
@given(blob=st.binary(max_size=2000))
def test_preprocess_arbitrary_bytes_named_error_or_an_image(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("img") / "fuzz.JPEG"
    path.write_bytes(blob)
    try:
        out = preprocess_image(path)
    except DataError as exc:
        assert "fuzz.JPEG" in str(exc)
        return
    assert out.shape == (3, 224, 224) and out.dtype == np.float32  # something OpenCV reads


_JPEG = _encoded(120, 160, 3, ".jpg", 0)
_PNG = _encoded(90, 70, 1, ".png", 1)


@FUZZ
@given(base=st.sampled_from([_JPEG, _PNG]),
       cut=st.one_of(st.none(), st.integers(0, len(_JPEG))),
       flips=st.lists(st.tuples(st.integers(0, len(_PNG) - 1), st.integers(1, 255)), max_size=6),
       insert=st.binary(max_size=16))
def test_preprocess_damaged_images(tmp_path_factory, base, cut, flips, insert):
    data = bytearray(base)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    if insert:
        at = len(data) // 3
        data[at:at] = insert
    if cut is not None:
        del data[cut % (len(data) + 1):]
    path = tmp_path_factory.mktemp("img") / "damaged.JPEG"
    path.write_bytes(bytes(data))
    try:
        out = preprocess_image(path)
    except DataError as exc:
        assert "damaged.JPEG" in str(exc)
        return
    # decodable despite the damage (as the reference would decode it): the same result
    np.testing.assert_array_equal(out, reference_preprocess(path))


@settings(max_examples=60, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(h=st.integers(8, 640), w=st.integers(8, 640), channels=st.sampled_from([1, 3]),
       ext=st.sampled_from([".jpg", ".png", ".bmp"]), seed=st.integers(0, 2**16))
def test_preprocess_valid_images_of_any_size(tmp_path_factory, h, w, channels, ext, seed):
    path = tmp_path_factory.mktemp("img") / "any.JPEG"  # named .JPEG whatever it holds
    path.write_bytes(_encoded(h, w, channels, ext, seed))
    out = preprocess_image(path)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    np.testing.assert_array_equal(out, reference_preprocess(path))


# --------------------------------------------------------------------------------------------
# the store reader


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A three-image dataset and its fp32 store, to copy and damage."""
    root = tmp_path_factory.mktemp("imagenet")
    lines = []
    for i, (h, w) in enumerate([(240, 320), (300, 260), (256, 256)]):
        (root / f"{i}.JPEG").write_bytes(_encoded(h, w, 3, ".jpg", i))
        lines.append(f"{i}.JPEG {7 * i}")
    (root / "val_map.txt").write_text("\n".join(lines) + "\n")
    dataset = ImagenetDataset(root)
    cache = tmp_path_factory.mktemp("cache")
    store = build_store(dataset, "fp32", cache, workers=1, quiet=True)
    return dataset, cache, store.path, np.array(store.data), list(store.labels)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_INDEX_FIELDS = ["schema", "key", "format", "producer", "preprocess_version", "dtype",
                 "sample_shape", "count", "root", "files", "labels", "sizes", "mtimes_ns",
                 "skipped_bad", "data_file"]


@st.composite
def damage(draw):
    kind = draw(st.sampled_from(["truncate", "header", "index-bytes", "index-field",
                                 "index-drop", "delete"]))
    if kind == "truncate":
        return kind, draw(st.floats(0, 0.999))
    if kind == "header":
        return kind, draw(st.lists(st.tuples(st.integers(0, 127), st.integers(1, 255)),
                                   min_size=1, max_size=4))
    if kind == "index-bytes":
        return kind, draw(st.binary(max_size=200))
    if kind == "index-field":
        return kind, (draw(st.sampled_from(_INDEX_FIELDS)), draw(_json))
    if kind == "index-drop":
        return kind, draw(st.sampled_from(_INDEX_FIELDS))
    return kind, draw(st.sampled_from([DATA_NAME, INDEX_NAME]))


def _apply(folder: Path, kind: str, arg) -> None:
    data, index = folder / DATA_NAME, folder / INDEX_NAME
    if kind == "truncate":
        with open(data, "r+b") as f:
            f.truncate(int(arg * data.stat().st_size))
    elif kind == "header":
        blob = bytearray(data.read_bytes()[:128])
        for pos, mask in arg:
            blob[pos] ^= mask
        with open(data, "r+b") as f:
            f.write(bytes(blob))
    elif kind == "index-bytes":
        index.write_bytes(arg)
    elif kind in ("index-field", "index-drop"):
        doc = json.loads(index.read_text())
        if kind == "index-field":
            doc[arg[0]] = arg[1]
        else:
            doc.pop(arg, None)
        index.write_text(json.dumps(doc))
    else:
        (folder / arg).unlink()


@settings(max_examples=80, deadline=5000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hit=damage())
def test_damaged_store_is_detected_and_rebuilt_or_named(built, hit):
    dataset, cache, folder, data, labels = built
    pristine = folder.parent / (folder.name + ".pristine")
    if not pristine.exists():
        shutil.copytree(folder, pristine)
    shutil.rmtree(folder)
    shutil.copytree(pristine, folder)
    _apply(folder, *hit)
    # the reader: a named error, or a store whose contents are still the original ones
    try:
        opened = open_store(folder)
    except DataError as exc:
        assert str(folder) in str(exc)
    else:
        assert opened.data.shape == data.shape
    # the builder: whatever the damage, the store it hands out is right
    store = build_store(dataset, "fp32", cache, workers=1, quiet=True)
    np.testing.assert_array_equal(store.data, data)
    assert list(store.labels) == labels and store.files == dataset.files

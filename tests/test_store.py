"""The preprocessed store: built once, reused, rebuilt when stale or damaged, never half-valid."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import fastres.data.store as store_mod
from fastres.data.imagenet import ImagenetDataset
from fastres.data.preprocess import preprocess_image
from fastres.data.store import (
    DATA_NAME,
    INDEX_NAME,
    build_store,
    cache_key,
    open_store,
    store_path,
)
from fastres.errors import DataError, InvalidArgument

# Varied sizes and aspects, small enough that a whole store builds in well under a second.
SIZES = [(240, 320), (320, 240), (256, 256), (230, 410), (300, 229), (260, 270)]


def write_jpeg(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    buf.tofile(str(path))


def make_images(root: Path, sizes=SIZES, seed: int = 0) -> ImagenetDataset:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i, (h, w) in enumerate(sizes):
        img = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 1.5)
        if i == 2:  # one grayscale JPEG
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        write_jpeg(root / name, img)
        lines.append(f"{name} {(i * 101) % 1000}\n")
    (root / "val_map.txt").write_text("".join(lines))
    return ImagenetDataset(root)


@pytest.fixture
def ds(tmp_path) -> ImagenetDataset:
    return make_images(tmp_path / "imagenet")


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def expected(ds: ImagenetDataset, fmt: str) -> np.ndarray:
    return np.stack([preprocess_image(ds.path(i), fmt) for i in range(len(ds))])


def no_preprocessing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the store was preprocessed again instead of reused")
    monkeypatch.setattr(store_mod, "_preprocess_into", fail)


def dali_like(path: str, fmt: str) -> np.ndarray:
    """A stand-in for another producer: module-level so worker processes can import it."""
    return preprocess_image(path, fmt) // 2 if fmt != "fp32" else preprocess_image(path, fmt) + 1


# --------------------------------------------------------------------------- build and reuse

def test_build_with_workers_then_reuse(ds, cache, monkeypatch, capsys):
    store = build_store(ds, "fp32", cache, workers=2, quiet=True)
    assert not store.reused
    assert store.path == cache / "store" / store.path.name
    assert store.path.name.startswith("fp32-reference-") and len(store.path.name) == 31
    assert store.format == "fp32" and store.producer == "reference"
    assert len(store) == len(ds) == 6
    assert store.files == ds.files
    assert store.labels.dtype == np.int32 and store.labels.tolist() == ds.labels.tolist()
    assert store.key == cache_key(ds, "fp32")
    assert isinstance(store.data, np.memmap) and not store.data.flags.writeable
    assert store.data.shape == (6, 3, 224, 224) and store.data.dtype == np.float32
    np.testing.assert_array_equal(store.data, expected(ds, "fp32"))
    assert sorted(p.name for p in store.path.iterdir()) == [".lock", DATA_NAME, INDEX_NAME]
    assert capsys.readouterr().err == ""

    mtime = (store.path / DATA_NAME).stat().st_mtime_ns
    no_preprocessing(monkeypatch)
    again = build_store(ds, "fp32", cache, workers=2)
    assert again.reused and again.path == store.path and again.key == store.key
    assert (store.path / DATA_NAME).stat().st_mtime_ns == mtime
    assert capsys.readouterr().err == ""  # reuse is silent


def test_index_records_what_was_built(ds, cache):
    store = build_store(ds, "int8_linear", cache, workers=1, quiet=True)
    index = json.loads((store.path / INDEX_NAME).read_text())
    assert index["format"] == "int8_linear" and index["producer"] == "reference"
    assert index["files"] == ds.files and index["labels"] == ds.labels.tolist()
    assert index["key"] == store.key and index["count"] == 6
    assert index["dtype"] == "int8" and index["sample_shape"] == [3, 224, 224]
    assert index["root"] == str(ds.root.resolve())
    assert index["sizes"] == [ds.path(i).stat().st_size for i in range(6)]
    assert index["mtimes_ns"] == [ds.path(i).stat().st_mtime_ns for i in range(6)]
    assert index["preprocess_version"] == store_mod.PREPROCESS_VERSION


@pytest.mark.parametrize("fmt", ["int8_linear", "int8_chw4"])
def test_int8_stores_equal_per_image_preprocessing(ds, cache, fmt):
    store = build_store(ds, fmt, cache, workers=1, quiet=True)
    assert store.index["derived_from"] is None
    np.testing.assert_array_equal(store.data, expected(ds, fmt))


def test_int8_store_is_derived_from_a_cached_fp32_store(ds, cache, monkeypatch):
    fp32 = build_store(ds, "fp32", cache, workers=1, quiet=True)
    no_preprocessing(monkeypatch)  # conversion, not decoding
    chw4 = build_store(ds, "int8_chw4", cache, workers=1, quiet=True)
    assert chw4.index["derived_from"] == fp32.path.name
    assert chw4.data.shape == (6, 1, 224, 224, 4)
    np.testing.assert_array_equal(chw4.data, expected(ds, "int8_chw4"))


def test_sample_and_gather(ds, cache):
    store = build_store(ds, "int8_chw4", cache, workers=1, quiet=True)
    ref = expected(ds, "int8_chw4")
    np.testing.assert_array_equal(store.sample(4), ref[4])
    np.testing.assert_array_equal(store.sample(-1), ref[5])
    batch = store.gather([5, 0, 5, 2])
    assert type(batch) is np.ndarray and batch.flags.c_contiguous and batch.flags.writeable
    assert batch.shape == (4, 1, 224, 224, 4)
    np.testing.assert_array_equal(batch, ref[[5, 0, 5, 2]])
    assert store.gather(np.array([], dtype=np.int64)).shape == (0, 1, 224, 224, 4)
    with pytest.raises(IndexError, match="sample 6 is out of range for a store of 6"):
        store.sample(6)
    with pytest.raises(IndexError, match="sample 9 is out of range"):
        store.gather([1, 9])


def test_open_store(ds, cache):
    built = build_store(ds, "fp32", cache, workers=1, quiet=True)
    opened = open_store(built.path)
    assert opened.key == built.key and opened.files == built.files
    np.testing.assert_array_equal(opened.data, built.data)
    with pytest.raises(DataError, match="is not a preprocessed store"):
        open_store(cache)


def test_progress_and_summary_go_to_stderr(ds, cache, capsys):
    build_store(ds, "fp32", cache, workers=1)
    err = capsys.readouterr().err
    assert "preprocessing fp32 (reference, 1 worker)" in err
    assert "fastres: preprocessed 6 images into" in err


# --------------------------------------------------------------------------- invalidation

def test_changed_image_content_rebuilds_the_same_folder(ds, cache, capsys):
    first = build_store(ds, "fp32", cache, workers=1, quiet=True)
    before = np.array(first.data[1])
    rng = np.random.default_rng(99)
    write_jpeg(ds.path(1), rng.integers(0, 256, (400, 300, 3), dtype=np.uint8))
    second = build_store(ds, "fp32", cache, workers=1)
    assert not second.reused and second.path == first.path and second.key != first.key
    assert "is stale: 1 image(s) changed since it was built, first ILSVRC2012_val_00000002" \
        in capsys.readouterr().err
    np.testing.assert_array_equal(second.data[1], preprocess_image(ds.path(1)))
    assert not np.array_equal(second.data[1], before)


def test_changed_mtime_alone_rebuilds(ds, cache, capsys):
    first = build_store(ds, "fp32", cache, workers=1, quiet=True)
    st = ds.path(4).stat()
    os.utime(ds.path(4), ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    second = build_store(ds, "fp32", cache, workers=1)
    assert not second.reused and second.key != first.key
    assert "mtime changed: True" in capsys.readouterr().err


def test_changed_label_rebuilds(ds, cache, capsys):
    first = build_store(ds, "fp32", cache, workers=1, quiet=True)
    vm = ds.val_map.read_text().replace("ILSVRC2012_val_00000003.JPEG 202",
                                        "ILSVRC2012_val_00000003.JPEG 7")
    ds.val_map.write_text(vm)
    second = build_store(ImagenetDataset(ds.root), "fp32", cache, workers=1)
    assert second.key != first.key and second.labels[2] == 7
    assert "labels in val_map.txt changed" in capsys.readouterr().err


def test_preprocess_version_bump_rebuilds(ds, cache, capsys, monkeypatch):
    build_store(ds, "fp32", cache, workers=1, quiet=True)
    monkeypatch.setattr(store_mod, "PREPROCESS_VERSION", store_mod.PREPROCESS_VERSION + 1)
    assert not build_store(ds, "fp32", cache, workers=1).reused
    assert "preprocessing changed" in capsys.readouterr().err


def test_format_producer_count_and_root_each_get_their_own_store(ds, cache, tmp_path):
    base = build_store(ds, "fp32", cache, workers=1, quiet=True)
    other_fmt = build_store(ds, "int8_linear", cache, workers=1, quiet=True)
    other_producer = build_store(ds, "fp32", cache, workers=1, quiet=True, producer="dali",
                                 preprocess_fn=dali_like)
    fewer = build_store(ImagenetDataset(ds.root, count=3), "fp32", cache, workers=1, quiet=True)
    copy = make_images(tmp_path / "copy")  # identical images, another root
    other_root = build_store(copy, "fp32", cache, workers=1, quiet=True)
    stores = [base, other_fmt, other_producer, fewer, other_root]
    assert len({s.path for s in stores}) == 5 and len({s.key for s in stores}) == 5
    assert other_producer.path.name.startswith("fp32-dali-")
    assert other_producer.path == store_path(ds, "fp32", cache, producer="dali")
    np.testing.assert_array_equal(other_producer.data, expected(ds, "fp32") + 1)
    assert len(fewer) == 3
    assert build_store(ds, "fp32", cache, workers=1, quiet=True).reused


def test_missing_index_rebuilds(ds, cache, capsys):
    store = build_store(ds, "fp32", cache, workers=1, quiet=True)
    (store.path / INDEX_NAME).unlink()
    with pytest.raises(DataError, match=r"index\.json is missing \(an interrupted build\?\)"):
        open_store(store.path)
    again = build_store(ds, "fp32", cache, workers=1)
    assert not again.reused
    err = capsys.readouterr().err
    assert "is damaged: index.json is missing" in err and "rebuilding it" in err
    np.testing.assert_array_equal(again.data, expected(ds, "fp32"))


def test_truncated_array_rebuilds(ds, cache, capsys):
    store = build_store(ds, "fp32", cache, workers=1, quiet=True)
    data = store.path / DATA_NAME
    del store
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size - 1000)
    with pytest.raises(DataError, match="truncated or corrupt"):
        open_store(data.parent)
    again = build_store(ds, "fp32", cache, workers=1)
    assert not again.reused
    assert "data.npy is truncated or corrupt" in capsys.readouterr().err
    np.testing.assert_array_equal(again.data, expected(ds, "fp32"))


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / DATA_NAME).write_bytes(b"not an npy file at all"), "truncated or corrupt"),
    (lambda p: np.save(p / DATA_NAME, np.zeros((5, 3, 224, 224), np.float32)),
     r"holds float32\[5, 3, 224, 224\], expected float32\[6, 3, 224, 224\]"),
    (lambda p: np.save(p / DATA_NAME, np.zeros((6, 3, 224, 224), np.float64)), "holds float64"),
    (lambda p: (p / DATA_NAME).unlink(), "data.npy is missing"),
    (lambda p: (p / INDEX_NAME).write_text("{not json"), "index.json is unreadable"),
    (lambda p: (p / INDEX_NAME).write_text("[]"), "not a JSON object"),
    (lambda p: (p / INDEX_NAME).write_text(json.dumps({"schema": 999})), "store schema 999"),
], ids=["garbage-npy", "short-shape", "wrong-dtype", "no-npy", "bad-json", "json-list",
        "old-schema"])
def test_damaged_store_is_detected_and_rebuilt(ds, cache, capsys, damage, message):
    store = build_store(ds, "fp32", cache, workers=1, quiet=True)
    folder = store.path
    del store
    damage(folder)
    with pytest.raises(DataError, match=message):
        open_store(folder)
    again = build_store(ds, "fp32", cache, workers=1)
    assert not again.reused and again.path == folder
    assert "rebuilding it" in capsys.readouterr().err
    np.testing.assert_array_equal(again.data, expected(ds, "fp32"))


def test_key_mismatch_in_index_rebuilds(ds, cache, capsys):
    store = build_store(ds, "fp32", cache, workers=1, quiet=True)
    index = json.loads((store.path / INDEX_NAME).read_text())
    index["key"] = "0" * 64
    (store.path / INDEX_NAME).write_text(json.dumps(index))
    assert not build_store(ds, "fp32", cache, workers=1).reused
    assert "is stale: cache key mismatch" in capsys.readouterr().err


def test_quiet_rebuild_prints_nothing(ds, cache, capsys):
    store = build_store(ds, "fp32", cache, workers=1, quiet=True)
    (store.path / INDEX_NAME).unlink()
    build_store(ds, "fp32", cache, workers=1, quiet=True)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- failed builds

def test_interrupted_build_is_not_valid(ds, cache, monkeypatch, capsys):
    real = store_mod._preprocess_into
    calls = []

    def interrupt_second_chunk(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(store_mod, "_chunks", lambda n, w: [(0, 3), (3, n)])
    monkeypatch.setattr(store_mod, "_preprocess_into", interrupt_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        build_store(ds, "fp32", cache, workers=1, quiet=True)
    folder = store_path(ds, "fp32", cache)
    assert not (folder / INDEX_NAME).exists() and not (folder / DATA_NAME).exists()
    assert not (folder / "data.partial.npy").exists()

    monkeypatch.undo()
    store = build_store(ds, "fp32", cache, workers=1, quiet=True)
    assert not store.reused
    np.testing.assert_array_equal(store.data, expected(ds, "fp32"))


def test_crashed_build_leftovers_are_not_valid(ds, cache, capsys):
    # A killed process leaves the partial file and no index; nothing cleans up after it.
    folder = store_path(ds, "fp32", cache)
    folder.mkdir(parents=True)
    np.lib.format.open_memmap(folder / "data.partial.npy", mode="w+", dtype=np.float32,
                              shape=(6, 3, 224, 224))
    with pytest.raises(DataError, match="index.json is missing"):
        open_store(folder)
    store = build_store(ds, "fp32", cache, workers=1)
    assert not store.reused
    assert "index.json is missing (an interrupted build?)" in capsys.readouterr().err
    assert not (folder / "data.partial.npy").exists()
    np.testing.assert_array_equal(store.data, expected(ds, "fp32"))


def test_rebuild_over_a_valid_store_invalidates_it_first(ds, cache, monkeypatch):
    store = build_store(ds, "fp32", cache, workers=1, quiet=True)
    folder = store.path
    os.utime(ds.path(0), ns=(0, 10**18))  # stale now

    def boom(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(store_mod, "_preprocess_into", boom)
    with pytest.raises(KeyboardInterrupt):
        build_store(ds, "fp32", cache, workers=1, quiet=True)
    # The old, complete store must not survive looking valid under its old key.
    with pytest.raises(DataError):
        open_store(folder)


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_names_the_file_and_leaves_nothing_valid(ds, cache, workers):
    bad = ds.path(3)
    bad.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000004\.JPEG: not a decodable image"):
        build_store(ds, "fp32", cache, workers=workers, quiet=True)
    folder = store_path(ds, "fp32", cache)
    with pytest.raises(DataError):
        open_store(folder)
    assert not (folder / "data.partial.npy").exists()


def test_full_disk_is_a_clear_error_not_sigbus(ds, cache, monkeypatch):
    import errno

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(DataError, match=r"not enough disk space for the preprocessed store "
                                        r"\(3\.4 MiB\); free space or pass another --cache-dir"):
        build_store(ds, "fp32", cache, workers=1, quiet=True)
    assert not (store_path(ds, "fp32", cache) / "data.partial.npy").exists()


def test_unwritable_cache_dir(ds, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DataError, match="cannot create the preprocessed store folder"):
        build_store(ds, "fp32", blocker / "cache", workers=1, quiet=True)


def test_zero_byte_image_names_the_file(ds, cache):
    ds.path(5).write_bytes(b"")
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000006\.JPEG: image file is empty"):
        build_store(ds, "fp32", cache, workers=1, quiet=True)


def test_image_deleted_after_opening_the_dataset(ds, cache):
    ds.path(2).unlink()
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000003\.JPEG: cannot stat image"):
        build_store(ds, "fp32", cache, workers=1, quiet=True)


def test_preprocess_fn_errors_are_wrapped_with_the_file(ds, cache):
    def explode(path, fmt):
        raise RuntimeError("decoder exploded")
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000001\.JPEG: preprocessing failed: "
                                        r"RuntimeError: decoder exploded"):
        build_store(ds, "fp32", cache, workers=1, quiet=True, producer="x",
                    preprocess_fn=explode)

    def wrong_shape(path, fmt):
        return np.zeros((3, 10, 10), np.float32)
    with pytest.raises(InvalidArgument, match=r"returned float32\[3, 10, 10\], expected "
                                              r"float32\[3, 224, 224\]"):
        build_store(ds, "fp32", cache, workers=1, quiet=True, producer="x",
                    preprocess_fn=wrong_shape)


# --------------------------------------------------------------------------- skip_bad

@pytest.mark.parametrize("workers", [1, 2])
def test_skip_bad_leaves_bad_images_out_and_lists_them(ds, cache, workers, capsys):
    ds.path(1).write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    ds.path(4).write_bytes(b"")
    good = [0, 2, 3, 5]
    want = np.stack([preprocess_image(ds.path(i), "fp32") for i in good])
    store = build_store(ds, "fp32", cache, workers=workers, skip_bad=True)
    assert len(store) == 4 and store.files == [ds.files[i] for i in good]
    np.testing.assert_array_equal(store.labels, ds.labels[good])
    np.testing.assert_array_equal(store.data, want)
    assert [(s["index"], s["file"]) for s in store.skipped_bad] == [
        (1, "ILSVRC2012_val_00000002.JPEG"), (4, "ILSVRC2012_val_00000005.JPEG")]
    assert "not a decodable image" in store.skipped_bad[0]["reason"]
    err = capsys.readouterr().err
    assert "skipped 2 bad image(s) of 6 (first: " in err and "preprocessed 4 images" in err
    assert not (store.path / "data.compact.partial.npy").exists()
    # reused with skip_bad; without it, the same error a fresh build gives
    assert build_store(ds, "fp32", cache, workers=1, quiet=True, skip_bad=True).reused
    with pytest.raises(DataError, match=r"val_00000002\.JPEG: not a decodable image.*built with "
                                        r"skip_bad and leaves out 2 image"):
        build_store(ds, "fp32", cache, workers=1, quiet=True)
    # an int8 store is not derived from an fp32 store with holes, and skips the same images
    int8 = build_store(ds, "int8_linear", cache, workers=1, quiet=True, skip_bad=True)
    assert int8.index["derived_from"] is None and len(int8) == 4
    # a repaired image changes the key: rebuilt, nothing skipped any more
    write_jpeg(ds.path(1), np.full((240, 250, 3), 90, np.uint8))
    ds.path(4).write_bytes(ds.path(0).read_bytes())
    again = build_store(ds, "fp32", cache, workers=1, quiet=True)
    assert not again.reused and len(again) == 6 and again.skipped_bad == []


def test_skip_bad_with_every_image_bad(ds, cache):
    for i in range(len(ds)):
        ds.path(i).write_bytes(b"")
    with pytest.raises(DataError, match="none of the 6 images could be preprocessed"):
        build_store(ds, "fp32", cache, workers=1, quiet=True, skip_bad=True)
    assert not (store_path(ds, "fp32", cache) / DATA_NAME).exists()


class BatchedLike:
    """A batched producer (the DALI hook's shape): fills a batch, reports bad images."""

    batch_size = 4

    def __init__(self, bad_names=()):
        self.calls = []
        self.bad_names = set(bad_names)

    def __call__(self, paths, fmt, out):
        self.calls.append(len(paths))
        bad = []
        for j, p in enumerate(paths):
            if Path(p).name in self.bad_names:
                bad.append((j, f"{p}: fake decoder refused it"))
            else:
                out[j] = preprocess_image(p, fmt) + (1 if fmt == "fp32" else 0)
        return bad


def test_batched_producer_fills_the_store_in_batches(ds, cache):
    fn = BatchedLike()
    store = build_store(ds, "fp32", cache, quiet=True, producer="batched-x",
                        preprocess_batch_fn=fn, producer_info={"version": 1})
    assert fn.calls == [4, 2] and store.producer == "batched-x"
    assert store.path.name.startswith("fp32-batched-x-")
    np.testing.assert_array_equal(store.data, expected(ds, "fp32") + 1)
    assert store.index["producer_info"] == {"version": 1} and store.index["workers"] == 1
    assert build_store(ds, "fp32", cache, quiet=True, producer="batched-x",
                       preprocess_batch_fn=fn, producer_info={"version": 1}).reused
    # another producer_info (a new DALI) rebuilds the same folder
    again = build_store(ds, "fp32", cache, producer="batched-x", preprocess_batch_fn=fn,
                        producer_info={"version": 2})
    assert not again.reused and again.path == store.path


def test_batched_producer_bad_images(ds, cache):
    fn = BatchedLike({"ILSVRC2012_val_00000006.JPEG", "ILSVRC2012_val_00000003.JPEG"})
    with pytest.raises(DataError, match=r"val_00000003\.JPEG: fake decoder refused it; replace "
                                        r"the file.*skip_bad=True"):
        build_store(ds, "fp32", cache, quiet=True, producer="batched-x", preprocess_batch_fn=fn)
    store = build_store(ds, "fp32", cache, quiet=True, producer="batched-x",
                        preprocess_batch_fn=fn, skip_bad=True)
    assert [s["index"] for s in store.skipped_bad] == [2, 5] and len(store) == 4
    np.testing.assert_array_equal(store.data, expected(ds, "fp32")[[0, 1, 3, 4]] + 1)


# --------------------------------------------------------------------------- arguments

def test_argument_errors(ds, cache):
    with pytest.raises(InvalidArgument, match="unknown data format 'fp16'"):
        build_store(ds, "fp16", cache)
    with pytest.raises(InvalidArgument, match="needs its own producer name"):
        build_store(ds, "fp32", cache, preprocess_fn=dali_like)
    with pytest.raises(InvalidArgument, match="producer 'dali' needs its preprocess_fn"):
        build_store(ds, "fp32", cache, producer="dali")
    with pytest.raises(InvalidArgument, match="producer 'a/b' must be a short name"):
        build_store(ds, "fp32", cache, producer="a/b", preprocess_fn=dali_like)
    with pytest.raises(InvalidArgument, match="not both"):
        build_store(ds, "fp32", cache, producer="x", preprocess_fn=dali_like,
                    preprocess_batch_fn=BatchedLike())
    with pytest.raises(InvalidArgument, match="producer_info must be JSON-able"):
        build_store(ds, "fp32", cache, producer="x", preprocess_batch_fn=BatchedLike(),
                    producer_info={"x": object()})
    with pytest.raises(InvalidArgument, match="workers must be a positive integer, got 0"):
        build_store(ds, "fp32", cache, workers=0)
    with pytest.raises(InvalidArgument, match="cannot be sent to worker processes.*workers=1"):
        build_store(ds, "fp32", cache, workers=2, producer="x",
                    preprocess_fn=lambda p, f: preprocess_image(p, f))
    assert not (cache / "store").exists()  # validated before any work

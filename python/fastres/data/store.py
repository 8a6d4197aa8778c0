"""The preprocessed store: every image of a dataset preprocessed once into one format, kept
on disk and reused.

MLPerf leaves preprocessing out of the timed run, and both harnesses start from the same
tensors, so fastres preprocesses once per (dataset, format, producer) and memory-maps the
result. A store is a folder ``<cache_dir>/store/<fmt>-<producer>-<id16>/`` holding

- ``data.npy``: ONE contiguous ``[N, *sample_shape]`` array (not one file per image: the QSL
  loads samples with one gather, and 50,000 small files cost more to open than to read);
- ``index.json``: sample order, labels, the source files with their sizes and mtimes, the
  format, producer, preprocessing version and the cache key; with ``skip_bad`` also the images
  that could not be preprocessed and were left out (``skipped_bad``).

The folder name hashes what the store is *of* (resolved dataset root, image list, format,
producer); the cache key additionally covers labels, each image's size and mtime,
``PREPROCESS_VERSION`` and the producer's own ``producer_info`` (e.g. the DALI version), i.e.
whether its contents are still *right*. A changed image therefore rebuilds the same folder
instead of leaving a stale 30 GB copy beside a new one.

Crash safety: a build first deletes ``index.json``, writes ``data.partial.npy``, flushes it,
renames it to ``data.npy`` and only then writes ``index.json`` (temp file + rename). A folder
without an index is an interrupted build and is never used.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import multiprocessing
import os
import pickle
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, FastresError, InvalidArgument
from ..progress import Progress
from .imagenet import ImagenetDataset
from .preprocess import FORMATS, PREPROCESS_VERSION, convert, format_spec, preprocess_image

#: Bumped when the layout of a store folder or its index changes.
STORE_SCHEMA = 1
INDEX_NAME = "index.json"
DATA_NAME = "data.npy"
_PARTIAL_NAME = "data.partial.npy"
_COMPACT_NAME = "data.compact.partial.npy"
_LOCK_NAME = ".lock"
_PRODUCER_RE = re.compile(r"[A-Za-z0-9_.-]+")

#: ``preprocess_fn(path, fmt) -> ndarray`` of ``format_spec(fmt)``; it runs in worker
#: processes, so it must be picklable (a module-level function) unless ``workers=1``.
#: A bad image raises :class:`DataError` naming the file.
PreprocessFn = Callable[[str, str], np.ndarray]

#: ``preprocess_batch_fn(paths, fmt, out) -> bad``: a batched producer (DALI) that brings its
#: own threads, so it runs in the calling process, one batch at a time. It fills ``out[j]``
#: (``format_spec(fmt)``) for each ``paths[j]`` and returns ``[(j, message)]`` for the images
#: it could not preprocess (their rows are then left out or the build fails, as ``skip_bad``
#: says; the message names the file). Its ``batch_size`` attribute, if any, sets the batch.
PreprocessBatchFn = Callable[[list[str], str, np.ndarray], list[tuple[int, str]]]
_DEFAULT_BATCH = 64


class PreprocessedStore:
    """A finished store, memory-mapped read-only.

    ``data`` is an ``np.memmap`` of ``[N, *sample_shape]``; pages are read from disk on first
    touch, so opening a 30 GB store is instant and costs no RAM until samples are used.
    ``reused`` is True when :func:`build_store` found it valid in the cache.
    """

    def __init__(self, path: Path, index: dict[str, Any], data: np.memmap) -> None:
        self.path = path
        self.index = index
        self.format: str = index["format"]
        self.producer: str = index["producer"]
        self.key: str = index["key"]
        self.files: list[str] = list(index["files"])
        self.labels: np.ndarray = np.asarray(index["labels"], dtype=np.int32)
        self.data: np.memmap = data
        self.dtype: np.dtype = data.dtype
        self.sample_shape: tuple[int, ...] = tuple(data.shape[1:])
        #: Images of the dataset left out because they could not be preprocessed (built with
        #: ``skip_bad=True``): ``{"index", "file", "reason"}`` each, index into the dataset.
        self.skipped_bad: list[dict[str, Any]] = list(index.get("skipped_bad") or [])
        self.reused = True

    def __len__(self) -> int:
        return self.data.shape[0]

    def sample(self, i: int) -> np.ndarray:
        """Sample ``i`` as a read-only view into the map (copy it to modify it)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} is out of range for a store of {n} samples ({self.path})")
        return np.asarray(self.data[i])

    def gather(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The samples at ``indices`` copied into one contiguous ``[len(indices), ...]`` batch."""
        idx = np.asarray(indices, dtype=np.intp).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"sample {bad} is out of range for a store of {n} samples "
                             f"({self.path})")
        out = np.empty((idx.size, *self.sample_shape), dtype=self.dtype)
        np.take(self.data, idx, axis=0, out=out)
        return out

    def __repr__(self) -> str:
        return (f"PreprocessedStore({str(self.path)!r}, {len(self)} x {self.format} "
                f"{list(self.sample_shape)}, producer={self.producer!r})")


# --------------------------------------------------------------------------- cache identity

def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class _Plan:
    """What a store for (images, format, producer) must contain, and its key and folder name."""

    def __init__(self, root: str, files: list[str], labels: list[int], sizes: list[int],
                 mtimes_ns: list[int], fmt: str, producer: str,
                 producer_info: dict[str, Any] | None = None) -> None:
        self.root, self.files, self.labels = root, files, labels
        self.sizes, self.mtimes_ns = sizes, mtimes_ns
        self.fmt, self.producer = fmt, producer
        self.producer_info = producer_info
        self.dtype, self.sample_shape = format_spec(fmt)
        keyed: dict[str, Any] = {
            "schema": STORE_SCHEMA, "root": root, "files": files, "labels": labels,
            "sizes": sizes, "mtimes_ns": mtimes_ns, "format": fmt,
            "preprocess_version": PREPROCESS_VERSION, "producer": producer,
        }
        if producer_info is not None:  # absent for the reference: its keys stay as they were
            keyed["producer_info"] = producer_info
        self.key = _digest(keyed)
        ident = _digest({"root": root, "files": files, "format": fmt, "producer": producer})
        self.name = f"{fmt}-{producer}-{ident[:16]}"

    @classmethod
    def of(cls, dataset: ImagenetDataset, fmt: str, producer: str,
           producer_info: dict[str, Any] | None = None) -> _Plan:
        """Stat every image once; size and mtime stand in for the contents in the key."""
        root = str(Path(dataset.root).resolve())
        files = [rel for rel, _ in dataset.items]
        sizes, mtimes = [], []
        for rel in files:
            path = os.path.join(root, rel)
            try:
                st = os.stat(path)
            except OSError as exc:
                raise DataError(f"{path}: cannot stat image ({exc.strerror}); it is listed in "
                                f"{dataset.val_map} and existed when the dataset was "
                                f"opened") from None
            sizes.append(st.st_size)
            mtimes.append(st.st_mtime_ns)
        return cls(root, files, [int(x) for x in dataset.labels], sizes, mtimes, fmt, producer,
                   producer_info)

    def with_format(self, fmt: str) -> _Plan:
        return _Plan(self.root, self.files, self.labels, self.sizes, self.mtimes_ns, fmt,
                     self.producer, self.producer_info)

    def index(self, skipped: dict[int, str] | None = None, **extra: Any) -> dict[str, Any]:
        """The index of a store of this plan's images less ``skipped`` (index → reason)."""
        skipped = skipped or {}
        keep = [i for i in range(len(self.files)) if i not in skipped]
        index: dict[str, Any] = {
            "schema": STORE_SCHEMA, "key": self.key, "format": self.fmt,
            "producer": self.producer, "preprocess_version": PREPROCESS_VERSION,
            "dtype": self.dtype.name, "sample_shape": list(self.sample_shape),
            "count": len(keep), "root": self.root, "data_file": DATA_NAME,
            "files": [self.files[i] for i in keep], "labels": [self.labels[i] for i in keep],
            "sizes": [self.sizes[i] for i in keep],
            "mtimes_ns": [self.mtimes_ns[i] for i in keep],
        }
        if self.producer_info is not None:
            index["producer_info"] = self.producer_info
        if skipped:
            index["skipped_bad"] = [{"index": i, "file": self.files[i], "reason": skipped[i]}
                                    for i in sorted(skipped)]
        return {**index, **extra}

    def explain_mismatch(self, index: dict[str, Any]) -> str:
        """Why a store's index does not match this plan, in words a user can act on."""
        if index.get("preprocess_version") != PREPROCESS_VERSION:
            return (f"preprocessing changed (version {index.get('preprocess_version')} → "
                    f"{PREPROCESS_VERSION})")
        if index.get("producer_info") != self.producer_info:
            return (f"the {self.producer} preprocessing changed ({index.get('producer_info')} → "
                    f"{self.producer_info})")
        skipped = {s.get("index") for s in index.get("skipped_bad") or []}
        keep = [i for i in range(len(self.files)) if i not in skipped]
        if index.get("root") != self.root or index.get("files") != [self.files[i] for i in keep]:
            return "the dataset or its image list changed"
        labels = [self.labels[i] for i in keep]
        if index.get("labels") != labels:
            first = next(j for j, (a, b) in enumerate(zip(index["labels"], labels)) if a != b)
            return (f"labels in val_map.txt changed (first {self.files[keep[first]]}: "
                    f"{index['labels'][first]} → {labels[first]})")
        old = list(zip(index.get("sizes", []), index.get("mtimes_ns", [])))
        new = [(self.sizes[i], self.mtimes_ns[i]) for i in keep]
        changed = [j for j, (a, b) in enumerate(zip(old, new)) if tuple(a) != b]
        if changed:
            j = changed[0]
            return (f"{len(changed)} image(s) changed since it was built, first "
                    f"{self.files[keep[j]]} (size {old[j][0]} → {new[j][0]} bytes, mtime "
                    f"changed: {old[j][1] != new[j][1]})")
        if skipped:
            return "an image it left out as bad may have changed"
        return "cache key mismatch"


def cache_key(dataset: ImagenetDataset, fmt: str, producer: str = "reference") -> str:
    """The key a store of ``dataset`` in ``fmt`` by ``producer`` must carry to be reused."""
    _check_producer(producer)
    return _Plan.of(dataset, fmt, producer).key


def store_path(dataset: ImagenetDataset, fmt: str, cache_dir: str | os.PathLike[str],
               producer: str = "reference") -> Path:
    """The folder :func:`build_store` uses for this dataset, format and producer."""
    _check_producer(producer)
    return Path(cache_dir).expanduser() / "store" / _Plan.of(dataset, fmt, producer).name


# --------------------------------------------------------------------------- opening

def _damaged(folder: Path, what: str) -> DataError:
    problem = f"preprocessed store {folder} is damaged: {what}"
    exc = DataError(f"{problem}; delete the folder and build it again (build_store rebuilds "
                    f"it automatically)")
    exc.store_problem = problem  # type: ignore[attr-defined]  # build_store's rebuild notice
    return exc


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / INDEX_NAME
    try:
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
    except FileNotFoundError:
        if (folder / DATA_NAME).exists() or (folder / _PARTIAL_NAME).exists():
            raise _damaged(folder, f"{INDEX_NAME} is missing (an interrupted build?)") from None
        raise DataError(f"{folder} is not a preprocessed store (no {INDEX_NAME}); build one "
                        f"with build_store()") from None
    except (OSError, ValueError) as exc:
        raise _damaged(folder, f"{INDEX_NAME} is unreadable ({exc})") from None
    if not isinstance(index, dict):
        raise _damaged(folder, f"{INDEX_NAME} is not a JSON object")
    if index.get("schema") != STORE_SCHEMA:
        raise _damaged(folder, f"{INDEX_NAME} has store schema {index.get('schema')!r}, this "
                               f"fastres reads schema {STORE_SCHEMA}")
    required = ("key", "format", "producer", "preprocess_version", "count", "files", "labels")
    missing = [k for k in required if k not in index]
    if missing:
        raise _damaged(folder, f"{INDEX_NAME} lacks {', '.join(missing)}")
    if not isinstance(index["format"], str) or index["format"] not in FORMATS:
        raise _damaged(folder, f"{INDEX_NAME} names unknown format {index['format']!r}")
    problem = _index_problem(index)
    if problem:
        raise _damaged(folder, f"{INDEX_NAME} {problem}")
    return index


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index_problem(index: dict[str, Any]) -> str | None:
    """What is malformed in an index's fields (wrong types, lengths), or None."""
    n = index["count"]
    if not _is_int(n) or n < 0:
        return f"count {n!r} is not a sample count"
    for name, ok in (("files", lambda v: isinstance(v, str)), ("labels", _is_int),
                     ("sizes", _is_int), ("mtimes_ns", _is_int)):
        values = index.get(name, [] if name in ("sizes", "mtimes_ns") else None)
        if not isinstance(values, list) or not all(ok(v) for v in values):
            return f"{name} is not a list of {'names' if name == 'files' else 'integers'}"
        if name in ("files", "labels") and len(values) != n:
            return f"count {n!r} does not match its file and label lists"
    for name in ("key", "producer"):
        if not isinstance(index[name], str):
            return f"{name} {index[name]!r} is not a string"
    skipped = index.get("skipped_bad") or []
    if not isinstance(skipped, list) or not all(
            isinstance(e, dict) and _is_int(e.get("index")) and isinstance(e.get("file"), str)
            and isinstance(e.get("reason"), str) for e in skipped):
        return "skipped_bad is not a list of {index, file, reason}"
    return None


def _open_data(folder: Path, index: dict[str, Any]) -> np.memmap:
    path = folder / DATA_NAME
    dtype, shape = format_spec(index["format"])
    expected = (index["count"], *shape)
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise _damaged(folder, f"{DATA_NAME} is missing") from None
    except Exception as exc:  # noqa: BLE001 - a damaged header fails in many ways
        # A truncated file fails here: the header promises more bytes than the file holds.
        # A damaged header can fail anywhere in NumPy's parser (OSError, ValueError, EOFError,
        # SyntaxError, tokenize.TokenError...): all of it is a damaged store.
        raise _damaged(folder, f"{DATA_NAME} is truncated or corrupt "
                               f"({type(exc).__name__}: {exc})") from None
    if not isinstance(data, np.memmap):
        raise _damaged(folder, f"{DATA_NAME} is not a plain array")
    if data.dtype != dtype or data.shape != expected or not data.flags.c_contiguous:
        raise _damaged(folder, f"{DATA_NAME} holds {data.dtype}{list(data.shape)}, expected "
                               f"{dtype}{list(expected)} for {index['count']} "
                               f"{index['format']} samples")
    size = path.stat().st_size
    if size != data.offset + data.nbytes:
        raise _damaged(folder, f"{DATA_NAME} is {size} bytes, expected "
                               f"{data.offset + data.nbytes}")
    return data


def open_store(path: str | os.PathLike[str]) -> PreprocessedStore:
    """Open an existing store folder read-only; :class:`DataError` if it is damaged.

    It does not check that the store still matches its dataset (use :func:`build_store`
    for that); it checks that the folder is a complete, consistent store.
    """
    folder = Path(path)
    index = _read_index(folder)
    return PreprocessedStore(folder, index, _open_data(folder, index))


def _try_reuse(folder: Path, plan: _Plan) -> tuple[PreprocessedStore | None, str | None]:
    """(the store, None) if reusable; else (None, why not) or (None, None) for a fresh folder."""
    if not any((folder / n).exists() for n in (INDEX_NAME, DATA_NAME, _PARTIAL_NAME)):
        return None, None
    try:
        store = open_store(folder)
    except DataError as exc:
        return None, getattr(exc, "store_problem", str(exc))
    if store.key != plan.key:
        return None, f"preprocessed store {folder} is stale: {plan.explain_mismatch(store.index)}"
    # The key matched; the index must also say what the key says (a damaged index with the
    # right key would otherwise hand out, e.g., wrong labels).
    expected = plan.index({e["index"]: e["reason"] for e in store.skipped_bad})
    differ = [f for f in _KEYED_INDEX_FIELDS if store.index.get(f) != expected.get(f)]
    if differ:
        return None, (f"preprocessed store {folder} is damaged: {INDEX_NAME} disagrees with "
                      f"its cache key in {', '.join(differ)}")
    return store, None


#: The index fields that the cache key determines: a reused store's must equal the plan's.
_KEYED_INDEX_FIELDS = ("schema", "format", "producer", "preprocess_version", "dtype",
                       "sample_shape", "count", "root", "files", "labels", "sizes", "mtimes_ns",
                       "producer_info", "skipped_bad")


# --------------------------------------------------------------------------- building

def _worker_init() -> None:
    # Each worker owns one core; OpenCV's own thread pool would oversubscribe them.
    import cv2
    cv2.setNumThreads(1)


def _preprocess_into(out: np.ndarray, root: str, rels: list[str], fmt: str,
                     preprocess_fn: PreprocessFn | None,
                     skip_bad: bool = False) -> list[tuple[int, str]]:
    """Preprocess ``rels`` into ``out[0:len(rels)]``, naming the image in any failure.

    With ``skip_bad`` an image whose preprocessing raises :class:`DataError` (not decodable,
    empty) is returned as ``(j, message)`` with its row zeroed instead of failing the build.
    """
    fn = preprocess_fn if preprocess_fn is not None else preprocess_image
    dtype, shape = format_spec(fmt)
    bad: list[tuple[int, str]] = []
    for j, rel in enumerate(rels):
        path = os.path.join(root, rel)
        try:
            arr = fn(path, fmt)
        except DataError as exc:
            if not skip_bad:
                raise
            bad.append((j, str(exc)))
            out[j] = 0
            continue
        except Exception as exc:  # noqa: BLE001 - any failure must name the image
            raise DataError(f"{path}: preprocessing failed: {type(exc).__name__}: {exc}; "
                            "replace the file or remove it from val_map.txt") from None
        if getattr(arr, "shape", None) != shape or getattr(arr, "dtype", None) != dtype:
            raise InvalidArgument(
                f"{path}: preprocess_fn returned {getattr(arr, 'dtype', type(arr).__name__)}"
                f"{list(getattr(arr, 'shape', []))}, expected {dtype}{list(shape)} for format "
                f"{fmt!r}")
        out[j] = arr
    return bad


def _worker_chunk(partial: str, start: int, stop: int, root: str, rels: list[str], fmt: str,
                  preprocess_fn: PreprocessFn | None,
                  skip_bad: bool = False) -> list[tuple[int, str]]:
    """Runs in a worker: writes its chunk straight into the shared array file.

    Returning the arrays instead would push every sample (600 KB in fp32) through a pipe and
    a pickle into the parent, which then competes with the workers for the cores; measured on
    2 cores that made 2 workers slower than 1. Writing through the page cache costs nothing
    extra, and the parent still flushes the whole file once before the index is written.
    """
    data = np.load(partial, mmap_mode="r+", allow_pickle=False)
    try:
        bad = _preprocess_into(data[start:stop], root, rels, fmt, preprocess_fn, skip_bad)
    finally:
        del data
    return [(start + j, msg) for j, msg in bad]


def _chunks(n: int, workers: int) -> list[tuple[int, int]]:
    # ~8 chunks per worker balances uneven image sizes; at most 64 images a chunk keeps the
    # progress display moving and the work lost to a failure small.
    size = max(1, min(64, -(-n // (workers * 8))))
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _mp_context() -> multiprocessing.context.BaseContext:
    # Not fork: the caller may already run threads (ONNX Runtime, the executor), and forking a
    # threaded process can deadlock the child.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _fill_parallel(out: np.memmap, partial: Path, plan: _Plan, workers: int,
                   preprocess_fn: PreprocessFn | None, progress: Progress,
                   skip_bad: bool = False) -> dict[int, str]:
    """Fill ``out`` from per-image preprocessing; returns the skipped images (index → why)."""
    chunks = _chunks(len(plan.files), workers)
    skipped: dict[int, str] = {}
    if workers == 1 or len(chunks) == 1:
        for s, e in chunks:
            bad = _preprocess_into(out[s:e], plan.root, plan.files[s:e], plan.fmt,
                                   preprocess_fn, skip_bad)
            skipped.update((s + j, msg) for j, msg in bad)
            progress.update(e - s)
        return skipped
    workers = min(workers, len(chunks))
    todo = iter(chunks)
    pending: dict[Future[list[tuple[int, str]]], tuple[int, int]] = {}
    pool = ProcessPoolExecutor(workers, mp_context=_mp_context(), initializer=_worker_init)
    try:
        def submit_next() -> None:
            chunk = next(todo, None)
            if chunk is not None:
                s, e = chunk
                pending[pool.submit(_worker_chunk, str(partial), s, e, plan.root,
                                    plan.files[s:e], plan.fmt, preprocess_fn,
                                    skip_bad)] = chunk

        # A bounded window rather than submitting everything: the first failure stops the
        # build after at most 2*workers more chunks instead of after the whole dataset.
        for _ in range(2 * workers):
            submit_next()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                s, e = pending.pop(fut)
                try:
                    skipped.update(fut.result())
                except BrokenProcessPool as exc:
                    raise FastresError(
                        f"a preprocessing worker died ({exc}). Workers import the main "
                        f"module: a script calling build_store needs "
                        f"`if __name__ == '__main__':`; otherwise it may have run out of "
                        f"memory: retry with fewer workers") from None
                progress.update(e - s)
                submit_next()
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    return skipped


def _fill_batched(out: np.memmap, plan: _Plan, batch_fn: PreprocessBatchFn,
                  progress: Progress, skip_bad: bool) -> dict[int, str]:
    """Fill ``out`` batch by batch from a batched producer; returns the skipped images."""
    n = len(plan.files)
    size = getattr(batch_fn, "batch_size", None) or _DEFAULT_BATCH
    skipped: dict[int, str] = {}
    for s in range(0, n, size):
        e = min(s + size, n)
        paths = [os.path.join(plan.root, rel) for rel in plan.files[s:e]]
        bad = batch_fn(paths, plan.fmt, out[s:e])
        for j, msg in bad:
            if not 0 <= j < e - s:
                raise InvalidArgument(f"preprocess_batch_fn reported bad image {j} for a batch "
                                      f"of {e - s}")
            if not skip_bad:
                more = f" ({len(bad) - 1} more bad in the same batch)" if len(bad) > 1 else ""
                raise DataError(f"{msg}{more}; replace the file or remove it from val_map.txt, "
                                f"or pass skip_bad=True (--skip-bad) to skip bad images")
            skipped[s + j] = msg
        progress.update(e - s)
    return skipped


def _compact(out: np.memmap, folder: Path, plan: _Plan, skipped: dict[int, str]) -> Path:
    """Write the rows of ``out`` not in ``skipped`` to a new array file; returns its path."""
    keep = [i for i in range(len(plan.files)) if i not in skipped]
    path = folder / _COMPACT_NAME
    dst = np.lib.format.open_memmap(path, mode="w+", dtype=plan.dtype,
                                    shape=(len(keep), *plan.sample_shape))
    step = 256
    for s in range(0, len(keep), step):
        dst[s:s + step] = out[keep[s:s + step]]
    dst.flush()
    del dst
    return path


def _fill_derived(out: np.ndarray, source: PreprocessedStore, fmt: str,
                  progress: Progress) -> None:
    step = 256
    for s in range(0, len(source), step):
        e = min(s + step, len(source))
        block = source.data[s:e]
        for j in range(e - s):
            out[s + j] = convert(block[j], fmt)
        progress.update(e - s)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _human(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _reserve(path: Path, size: int) -> None:
    """Allocate the array file's blocks now: a sparse file that meets a full disk while being
    written through a memory map kills the process with SIGBUS instead of raising."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DataError(f"{path.parent}: not enough disk space for the preprocessed store "
                            f"({_human(size)}); free space or pass another "
                            f"--cache-dir") from None
        # EINVAL/EOPNOTSUPP: the filesystem cannot preallocate; carry on without it.
    finally:
        os.close(fd)


def _write_index(folder: Path, index: dict[str, Any]) -> None:
    tmp = folder / f"{INDEX_NAME}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(index, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / INDEX_NAME)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync(folder)


def _build(folder: Path, plan: _Plan, *, workers: int, quiet: bool,
           preprocess_fn: PreprocessFn | None, derive_from: PreprocessedStore | None,
           preprocess_batch_fn: PreprocessBatchFn | None = None,
           skip_bad: bool = False) -> tuple[float, dict[int, str]]:
    # Invalidate first: from here until the new index lands, the folder must not look valid.
    for name in (INDEX_NAME, DATA_NAME, _PARTIAL_NAME, _COMPACT_NAME):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    partial = folder / _PARTIAL_NAME
    skipped: dict[int, str] = {}
    n = len(plan.files)
    start = time.perf_counter()
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=plan.dtype,
                                    shape=(n, *plan.sample_shape))
    try:
        _reserve(partial, out.offset + out.nbytes)
        if derive_from is not None:
            how = f"from {derive_from.path.name}"
        elif preprocess_batch_fn is not None:
            how = "batched"
        else:
            how = f"{workers} worker{'s' if workers != 1 else ''}"
        with Progress(n, f"preprocessing {plan.fmt} ({plan.producer}, {how})", quiet=quiet,
                      unit="img") as progress:
            if derive_from is not None:
                _fill_derived(out, derive_from, plan.fmt, progress)
            elif preprocess_batch_fn is not None:
                skipped = _fill_batched(out, plan, preprocess_batch_fn, progress, skip_bad)
            else:
                skipped = _fill_parallel(out, partial, plan, workers, preprocess_fn, progress,
                                         skip_bad)
        if len(skipped) == n:
            first = skipped[min(skipped)]
            raise DataError(f"none of the {n} images could be preprocessed (first: {first})")
        out.flush()
        if skipped:
            compacted = _compact(out, folder, plan, skipped)
            del out
            os.replace(compacted, partial)
        else:
            del out
        _fsync(partial)
        os.replace(partial, folder / DATA_NAME)
    except BaseException:
        with contextlib.suppress(NameError):
            del out
        for name in (_PARTIAL_NAME, _COMPACT_NAME):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        raise
    seconds = time.perf_counter() - start
    _write_index(folder, plan.index(
        skipped,
        derived_from=derive_from.path.name if derive_from is not None else None,
        build_seconds=round(seconds, 3),
        workers=1 if preprocess_batch_fn is not None else workers, created=time.time()))
    return seconds, skipped


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise builders of one store (two harnesses started at once must not both write)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock, builds are still crash-safe
        yield
        return
    with open(folder / _LOCK_NAME, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _check_producer(producer: str) -> None:
    if not isinstance(producer, str) or not _PRODUCER_RE.fullmatch(producer):
        raise InvalidArgument(f"producer {producer!r} must be a short name of letters, digits, "
                              f"'_', '.' or '-' (e.g. 'reference', 'dali-cpu')")


def _default_workers() -> int:
    # The affinity mask, not os.cpu_count(): in a container or under taskset the process may
    # see 64 cores but be allowed 2.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def build_store(dataset: ImagenetDataset, fmt: str, cache_dir: str | os.PathLike[str], *,
                workers: int | None = None, quiet: bool = False, producer: str = "reference",
                preprocess_fn: PreprocessFn | None = None,
                preprocess_batch_fn: PreprocessBatchFn | None = None,
                producer_info: dict[str, Any] | None = None,
                skip_bad: bool = False) -> PreprocessedStore:
    """Return the store of ``dataset`` in ``fmt``, preprocessing only if no valid one is cached.

    A stale or damaged store in the cache is rebuilt, saying why on stderr unless ``quiet``.
    Images are preprocessed in ``workers`` processes (default: the usable cores) in chunks
    that each worker writes straight into the memory-mapped array file, so neither the parent
    nor the workers hold more than a chunk in RAM.
    With ``producer="reference"`` an ``int8_*`` store is converted from the cached ``fp32``
    store of the same images when one exists, which gives identical bytes without decoding.

    Other producers pass either ``preprocess_fn(path, fmt)`` (per image, in the worker
    processes; picklable when ``workers > 1``) or ``preprocess_batch_fn(paths, fmt, out)``
    (batched, in this process, e.g. DALI, which brings its own threads; ``workers`` is then
    unused), and may pass ``producer_info``: JSON-able facts about the producer (its version,
    its settings) that the cache key covers, so a change rebuilds the store.

    A bad image (not decodable, empty) fails the build with a :class:`DataError` naming the
    file. With ``skip_bad=True`` it is left out instead: the store holds the other images in
    order, and ``store.skipped_bad`` lists what was left out and why. A store built that way
    with images left out is reused only with ``skip_bad=True``; without it, the first skipped
    image is the same error as a fresh build would give.
    """
    _check_producer(producer)
    format_spec(fmt)  # an unknown format fails before any work
    if preprocess_fn is preprocess_image:
        preprocess_fn = None
    custom = preprocess_fn is not None or preprocess_batch_fn is not None
    if preprocess_fn is not None and preprocess_batch_fn is not None:
        raise InvalidArgument("pass preprocess_fn or preprocess_batch_fn, not both")
    if producer == "reference" and custom:
        raise InvalidArgument("a custom preprocess_fn needs its own producer name (e.g. "
                              "producer='dali'), or it would be cached as the reference's output")
    if producer != "reference" and not custom:
        raise InvalidArgument(f"producer {producer!r} needs its preprocess_fn (or "
                              f"preprocess_batch_fn); only 'reference' has a built-in one")
    if producer_info is not None:
        try:
            json.dumps(producer_info, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"producer_info must be JSON-able: {exc}") from None
    if workers is None:
        workers = _default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgument(f"workers must be a positive integer, got {workers!r}")
    if workers > 1 and preprocess_fn is not None:
        try:
            pickle.dumps(preprocess_fn)
        except Exception as exc:  # noqa: BLE001 - pickling raises many types
            raise InvalidArgument(f"preprocess_fn {preprocess_fn!r} cannot be sent to worker "
                                  f"processes ({exc}); make it a module-level function or pass "
                                  f"workers=1") from None

    plan = _Plan.of(dataset, fmt, producer, producer_info)
    root = Path(cache_dir).expanduser() / "store"
    folder = root / plan.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the preprocessed store folder {folder}: "
                        f"{exc.strerror or exc}; pass a writable --cache-dir") from None
    with _locked(folder):
        store, why = _try_reuse(folder, plan)
        if store is not None:
            if store.skipped_bad and not skip_bad:
                first = store.skipped_bad[0]
                raise DataError(f"{first['reason']} (the cached store {folder} was built "
                                f"with skip_bad and leaves out {len(store.skipped_bad)} "
                                f"image(s))")
            return store
        if why is not None and not quiet:
            print(f"fastres: {why}; rebuilding it", file=sys.stderr)

        derive_from = None
        if fmt != "fp32" and producer == "reference":
            fp32_plan = plan.with_format("fp32")
            derive_from, _ = _try_reuse(root / fp32_plan.name, fp32_plan)
            if derive_from is not None and derive_from.skipped_bad:
                derive_from = None  # its rows no longer line up with the dataset's

        seconds, skipped = _build(folder, plan, workers=workers, quiet=quiet,
                                  preprocess_fn=preprocess_fn, derive_from=derive_from,
                                  preprocess_batch_fn=preprocess_batch_fn, skip_bad=skip_bad)
        store = open_store(folder)
    store.reused = False
    if not quiet:
        if skipped:
            first = skipped[min(skipped)]
            print(f"fastres: skipped {len(skipped)} bad image(s) of {len(plan.files)} "
                  f"(first: {first})", file=sys.stderr)
        print(f"fastres: preprocessed {len(store)} images into {folder} in {seconds:.1f}s "
              f"({len(store) / max(seconds, 1e-9):,.0f} images/s)", file=sys.stderr)
    return store


__all__ = [
    "PreprocessedStore",
    "build_store",
    "open_store",
    "cache_key",
    "store_path",
    "STORE_SCHEMA",
]

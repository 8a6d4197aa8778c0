"""The preprocessed store: every image of a dataset preprocessed once into one format, kept
on disk and reused.

MLPerf leaves preprocessing out of the timed run, and both harnesses start from the same
tensors, so fastres preprocesses once per (dataset, format, producer) and memory-maps the
result. A store is a folder ``<cache_dir>/store/<fmt>-<producer>-<id16>/`` holding

- ``data.npy``: ONE contiguous ``[N, *sample_shape]`` array (not one file per image: the QSL
  loads samples with one gather, and 50,000 small files cost more to open than to read);
- ``index.json``: sample order, labels, the source files with their sizes and mtimes, the
  format, producer, preprocessing version and the cache key.

The folder name hashes what the store is *of* (resolved dataset root, image list, format,
producer); the cache key additionally covers labels, each image's size and mtime and
``PREPROCESS_VERSION``, i.e. whether its contents are still *right*. A changed image therefore
rebuilds the same folder instead of leaving a stale 30 GB copy beside a new one.

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
_LOCK_NAME = ".lock"
_PRODUCER_RE = re.compile(r"[A-Za-z0-9_.]+")

#: ``preprocess_fn(path, fmt) -> ndarray`` of ``format_spec(fmt)``; it runs in worker
#: processes, so it must be picklable (a module-level function) unless ``workers=1``.
PreprocessFn = Callable[[str, str], np.ndarray]


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
                 mtimes_ns: list[int], fmt: str, producer: str) -> None:
        self.root, self.files, self.labels = root, files, labels
        self.sizes, self.mtimes_ns = sizes, mtimes_ns
        self.fmt, self.producer = fmt, producer
        self.dtype, self.sample_shape = format_spec(fmt)
        self.key = _digest({
            "schema": STORE_SCHEMA, "root": root, "files": files, "labels": labels,
            "sizes": sizes, "mtimes_ns": mtimes_ns, "format": fmt,
            "preprocess_version": PREPROCESS_VERSION, "producer": producer,
        })
        ident = _digest({"root": root, "files": files, "format": fmt, "producer": producer})
        self.name = f"{fmt}-{producer}-{ident[:16]}"

    @classmethod
    def of(cls, dataset: ImagenetDataset, fmt: str, producer: str) -> _Plan:
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
        return cls(root, files, [int(x) for x in dataset.labels], sizes, mtimes, fmt, producer)

    def with_format(self, fmt: str) -> _Plan:
        return _Plan(self.root, self.files, self.labels, self.sizes, self.mtimes_ns, fmt,
                     self.producer)

    def index(self, **extra: Any) -> dict[str, Any]:
        return {
            "schema": STORE_SCHEMA, "key": self.key, "format": self.fmt,
            "producer": self.producer, "preprocess_version": PREPROCESS_VERSION,
            "dtype": self.dtype.name, "sample_shape": list(self.sample_shape),
            "count": len(self.files), "root": self.root, "data_file": DATA_NAME,
            "files": self.files, "labels": self.labels, "sizes": self.sizes,
            "mtimes_ns": self.mtimes_ns, **extra,
        }

    def explain_mismatch(self, index: dict[str, Any]) -> str:
        """Why a store's index does not match this plan, in words a user can act on."""
        if index.get("preprocess_version") != PREPROCESS_VERSION:
            return (f"preprocessing changed (version {index.get('preprocess_version')} → "
                    f"{PREPROCESS_VERSION})")
        if index.get("root") != self.root or index.get("files") != self.files:
            return "the dataset or its image list changed"
        if index.get("labels") != self.labels:
            first = next(i for i, (a, b) in enumerate(zip(index["labels"], self.labels)) if a != b)
            return (f"labels in val_map.txt changed (first {self.files[first]}: "
                    f"{index['labels'][first]} → {self.labels[first]})")
        old = list(zip(index.get("sizes", []), index.get("mtimes_ns", [])))
        new = list(zip(self.sizes, self.mtimes_ns))
        changed = [i for i, (a, b) in enumerate(zip(old, new)) if tuple(a) != b]
        if changed:
            i = changed[0]
            return (f"{len(changed)} image(s) changed since it was built, first {self.files[i]} "
                    f"(size {old[i][0]} → {new[i][0]} bytes, mtime changed: "
                    f"{old[i][1] != new[i][1]})")
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
    if index["format"] not in FORMATS:
        raise _damaged(folder, f"{INDEX_NAME} names unknown format {index['format']!r}")
    n = index["count"]
    if not (isinstance(n, int) and len(index["files"]) == n and len(index["labels"]) == n):
        raise _damaged(folder, f"{INDEX_NAME} count {n!r} does not match its file and label lists")
    return index


def _open_data(folder: Path, index: dict[str, Any]) -> np.memmap:
    path = folder / DATA_NAME
    dtype, shape = format_spec(index["format"])
    expected = (index["count"], *shape)
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise _damaged(folder, f"{DATA_NAME} is missing") from None
    except (OSError, ValueError, EOFError) as exc:
        # A truncated file fails here: the header promises more bytes than the file holds.
        raise _damaged(folder, f"{DATA_NAME} is truncated or corrupt ({exc})") from None
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
    return store, None


# --------------------------------------------------------------------------- building

def _worker_init() -> None:
    # Each worker owns one core; OpenCV's own thread pool would oversubscribe them.
    import cv2
    cv2.setNumThreads(1)


def _preprocess_into(out: np.ndarray, root: str, rels: list[str], fmt: str,
                     preprocess_fn: PreprocessFn | None) -> None:
    """Preprocess ``rels`` into ``out[0:len(rels)]``, naming the image in any failure."""
    fn = preprocess_fn if preprocess_fn is not None else preprocess_image
    dtype, shape = format_spec(fmt)
    for j, rel in enumerate(rels):
        path = os.path.join(root, rel)
        try:
            arr = fn(path, fmt)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure must name the image
            raise DataError(f"{path}: preprocessing failed: {type(exc).__name__}: {exc}; "
                            "replace the file or remove it from val_map.txt") from None
        if getattr(arr, "shape", None) != shape or getattr(arr, "dtype", None) != dtype:
            raise InvalidArgument(
                f"{path}: preprocess_fn returned {getattr(arr, 'dtype', type(arr).__name__)}"
                f"{list(getattr(arr, 'shape', []))}, expected {dtype}{list(shape)} for format "
                f"{fmt!r}")
        out[j] = arr


def _worker_chunk(partial: str, start: int, stop: int, root: str, rels: list[str], fmt: str,
                  preprocess_fn: PreprocessFn | None) -> int:
    """Runs in a worker: writes its chunk straight into the shared array file.

    Returning the arrays instead would push every sample (600 KB in fp32) through a pipe and
    a pickle into the parent, which then competes with the workers for the cores; measured on
    2 cores that made 2 workers slower than 1. Writing through the page cache costs nothing
    extra, and the parent still flushes the whole file once before the index is written.
    """
    data = np.load(partial, mmap_mode="r+", allow_pickle=False)
    try:
        _preprocess_into(data[start:stop], root, rels, fmt, preprocess_fn)
    finally:
        del data
    return stop - start


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
                   preprocess_fn: PreprocessFn | None, progress: Progress) -> None:
    chunks = _chunks(len(plan.files), workers)
    if workers == 1 or len(chunks) == 1:
        for s, e in chunks:
            _preprocess_into(out[s:e], plan.root, plan.files[s:e], plan.fmt, preprocess_fn)
            progress.update(e - s)
        return
    workers = min(workers, len(chunks))
    todo = iter(chunks)
    pending: dict[Future[int], tuple[int, int]] = {}
    pool = ProcessPoolExecutor(workers, mp_context=_mp_context(), initializer=_worker_init)
    try:
        def submit_next() -> None:
            chunk = next(todo, None)
            if chunk is not None:
                s, e = chunk
                pending[pool.submit(_worker_chunk, str(partial), s, e, plan.root,
                                    plan.files[s:e], plan.fmt, preprocess_fn)] = chunk

        # A bounded window rather than submitting everything: the first failure stops the
        # build after at most 2*workers more chunks instead of after the whole dataset.
        for _ in range(2 * workers):
            submit_next()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                s, e = pending.pop(fut)
                try:
                    fut.result()
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
           preprocess_fn: PreprocessFn | None, derive_from: PreprocessedStore | None) -> float:
    # Invalidate first: from here until the new index lands, the folder must not look valid.
    for name in (INDEX_NAME, DATA_NAME, _PARTIAL_NAME):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    partial = folder / _PARTIAL_NAME
    n = len(plan.files)
    start = time.perf_counter()
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=plan.dtype,
                                    shape=(n, *plan.sample_shape))
    try:
        _reserve(partial, out.offset + out.nbytes)
        how = (f"from {derive_from.path.name}" if derive_from is not None
               else f"{workers} worker{'s' if workers != 1 else ''}")
        with Progress(n, f"preprocessing {plan.fmt} ({plan.producer}, {how})", quiet=quiet,
                      unit="img") as progress:
            if derive_from is not None:
                _fill_derived(out, derive_from, plan.fmt, progress)
            else:
                _fill_parallel(out, partial, plan, workers, preprocess_fn, progress)
        out.flush()
        del out
        _fsync(partial)
        os.replace(partial, folder / DATA_NAME)
    except BaseException:
        with contextlib.suppress(NameError):
            del out
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    seconds = time.perf_counter() - start
    _write_index(folder, plan.index(
        derived_from=derive_from.path.name if derive_from is not None else None,
        build_seconds=round(seconds, 3), workers=workers, created=time.time()))
    return seconds


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
                              f"'_' or '.' (e.g. 'reference', 'dali')")


def _default_workers() -> int:
    # The affinity mask, not os.cpu_count(): in a container or under taskset the process may
    # see 64 cores but be allowed 2.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def build_store(dataset: ImagenetDataset, fmt: str, cache_dir: str | os.PathLike[str], *,
                workers: int | None = None, quiet: bool = False, producer: str = "reference",
                preprocess_fn: PreprocessFn | None = None) -> PreprocessedStore:
    """Return the store of ``dataset`` in ``fmt``, preprocessing only if no valid one is cached.

    A stale or damaged store in the cache is rebuilt, saying why on stderr unless ``quiet``.
    Images are preprocessed in ``workers`` processes (default: the usable cores) in chunks
    that each worker writes straight into the memory-mapped array file, so neither the parent
    nor the workers hold more than a chunk in RAM.
    With ``producer="reference"`` an ``int8_*`` store is converted from the cached ``fp32``
    store of the same images when one exists, which gives identical bytes without decoding.
    Other producers (``"dali"``) pass their ``preprocess_fn(path, fmt)``; it must be picklable
    when ``workers > 1``.
    """
    _check_producer(producer)
    format_spec(fmt)  # an unknown format fails before any work
    if preprocess_fn is preprocess_image:
        preprocess_fn = None
    if producer == "reference" and preprocess_fn is not None:
        raise InvalidArgument("a custom preprocess_fn needs its own producer name (e.g. "
                              "producer='dali'), or it would be cached as the reference's output")
    if producer != "reference" and preprocess_fn is None:
        raise InvalidArgument(f"producer {producer!r} needs its preprocess_fn; only "
                              f"'reference' has a built-in one")
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

    plan = _Plan.of(dataset, fmt, producer)
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
            return store
        if why is not None and not quiet:
            print(f"fastres: {why}; rebuilding it", file=sys.stderr)

        derive_from = None
        if fmt != "fp32" and producer == "reference":
            fp32_plan = plan.with_format("fp32")
            derive_from, _ = _try_reuse(root / fp32_plan.name, fp32_plan)

        seconds = _build(folder, plan, workers=workers, quiet=quiet,
                         preprocess_fn=preprocess_fn, derive_from=derive_from)
        store = open_store(folder)
    store.reused = False
    if not quiet:
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

"""The native executor through its Python API: exactly-once completion, answers that travel
with their samples, deterministic batching, timeouts, stop, engine/sink failures, knobs."""

from __future__ import annotations

import gc
import threading
import time
from collections import Counter

import numpy as np
import pytest

import fastres
from fastres import errors


class Recorder:
    """on_complete that records every batch; thread-safe; wait() instead of sleeping."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.batches: list[tuple[np.ndarray, np.ndarray, str | None]] = []
        self.completed = 0

    def __call__(self, ids: np.ndarray, labels: np.ndarray, error: str | None) -> None:
        assert ids.dtype == np.uint64 and labels.dtype == np.int32 and len(ids) == len(labels)
        with self.lock:
            self.batches.append((ids.copy(), labels.copy(), error))
            self.completed += len(ids)
            self.lock.notify_all()

    def wait(self, n: int, timeout: float = 10.0) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.completed >= n, timeout)

    def by_id(self) -> dict[int, tuple[int, str | None]]:
        counts = Counter(int(i) for ids, _, _ in self.batches for i in ids)
        assert all(c == 1 for c in counts.values()), {k: c for k, c in counts.items() if c != 1}
        return {int(i): (int(l), err) for ids, labels, err in self.batches for i, l in zip(ids, labels)}

    @property
    def sizes(self) -> list[int]:
        return [len(ids) for ids, _, _ in self.batches]


def index_library(n: int, words: int = 4) -> fastres.SampleLibrary:
    """Samples [0, n) as int32 rows {i, i+1, ...}."""
    store = (np.arange(n, dtype=np.int32)[:, None] + np.arange(words, dtype=np.int32)).copy()
    lib = fastres.SampleLibrary(store.shape[1] * 4)
    lib.load(np.arange(n), store)
    return lib


def echo_engine(**kw) -> fastres.NullEngine:
    return fastres.NullEngine(input_dtype="int32", input_shape=(4,), max_batch=kw.pop("max_batch", 256), answer="index")


def config(**kw) -> fastres.ExecutorConfig:
    kw.setdefault("copy_streams", 2)
    return fastres.ExecutorConfig(**kw)


def submit_from_threads(ex: fastres.Executor, threads: int, per_thread: int, max_query: int, n_indices: int):
    sent: dict[int, int] = {}
    lock = threading.Lock()

    def run(t: int) -> None:
        rng = np.random.default_rng(100 + t)
        done = 0
        while done < per_thread:
            n = min(int(rng.integers(1, max_query + 1)), per_thread - done)
            ids = (np.uint64(t + 1) << np.uint64(32)) + np.arange(done, done + n, dtype=np.uint64)
            idx = rng.integers(0, n_indices, size=n)  # int64: checked for negatives, converted
            # Alternate NumPy arrays and plain lists.
            ex.submit(ids if t % 2 == 0 else ids.tolist(), idx if t % 2 == 0 else idx.tolist())
            with lock:
                sent.update(zip(ids.tolist(), idx.tolist()))
            done += n

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return sent


def test_exactly_once_from_several_python_threads():
    rec = Recorder()
    ex = fastres.Executor(echo_engine(), index_library(300), config(batch_size=16, complete_threads=2, batch_timeout_us=300), rec)
    sent = submit_from_threads(ex, threads=4, per_thread=1500, max_query=40, n_indices=300)
    ex.flush()
    got = rec.by_id()
    assert got.keys() == sent.keys()
    assert all(got[i] == (sent[i], None) for i in sent)
    stats = ex.stats()
    assert stats.submitted == stats.completed == len(sent)
    assert 1 <= stats.mean_batch_size <= 16 and stats.failed_batches == 0
    ex.stop()
    assert rec.completed == len(sent)


def test_python_engine_labels_match_numpy():
    rng = np.random.default_rng(0)
    store = rng.standard_normal((64, 3, 8, 8), dtype=np.float32)
    lib = fastres.SampleLibrary.for_engine(fastres.NullEngine(input_shape=(3, 8, 8)))
    lib.load(np.arange(64), store)
    seen_writeable = []

    def argmax_engine(inputs, labels, indices):
        assert inputs.shape[1:] == (3, 8, 8) and inputs.dtype == np.float32
        assert np.array_equal(inputs, store[indices])  # each row is its own sample
        seen_writeable.append(inputs.flags.writeable)
        labels[:] = inputs.reshape(len(inputs), -1).argmax(axis=1)

    def returning_engine(inputs, labels, indices):
        return inputs.reshape(len(inputs), -1).argmax(axis=1)  # returned instead of written

    expected = store.reshape(64, -1).argmax(axis=1)
    for fn in (argmax_engine, returning_engine):
        rec = Recorder()
        engine = fastres.PythonEngine(fn, "float32", (3, 8, 8), max_batch=16)
        with fastres.Executor(engine, lib, config(batch_size=16, batch_timeout_us=100), rec) as ex:
            idx = rng.integers(0, 64, size=500)
            ex.submit(np.arange(500, dtype=np.uint64), idx)
            ex.flush()
        got = rec.by_id()
        assert [got[i][0] for i in range(500)] == expected[idx].tolist()
    assert seen_writeable and not any(seen_writeable)


def test_hold_until_forms_full_batches_then_the_rest():
    rec = Recorder()
    ex = fastres.Executor(echo_engine(), index_library(32), config(batch_size=4, copy_streams=1, batch_timeout_us=60_000_000), rec)
    ex.hold_until(10)
    for i in range(10):
        ex.submit([100 + i], [i])
    assert rec.wait(10)
    assert rec.sizes == [4, 4, 2]
    assert [int(i) for ids, _, _ in rec.batches for i in ids] == list(range(100, 110))
    ex.stop()


def test_deque_limit_leaves_the_partial_batch_until_flush():
    rec = Recorder()
    cfg = config(batch_size=4, batch_timeout_us=60_000_000, deque_limit=4)
    ex = fastres.Executor(echo_engine(), index_library(32), cfg, rec)
    ex.hold_until(10)
    ex.submit(np.arange(10), np.arange(10))
    assert rec.wait(8)
    assert ex.stats().queue_depth == 2 and rec.completed == 8
    ex.flush()
    assert sorted(rec.sizes) == [2, 4, 4]
    ex.stop()


def test_partial_batch_is_issued_when_its_window_ends():
    rec = Recorder()
    ex = fastres.Executor(echo_engine(), index_library(8), config(batch_size=8, batch_timeout_us=20_000), rec)
    start = time.monotonic()
    ex.submit([1, 2, 3], [5, 6, 7])
    assert rec.wait(3, timeout=5.0), "the 20 ms window never issued the partial batch"
    assert time.monotonic() - start < 5.0
    assert rec.sizes == [3] and rec.by_id() == {1: (5, None), 2: (6, None), 3: (7, None)}
    ex.stop()


def test_stop_with_work_in_flight_completes_everything_once():
    def slow(inputs, labels, indices):
        time.sleep(0.001)
        labels[:] = inputs[:, 0]

    rec = Recorder()
    ex = fastres.Executor(fastres.PythonEngine(slow, "int32", (4,), 64), index_library(100), config(batch_size=8, batch_timeout_us=50_000), rec)
    sent = submit_from_threads(ex, threads=2, per_thread=300, max_query=20, n_indices=100)
    ex.stop()
    got = rec.by_id()
    assert got == {i: (idx, None) for i, idx in sent.items()}
    with pytest.raises(errors.InvalidArgument, match="stopped"):
        ex.submit([1], [1])
    ex.stop()  # idempotent


def test_engine_exception_fails_its_batches_once_and_raises_engine_error():
    def flaky(inputs, labels, indices):
        if (indices % 37 == 0).any():
            raise ValueError(f"cursed index {int(indices[indices % 37 == 0][0])}")
        labels[:] = inputs[:, 0]

    rec = Recorder()
    engine = fastres.PythonEngine(flaky, "int32", (4,), 64)
    ex = fastres.Executor(engine, index_library(200), config(batch_size=8, complete_threads=2, batch_timeout_us=200), rec)
    sent = submit_from_threads(ex, threads=2, per_thread=800, max_query=10, n_indices=200)
    with pytest.raises(errors.EngineError, match="ValueError: cursed index"):
        ex.flush()
    got = rec.by_id()
    assert got.keys() == sent.keys()
    failed = {i for i, (_, err) in got.items() if err is not None}
    assert failed
    for i, idx in sent.items():
        label, err = got[i]
        if err is None:
            assert label == idx and idx % 37 != 0
        else:
            assert label == -1 and "python" in err
    stats = ex.stats()
    assert stats.failed_batches == sum(err is not None for _, _, err in rec.batches)
    assert "cursed index" in ex.last_error
    ex.flush()  # already reported
    ex.stop()


def test_on_complete_exception_is_reported_by_stop():
    calls = []

    def sink(ids, labels, error):
        calls.append(len(ids))
        if len(calls) == 1:
            raise RuntimeError("sink is down")

    ex = fastres.Executor(echo_engine(), index_library(16), config(batch_size=4, copy_streams=1, batch_timeout_us=100), sink)
    ex.submit(np.arange(12), np.arange(12))
    with pytest.raises(errors.FastresError, match="sink is down"):
        ex.stop()
    assert sum(calls) == 12 and ex.stats().sink_errors == 1


def test_flush_from_inside_on_complete_is_rejected():
    outcome = []
    holder = {}

    def sink(ids, labels, error):
        try:
            holder["ex"].flush()
        except errors.InvalidArgument as e:
            outcome.append(str(e))

    holder["ex"] = ex = fastres.Executor(echo_engine(), index_library(4), config(batch_size=2, batch_timeout_us=0), sink)
    ex.submit([1, 2], [0, 1])
    ex.flush()
    ex.stop()
    assert outcome and "own threads" in outcome[0]


@pytest.mark.parametrize(
    "knob, value, message",
    [
        ("batch_size", 0, r"batch_size=0: must be in \[1, 64\]"),
        ("batch_size", 65, "the engine's max batch is 64"),
        ("copy_streams", 0, "copy_streams=0"),
        ("copy_streams", 1000, r"copy_streams=1000: must be in \[1, 64\]"),
        ("infer_streams", 0, "infer_streams=0"),
        ("complete_threads", -1, "complete_threads=-1"),
        ("batch_timeout_us", -5, "batch_timeout_us=-5"),
        ("deque_limit", 2, "deque_limit=2"),
        ("deque_limit", -1, "deque_limit=-1"),
    ],
)
def test_invalid_knobs_raise_invalid_argument_naming_the_knob(knob, value, message):
    engine = echo_engine(max_batch=64)
    cfg = fastres.ExecutorConfig(batch_size=8)
    setattr(cfg, knob, value)
    with pytest.raises(errors.InvalidArgument, match=message):
        cfg.validate(engine)
    with pytest.raises(errors.InvalidArgument, match=message):
        fastres.Executor(engine, index_library(4), cfg, Recorder())


def test_invalid_arguments_at_the_edges():
    lib = index_library(4)
    engine = echo_engine()
    with pytest.raises(errors.InvalidArgument, match="sample_bytes=8 does not match"):
        fastres.Executor(engine, fastres.SampleLibrary(8), config(), Recorder())
    with pytest.raises(errors.InvalidArgument, match="on_complete"):
        fastres.Executor(engine, lib, config(), "not callable")
    with pytest.raises(errors.InvalidArgument, match="callable"):
        fastres.PythonEngine(42, "float32", (3,), 8)
    with pytest.raises(errors.InvalidArgument, match="dtype 'float99'"):
        fastres.NullEngine(input_dtype="float99")
    with pytest.raises(errors.InvalidArgument, match="answer='echo'"):
        fastres.NullEngine(answer="echo")
    with pytest.raises(errors.InvalidArgument, match="sample_bytes=0"):
        fastres.SampleLibrary(0)
    with fastres.Executor(engine, lib, config(batch_timeout_us=0), Recorder()) as ex:
        with pytest.raises(errors.InvalidArgument, match=r"indices\[1\]=-3: must be >= 0"):
            ex.submit([1, 2], np.array([0, -3]))
        with pytest.raises(errors.InvalidArgument, match="2 ids but 1 indices"):
            ex.submit([1, 2], [0])
        with pytest.raises(errors.InvalidArgument, match="QSL index 9 .* not loaded"):
            ex.submit([1], [9])
        with pytest.raises(errors.InvalidArgument, match="expected integers, got dtype float64"):
            ex.submit([1], [0.5])
        ex.submit([], [])
        assert ex.stats().submitted == 0


def test_sample_library_loads_rows_of_a_memmap(tmp_path):
    store = np.lib.format.open_memmap(tmp_path / "store.npy", mode="w+", dtype=np.int8, shape=(50, 3, 4, 4))
    store[:] = np.random.default_rng(1).integers(-128, 127, size=store.shape, dtype=np.int8)
    store.flush()
    mm = np.load(tmp_path / "store.npy", mmap_mode="r")
    lib = fastres.SampleLibrary(3 * 4 * 4)
    lib.load([7, 3, 49, 3], mm)
    assert len(lib) == 3 and 3 in lib and 8 not in lib
    for i in (3, 7, 49):
        assert np.array_equal(lib.read(i).view(np.int8), mm[i].ravel())
    with pytest.raises(errors.InvalidArgument, match="out of range for a store of 50"):
        lib.load([50], mm)
    with pytest.raises(errors.InvalidArgument, match="each row is 96 bytes"):
        lib.load([1], np.zeros((4, 3, 4, 4), dtype=np.int16))
    with pytest.raises(errors.InvalidArgument, match="C-contiguous"):
        lib.load([1], np.zeros((4, 4, 4, 3), dtype=np.int8).transpose(0, 3, 1, 2))
    lib.unload([3])
    assert 3 not in lib and len(lib) == 2
    lib.unload()
    assert len(lib) == 0


def test_dropping_a_running_executor_drains_it():
    rec = Recorder()
    ex = fastres.Executor(echo_engine(), index_library(16), config(batch_size=4, batch_timeout_us=60_000_000), rec)
    ex.submit(np.arange(6), np.arange(6))
    del ex
    gc.collect()
    assert rec.completed == 6  # the destructor stopped it: nothing lost


def test_dropping_the_last_reference_inside_on_complete_drains():
    rec = Recorder()
    holder = {}

    def sink(ids, labels, error):
        rec(ids, labels, error)
        holder.pop("ex", None)  # the executor dies on its own completion thread

    holder["ex"] = ex = fastres.Executor(echo_engine(), index_library(16), config(batch_size=2, batch_timeout_us=100), sink)
    ex.submit(np.arange(10), np.arange(10))
    del ex
    assert rec.wait(10)
    assert sorted(rec.by_id()) == list(range(10))


def test_public_names_are_exported():
    for name in ("Executor", "ExecutorConfig", "SampleLibrary", "NullEngine", "PythonEngine"):
        assert name in fastres.__all__ and getattr(fastres, name) is getattr(fastres._core, name)
    assert "batch_size=8" in repr(fastres.ExecutorConfig(batch_size=8))

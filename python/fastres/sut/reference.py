"""The MLPerf reference harness's behaviour, as a LoadGen SUT: the baseline every fastres
figure is compared with.

It follows ``vision/classification_and_detection/python/main.py`` of mlcommons/inference with
the ``resnet50-onnxruntime`` profile, inefficiencies included, because they are what is being
measured:

* ONNX Runtime session as ``backend_onnxruntime.py`` makes it: default ``SessionOptions``
  (all graph optimizations, default thread pools), one session shared by every worker.
* The QSL keeps a dict of per-sample arrays (``LoadSamplesToRam`` replaces it, copying every
  sample, ``UnloadSamplesFromRam`` drops entries); each query stacks its samples with
  ``np.array([...])`` in the thread that issues it.
* SingleStream runs inference inside ``IssueQuery`` (``RunnerBase``). MultiStream, Server and
  Offline use ``QueueRunner``: ``threads`` Python workers (default ``os.cpu_count()``) over a
  ``queue.Queue(maxsize=threads * 4)``; a query of ``max_batchsize`` samples or more is cut
  into chunks of ``max_batchsize`` (default 32), and ``IssueQuery`` blocks while the queue is
  full. ``FlushQueries`` does nothing.
* Post-processing is ``PostProcessCommon(offset=-1)`` (the ``imagenet`` dataset entry that the
  resnet50 profiles use): the model's ``ArgMax:0`` output is 1..1000 with 0 the background
  class, so the reported label is ``argmax - 1``. For a 2-D output (logits or softmax) the
  argmax over classes is taken first, which is ``PostProcessArgMax(offset=-1)``.
* Responses are one float32 per sample (``np.array([label], np.float32).tobytes()`` in an
  ``array.array("B")``), one ``QuerySamplesComplete`` call per chunk. A chunk that fails is
  logged and answered with empty responses, as the reference does.

Deviations, all outside the timed path: the providers default to CUDA only when ONNX Runtime
actually has it (the reference asks for CUDA whenever ORT knows more than one provider name and
lets ORT fall back with a warning); warm-up uses sample 0 of the store (as the reference,
five single-sample predictions) and happens when the SUT is built; errors in stacking samples
are caught too, since an exception escaping into LoadGen aborts the process; the QSL's
performance sample count is LoadGen's resnet50 value, 1024 (or the store size if smaller),
where main.py passes ``min(count, 500)`` (official settings override both with 1024).

Reliability additions the reference lacks: every chunk is answered exactly once, by whichever of
the worker, the watchdog or :meth:`ReferenceSUT.stop` gets there first. With ``watchdog_s`` a
backend call that overruns the limit is answered empty, named in an EngineError (backend,
QSL indices, limit), every later chunk is answered empty at once so that LoadGen's test ends,
and the run is failed (``errors``, ``failure``); workers still inside the hung call are
abandoned (daemon threads). With a watchdog, SingleStream runs the model on one worker thread
while LoadGen's issue thread waits for the answer (a hang must not hold the issue thread);
without one it runs inside IssueQuery, as the reference.

``data_format="NHWC"`` is for a model that takes [N, 224, 224, 3]: the store holds NCHW, so
each sample is transposed into a contiguous HWC copy when it is loaded (untimed), which is what
the reference's NHWC preprocessing would have stored.
"""

from __future__ import annotations

import array
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import mlperf_loadgen as lg
import numpy as np

from .. import loadgen as flg
from ..errors import (DataError, EngineError, FastresError, InvalidArgument, ModelError,
                      Unavailable)

__all__ = ["ReferenceSUT", "run_reference", "DEFAULT_INPUT", "DEFAULT_OUTPUT", "OFFSET"]

log = logging.getLogger("fastres.sut.reference")

#: The names the MLPerf ResNet50 ONNX model (resnet50_v1.onnx) uses.
DEFAULT_INPUT = "input_tensor:0"
DEFAULT_OUTPUT = "ArgMax:0"
#: The background-class offset of the reference's imagenet post-processing.
OFFSET = -1
DATA_FORMATS = ("NCHW", "NHWC")
WARMUP_PREDICTIONS = 5


class PreprocessedStore(Protocol):
    """What the reference SUT needs of ``fastres.data.store``'s store."""

    data: np.ndarray       # [N, 3, 224, 224] float32 for format "fp32"
    labels: np.ndarray     # int32 [N], ImageNet labels 0..999
    format: str

    def __len__(self) -> int: ...
    def sample(self, i: int) -> np.ndarray: ...
    def gather(self, indices: Sequence[int]) -> np.ndarray: ...


# --------------------------------------------------------------------------------------------
# backend (backend_onnxruntime.py)


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise Unavailable("the reference SUT needs ONNX Runtime: pip install onnxruntime") from exc
    return ort


def _default_providers(ort: Any) -> list[str]:
    use_gpu = os.environ.get("USE_GPU", "yes").lower() not in ("0", "false", "off", "no")
    if use_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider"]
    return ["CPUExecutionProvider"]


class _OnnxBackend:
    """One InferenceSession, made as the reference makes it. ``predict`` is called by the
    issuing thread (SingleStream) or by any worker thread at once (ORT sessions are
    thread-safe for ``run``); it blocks for the inference and releases the GIL meanwhile."""

    def __init__(self, model_path: str | os.PathLike[str], input_name: str, output_name: str,
                 providers: Sequence[str] | None) -> None:
        ort = _import_ort()
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelError(f"model file {str(path)!r} does not exist; pass the path of the "
                             "MLPerf ResNet50 ONNX model (resnet50_v1.onnx)")
        opt = ort.SessionOptions()
        if os.environ.get("HOST_PLATFORM_FLAVOR", "") == "aarch64":
            # the reference limits optimizations there for an accuracy issue; keep its rule
            opt.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        chosen = list(providers) if providers is not None else _default_providers(ort)
        try:
            self.sess = ort.InferenceSession(str(path), opt, providers=chosen)
        except Exception as exc:  # ORT raises its own exception types
            raise ModelError(f"ONNX Runtime cannot load {str(path)!r}: {exc}") from exc
        inputs = {m.name: m for m in self.sess.get_inputs()}
        outputs = {m.name: m for m in self.sess.get_outputs()}
        problems = []
        if input_name not in inputs:
            problems.append(f"no input {input_name!r} (it has {sorted(inputs)}; "
                            "say which to use with input_name=)")
        if output_name not in outputs:
            problems.append(f"no output {output_name!r} (it has {sorted(outputs)}; "
                            "say which to use with output_name=)")
        if problems:
            raise ModelError(f"model {str(path)!r}: " + "; ".join(problems))
        meta = inputs[input_name]
        if meta.type != "tensor(float)":
            raise ModelError(
                f"model {str(path)!r} input {input_name!r} takes {meta.type}; the reference "
                "SUT feeds float32 (the MLPerf fp32 model)")
        self.path = path
        self.input_name = input_name
        self.output_name = output_name
        self.input_shape = list(meta.shape)
        self.outputs = [output_name]
        self.providers = self.sess.get_providers()

    def predict(self, img: np.ndarray) -> list[np.ndarray]:
        return self.sess.run(self.outputs, {self.input_name: img})


class NullBackend:
    """A backend that runs no model: it answers ArgMax 1 (label 0) for every sample at once.
    With it the reference SUT measures what the reference harness itself costs (the queue of
    Python threads, stacking, post-processing, one response object per sample)."""

    def __init__(self, input_shape: Sequence[Any] = (None, 3, 224, 224)) -> None:
        self.path = Path("<null>")
        self.input_name = DEFAULT_INPUT
        self.output_name = DEFAULT_OUTPUT
        self.input_shape = list(input_shape)
        self.outputs = [DEFAULT_OUTPUT]
        self.providers: list[str] = []

    def predict(self, img: np.ndarray) -> list[np.ndarray]:
        return [np.ones(len(img), dtype=np.int64)]


# --------------------------------------------------------------------------------------------
# dataset (dataset.py / imagenet.py, samples from the preprocessed store)


class _InMemoryDataset:
    """The reference's Dataset over a preprocessed store: samples live in a dict while loaded.

    ``load_query_samples``/``unload_query_samples`` are LoadGen's QSL callbacks, called from the
    thread that runs the test; loading blocks while it copies (untimed). ``get_samples`` is
    called by the issuing thread for every query; it stacks a fresh batch each time.
    """

    def __init__(self, store: PreprocessedStore, data_format: str) -> None:
        self.store = store
        self.labels = np.asarray(store.labels)
        self.need_transpose = data_format == "NHWC"  # the store holds NCHW
        self.image_list_inmemory: dict[int, np.ndarray] = {}
        self.last_loaded = -1.0
        self.load_errors = 0

    def get_item_count(self) -> int:
        return len(self.store)

    def _get_item(self, nr: int) -> np.ndarray:
        img = np.asarray(self.store.sample(nr))
        if self.need_transpose:
            img = img.transpose(1, 2, 0)
        return np.array(img, dtype=np.float32, order="C")  # a private copy, like np.load

    def load_query_samples(self, sample_list: list[int]) -> None:
        self.image_list_inmemory = {}
        try:
            for sample in sample_list:
                self.image_list_inmemory[sample] = self._get_item(sample)
        except Exception:  # noqa: BLE001 - must not raise into LoadGen
            self.load_errors += 1
            log.exception("LoadSamplesToRam failed; queries on missing samples will be "
                          "answered empty")
        self.last_loaded = time.time()

    def unload_query_samples(self, sample_list: list[int] | None) -> None:
        if sample_list:
            for sample in sample_list:
                self.image_list_inmemory.pop(sample, None)
        else:
            self.image_list_inmemory = {}

    def get_samples(self, id_list: list[int]) -> tuple[np.ndarray, np.ndarray]:
        data = np.array([self.image_list_inmemory[i] for i in id_list])
        return data, self.labels[id_list]


# --------------------------------------------------------------------------------------------
# runners (main.py's RunnerBase and QueueRunner)


class _Item:
    __slots__ = ("query_id", "content_id", "img", "label", "start", "answered", "done")

    def __init__(self, query_id: list[int], content_id: list[int], img: np.ndarray | None,
                 label: np.ndarray | None) -> None:
        self.query_id = query_id
        self.content_id = content_id
        self.img = img
        self.label = label
        self.start = time.time()
        self.answered = False  # claimed by whoever completes it (worker or watchdog), once
        self.done: threading.Event | None = None  # set when answered, if someone waits for it


class _RunnerBase:
    """SingleStream: ``enqueue`` runs every chunk in LoadGen's issue thread and blocks until it
    is answered.

    Every chunk is answered exactly once, by :meth:`_answer`, whoever gets there first: the
    thread that ran it, the watchdog (a chunk that overran ``watchdog_s``), or :meth:`stop`.
    After a hang or a stop, chunks are answered empty at once without reaching the model, so
    LoadGen's test ends; the run is failed (``errors``, ``last_error``).
    """

    def __init__(self, model: _OnnxBackend, ds: _InMemoryDataset, threads: int,
                 max_batchsize: int, watchdog_s: float | None = None) -> None:
        self.model = model
        self.ds = ds
        self.threads = threads
        self.max_batchsize = max_batchsize
        self.offset = OFFSET
        self.take_accuracy = False
        self.result_timing: list[float] = []
        self.good = 0
        self.total = 0
        self.errors = 0
        self.last_error: str | None = None
        self._count_lock = threading.Lock()
        # why chunks are refused now (a hung backend, a stop), or None
        self.refusing: FastresError | None = None
        self.watchdog_s = watchdog_s
        self.inflight: dict[int, tuple[_Item, float]] = {}  # id(item) -> (item, monotonic start)
        self._watchdog: _Watchdog | None = _Watchdog(self, watchdog_s) if watchdog_s else None

    def start_run(self, take_accuracy: bool) -> None:
        self.take_accuracy = take_accuracy
        self.result_timing = []
        with self._count_lock:
            self.good = self.total = self.errors = 0
            self.last_error = None

    def _post_process(self, results: list[np.ndarray],
                      expected: np.ndarray) -> tuple[list[list[Any]], int]:
        out = results[0]
        if out.ndim == 2:  # logits or softmax: PostProcessArgMax
            out = np.argmax(out, axis=1)
        processed = []
        good = 0
        for idx in range(len(out)):
            result = out[idx] + self.offset
            processed.append([result])
            if result == expected[idx]:
                good += 1
        return processed, good

    def _answer(self, qitem: _Item, processed: list[list[Any]], good: int = 0,
                error: Exception | str | None = None) -> bool:
        """Complete ``qitem`` with ``processed`` (empty responses when ``error``), unless it
        was answered already; returns whether this call answered it. Any thread."""
        with self._count_lock:
            if qitem.answered:
                return False
            qitem.answered = True
            if error is not None:
                self.errors += 1
                self.last_error = str(error)
                processed = [[]] * len(qitem.query_id)
            else:
                self.good += good
                self.total += len(processed)
        if error is not None:
            log.error("thread: failed on contentid=%s, %s", qitem.content_id, error)
        response_array_refs = []
        response = []
        for idx, query_id in enumerate(qitem.query_id):
            response_array = array.array("B", np.array(processed[idx], np.float32).tobytes())
            response_array_refs.append(response_array)
            bi = response_array.buffer_info()
            response.append(lg.QuerySampleResponse(query_id, bi[0], bi[1]))
        lg.QuerySamplesComplete(response)
        if qitem.done is not None:
            qitem.done.set()
        return True

    def run_one_item(self, qitem: _Item) -> None:
        """Runs in the issue thread (SingleStream) or a worker; blocks for the inference."""
        if self.refusing is not None:
            self._answer(qitem, [], error=self.refusing)
            return
        key = id(qitem)
        try:
            if qitem.img is None:
                raise DataError(f"samples {qitem.content_id} are not loaded")
            self.inflight[key] = (qitem, time.monotonic())
            try:
                results = self.model.predict(qitem.img)
            finally:
                self.inflight.pop(key, None)
            processed, good = self._post_process(results, qitem.label)
            if len(processed) != len(qitem.query_id):
                raise EngineError(f"the model gave {len(processed)} answers for a batch of "
                                  f"{len(qitem.query_id)}")
        except Exception as ex:  # noqa: BLE001 - the reference answers empty and goes on
            self._answer(qitem, [], error=ex)
            return
        if self._answer(qitem, processed, good):
            self.result_timing.append(time.time() - qitem.start)

    def _item(self, query_id: list[int], idx: list[int]) -> _Item:
        if self.refusing is not None:  # answered empty at once: no need to stack it
            return _Item(query_id, idx, None, None)
        try:
            data, label = self.ds.get_samples(idx)
        except Exception as ex:  # noqa: BLE001 - answered empty by run_one_item
            log.error("get_samples failed on contentid=%s, %s", idx, ex)
            data, label = None, None
        return _Item(query_id, idx, data, label)

    def _chunks(self, query_samples: list[Any]) -> list[tuple[list[int], list[int]]]:
        idx = [q.index for q in query_samples]
        query_id = [q.id for q in query_samples]
        if len(query_samples) < self.max_batchsize:
            return [(query_id, idx)]
        bs = self.max_batchsize
        return [(query_id[i:i + bs], idx[i:i + bs]) for i in range(0, len(idx), bs)]

    def enqueue(self, query_samples: list[Any]) -> None:
        for query_id, idx in self._chunks(query_samples):
            self.run_one_item(self._item(query_id, idx))

    def refuse(self, why: FastresError) -> None:
        """From now on answer every chunk empty without running it (the first reason stays);
        chunks waiting in a queue are answered at once. Any thread."""
        if self.refusing is None:
            self.refusing = why
        self._drain()

    def _drain(self) -> None:
        """Answer the chunks that wait for a worker (none here: SingleStream runs inline)."""

    def finish(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()


class _QueueRunner(_RunnerBase):
    """MultiStream, Server, Offline: ``enqueue`` (LoadGen's issue thread) stacks each chunk and
    puts it on a bounded queue, blocking while the queue is full; ``threads`` workers run and
    answer the chunks.

    With ``wait_for_answers`` (SingleStream under a watchdog) ``enqueue`` then waits until its
    chunks are answered, so the query still completes inside IssueQuery, as in RunnerBase, but
    a hung backend holds a worker instead of LoadGen's issue thread.
    """

    def __init__(self, model: _OnnxBackend, ds: _InMemoryDataset, threads: int,
                 max_batchsize: int, watchdog_s: float | None = None,
                 wait_for_answers: bool = False) -> None:
        super().__init__(model, ds, threads, max_batchsize, watchdog_s)
        self.wait_for_answers = wait_for_answers
        self.tasks: queue.Queue[_Item | None] = queue.Queue(maxsize=threads * 4)
        self.workers: list[threading.Thread] = []
        for i in range(self.threads):
            worker = threading.Thread(target=self.handle_tasks, args=(self.tasks,),
                                      name=f"reference-worker-{i}", daemon=True)
            self.workers.append(worker)
            worker.start()
        if self._watchdog is not None:
            self._watchdog.start()

    def handle_tasks(self, tasks_queue: queue.Queue[_Item | None]) -> None:
        """Worker thread: runs chunks until it takes a None sentinel."""
        while True:
            qitem = tasks_queue.get()
            if qitem is None:
                tasks_queue.task_done()
                break
            self.run_one_item(qitem)
            tasks_queue.task_done()

    def enqueue(self, query_samples: list[Any]) -> None:
        items = []
        for query_id, idx in self._chunks(query_samples):
            item = self._item(query_id, idx)
            if self.refusing is not None:  # never block LoadGen's issue thread after a hang
                self._answer(item, [], error=self.refusing)
                continue
            if self.wait_for_answers:
                item.done = threading.Event()
                items.append(item)
            self.tasks.put(item)
        for item in items:
            item.done.wait()  # type: ignore[union-attr]  # the watchdog guarantees an answer

    def _drain(self) -> None:
        sentinels = 0
        while True:
            try:
                item = self.tasks.get_nowait()
            except queue.Empty:
                break
            if item is None:
                sentinels += 1
            else:
                self._answer(item, [], error=self.refusing)
            self.tasks.task_done()
        for _ in range(sentinels):  # room is certain: they were just taken out
            self.tasks.put_nowait(None)

    def finish(self) -> None:
        """Called by the owner after the test; joins every worker, except those still inside a
        backend that the watchdog declared hung (daemon threads, abandoned)."""
        for _ in self.workers:
            self.tasks.put(None)
        stuck = {threading.get_ident()}  # never join oneself
        for worker in self.workers:
            if self.refusing is not None and self.inflight:
                worker.join(timeout=0.2)
                if worker.is_alive():
                    stuck.add(worker.ident or 0)
                    continue
            worker.join()
        if len(stuck) > 1:
            log.warning("%d reference worker(s) are still inside the hung backend and were "
                        "abandoned", len(stuck) - 1)
        self.workers = []
        super().finish()


class _Watchdog:
    """Turns a backend call that overruns ``limit_s`` into an EngineError: its chunk is
    answered empty at once, every later chunk too (the runner refuses them), and the run is
    failed. A thread of its own, checking the runner's in-flight chunks a few times per limit.
    """

    def __init__(self, runner: _RunnerBase, limit_s: float) -> None:
        self.runner = runner
        self.limit_s = float(limit_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reference-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        tick = min(0.1, self.limit_s / 4)
        runner = self.runner
        while not self._stop.wait(tick):
            now = time.monotonic()
            for item, began in list(runner.inflight.values()):
                if now - began <= self.limit_s:
                    continue
                error = EngineError(
                    f"reference SUT: the {type(runner.model).__name__} backend "
                    f"({runner.model.path}) did not answer a batch of {len(item.content_id)} "
                    f"samples (QSL indices {_short(item.content_id)}) within the watchdog "
                    f"limit of {self.limit_s:g} s; its samples and every later one are "
                    "answered empty and the run is failed. If a batch can legitimately take "
                    "that long, raise --watchdog-s (0 turns the watchdog off)")
                runner.refuse(error)
                runner._answer(item, [], error=error)
            if runner.refusing is not None:
                runner._drain()


def _short(values: Sequence[int], n: int = 8) -> str:
    head = ", ".join(str(v) for v in values[:n])
    return f"[{head}{', ...' if len(values) > n else ''}]"


# --------------------------------------------------------------------------------------------
# the SUT


def _check_store(store: Any) -> None:
    missing = [a for a in ("data", "labels", "format", "sample", "__len__")
               if not hasattr(store, a)]
    if missing:
        raise InvalidArgument(
            f"store {type(store).__name__} lacks {', '.join(missing)}; pass a preprocessed "
            "store from fastres.data.store")
    if store.format != "fp32":
        raise InvalidArgument(
            f"the reference SUT supports data format fp32 only (the reference's ONNX model "
            f"takes float32); the store holds {store.format!r}; preprocess with format='fp32'")
    if len(store) < 1:
        raise InvalidArgument("the store holds no samples")
    if len(store.labels) != len(store):
        raise InvalidArgument(
            f"store has {len(store)} samples but {len(store.labels)} labels")


def _check_layout(backend: _OnnxBackend, sample_shape: tuple[int, ...], data_format: str) -> None:
    """Compare the model's static per-sample input dims with what ``data_format`` feeds."""
    fed = sample_shape if data_format == "NCHW" else \
        (sample_shape[1], sample_shape[2], sample_shape[0])
    want = backend.input_shape[1:]
    if len(backend.input_shape) != len(fed) + 1:
        raise ModelError(
            f"model {str(backend.path)!r} input {backend.input_name!r} has shape "
            f"{backend.input_shape}; the reference SUT feeds [N, {', '.join(map(str, fed))}]")
    if any(isinstance(w, int) and w != f for w, f in zip(want, fed)):
        other = "NHWC" if data_format == "NCHW" else "NCHW"
        raise ModelError(
            f"model {str(backend.path)!r} input {backend.input_name!r} wants "
            f"{backend.input_shape} but data_format={data_format!r} feeds "
            f"[N, {', '.join(map(str, fed))}]; try data_format={other!r}")


class ReferenceSUT:
    """The reference harness as a LoadGen SUT and QSL over a preprocessed store.

    Build it in the thread that will run the test; it loads the model, warms up with five
    single-sample predictions, starts the workers (not for SingleStream) and constructs the
    LoadGen SUT (``.sut``) and QSL (``.qsl``). ``close()`` (or leaving a ``with`` block) stops
    the workers and destroys both handles; call it after the test has returned.
    """

    def __init__(self, model_path: str | os.PathLike[str], store: PreprocessedStore, *,
                 scenario: str, threads: int | None = None, max_batchsize: int = 32,
                 data_format: str = "NCHW", providers: Sequence[str] | None = None,
                 input_name: str = DEFAULT_INPUT, output_name: str = DEFAULT_OUTPUT,
                 performance_sample_count: int | None = None,
                 backend: Any = None, watchdog_s: float | None = None) -> None:
        self.scenario = flg.parse_scenario(scenario)
        if watchdog_s is not None and (isinstance(watchdog_s, bool) or
                                       not isinstance(watchdog_s, (int, float)) or
                                       not 0 < watchdog_s < float("inf")):
            raise InvalidArgument(f"watchdog_s must be a positive number of seconds or None, "
                                  f"got {watchdog_s!r}")
        if threads is None:
            threads = os.cpu_count() or 1
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise InvalidArgument(f"threads must be a positive integer, got {threads!r}")
        if not isinstance(max_batchsize, int) or isinstance(max_batchsize, bool) \
                or max_batchsize < 1:
            raise InvalidArgument(f"max_batchsize must be a positive integer, got "
                                  f"{max_batchsize!r}")
        fmt = str(data_format).upper()
        if fmt not in DATA_FORMATS:
            raise InvalidArgument(
                f"data_format {data_format!r} is not one of {', '.join(DATA_FORMATS)}")
        _check_store(store)
        if performance_sample_count is None:
            performance_sample_count = flg.performance_sample_count(len(store))
        self.threads = threads
        self.max_batchsize = max_batchsize
        self.data_format = fmt
        self.store = store

        # backend: an object with the _OnnxBackend interface (e.g. NullBackend); model_path is
        # then ignored.
        self.backend = backend if backend is not None else \
            _OnnxBackend(model_path, input_name, output_name, providers)
        _check_layout(self.backend, tuple(np.shape(store.sample(0))), fmt)
        self.ds = _InMemoryDataset(store, fmt)
        self._warmup()

        self.watchdog_s = watchdog_s
        self.stopped = False
        self.runner: _RunnerBase
        if self.scenario != "SingleStream":
            self.runner = _QueueRunner(self.backend, self.ds, threads, max_batchsize, watchdog_s)
        elif watchdog_s is None:
            self.runner = _RunnerBase(self.backend, self.ds, threads, max_batchsize)
        else:  # the model runs on a worker, so that a hang cannot hold LoadGen's issue thread
            self.runner = _QueueRunner(self.backend, self.ds, 1, max_batchsize, watchdog_s,
                                       wait_for_answers=True)
        self._sut_handle: flg.SUTHandle | None = None
        self._qsl_handle: flg.QSLHandle | None = None
        try:
            self._sut_handle = flg.make_sut(self.issue_queries, self.flush_queries)
            self._qsl_handle = flg.make_qsl(len(store), performance_sample_count,
                                            self.ds.load_query_samples,
                                            self.ds.unload_query_samples)
        except BaseException:
            self.close()
            raise

    def _warmup(self) -> None:
        """As main.py: five predictions of a one-sample batch of sample 0. Errors surface here,
        before LoadGen starts."""
        sample = self.ds._get_item(0)
        for _ in range(WARMUP_PREDICTIONS):
            self.backend.predict(np.array([sample]))

    # LoadGen callbacks
    def issue_queries(self, query_samples: list[Any]) -> None:
        """LoadGen's issue thread. SingleStream: blocks for the inference. Other scenarios:
        blocks only while the task queue is full."""
        self.runner.enqueue(query_samples)

    def flush_queries(self) -> None:
        """LoadGen's main thread at the end of a test; the reference does nothing here."""

    @property
    def sut(self) -> int:
        if self._sut_handle is None:
            raise InvalidArgument("the reference SUT is closed")
        return self._sut_handle.handle

    @property
    def qsl(self) -> int:
        if self._qsl_handle is None:
            raise InvalidArgument("the reference SUT is closed")
        return self._qsl_handle.handle

    @property
    def errors(self) -> int:
        """Chunks answered empty because inference or stacking failed, the watchdog fired or
        the SUT was stopped, plus failed loads."""
        return self.runner.errors + self.ds.load_errors

    @property
    def last_error(self) -> str | None:
        """The most recent failure, in words (None without one)."""
        return self.runner.last_error

    @property
    def failure(self) -> str | None:
        """Why the run this SUT served is not a result (errors, a hang, a stop), else None."""
        if self.errors:
            return (f"{self.errors} failed batch{'es' if self.errors != 1 else ''} or loads; "
                    f"last: {self.last_error or 'LoadSamplesToRam failed'}")
        if self.stopped:
            return "the reference SUT was stopped during the run"
        return None

    def stop(self) -> None:
        """Stop serving during a test: every chunk not answered yet, now or later, is answered
        empty at once (LoadGen's test then ends) and the run is failed. Chunks already inside
        the model finish normally. Any thread; idempotent. Call close() after the test."""
        self.stopped = True
        self.runner.refuse(FastresError("the reference SUT was stopped during the run; this "
                                        "sample was answered empty"))

    def start_run(self, take_accuracy: bool = False) -> None:
        """Reset the counters before a test (main.py's ``runner.start_run``)."""
        self.runner.start_run(take_accuracy)
        self.ds.load_errors = 0

    def close(self) -> None:
        """Stop the workers and destroy the LoadGen handles; idempotent. During a test it
        raises InvalidArgument and changes nothing (use stop(), then close after the test)."""
        for handle in (self._sut_handle, self._qsl_handle):
            if handle is not None and flg.in_running_test(handle):
                raise InvalidArgument("ReferenceSUT.close() during a LoadGen test would crash "
                                      "LoadGen: call stop() to end the run, close() after "
                                      "run_test returns")
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.finish()
        if self._qsl_handle is not None:
            self._qsl_handle.close()
            self._qsl_handle = None
        if self._sut_handle is not None:
            self._sut_handle.close()
            self._sut_handle = None

    def __enter__(self) -> ReferenceSUT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_reference(model_path: str | os.PathLike[str], store: PreprocessedStore, scenario: str,
                  mode: str, output_dir: str | os.PathLike[str], *,
                  official: bool = False, user_conf: str | os.PathLike[str] | None = None,
                  target_qps: float | None = None, expected_latency_ns: int | None = None,
                  server_target_latency_ns: int | None = None,
                  min_duration_ms: int | None = None, max_duration_ms: int | None = None,
                  min_query_count: int | None = None, max_query_count: int | None = None,
                  threads: int | None = None, max_batchsize: int = 32,
                  data_format: str = "NCHW", providers: Sequence[str] | None = None,
                  input_name: str = DEFAULT_INPUT, output_name: str = DEFAULT_OUTPUT,
                  watchdog_s: float | None = None, backend: Any = None) -> flg.RunResult:
    """Run the reference harness under LoadGen once and return the parsed result; in accuracy
    mode ``result.accuracy`` is top-1 from the accuracy log against ``store.labels``.
    ``backend``: another backend with the ONNX one's interface (``NullBackend``,
    :class:`fastres.engines.torch.TorchBackend`); ``model_path`` is then not loaded.

    Blocks the calling thread for the whole test. Settings keywords are those of
    :func:`fastres.loadgen.make_settings`; everything is validated before the model loads.
    """
    output_dir = flg.prepare_output_dir(output_dir)
    settings = flg.make_settings(
        scenario, mode, official=official, user_conf=user_conf, target_qps=target_qps,
        expected_latency_ns=expected_latency_ns, server_target_latency_ns=server_target_latency_ns,
        min_duration_ms=min_duration_ms, max_duration_ms=max_duration_ms,
        min_query_count=min_query_count, max_query_count=max_query_count)
    with ReferenceSUT(model_path, store, scenario=settings.scenario_name, threads=threads,
                      max_batchsize=max_batchsize, data_format=data_format, providers=providers,
                      input_name=input_name, output_name=output_name,
                      watchdog_s=watchdog_s, backend=backend) as sut:
        sut.start_run(take_accuracy=settings.mode_name == "accuracy")
        result = flg.run_test(sut.sut, sut.qsl, settings, output_dir)
        sut.runner.finish()  # join the workers before reading the counters
        result.sut_errors = sut.errors
    if settings.mode_name == "accuracy":
        result.accuracy = flg.accuracy_from_log(
            result.output_dir / "mlperf_log_accuracy.json", np.asarray(store.labels), "float32")
    return result

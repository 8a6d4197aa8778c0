// Python bindings of the executor layer: SampleLibrary, engines, ExecutorConfig, Executor.
// Rules: the GIL is released around every call that may block or copy (submit, flush, stop,
// SampleLibrary.load) and taken by executor threads only for a Python engine or sink call.
// C++ errors reach Python through the translator in module.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "engines/null_engine.hpp"
#if defined(FASTRES_WITH_CUDA)
#include "engines/timed_engine.hpp"
#include "fastres/cuda/pinned_host.hpp"
#endif
#include "fastres/executor.hpp"
#include "fastres/sample_library.hpp"
#include "fastres/status.hpp"
#include "python_engine.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

// loadgen_sink.cpp
void query_samples_to_arrays(const py::list& samples, std::vector<std::uint64_t>& ids,
                             std::vector<std::uint64_t>& indices);

namespace fastres::python {
namespace {

using U64Array = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>;

// A 1-D array of non-negative integers from a sequence or a NumPy array; `what` names the
// argument in errors. Signed input is checked for negatives instead of being wrapped around.
U64Array as_indices(py::handle obj, const char* what) {
  const std::string name = what;
  py::array arr = py::array::ensure(obj);
  if (!arr) throw InvalidArgument(name + ": expected a sequence or 1-D array of non-negative integers");
  if (arr.ndim() != 1) {
    throw InvalidArgument(name + ": expected a 1-D sequence, got an array of " + std::to_string(arr.ndim()) +
                          " dimensions");
  }
  if (arr.size() == 0) return U64Array(0);
  const char kind = arr.dtype().kind();
  if (kind == 'i') {
    auto signed_view = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(arr);
    const std::int64_t* p = signed_view.data();
    const auto it = std::find_if(p, p + signed_view.size(), [](std::int64_t v) { return v < 0; });
    if (it != p + signed_view.size()) {
      throw InvalidArgument(name + "[" + std::to_string(it - p) + "]=" + std::to_string(*it) + ": must be >= 0");
    }
  } else if (kind != 'u') {
    throw InvalidArgument(name + ": expected integers, got dtype " + std::string(py::str(arr.dtype())));
  }
  auto out = U64Array::ensure(arr);
  if (!out) throw InvalidArgument(name + ": could not convert to uint64");
  return out;
}

std::int64_t non_negative(std::int64_t v, const char* what, std::int64_t lo = 0) {
  if (v < lo) throw InvalidArgument(std::string(what) + "=" + std::to_string(v) + ": must be >= " + std::to_string(lo));
  return v;
}

Device parse_device(const std::string& name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") return Device::kCuda;
  throw InvalidArgument("device '" + name + "': expected 'cpu' or 'cuda'");
}

// The library for an engine: pinned host memory when the engine runs on CUDA (its inputs are
// copied to the device by DMA from there), aligned pageable memory otherwise.
std::shared_ptr<SampleLibrary> library_for(const Engine& engine) {
#if defined(FASTRES_WITH_CUDA)
  if (engine.io().device == Device::kCuda) {
    return std::make_shared<SampleLibrary>(engine.io().input_bytes(), cuda::pinned_host_allocator());
  }
#endif
  return std::make_shared<SampleLibrary>(engine.io().input_bytes());
}

EngineIO make_io(const std::string& input_dtype, const std::vector<std::int64_t>& input_shape, std::int64_t max_batch,
                 const char* who) {
  EngineIO io;
  io.input_dtype = parse_dtype(input_dtype);
  io.input_shape = input_shape;
  io.max_batch = static_cast<std::size_t>(non_negative(max_batch, (std::string(who) + " max_batch").c_str(), 1));
  return io;
}

py::tuple shape_tuple(const std::vector<std::int64_t>& shape) {
  py::tuple t(shape.size());
  for (std::size_t i = 0; i < shape.size(); ++i) t[i] = shape[i];
  return t;
}

// ---------------------------------------------------------------- SampleLibrary.load(indices, store)
void load_from_array(SampleLibrary& lib, py::handle indices_obj, const py::array& store) {
  const U64Array indices = as_indices(indices_obj, "SampleLibrary.load indices");
  if (store.ndim() < 1) throw InvalidArgument("SampleLibrary.load store: expected an array [N, ...], got a scalar");
  const auto itemsize = static_cast<std::size_t>(store.itemsize());
  std::size_t row_bytes = itemsize;
  // Each row must be C-contiguous; the row stride itself may be anything (a memmap slice).
  for (py::ssize_t d = store.ndim() - 1; d >= 1; --d) {
    if (store.shape(d) != 1 && static_cast<std::size_t>(store.strides(d)) != row_bytes) {
      throw InvalidArgument("SampleLibrary.load store: rows must be C-contiguous (dimension " + std::to_string(d) +
                            " has stride " + std::to_string(store.strides(d)) + ", expected " +
                            std::to_string(row_bytes) + "); pass numpy.ascontiguousarray(store)");
    }
    row_bytes *= static_cast<std::size_t>(store.shape(d));
  }
  if (row_bytes != lib.sample_bytes()) {
    std::ostringstream msg;
    msg << "SampleLibrary.load store: each row is " << row_bytes << " bytes (shape " << std::string(py::str(py::tuple(store.attr("shape"))))
        << ", dtype " << std::string(py::str(store.dtype())) << ") but the library holds samples of "
        << lib.sample_bytes() << " bytes; preprocess to the engine's input shape and dtype";
    throw InvalidArgument(msg.str());
  }
  const auto rows = static_cast<std::uint64_t>(store.shape(0));
  const std::uint64_t* idx = indices.data();
  const auto count = static_cast<std::size_t>(indices.size());
  for (std::size_t i = 0; i < count; ++i) {
    if (idx[i] >= rows) {
      throw InvalidArgument("SampleLibrary.load: QSL index " + std::to_string(idx[i]) + " is out of range for a store of " +
                            std::to_string(rows) + " samples");
    }
  }
  const auto* base = static_cast<const std::byte*>(store.data());
  const py::ssize_t row_stride = store.strides(0);
  py::gil_scoped_release release;  // the copy (and a memmap's page faults) run without the GIL
  lib.load(idx, count, [&](std::uint64_t index, std::byte* dst) {
    std::memcpy(dst, base + static_cast<py::ssize_t>(index) * row_stride, row_bytes);
  });
}

// ---------------------------------------------------------------- Executor, as Python owns it
// Every live executor, so that an atexit hook can stop them before the interpreter finalises
// (their threads need the GIL to call Python engines and sinks).
std::mutex g_live_mu;
std::vector<std::weak_ptr<Executor>> g_live;

void stop_all_executors() {
  std::vector<std::shared_ptr<Executor>> live;
  {
    std::lock_guard<std::mutex> lk(g_live_mu);
    for (auto& w : g_live) {
      if (auto p = w.lock()) live.push_back(std::move(p));
    }
    g_live.clear();
  }
  py::gil_scoped_release release;
  for (auto& ex : live) {
    try {
      ex->stop();
    } catch (...) {
      // At exit nobody is left to report to; last_error() had it.
    }
  }
  live.clear();
}

class PyExecutor {
 public:
  PyExecutor(std::shared_ptr<Engine> engine, std::shared_ptr<SampleLibrary> samples, ExecutorConfig config,
             const py::object& on_complete) {
    std::shared_ptr<CompletionSink> sink;
    if (py::isinstance<CompletionSink>(on_complete)) {
      sink = on_complete.cast<std::shared_ptr<CompletionSink>>();
    } else {
      sink = std::make_shared<PythonCompletionSink>(on_complete);
    }
    executor_ = std::make_shared<Executor>(std::move(engine), std::move(samples), config, std::move(sink));
    std::lock_guard<std::mutex> lk(g_live_mu);
    g_live.erase(std::remove_if(g_live.begin(), g_live.end(), [](const auto& w) { return w.expired(); }), g_live.end());
    g_live.push_back(executor_);
  }

  ~PyExecutor() {
    // Stopping joins threads that may need the GIL to finish their Python calls.
    py::gil_scoped_release release;
    executor_.reset();
  }

  PyExecutor(const PyExecutor&) = delete;
  PyExecutor& operator=(const PyExecutor&) = delete;

  void submit(py::handle ids_obj, py::handle indices_obj) {
    const U64Array ids = as_indices(ids_obj, "Executor.submit ids");
    const U64Array indices = as_indices(indices_obj, "Executor.submit indices");
    if (ids.size() != indices.size()) {
      throw InvalidArgument("Executor.submit: " + std::to_string(ids.size()) + " ids but " +
                            std::to_string(indices.size()) + " indices; pass one QSL index per response id");
    }
    py::gil_scoped_release release;
    executor_->submit(ids.data(), indices.data(), static_cast<std::size_t>(ids.size()));
  }

  // ConstructSUT's issue callback: a list of mlperf_loadgen.QuerySample, read in C++.
  void submit_query_samples(const py::list& samples) {
    std::vector<std::uint64_t> ids, indices;
    query_samples_to_arrays(samples, ids, indices);
    py::gil_scoped_release release;
    executor_->submit(ids, indices);
  }

  void flush() {
    py::gil_scoped_release release;
    executor_->flush();
  }

  void stop() {
    py::gil_scoped_release release;
    executor_->stop();
  }

  void hold_until(std::int64_t n) { executor_->hold_until(static_cast<std::size_t>(non_negative(n, "hold_until n"))); }

  void sync_library() {
    py::gil_scoped_release release;
    executor_->sync_library();
  }

  Executor& get() { return *executor_; }

 private:
  std::shared_ptr<Executor> executor_;
};

std::string config_repr(const ExecutorConfig& c) {
  std::ostringstream s;
  s << "ExecutorConfig(batch_size=" << c.batch_size << ", copy_streams=" << c.copy_streams
    << ", infer_streams=" << c.infer_streams << ", complete_threads=" << c.complete_threads
    << ", batch_timeout_us=" << c.batch_timeout_us << ", deque_limit=" << c.deque_limit;
  if (c.watchdog_ms) s << ", watchdog_ms=" << c.watchdog_ms;
  if (c.use_graphs) s << ", use_graphs=True";
  if (c.start_from_device) s << ", start_from_device=True";
  if (c.run_infer_on_copy_streams) s << ", run_infer_on_copy_streams=True";
  if (c.use_spin_wait) s << ", use_spin_wait=True";
  if (!c.devices.empty()) {
    s << ", devices=[";
    for (std::size_t i = 0; i < c.devices.size(); ++i) s << (i ? ", " : "") << c.devices[i];
    s << "]";
  }
  s << ")";
  return s.str();
}

py::dict stats_dict(const ExecutorStats& s) {
  return py::dict("submitted"_a = s.submitted, "completed"_a = s.completed, "batches"_a = s.batches,
                  "failed_batches"_a = s.failed_batches, "sink_errors"_a = s.sink_errors,
                  "bound_batches"_a = s.bound_batches, "queue_depth"_a = s.queue_depth,
                  "max_queue_depth"_a = s.max_queue_depth, "mean_batch_size"_a = s.mean_batch_size,
                  "watchdog_batches"_a = s.watchdog_batches, "retired_slots"_a = s.retired_slots,
                  "h2d_copies"_a = s.h2d_copies, "device_gathers"_a = s.device_gathers,
                  "graph_captures"_a = s.graph_captures, "graph_launches"_a = s.graph_launches,
                  "library_uploads"_a = s.library_uploads, "gather_ns"_a = s.gather_ns, "engine_ns"_a = s.engine_ns,
                  "device_wait_ns"_a = s.device_wait_ns, "complete_ns"_a = s.complete_ns);
}

}  // namespace
}  // namespace fastres::python

void bind_executor(py::module_& m) {
  using namespace fastres;
  using namespace fastres::python;

  // ------------------------------------------------------------------ SampleLibrary
  py::class_<SampleLibrary, std::shared_ptr<SampleLibrary>>(m, "SampleLibrary", R"doc(
The performance samples, in one aligned block the executor reads from (LoadGen's QSL memory).
Every sample has ``sample_bytes`` bytes: the engine's per-sample input size.
load()/unload() must not run while an executor has work in flight from this library.)doc")
      .def(py::init([](std::int64_t sample_bytes) {
             return std::make_shared<SampleLibrary>(
                 static_cast<std::size_t>(non_negative(sample_bytes, "SampleLibrary sample_bytes", 1)));
           }),
           "sample_bytes"_a)
      .def_static("for_engine", &library_for, "engine"_a,
                  "A library sized for the engine's per-sample input; in pinned host memory for a CUDA engine.")
      .def("load", &load_from_array, "indices"_a, "store"_a, R"doc(
LoadSamplesToRam: copy rows ``store[i]`` for each QSL index ``i`` in ``indices`` (the GIL is
released during the copy). ``store`` is the preprocessed store, e.g. a NumPy memmap [N, ...]
whose rows have exactly ``sample_bytes`` bytes and are C-contiguous.)doc")
      .def(
          "unload",
          [](SampleLibrary& lib, const py::object& indices) {
            if (indices.is_none()) {
              lib.unload();
              return;
            }
            const U64Array idx = as_indices(indices, "SampleLibrary.unload indices");
            lib.unload(idx.data(), static_cast<std::size_t>(idx.size()));
          },
          "indices"_a = py::none(), "UnloadSamplesFromRam: unload these QSL indices (None: all).")
      .def(
          "read",
          [](const SampleLibrary& lib, std::uint64_t index) {
            const std::byte* p = lib.sample(index);
            if (p == nullptr) throw InvalidArgument("SampleLibrary.read: QSL index " + std::to_string(index) + " is not loaded");
            return py::array_t<std::uint8_t>(static_cast<py::ssize_t>(lib.sample_bytes()),
                                             reinterpret_cast<const std::uint8_t*>(p));
          },
          "index"_a, "A copy of one loaded sample's bytes (uint8).")
      .def("__contains__", [](const SampleLibrary& lib, std::int64_t index) {
        return index >= 0 && lib.contains(static_cast<std::uint64_t>(index));
      })
      .def("__len__", &SampleLibrary::size)
      .def_property_readonly("sample_bytes", &SampleLibrary::sample_bytes)
      .def_property_readonly("capacity", &SampleLibrary::capacity)
      .def_property_readonly("pinned", [](const SampleLibrary& lib) { return lib.allocator() && lib.allocator()->pinned(); },
                             "Whether the block is page-locked host memory (False: pageable, or a pinned allocation fell back).")
      .def("__repr__", [](const SampleLibrary& lib) {
        return "SampleLibrary(sample_bytes=" + std::to_string(lib.sample_bytes()) + ", loaded=" + std::to_string(lib.size()) + ")";
      });

  // ------------------------------------------------------------------ engines
  py::class_<Engine, std::shared_ptr<Engine>>(m, "Engine", "An engine the executor runs batches with.")
      .def_property_readonly("name", &Engine::name)
      .def_property_readonly("input_dtype", [](const Engine& e) { return std::string(dtype_name(e.io().input_dtype)); })
      .def_property_readonly("input_shape", [](const Engine& e) { return shape_tuple(e.io().input_shape); })
      .def_property_readonly("input_bytes", [](const Engine& e) { return e.io().input_bytes(); })
      .def_property_readonly("output_bytes", [](const Engine& e) { return e.io().output_bytes; })
      .def_property_readonly("max_batch", [](const Engine& e) { return e.io().max_batch; })
      .def_property_readonly("device", [](const Engine& e) { return std::string(device_name(e.io().device)); })
      .def_property_readonly("graph_capturable", [](const Engine& e) { return e.io().graph_capturable; })
      .def("__repr__", [](const Engine& e) {
        return "<" + e.name() + " engine: input " + std::string(py::str(shape_tuple(e.io().input_shape))) + " " +
               dtype_name(e.io().input_dtype) + ", max_batch " + std::to_string(e.io().max_batch) + ">";
      });

  py::class_<NullEngine, Engine, std::shared_ptr<NullEngine>>(m, "NullEngine", R"doc(
Runs no model: measures the harness itself. answer: "none" (writes nothing), "constant" (writes
``constant``) or "index" (writes each sample's QSL index, for ordering tests).)doc")
      .def(py::init([](const std::string& input_dtype, const std::vector<std::int64_t>& input_shape,
                       std::int64_t max_batch, const std::string& answer, std::int32_t constant) {
             return std::make_shared<NullEngine>(make_io(input_dtype, input_shape, max_batch, "NullEngine"),
                                                 parse_answer(answer), constant);
           }),
           "input_dtype"_a = "float32", "input_shape"_a = std::vector<std::int64_t>{3, 224, 224},
           "max_batch"_a = 256, "answer"_a = "none", "constant"_a = 0)
      .def_property_readonly("answer", [](const NullEngine& e) { return std::string(answer_name(e.answer())); });

  py::class_<CudaArrayView>(m, "CudaArray", R"doc(
Device memory lent to a CUDA PythonEngine for one call: ptr, shape, typestr, readonly, stream, and
__cuda_array_interface__ (v3) so torch.as_tensor(x, device="cuda") or cupy.asarray(x) wrap it
without a copy. Never keep it (or what wraps it) past the call.)doc")
      .def_readonly("ptr", &CudaArrayView::ptr)
      .def_property_readonly("shape", [](const CudaArrayView& a) { return shape_tuple(a.shape); })
      .def_readonly("typestr", &CudaArrayView::typestr)
      .def_readonly("readonly", &CudaArrayView::readonly)
      .def_readonly("stream", &CudaArrayView::stream)
      .def_property_readonly("__cuda_array_interface__", [](const CudaArrayView& a) {
        py::dict d;
        d["shape"] = shape_tuple(a.shape);
        d["typestr"] = a.typestr;
        d["data"] = py::make_tuple(a.ptr, a.readonly);
        d["strides"] = py::none();
        d["version"] = 3;
        // 0 is not allowed by the protocol (it would mean the legacy default stream, 1).
        d["stream"] = a.stream == 0 ? py::object(py::int_(1)) : py::object(py::int_(a.stream));
        return d;
      })
      .def("__repr__", [](const CudaArrayView& a) {
        return "CudaArray(shape=" + std::string(py::str(shape_tuple(a.shape))) + ", typestr='" + a.typestr + "')";
      });

  py::class_<PythonEngine, Engine, std::shared_ptr<PythonEngine>>(m, "PythonEngine", R"doc(
Any Python callable as an engine: fn(inputs, labels, indices), with NumPy views valid only
during the call: inputs [n, *input_shape] (read-only), labels [n] int32 to write, indices [n]
uint64. fn may instead return n labels. The GIL is held only for the call; an exception fails
the batch (fastres.errors.EngineError from flush()/stop()).

device="cuda" (a build with CUDA): fn(inputs, labels, indices, stream) with CudaArray views of
the slot's device buffers and the cudaStream_t to enqueue on (an int); fn writes labels on that
stream and returns None without waiting. graph_capturable=True lets the executor capture fn's
work into a CUDA graph (use_graphs): fn must then only enqueue device work on `stream`.)doc")
      .def(py::init([](py::object fn, const std::string& input_dtype, const std::vector<std::int64_t>& input_shape,
                       std::int64_t max_batch, const std::string& device, bool graph_capturable) {
             EngineIO io = make_io(input_dtype, input_shape, max_batch, "PythonEngine");
             io.device = parse_device(device);
             io.graph_capturable = graph_capturable;
             return std::make_shared<PythonEngine>(std::move(fn), std::move(io));
           }),
           "fn"_a, "input_dtype"_a, "input_shape"_a, "max_batch"_a, py::kw_only(), "device"_a = "cpu",
           "graph_capturable"_a = false);

#if defined(FASTRES_WITH_CUDA)
  py::class_<TimedEngine, Engine, std::shared_ptr<TimedEngine>>(m, "TimedEngine", R"doc(
A CUDA engine of known cost (built with CUDA only): each batch of n samples is one kernel that
spins batch_ns + n * sample_ns nanoseconds on the slot's inference stream, then answers sample i
with the int32 in its first 4 bytes. It measures the executor's pipeline against an exact ideal
and proves, on the GPU, that answers travel with their samples. Graph-capturable.)doc")
      .def(py::init([](const std::string& input_dtype, const std::vector<std::int64_t>& input_shape,
                       std::int64_t max_batch, std::int64_t batch_ns, std::int64_t sample_ns) {
             return std::make_shared<TimedEngine>(make_io(input_dtype, input_shape, max_batch, "TimedEngine"),
                                                  static_cast<std::uint64_t>(non_negative(batch_ns, "TimedEngine batch_ns")),
                                                  static_cast<std::uint64_t>(non_negative(sample_ns, "TimedEngine sample_ns")));
           }),
           "input_dtype"_a = "int8", "input_shape"_a = std::vector<std::int64_t>{3, 224, 224}, "max_batch"_a = 256,
           "batch_ns"_a = 100000, "sample_ns"_a = 0)
      .def_property_readonly("batch_ns", &TimedEngine::batch_ns)
      .def_property_readonly("sample_ns", &TimedEngine::sample_ns)
      .def("batch_time_ns", &TimedEngine::batch_time_ns, "n"_a, "Nanoseconds one batch of n samples takes on the device.");
#endif

  // A C++ completion sink (e.g. the LoadGen sink); not constructible from Python.
  py::class_<CompletionSink, std::shared_ptr<CompletionSink>>(m, "CompletionSink",
                                                               "A completion sink implemented in C++.");

  // ------------------------------------------------------------------ config and stats
  const ExecutorConfig defaults;
  py::class_<ExecutorConfig>(m, "ExecutorConfig", R"doc(
The executor's knobs, named after NVIDIA's LWIS flags. Validated when an Executor is built.
batch_size (gpu_batch_size), copy_streams (gpu_copy_streams), infer_streams
(gpu_inference_streams), complete_threads, batch_timeout_us (deque_timeout_usec), deque_limit
(0: an acquire takes everything queued; N >= batch_size: at most N; LWIS use_deque_limit is
deque_limit=batch_size).)doc")
      .def(py::init([](std::int64_t batch_size, std::int64_t copy_streams, std::int64_t infer_streams,
                       std::int64_t complete_threads, std::int64_t batch_timeout_us, std::int64_t deque_limit,
                       std::int64_t watchdog_ms, bool use_graphs, bool start_from_device, bool run_infer_on_copy_streams,
                       bool use_spin_wait, const std::vector<int>& devices) {
             ExecutorConfig c;
             c.batch_size = batch_size;
             c.copy_streams = copy_streams;
             c.infer_streams = infer_streams;
             c.complete_threads = complete_threads;
             c.batch_timeout_us = batch_timeout_us;
             c.deque_limit = deque_limit;
             c.watchdog_ms = watchdog_ms;
             c.use_graphs = use_graphs;
             c.start_from_device = start_from_device;
             c.run_infer_on_copy_streams = run_infer_on_copy_streams;
             c.use_spin_wait = use_spin_wait;
             c.devices = devices;
             return c;
           }),
           py::kw_only(), "batch_size"_a = defaults.batch_size, "copy_streams"_a = defaults.copy_streams,
           "infer_streams"_a = defaults.infer_streams, "complete_threads"_a = defaults.complete_threads,
           "batch_timeout_us"_a = defaults.batch_timeout_us, "deque_limit"_a = defaults.deque_limit,
           "watchdog_ms"_a = defaults.watchdog_ms, "use_graphs"_a = defaults.use_graphs,
           "start_from_device"_a = defaults.start_from_device,
           "run_infer_on_copy_streams"_a = defaults.run_infer_on_copy_streams,
           "use_spin_wait"_a = defaults.use_spin_wait, "devices"_a = defaults.devices)
      .def_readwrite("batch_size", &ExecutorConfig::batch_size)
      .def_readwrite("copy_streams", &ExecutorConfig::copy_streams)
      .def_readwrite("infer_streams", &ExecutorConfig::infer_streams)
      .def_readwrite("complete_threads", &ExecutorConfig::complete_threads)
      .def_readwrite("batch_timeout_us", &ExecutorConfig::batch_timeout_us)
      .def_readwrite("deque_limit", &ExecutorConfig::deque_limit)
      .def_readwrite("watchdog_ms", &ExecutorConfig::watchdog_ms)
      .def_readwrite("use_graphs", &ExecutorConfig::use_graphs)
      .def_readwrite("start_from_device", &ExecutorConfig::start_from_device)
      .def_readwrite("run_infer_on_copy_streams", &ExecutorConfig::run_infer_on_copy_streams)
      .def_readwrite("use_spin_wait", &ExecutorConfig::use_spin_wait)
      .def_readwrite("devices", &ExecutorConfig::devices)
      .def(
          "validate", [](const ExecutorConfig& c, const Engine& engine) { validate(c, engine.io()); }, "engine"_a,
          "Raise InvalidArgument (naming the knob) if this config cannot run the engine.")
      .def("__repr__", &config_repr);

  py::class_<ExecutorStats>(m, "ExecutorStats", "A snapshot of the executor's counters.")
      .def_readonly("submitted", &ExecutorStats::submitted)
      .def_readonly("completed", &ExecutorStats::completed)
      .def_readonly("batches", &ExecutorStats::batches)
      .def_readonly("failed_batches", &ExecutorStats::failed_batches)
      .def_readonly("sink_errors", &ExecutorStats::sink_errors)
      .def_readonly("bound_batches", &ExecutorStats::bound_batches)
      .def_readonly("queue_depth", &ExecutorStats::queue_depth)
      .def_readonly("max_queue_depth", &ExecutorStats::max_queue_depth)
      .def_readonly("mean_batch_size", &ExecutorStats::mean_batch_size)
      .def_readonly("watchdog_batches", &ExecutorStats::watchdog_batches)
      .def_readonly("retired_slots", &ExecutorStats::retired_slots)
      .def_readonly("h2d_copies", &ExecutorStats::h2d_copies)
      .def_readonly("device_gathers", &ExecutorStats::device_gathers)
      .def_readonly("graph_captures", &ExecutorStats::graph_captures)
      .def_readonly("graph_launches", &ExecutorStats::graph_launches)
      .def_readonly("library_uploads", &ExecutorStats::library_uploads)
      .def_readonly("gather_ns", &ExecutorStats::gather_ns)
      .def_readonly("engine_ns", &ExecutorStats::engine_ns)
      .def_readonly("device_wait_ns", &ExecutorStats::device_wait_ns)
      .def_readonly("complete_ns", &ExecutorStats::complete_ns)
      .def("as_dict", &stats_dict)
      .def("__repr__", [](const ExecutorStats& s) { return "ExecutorStats(" + std::string(py::str(stats_dict(s))) + ")"; });

  // ------------------------------------------------------------------ Executor
  py::class_<PyExecutor>(m, "Executor", R"doc(
The native multi-stream executor. submit() only enqueues; a batcher thread forms batches
(LWIS deque semantics), stream-slot threads gather and run the engine, completion threads call
on_complete(ids, labels, error) once per batch (the GIL taken once per batch).
on_complete may also be a C++ CompletionSink.)doc")
      .def(py::init<std::shared_ptr<Engine>, std::shared_ptr<SampleLibrary>, ExecutorConfig, const py::object&>(),
           "engine"_a, "samples"_a, "config"_a, "on_complete"_a)
      .def("submit", &PyExecutor::submit, "ids"_a, "indices"_a, R"doc(
Queue samples: ids (LoadGen response ids) and QSL indices, sequences or NumPy integer arrays of
equal length. Thread-safe; releases the GIL; never waits for inference.)doc")
      .def("submit_query_samples", &PyExecutor::submit_query_samples, "samples"_a, R"doc(
Queue a list of mlperf_loadgen.QuerySample (what ConstructSUT's issue callback receives), read
in C++. Thread-safe; releases the GIL for the enqueue.)doc")
      .def("flush", &PyExecutor::flush, R"doc(
Issue what is queued now (partial batches too) and wait until everything submitted before the
call is completed. Raises EngineError if batches failed since the last flush/stop.)doc")
      .def("stop", &PyExecutor::stop, R"doc(
Drain (every submitted id completed exactly once) and join the threads. Idempotent. Raises
EngineError if batches failed since the last flush/stop. submit() afterwards raises.)doc")
      .def("hold_until", &PyExecutor::hold_until, "n"_a,
           "Test knob: take nothing until n samples are queued (flush/stop override; 0 clears).")
      .def("sync_library", &PyExecutor::sync_library, R"doc(
start_from_device: copy the SampleLibrary to every device now (after SampleLibrary.load, before
submitting); otherwise the first batch after a load does it. No-op for a CPU engine.)doc")
      .def_property_readonly("pinned", [](PyExecutor& self) { return self.get().pinned(); },
                             "False when a pinned host buffer fell back to pageable memory (slower copies).")
      .def("stats", [](PyExecutor& self) { return self.get().stats(); })
      .def_property_readonly("last_error", [](PyExecutor& self) { return self.get().last_error(); })
      .def_property_readonly("config", [](PyExecutor& self) { return self.get().config(); })
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](PyExecutor& self, const py::object& exc_type, const py::object&, const py::object&) {
        if (exc_type.is_none()) {
          self.stop();
          return false;
        }
        try {
          self.stop();  // an exception is already propagating: do not mask it
        } catch (const Error&) {
        }
        return false;
      });

  py::module_::import("atexit").attr("register")(py::cpp_function(&stop_all_executors));
}

// The LoadGen side of the native SUT, in C++ so that the per-sample work stays out of Python:
//
// * LoadGenSink completes a whole batch with ONE call to mlperf_loadgen.QuerySamplesComplete,
//   taking the GIL once per batch. LoadGen's C++ symbols are hidden inside its Python module,
//   so the call goes through its Python binding; the response objects are built here.
// * submit_query_samples() turns ConstructSUT's list of QuerySample objects into the executor's
//   (ids, indices) arrays without a Python loop.
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastres/executor.hpp"
#include "fastres/status.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace fastres::python {
namespace {

class LoadGenSink final : public CompletionSink {
 public:
  // Needs the GIL (called from Python).
  LoadGenSink() {
    py::module_ lg = py::module_::import("mlperf_loadgen");
    complete_fn_ = lg.attr("QuerySamplesComplete");
    response_type_ = lg.attr("QuerySampleResponse");
  }

  ~LoadGenSink() override {
    py::gil_scoped_acquire gil;
    complete_fn_ = py::object();
    response_type_ = py::object();
  }

  // A completion thread, once per batch; takes the GIL for the whole batch. A failed batch is
  // still completed (LoadGen must hear of every sample) with its -1 answers, and counted.
  void complete(const CompletedBatch& batch) override {
    if (batch.error != nullptr) failed_samples_.fetch_add(batch.size, std::memory_order_relaxed);
    py::gil_scoped_acquire gil;
    py::list responses(batch.size);
    const auto base = reinterpret_cast<std::uintptr_t>(batch.responses);
    const auto bytes = static_cast<std::size_t>(batch.response_bytes);
    for (std::size_t i = 0; i < batch.size; ++i) {
      // Steals the new reference into the list: no refcount traffic per sample.
      PyList_SET_ITEM(responses.ptr(), static_cast<Py_ssize_t>(i),
                      response_type_(batch.ids[i], base + i * bytes, bytes).release().ptr());
    }
    complete_fn_(responses);
    completed_samples_.fetch_add(batch.size, std::memory_order_relaxed);
    batches_.fetch_add(1, std::memory_order_relaxed);
  }

  std::uint64_t completed_samples() const { return completed_samples_.load(); }
  std::uint64_t failed_samples() const { return failed_samples_.load(); }
  std::uint64_t batches() const { return batches_.load(); }

 private:
  py::object complete_fn_;
  py::object response_type_;
  std::atomic<std::uint64_t> completed_samples_{0};
  std::atomic<std::uint64_t> failed_samples_{0};
  std::atomic<std::uint64_t> batches_{0};
};

}  // namespace
}  // namespace fastres::python

// Reads .id and .index of each mlperf_loadgen.QuerySample in `samples` into the two vectors.
// Called with the GIL held.
void query_samples_to_arrays(const py::list& samples, std::vector<std::uint64_t>& ids,
                             std::vector<std::uint64_t>& indices) {
  const std::size_t n = samples.size();
  ids.resize(n);
  indices.resize(n);
  const py::str id_name("id"), index_name("index");
  for (std::size_t i = 0; i < n; ++i) {
    py::handle s = PyList_GET_ITEM(samples.ptr(), static_cast<Py_ssize_t>(i));
    ids[i] = s.attr(id_name).cast<std::uint64_t>();
    indices[i] = s.attr(index_name).cast<std::uint64_t>();
  }
}

void bind_loadgen_sink(py::module_& m) {
  using fastres::python::LoadGenSink;
  py::class_<LoadGenSink, fastres::CompletionSink, std::shared_ptr<LoadGenSink>>(m, "LoadGenSink", R"doc(
Completion sink that reports each finished batch to LoadGen with one QuerySamplesComplete call
(the GIL taken once per batch). Pass it as an Executor's on_complete.)doc")
      .def(py::init<>())
      .def_property_readonly("completed_samples", &LoadGenSink::completed_samples)
      .def_property_readonly("failed_samples", &LoadGenSink::failed_samples,
                             "samples completed with an engine error (answered -1)")
      .def_property_readonly("batches", &LoadGenSink::batches);
}

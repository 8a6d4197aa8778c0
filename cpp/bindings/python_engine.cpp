#include "python_engine.hpp"

#include <pybind11/numpy.h>

#include <cstring>
#include <utility>
#include <vector>

#include "fastres/status.hpp"

namespace fastres::python {

namespace {

// Drops a Python reference from any thread: with the GIL taken, unless the interpreter is
// already gone (then the reference is leaked on purpose).
void drop_with_gil(py::object& obj) noexcept {
  if (!obj) return;
  if (!Py_IsInitialized()) {
    obj.release();
    return;
  }
  py::gil_scoped_acquire gil;
  obj = py::object();
}

// A base object that keeps nothing alive: the arrays below are views of executor memory whose
// lifetime is the call, which the contract states.
py::capsule borrowed_base() {
  static int anchor = 0;  // PyCapsule wants a non-null pointer; nothing is owned
  return py::capsule(&anchor, "fastres.borrowed");
}

std::string python_error_text(const py::error_already_set& e) { return e.what(); }

}  // namespace

PythonEngine::PythonEngine(py::object fn, EngineIO io) : fn_(std::move(fn)), io_(std::move(io)) {
  if (!fn_ || !PyCallable_Check(fn_.ptr())) {
    throw InvalidArgument("PythonEngine fn: expected a callable fn(inputs, labels, indices), got " +
                          std::string(py::str(py::type::handle_of(fn_).attr("__name__"))));
  }
  io_.output_bytes = sizeof(std::int32_t);
  io_.device = Device::kCpu;
  validate(io_, "PythonEngine");
}

PythonEngine::~PythonEngine() { drop_with_gil(fn_); }

void PythonEngine::enqueue(const Batch& batch, StreamContext&) {
  py::gil_scoped_acquire gil;
  try {
    const auto n = static_cast<py::ssize_t>(batch.size);
    std::vector<py::ssize_t> shape{n};
    for (const auto d : io_.input_shape) shape.push_back(static_cast<py::ssize_t>(d));
    const py::capsule base = borrowed_base();
    py::array inputs(py::dtype(dtype_name(io_.input_dtype)), shape, batch.input, base);
    inputs.attr("flags").attr("writeable") = false;
    py::array_t<std::int32_t> labels({n}, {static_cast<py::ssize_t>(sizeof(std::int32_t))},
                                     reinterpret_cast<std::int32_t*>(batch.output), base);
    py::array_t<std::uint64_t> indices(n, batch.indices);  // a copy: small, and safe to keep
    py::object result = fn_(inputs, labels, indices);
    if (!result.is_none()) {
      auto answers = py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>::ensure(result);
      if (!answers || answers.ndim() != 1 || answers.shape(0) != n) {
        throw EngineError("PythonEngine: the callable returned " + std::string(py::repr(result)).substr(0, 200) +
                          "; return None (after writing labels) or " + std::to_string(n) + " int labels");
      }
      std::memcpy(batch.output, answers.data(), batch.size * sizeof(std::int32_t));
    }
  } catch (py::error_already_set& e) {
    throw EngineError("PythonEngine: the callable raised " + python_error_text(e));
  }
}

PythonCompletionSink::PythonCompletionSink(py::object fn) : fn_(std::move(fn)) {
  if (!fn_ || !PyCallable_Check(fn_.ptr())) {
    throw InvalidArgument("Executor on_complete: expected a callable on_complete(ids, labels, error) or a CompletionSink");
  }
}

PythonCompletionSink::~PythonCompletionSink() { drop_with_gil(fn_); }

void PythonCompletionSink::complete(const CompletedBatch& batch) {
  py::gil_scoped_acquire gil;
  try {
    const auto n = static_cast<py::ssize_t>(batch.size);
    py::array_t<std::uint64_t> ids(n, batch.ids);
    py::array labels;
    if (batch.response_bytes == sizeof(std::int32_t)) {
      labels = py::array_t<std::int32_t>(n, reinterpret_cast<const std::int32_t*>(batch.responses));
    } else {
      labels = py::array_t<std::uint8_t>({n, static_cast<py::ssize_t>(batch.response_bytes)},
                                         reinterpret_cast<const std::uint8_t*>(batch.responses));
    }
    py::object error = batch.error ? py::object(py::str(batch.error)) : py::object(py::none());
    fn_(ids, labels, error);
  } catch (py::error_already_set& e) {
    throw Error("on_complete raised " + python_error_text(e));
  }
}

}  // namespace fastres::python

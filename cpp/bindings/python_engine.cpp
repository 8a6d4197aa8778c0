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

std::string typestr(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "<f4";
    case DType::kFloat16: return "<f2";
    case DType::kInt8: return "|i1";
    case DType::kUInt8: return "|u1";
    case DType::kInt32: return "<i4";
    case DType::kInt64: return "<i8";
  }
  return "|u1";
}

PythonEngine::PythonEngine(py::object fn, EngineIO io) : fn_(std::move(fn)), io_(std::move(io)) {
  if (!fn_ || !PyCallable_Check(fn_.ptr())) {
    throw InvalidArgument(std::string("PythonEngine fn: expected a callable ") +
                          (io_.device == Device::kCuda ? "fn(inputs, labels, indices, stream)" : "fn(inputs, labels, indices)") +
                          ", got " + std::string(py::str(py::type::handle_of(fn_).attr("__name__"))));
  }
  io_.output_bytes = sizeof(std::int32_t);
  if (io_.device == Device::kCpu && io_.graph_capturable) {
    throw InvalidArgument("PythonEngine: graph_capturable applies to CUDA engines only (device='cuda')");
  }
  validate(io_, "PythonEngine");
}

PythonEngine::~PythonEngine() { drop_with_gil(fn_); }

void PythonEngine::enqueue(const Batch& batch, StreamContext& ctx) {
  py::gil_scoped_acquire gil;
  try {
    const auto n = static_cast<py::ssize_t>(batch.size);
    if (io_.device == Device::kCuda) {
      CudaArrayView inputs;
      inputs.ptr = reinterpret_cast<std::uintptr_t>(batch.input);
      inputs.shape.push_back(n);
      inputs.shape.insert(inputs.shape.end(), io_.input_shape.begin(), io_.input_shape.end());
      inputs.typestr = typestr(io_.input_dtype);
      inputs.readonly = true;
      inputs.stream = reinterpret_cast<std::uintptr_t>(ctx.stream);
      CudaArrayView labels;
      labels.ptr = reinterpret_cast<std::uintptr_t>(batch.output);
      labels.shape = {n};
      labels.typestr = "<i4";
      labels.stream = inputs.stream;
      py::array_t<std::uint64_t> indices(n, batch.indices);
      py::object result = fn_(py::cast(std::move(inputs)), py::cast(std::move(labels)), indices,
                              py::int_(reinterpret_cast<std::uintptr_t>(ctx.stream)));
      if (!result.is_none()) {
        throw EngineError("PythonEngine (cuda): the callable returned " + std::string(py::repr(result)).substr(0, 200) +
                          "; a CUDA callable writes labels on the given stream and returns None");
      }
      return;
    }
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

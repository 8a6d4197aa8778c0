// The two places where the executor's threads call Python: PythonEngine (any callable as an
// engine) and PythonCompletionSink (any callable as the completion sink). Each takes the GIL
// once per batch, only for the call, and turns a Python exception into a fastres error.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "fastres/engine.hpp"
#include "fastres/executor.hpp"

namespace fastres::python {

namespace py = pybind11;

// A view of device memory for Python, valid only during the engine call that receives it. It
// exposes __cuda_array_interface__ (version 3, with the slot's stream), which PyTorch
// (torch.as_tensor(x, device="cuda")), CuPy (cupy.asarray) and Numba read without a copy.
struct CudaArrayView {
  std::uintptr_t ptr = 0;
  std::vector<std::int64_t> shape;
  std::string typestr;  // NumPy's array-interface type string: "<f4", "|i1", ...
  bool readonly = false;
  std::uintptr_t stream = 0;  // cudaStream_t the data is ordered on
};

// The array-interface type string of a dtype ("<f4", "|i1", ...).
std::string typestr(DType dtype);

// fn(inputs, labels, indices) with NumPy arrays valid ONLY during the call:
//   inputs   [n, *input_shape] of input_dtype, read-only (it may be the SampleLibrary itself)
//   labels   [n] int32, writable: the engine's answers
//   indices  [n] uint64, the QSL indices (a copy)
// fn writes labels in place, or returns an array-like of n labels that is copied into them.
// A CUDA PythonEngine (io.device == kCuda) is called fn(inputs, labels, indices, stream) instead:
// inputs and labels are CudaArrayView (device memory of the slot's device, current during the
// call), stream is the cudaStream_t (an int) the work must be enqueued on, and fn must write
// labels on that stream and return None without waiting for it (the executor copies the labels
// back after the work on that stream and waits for them itself).
// Called from a stream-slot worker thread with the GIL held for the call; a Python exception
// becomes fastres::EngineError (the executor then fails the batch). Slots serialise on the GIL.
class PythonEngine final : public Engine {
 public:
  // Needs the GIL (called from Python). Throws InvalidArgument for a bad IO or a non-callable.
  // io.device and io.graph_capturable are the caller's (a CUDA callable that only enqueues
  // device work, such as a PyTorch model on the given stream, may be captured).
  PythonEngine(py::object fn, EngineIO io);
  ~PythonEngine() override;  // takes the GIL to drop the callable

  PythonEngine(const PythonEngine&) = delete;
  PythonEngine& operator=(const PythonEngine&) = delete;

  const EngineIO& io() const noexcept override { return io_; }
  std::string name() const override { return "python"; }
  void enqueue(const Batch& batch, StreamContext& stream) override;  // takes the GIL

 private:
  py::object fn_;
  EngineIO io_;
};

// on_complete(ids: uint64[n], labels: int32[n], error: str | None), once per batch, from a
// completion thread, with the GIL held for the call; the arrays are copies. A Python exception
// becomes fastres::Error, which the executor records as a sink error.
class PythonCompletionSink final : public CompletionSink {
 public:
  explicit PythonCompletionSink(py::object fn);  // needs the GIL
  ~PythonCompletionSink() override;              // takes the GIL to drop the callable

  PythonCompletionSink(const PythonCompletionSink&) = delete;
  PythonCompletionSink& operator=(const PythonCompletionSink&) = delete;

  void complete(const CompletedBatch& batch) override;

 private:
  py::object fn_;
};

}  // namespace fastres::python

// fastres._core.TensorRTEngine and TensorRT's log routed to Python's logging. Compiled only into
// builds with FASTRES_WITH_TENSORRT (CMakeLists.txt); fastres.engines.tensorrt says what to install
// when it is missing. Compiled here against the TensorRT test double's headers only (README).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>

#include "engines/tensorrt_engine.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

// TensorRT's severities (0 internal error .. 4 verbose) as logging levels.
int logging_level(int severity) {
  switch (severity) {
    case 0: return 50;  // CRITICAL
    case 1: return 40;  // ERROR
    case 2: return 30;  // WARNING
    case 3: return 20;  // INFO
    default: return 10; // DEBUG
  }
}

// TensorRT logs on the thread that called it: the constructing thread (which holds the GIL, and
// takes it again here re-entrantly) or a slot's thread, while Python's waits (flush, stop) have
// released the GIL. After the interpreter is gone, messages go to stderr.
void log_to_python(int severity, const std::string& message) {
  if (!Py_IsInitialized()) {
    std::fprintf(stderr, "fastres: TensorRT: %s\n", message.c_str());
    return;
  }
  py::gil_scoped_acquire gil;
  try {
    py::module_::import("logging").attr("getLogger")("fastres.tensorrt").attr("log")(logging_level(severity), message);
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable("fastres.tensorrt log");
  }
}

py::list tensors_list(const fastres::TensorRTEngine& e) {
  py::list out;
  for (const auto& t : e.tensors()) {
    py::tuple shape(t.shape.size());
    for (std::size_t i = 0; i < t.shape.size(); ++i) shape[i] = t.shape[i];
    out.append(py::dict("name"_a = t.name, "mode"_a = t.input ? "input" : "output", "dtype"_a = t.dtype,
                        "format"_a = t.format, "shape"_a = shape));
  }
  return out;
}

}  // namespace

void bind_tensorrt(py::module_& m) {
  using fastres::TensorRTEngine;
  fastres::TensorRTLogger::instance().set_sink(&log_to_python, /*max_severity=*/3);

  py::class_<TensorRTEngine, fastres::Engine, std::shared_ptr<TensorRTEngine>>(m, "TensorRTEngine", R"doc(
A serialized TensorRT plan as a CUDA engine of the executor (builds with FASTRES_WITH_TENSORRT only).
The plan is deserialized on `device` now and on every other device a slot runs on; every stream
slot gets its own execution context on its own optimization profile. The answer tensor
(`output_name`, or the only output) is int32 labels (TensorRT writes them straight into the
slot's output), int64 labels (narrowed on the device) or float32 logits (top-1 on the device);
`label_offset` is subtracted (1 for the MLPerf model's background class). TensorRT's log goes to
logging.getLogger("fastres.tensorrt"); failures raise fastres.errors.EngineError with TensorRT's
message. Build plans with fastres.engines.tensorrt.build_engine.)doc")
      .def(py::init([](const std::string& plan, const std::string& input_name, const std::string& output_name,
                       std::int32_t label_offset, int device, bool graph_capturable, const std::string& name) {
             fastres::TensorRTOptions options;
             options.input_name = input_name;
             options.output_name = output_name;
             options.label_offset = label_offset;
             options.device = device;
             options.graph_capturable = graph_capturable;
             options.name = name;
             py::gil_scoped_release release;  // deserializing takes seconds; TensorRT logs take the GIL
             return TensorRTEngine::from_file(plan, options);
           }),
           "plan"_a, py::kw_only(), "input_name"_a = "", "output_name"_a = "", "label_offset"_a = 0, "device"_a = 0,
           "graph_capturable"_a = true, "name"_a = "")
      .def_property_readonly("tensors", &tensors_list, "The plan's IO tensors: name, mode, dtype, format, shape.")
      .def_property_readonly("input_name", &TensorRTEngine::input_name)
      .def_property_readonly("output_name", &TensorRTEngine::output_name)
      .def_property_readonly("answer", [](const TensorRTEngine& e) { return std::string(fastres::answer_name(e.answer())); },
                             "How the answer becomes int32 labels: 'labels', 'narrowed labels' or 'logits'.")
      .def_property_readonly("label_offset", [](const TensorRTEngine& e) { return e.options().label_offset; })
      .def_property_readonly("profiles", &TensorRTEngine::profiles)
      .def_property_readonly("devices", &TensorRTEngine::devices, "Devices the plan is deserialized on so far.")
      .def("profile_batch", &TensorRTEngine::profile_batch, "profile"_a,
           "(min, max) batch of an optimization profile.");
}

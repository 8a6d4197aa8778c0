// The pybind11 module fastres._core. The one place where fastres::Error subclasses become
// Python exceptions: they map onto the classes defined in fastres/errors.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "fastres/build_info.hpp"
#include "fastres/status.hpp"

namespace py = pybind11;

// cpp/bindings/executor_bindings.cpp: SampleLibrary, engines, ExecutorConfig, Executor.
void bind_executor(py::module_& m);
void bind_loadgen_sink(py::module_& m);
// cpp/bindings/kernel_bindings.cpp: the submodule kernels (host twins and CUDA kernels).
void bind_kernels(py::module_& m);
#if defined(FASTRES_WITH_TENSORRT)
// cpp/bindings/tensorrt_bindings.cpp: TensorRTEngine and TensorRT's log (TensorRT builds only).
void bind_tensorrt(py::module_& m);
#endif

namespace {

void register_exception_translation() {
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    py::module_ errors = py::module_::import("fastres.errors");
    try {
      std::rethrow_exception(p);
    } catch (const fastres::InvalidArgument& e) {
      py::set_error(errors.attr("InvalidArgument"), e.what());
    } catch (const fastres::EngineError& e) {
      py::set_error(errors.attr("EngineError"), e.what());
    } catch (const fastres::CudaError& e) {
      py::set_error(errors.attr("CudaError"), e.what());
    } catch (const fastres::Unavailable& e) {
      py::set_error(errors.attr("Unavailable"), e.what());
    } catch (const fastres::Error& e) {
      py::set_error(errors.attr("FastresError"), e.what());
    }
  });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastres native core";
  register_exception_translation();
  bind_executor(m);
  bind_loadgen_sink(m);
  bind_kernels(m);
#if defined(FASTRES_WITH_TENSORRT)
  bind_tensorrt(m);
#endif

  m.def("build_info", [] {
    auto b = fastres::build_info();
    py::dict d;
    d["version"] = b.version;
    d["compiler"] = b.compiler;
    d["with_cuda"] = b.with_cuda;
    d["with_tensorrt"] = b.with_tensorrt;
    d["tensorrt_version"] = b.tensorrt_version.empty() ? py::object(py::none()) : py::object(py::str(b.tensorrt_version));
    return d;
  }, "What this build of the core contains (compile-time facts).");

  m.def("cuda_runtime_info", [] {
    fastres::CudaRuntimeInfo info;
    {
      py::gil_scoped_release release;
      info = fastres::cuda_runtime_info();
    }
    py::dict d;
    d["compiled"] = info.compiled;
    d["toolkit_version"] = info.toolkit_version.empty() ? py::object(py::none()) : py::object(py::str(info.toolkit_version));
    d["driver_version"] = info.driver_version;
    d["runtime_version"] = info.runtime_version;
    d["status"] = info.status;
    py::list devs;
    for (const auto& dev : info.devices) {
      py::dict dd;
      dd["index"] = dev.index;
      dd["name"] = dev.name;
      dd["compute_capability"] = py::make_tuple(dev.compute_major, dev.compute_minor);
      dd["total_memory"] = dev.total_memory;
      devs.append(dd);
    }
    d["devices"] = devs;
    return d;
  }, "Queries the CUDA runtime; safe without a GPU or driver (returns no devices and why).");

  // Test hook: raises each fastres::Error subclass so the translation is tested end to end.
  m.def("_raise_for_test", [](const std::string& kind, const std::string& msg) {
    if (kind == "InvalidArgument") throw fastres::InvalidArgument(msg);
    if (kind == "EngineError") throw fastres::EngineError(msg);
    if (kind == "CudaError") throw fastres::CudaError(msg);
    if (kind == "Unavailable") throw fastres::Unavailable(msg);
    throw fastres::Error(msg);
  });
}

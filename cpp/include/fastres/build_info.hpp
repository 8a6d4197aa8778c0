// What this build of the core contains and what the running machine offers.
#pragma once

#include <string>
#include <vector>

namespace fastres {

struct CudaDevice {
  int index = 0;
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  std::size_t total_memory = 0;
};

struct CudaRuntimeInfo {
  bool compiled = false;          // built with FASTRES_WITH_CUDA
  std::string toolkit_version;    // e.g. "13.0" (compile time)
  int driver_version = 0;         // cudaDriverGetVersion, 0 without a driver
  int runtime_version = 0;        // cudaRuntimeGetVersion
  std::string status;             // why no device was found, if none
  std::vector<CudaDevice> devices;
};

struct BuildInfo {
  std::string version;
  std::string compiler;
  bool with_cuda = false;
  bool with_tensorrt = false;
  std::string tensorrt_version;  // compile-time headers
};

BuildInfo build_info();

// Queries the CUDA runtime. Safe without a GPU or driver: returns no devices and says why.
// Thread-safe; may take a few hundred milliseconds the first time (driver initialisation).
CudaRuntimeInfo cuda_runtime_info();

}  // namespace fastres

// Built only with FASTRES_WITH_CUDA. The runtime is linked statically, so these calls
// fail cleanly (no device / insufficient driver) instead of failing to load.
#include <cuda_runtime_api.h>

#include <string>

#include "fastres/build_info.hpp"

namespace fastres {

CudaRuntimeInfo cuda_runtime_info() {
  CudaRuntimeInfo info;
  info.compiled = true;
  info.toolkit_version = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
  cudaRuntimeGetVersion(&info.runtime_version);
  if (cudaDriverGetVersion(&info.driver_version) != cudaSuccess) info.driver_version = 0;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    info.status = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return info;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    const cudaError_t prop_err = cudaGetDeviceProperties(&prop, i);
    if (prop_err != cudaSuccess) {
      // Skip the device, say why, and leave no error behind for an unrelated later call.
      info.status += std::string(info.status.empty() ? "" : "; ") + "device " + std::to_string(i) +
                     ": cudaGetDeviceProperties: " + cudaGetErrorName(prop_err);
      cudaGetLastError();
      continue;
    }
    CudaDevice d;
    d.index = i;
    d.name = prop.name;
    d.compute_major = prop.major;
    d.compute_minor = prop.minor;
    d.total_memory = prop.totalGlobalMem;
    info.devices.push_back(d);
  }
  if (info.devices.empty()) info.status = "no CUDA device found";
  return info;
}

}  // namespace fastres

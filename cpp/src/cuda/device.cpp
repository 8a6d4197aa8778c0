#include "fastres/cuda/device.hpp"

#include <cuda_runtime_api.h>

#include "fastres/cuda/error.hpp"
#include "fastres/status.hpp"

namespace fastres::cuda {

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

void require_device(int device) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw Unavailable("CUDA device " + std::to_string(device) + " requested, but the CUDA runtime finds none: " +
                      "cudaGetDeviceCount failed: " + error_text(status) +
                      "; run on a machine with an NVIDIA GPU and driver, or use the host path");
  }
  if (device < 0 || device >= count) {
    throw Unavailable("CUDA device " + std::to_string(device) + " requested, but this machine has " +
                      std::to_string(count) + " (valid: 0.." + std::to_string(count - 1) + ")");
  }
}

DeviceGuard::DeviceGuard(int device) {
  require_device(device);
  FASTRES_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice(" + std::to_string(device) + ")");
}

DeviceGuard::~DeviceGuard() {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current != previous_ && previous_ >= 0) cudaSetDevice(previous_);
  cudaGetLastError();
}

}  // namespace fastres::cuda

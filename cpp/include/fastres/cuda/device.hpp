// Which CUDA devices exist, and a guard that makes one current. Only with FASTRES_WITH_CUDA.
#pragma once

#include <string>

namespace fastres::cuda {

// Devices the runtime sees; 0 without a driver or device (never throws). Thread-safe.
int device_count() noexcept;

// Throws fastres::Unavailable, saying why (no driver, no device, index out of range), unless
// `device` is a usable device index. Thread-safe.
void require_device(int device);

// Makes `device` current on this thread for the guard's life, then restores the previous one.
// Throws Unavailable (require_device) or CudaError. Not copyable or movable.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace fastres::cuda

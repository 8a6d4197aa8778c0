// An owned device allocation (cudaMalloc). Only with FASTRES_WITH_CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

namespace fastres::cuda {

// `bytes` of device memory on the current device, not initialised; 0 bytes holds null. Freed
// with the object. Move-only; not thread-safe (the owner orders the work on its bytes).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  template <class T>
  T* as() noexcept { return reinterpret_cast<T*>(data_); }
  template <class T>
  const T* as() const noexcept { return reinterpret_cast<const T*>(data_); }
  std::size_t size() const noexcept { return bytes_; }
  int device() const noexcept { return device_; }

  // Asynchronous copies on `stream` of the first `bytes` bytes (throws InvalidArgument when
  // bytes > size()). With pageable host memory CUDA only promises that a host-to-device copy has
  // staged its source when the call returns; a copy into pageable memory may return before the
  // bytes land: wait on the stream before reading them either way.
  void copy_from_host(const void* src, std::size_t bytes, cudaStream_t stream);
  void copy_to_host(void* dst, std::size_t bytes, cudaStream_t stream) const;
  // Sets every byte to `value` (asynchronously, on `stream`).
  void fill(unsigned char value, cudaStream_t stream);

 private:
  void release() noexcept;

  std::byte* data_ = nullptr;
  std::size_t bytes_ = 0;
  int device_ = -1;
};

}  // namespace fastres::cuda

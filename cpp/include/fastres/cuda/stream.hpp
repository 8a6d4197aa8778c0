// An owned CUDA stream (a stream slot's copy or inference stream). Only with FASTRES_WITH_CUDA.
#pragma once

#include <cuda_runtime_api.h>

namespace fastres::cuda {

// Created on the current device; destroyed (without waiting) with the object. Move-only. Using
// one stream from several threads is allowed by CUDA, but the executor gives each stream to one
// thread.
class Stream {
 public:
  // non_blocking: does not synchronise with the legacy default stream (what the executor wants).
  // priority: cudaDeviceGetStreamPriorityRange's range; lower is higher priority, 0 the default.
  explicit Stream(bool non_blocking = true, int priority = 0);
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const noexcept { return stream_; }
  // Blocks until all work on the stream is done; throws CudaError (a kernel's fault shows here).
  void synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace fastres::cuda

// An owned CUDA event: a stage boundary of a stream slot (input copied, inference done, output
// copied). Only with FASTRES_WITH_CUDA.
#pragma once

#include <cuda_runtime_api.h>

namespace fastres::cuda {

// How a host thread waits for an event: spinning (lowest latency, one core busy) or sleeping
// until the driver wakes it (cudaEventBlockingSync; frees the core).
enum class EventWait { kSpin, kBlockingSync };

// Created on the current device. Without timing by default (cheaper to record and wait on);
// timing events serve the benchmarks. Move-only.
class Event {
 public:
  explicit Event(EventWait wait = EventWait::kSpin, bool timing = false);
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  cudaEvent_t get() const noexcept { return event_; }
  void record(cudaStream_t stream);
  // Makes `stream` wait (on the device) until the event's work is done.
  void wait_on(cudaStream_t stream) const;
  // Blocks the calling thread until the event's work is done (spinning or sleeping, as created).
  void synchronize() const;
  // True when the work is done, false while it is pending. Throws CudaError on a fault.
  bool query() const;
  // Milliseconds between two recorded timing events.
  static float elapsed_ms(const Event& start, const Event& end);

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace fastres::cuda

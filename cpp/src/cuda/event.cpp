#include "fastres/cuda/event.hpp"

#include <utility>

#include "fastres/cuda/error.hpp"

namespace fastres::cuda {

Event::Event(EventWait wait, bool timing) {
  unsigned flags = timing ? cudaEventDefault : cudaEventDisableTiming;
  if (wait == EventWait::kBlockingSync) flags |= cudaEventBlockingSync;
  check(cudaEventCreateWithFlags(&event_, flags), "cudaEventCreateWithFlags(flags=" + std::to_string(flags) + ")");
}

Event::~Event() {
  if (event_ != nullptr) ignore(cudaEventDestroy(event_));
}

Event::Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) ignore(cudaEventDestroy(event_));
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

void Event::record(cudaStream_t stream) { FASTRES_CUDA_CHECK(cudaEventRecord(event_, stream)); }

void Event::wait_on(cudaStream_t stream) const { FASTRES_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0)); }

void Event::synchronize() const { FASTRES_CUDA_CHECK(cudaEventSynchronize(event_)); }

bool Event::query() const {
  const cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  check(status, "cudaEventQuery");
  return true;
}

float Event::elapsed_ms(const Event& start, const Event& end) {
  float ms = 0.0f;
  FASTRES_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, end.event_));
  return ms;
}

}  // namespace fastres::cuda

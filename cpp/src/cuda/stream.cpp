#include "fastres/cuda/stream.hpp"

#include <utility>

#include "fastres/cuda/error.hpp"

namespace fastres::cuda {

Stream::Stream(bool non_blocking, int priority) {
  const unsigned flags = non_blocking ? cudaStreamNonBlocking : cudaStreamDefault;
  check(cudaStreamCreateWithPriority(&stream_, flags, priority),
        "cudaStreamCreateWithPriority(flags=" + std::to_string(flags) + ", priority=" + std::to_string(priority) + ")");
}

Stream::~Stream() {
  if (stream_ != nullptr) ignore(cudaStreamDestroy(stream_));
}

Stream::Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) ignore(cudaStreamDestroy(stream_));
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

void Stream::synchronize() const { FASTRES_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace fastres::cuda

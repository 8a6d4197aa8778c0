// Argument checks shared by the host twins and the CUDA launch wrappers, so both reject the same
// calls with the same message. Internal to kernels/src.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "fastres/kernels/kernels.hpp"
#include "fastres/status.hpp"

namespace fastres::kernels::detail {

inline void require_pointer(const void* p, const char* kernel, const char* arg, std::size_t count) {
  if (p == nullptr && count > 0) {
    throw InvalidArgument(std::string(kernel) + ": " + arg + " is null with " + std::to_string(count) +
                          " elements to process; pass a buffer of that size");
  }
}

inline void check_gather(const void* batch, const void* library, std::size_t sample_bytes, const void* slots,
                         std::size_t count) {
  if (count == 0) return;
  if (sample_bytes == 0) throw InvalidArgument("gather_samples: sample_bytes=0: must be >= 1");
  require_pointer(batch, "gather_samples", "batch", count);
  require_pointer(library, "gather_samples", "library", count);
  require_pointer(slots, "gather_samples", "slots", count);
}

inline void check_elementwise(const void* dst, const void* src, std::size_t count, const char* kernel) {
  require_pointer(dst, kernel, "dst", count);
  require_pointer(src, kernel, "src", count);
}

inline void check_top1(const void* labels, const void* logits, std::size_t rows, std::size_t classes) {
  if (rows == 0) return;
  if (classes == 0 || classes > 0x7fffffffu) {
    throw InvalidArgument("top1: classes=" + std::to_string(classes) + ": must be in [1, 2147483647]");
  }
  require_pointer(labels, "top1", "labels", rows);
  require_pointer(logits, "top1", "logits", rows);
}

inline void check_hwc(const void* dst, const void* src, const Nchw& shape, const char* kernel) {
  if (shape.c != 3) {
    throw InvalidArgument(std::string(kernel) + ": images have " + std::to_string(shape.c) +
                          " channels; expected 3 (RGB, HWC)");
  }
  check_elementwise(dst, src, shape.count(), kernel);
}

inline void check_timed(const void* labels, const void* inputs, std::size_t sample_bytes, std::size_t count) {
  if (count == 0) return;
  if (sample_bytes < 4) {
    throw InvalidArgument("timed_answer: sample_bytes=" + std::to_string(sample_bytes) +
                          ": must be >= 4 (the answer is read from each sample's first 4 bytes)");
  }
  require_pointer(labels, "timed_answer", "labels", count);
  require_pointer(inputs, "timed_answer", "inputs", count);
}

}  // namespace fastres::kernels::detail

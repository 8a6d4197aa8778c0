// narrow_labels: one thread per label, grid-stride. The TensorRT engine runs it after a plan whose
// answer is an int64 ArgMax (the MLPerf model as given) or an int32 label that still carries the
// background class, on the same stream as the plan, so a CUDA graph captures both.
#include <cuda_runtime.h>

#include <cstdint>

#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "launch.cuh"
#include "validate.hpp"

namespace fastres::kernels {

namespace {

template <class Src>
__global__ void narrow_labels_kernel(std::int32_t* labels, const Src* src, std::size_t count, std::int32_t offset) {
  for (std::size_t i = detail::global_thread(); i < count; i += detail::grid_threads()) {
    labels[i] = narrow_label(static_cast<std::int64_t>(src[i]), offset);
  }
}

template <class Src>
void launch(std::int32_t* labels, const Src* src, std::size_t count, std::int32_t offset, cudaStream_t stream) {
  detail::check_elementwise(labels, src, count, "narrow_labels");
  if (count == 0) return;
  narrow_labels_kernel<<<detail::blocks_for(count), detail::kBlock, 0, stream>>>(labels, src, count, offset);
  detail::check_launch("narrow_labels");
}

}  // namespace

void narrow_labels(std::int32_t* labels, const std::int64_t* src, std::size_t count, std::int32_t offset,
                   cudaStream_t stream) {
  launch(labels, src, count, offset, stream);
}

void narrow_labels(std::int32_t* labels, const std::int32_t* src, std::size_t count, std::int32_t offset,
                   cudaStream_t stream) {
  launch(labels, src, count, offset, stream);
}

}  // namespace fastres::kernels

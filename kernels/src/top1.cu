// top1: one warp per row of logits; each lane scans a strided part of the row, then the warp
// combines its 32 candidates with shuffles. argmax_combine is associative and commutative, so
// the answer is NumPy's argmax whatever the reduction order.
#include <cuda_runtime.h>

#include <cstdint>

#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "launch.cuh"
#include "validate.hpp"

namespace fastres::kernels {

namespace {

constexpr unsigned kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

__global__ void top1_kernel(std::int32_t* __restrict__ labels, const float* __restrict__ logits, std::size_t rows,
                            std::size_t classes, std::int32_t offset) {
  const unsigned lane = threadIdx.x % kWarp;
  const std::size_t warps = detail::grid_threads() / kWarp;
  // Every lane of a warp runs the same rows, so the full-mask shuffles below are convergent.
  for (std::size_t r = detail::global_thread() / kWarp; r < rows; r += warps) {
    const float* row = logits + r * classes;
    ArgMax best = argmax_identity();
    for (std::size_t c = lane; c < classes; c += kWarp) {
      best = argmax_combine(best, ArgMax{row[c], static_cast<std::int32_t>(c)});
    }
#pragma unroll
    for (unsigned d = kWarp / 2; d > 0; d /= 2) {
      const ArgMax other{__shfl_xor_sync(kFullMask, best.value, d), __shfl_xor_sync(kFullMask, best.index, d)};
      best = argmax_combine(best, other);
    }
    if (lane == 0) labels[r] = top1_label(best, offset);
  }
}

}  // namespace

void top1(std::int32_t* labels, const float* logits, std::size_t rows, std::size_t classes, std::int32_t offset,
          cudaStream_t stream) {
  detail::check_top1(labels, logits, rows, classes);
  if (rows == 0) return;
  const unsigned blocks = detail::blocks_for(rows * kWarp);  // one warp per row
  top1_kernel<<<blocks, detail::kBlock, 0, stream>>>(labels, logits, rows, classes, offset);
  detail::check_launch("top1");
}

}  // namespace fastres::kernels

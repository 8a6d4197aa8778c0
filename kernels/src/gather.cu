// gather_samples: a contiguous batch from a device-resident sample library (start_from_device).
// The grid's y dimension walks the batch's samples, x the units of one sample, so no thread
// divides; each thread keeps 4 independent loads in flight before it stores.
#include <cuda_runtime.h>

#include <cstdint>

#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "launch.cuh"
#include "validate.hpp"

namespace fastres::kernels {

namespace {

constexpr int kUnroll = 4;

template <class Unit>
__global__ void gather_kernel(Unit* __restrict__ batch, const Unit* __restrict__ library, std::size_t units,
                              const std::uint32_t* __restrict__ slots, std::size_t count) {
  const std::size_t stride = detail::grid_threads();
  for (std::size_t s = blockIdx.y; s < count; s += gridDim.y) {
    Unit* dst = batch + s * units;
    std::size_t u = detail::global_thread();
    for (; u + (kUnroll - 1) * stride < units; u += kUnroll * stride) {
      Unit v[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) v[k] = library[gather_source(slots, s, u + k * stride, units)];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) dst[u + k * stride] = v[k];
    }
    for (; u < units; u += stride) dst[u] = library[gather_source(slots, s, u, units)];
  }
}

template <class Unit>
void launch_gather(std::byte* batch, const std::byte* library, std::size_t sample_bytes, const std::uint32_t* slots,
                   std::size_t count, cudaStream_t stream) {
  const std::size_t units = sample_bytes / sizeof(Unit);
  gather_kernel<Unit><<<detail::grid_2d(units, count, kUnroll), detail::kBlock, 0, stream>>>(reinterpret_cast<Unit*>(batch),
                                                           reinterpret_cast<const Unit*>(library), units, slots, count);
  detail::check_launch("gather_samples");
}

}  // namespace

void gather_samples(std::byte* batch, const std::byte* library, std::size_t sample_bytes, const std::uint32_t* slots,
                    std::size_t count, cudaStream_t stream) {
  detail::check_gather(batch, library, sample_bytes, slots, count);
  if (count == 0) return;
  switch (gather_unit_bytes(sample_bytes, reinterpret_cast<std::uintptr_t>(batch),
                            reinterpret_cast<std::uintptr_t>(library))) {
    case 16: launch_gather<uint4>(batch, library, sample_bytes, slots, count, stream); break;
    case 8: launch_gather<uint2>(batch, library, sample_bytes, slots, count, stream); break;
    case 4: launch_gather<std::uint32_t>(batch, library, sample_bytes, slots, count, stream); break;
    default: launch_gather<std::uint8_t>(batch, library, sample_bytes, slots, count, stream); break;
  }
}

}  // namespace fastres::kernels

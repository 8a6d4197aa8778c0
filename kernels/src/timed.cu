// timed_answer: the TimedEngine's kernel. One block: thread 0 spins on the GPU's global
// nanosecond timer for the batch's time, then every thread writes labels. It stands in for a
// model whose cost is known exactly, so the executor's pipeline can be measured against the
// ideal and its ordering proven (each answer comes from its own sample's bytes).
#include <cuda_runtime.h>

#include <cstdint>

#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "launch.cuh"
#include "validate.hpp"

namespace fastres::kernels {

namespace {

__device__ __forceinline__ std::uint64_t global_timer_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void timed_answer_kernel(std::int32_t* __restrict__ labels, const std::byte* __restrict__ inputs,
                                    std::size_t sample_bytes, std::size_t count, std::uint64_t spin_ns) {
  if (threadIdx.x == 0 && spin_ns > 0) {
    const std::uint64_t start = global_timer_ns();
    while (global_timer_ns() - start < spin_ns) {
      __nanosleep(128);
    }
  }
  __syncthreads();
  for (std::size_t i = threadIdx.x; i < count; i += blockDim.x) labels[i] = timed_label(inputs + i * sample_bytes);
}

}  // namespace

void timed_answer(std::int32_t* labels, const std::byte* inputs, std::size_t sample_bytes, std::size_t count,
                  std::uint64_t spin_ns, cudaStream_t stream) {
  detail::check_timed(labels, inputs, sample_bytes, count);
  if (count == 0) return;
  timed_answer_kernel<<<1, detail::kBlock, 0, stream>>>(labels, inputs, sample_bytes, count, spin_ns);
  detail::check_launch("timed_answer");
}

}  // namespace fastres::kernels
